//! The log writer's second stage: makes committed batches durable and
//! answers their appends, while the writer thread builds and commits the
//! next batch. A flush waits on the disk; done on the writer's thread,
//! every batch's work would wait with it.
//!
//! One flush covers every batch committed before it began, so batches that
//! queue up while one flush runs share the next. A failed flush fails its
//! batches and every later one until the writer has recovered the store
//! (the writer first [`Flusher::drain`]s, so nothing it committed before
//! the recovery can be answered as durable after it).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::storage::LogStore;
use super::writer::{Appended, Observer};
use super::LogError;

/// An append's reply, and what it is answered once durable.
pub(super) type Answer = (oneshot::Sender<Result<Appended, LogError>>, Appended);

/// A batch committed (visible, not yet durable).
pub(super) struct Committed {
    /// The log's size after it.
    pub size: u64,
    pub answers: Vec<Answer>,
    pub entries: usize,
    /// How long its commit took.
    pub written: Duration,
}

enum Job {
    Flush(Committed),
    /// Answered once every job sent before it is done.
    Drain(mpsc::Sender<()>),
}

pub(super) struct Flusher {
    jobs: Option<mpsc::Sender<Job>>,
    /// Why the last flush failed, until the writer recovers the store.
    failed: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start(
        store: LogStore,
        durable_size: Arc<watch::Sender<u64>>,
        observer: Observer,
    ) -> Result<Self, LogError> {
        let (jobs, queue) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let stage = Stage {
            store,
            durable_size,
            observer,
            failed: failed.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || stage.run(queue))
            .map_err(|e| LogError::Writer(e.to_string()))?;
        Ok(Self {
            jobs: Some(jobs),
            failed,
            thread: Some(thread),
        })
    }

    /// Flushes `batch` (with whatever else is committed by then) and
    /// answers its appends.
    pub fn flush(&self, batch: Committed) {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(Job::Flush(batch)),
            None => Err(mpsc::SendError(Job::Flush(batch))),
        };
        if let Err(mpsc::SendError(Job::Flush(batch))) = sent {
            answer_all(batch.answers, "the log's flusher has stopped");
        }
    }

    /// Why a flush failed, while the store is not recovered.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    /// Returns once every batch sent so far is answered.
    pub fn drain(&self) {
        let (done, wait) = mpsc::channel();
        if let Some(jobs) = &self.jobs {
            if jobs.send(Job::Drain(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }

    /// The store was recovered (after a [`Flusher::drain`]): flush again.
    pub fn recovered(&self) {
        *lock(&self.failed) = None;
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(failed: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    failed.lock().unwrap_or_else(|p| p.into_inner())
}

fn answer_all(answers: Vec<Answer>, why: &str) {
    for (reply, _) in answers {
        let _ = reply.send(Err(LogError::Writer(format!("not flushed: {why}"))));
    }
}

/// The flusher thread's state.
struct Stage {
    store: LogStore,
    durable_size: Arc<watch::Sender<u64>>,
    observer: Observer,
    failed: Arc<Mutex<Option<String>>>,
}

impl Stage {
    fn run(self, queue: mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut batches = Vec::new();
            let mut drains = Vec::new();
            for job in std::iter::once(first).chain(queue.try_iter()) {
                match job {
                    Job::Flush(batch) => batches.push(batch),
                    Job::Drain(done) => drains.push(done),
                }
            }
            if !batches.is_empty() {
                self.flush(batches);
            }
            for done in drains {
                let _ = done.send(());
            }
        }
    }

    fn flush(&self, batches: Vec<Committed>) {
        if let Some(why) = lock(&self.failed).clone() {
            for batch in batches {
                answer_all(batch.answers, &why);
            }
            return;
        }
        let started = Instant::now();
        if let Err(e) = self.store.flush() {
            let why = e.to_string();
            *lock(&self.failed) = Some(why.clone());
            for batch in batches {
                answer_all(batch.answers, &why);
            }
            return;
        }
        let flushed = started.elapsed();
        let size = batches.iter().map(|b| b.size).max().unwrap_or(0);
        self.durable_size.send_if_modified(|durable| {
            let grew = size > *durable;
            *durable = (*durable).max(size);
            grew
        });
        for batch in batches {
            self.observer.0.batch(batch.entries, batch.written, flushed);
            for (reply, appended) in batch.answers {
                let _ = reply.send(Ok(appended));
            }
        }
    }
}
