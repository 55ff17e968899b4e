//! The engine's half of a commit, applied behind the entry file.
//!
//! With an entry file, a commit is durable once its frames are synced
//! (see `entry_file.rs`); the engine's batch (the entries' locations,
//! hashes, postings) only makes them findable. So the writer hands that
//! batch to the indexer's thread and answers: while the indexer applies
//! batch N, the writer syncs batch N+1's frames, and the writer's time per
//! batch is the sync or the engine's work, whichever is longer, not both.
//!
//! Every read of the engine waits for the batches handed over before it
//! ([`Indexer::caught_up`]), so an answered decision is found by the next
//! query. A batch that fails stops the indexer: the batches after it are
//! dropped unapplied (the engine's newest entry then stays before the
//! gap) and every read and commit reports the failure until the writer
//! recovers, which indexes the file's frames past the engine's newest
//! entry again (`KeyedLog::settle`). Nothing acknowledged is lost: it is
//! in the file.

use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

use crate::log::LogError;

/// Batches handed over and not yet applied beyond which the writer waits:
/// enough to overlap one sync with one batch's indexing, and no backlog
/// for a read (a checkpoint, a query) to wait behind.
const MAX_BEHIND: u64 = 2;

/// One engine batch, with the store it goes to.
pub(super) type Job = Box<dyn FnOnce() -> Result<(), LogError> + Send>;

#[derive(Default)]
struct Progress {
    handed: u64,
    applied: u64,
    /// Why a batch failed; set until [`Indexer::reset`].
    failed: Option<String>,
    /// The seq the writer's next entry gets, once a commit has said.
    next_seq: Option<u64>,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The indexer of one open log: a thread applying [`Job`]s in order. The
/// thread ends when the indexer is dropped.
pub(super) struct Indexer {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl Indexer {
    pub fn start() -> Result<Self, LogError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("log-indexer".into())
            .spawn(move || {
                for job in rx {
                    let stopped = worker.lock().failed.is_some();
                    // The job (and its handle to the store) is gone before
                    // `applied` moves: whoever waited for it may close the
                    // store and open it again at once.
                    let outcome = match stopped {
                        true => {
                            drop(job);
                            Ok(())
                        }
                        // A panic in the engine fails the batch like an
                        // error: a reader waiting for it must not wait on.
                        false => std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                            .unwrap_or_else(|_| {
                                Err(LogError::Storage("the engine panicked".into()))
                            }),
                    };
                    let mut progress = worker.lock();
                    if let Err(e) = outcome {
                        tracing::error!(error = %e, "indexing a decision log batch failed");
                        progress.failed = Some(e.to_string());
                    }
                    progress.applied += 1;
                    drop(progress);
                    worker.changed.notify_all();
                }
            })
            .map_err(|e| LogError::Storage(format!("cannot start the log indexer: {e}")))?;
        Ok(Self { jobs: tx, shared })
    }

    /// Hands `job` over; `next_seq` is the seq after its entries. Called
    /// in commit order (under the entry file's tail lock); waits while
    /// [`MAX_BEHIND`] batches are.
    pub fn hand_over(&self, job: Job, next_seq: u64) -> Result<(), LogError> {
        let mut progress = self.shared.lock();
        while progress.handed - progress.applied >= MAX_BEHIND && progress.failed.is_none() {
            progress = self
                .shared
                .changed
                .wait(progress)
                .unwrap_or_else(|p| p.into_inner());
        }
        if let Some(why) = &progress.failed {
            return Err(failed(why));
        }
        self.jobs
            .send(job)
            .map_err(|_| LogError::Storage("the log indexer has stopped".into()))?;
        progress.handed += 1;
        progress.next_seq = Some(next_seq);
        Ok(())
    }

    /// Waits until every batch handed over so far is applied; the failure
    /// that stopped the indexer, if one did.
    pub fn caught_up(&self) -> Result<(), LogError> {
        let mut progress = self.shared.lock();
        let target = progress.handed;
        while progress.applied < target {
            progress = self
                .shared
                .changed
                .wait(progress)
                .unwrap_or_else(|p| p.into_inner());
        }
        match &progress.failed {
            Some(why) => Err(failed(why)),
            None => Ok(()),
        }
    }

    /// The writer's head as the last commit left it, unless a batch failed
    /// since (then the engine must be brought in step first).
    pub fn next_seq(&self) -> Result<Option<u64>, LogError> {
        let progress = self.shared.lock();
        match &progress.failed {
            Some(why) => Err(failed(why)),
            None => Ok(progress.next_seq),
        }
    }

    /// After a failure: waits for the batches in flight (dropped unapplied)
    /// and clears the failure, for the writer's recovery to settle the
    /// engine with the file.
    pub fn reset(&self) {
        let _ = self.caught_up();
        let mut progress = self.shared.lock();
        progress.failed = None;
        progress.next_seq = None;
    }
}

fn failed(why: &str) -> LogError {
    LogError::Storage(format!("indexing the decision log failed: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn counting(applied: &Arc<AtomicU64>, n: u64) -> Job {
        let applied = Arc::clone(applied);
        Box::new(move || {
            std::thread::sleep(std::time::Duration::from_millis(2));
            applied.fetch_max(n, Ordering::SeqCst);
            Ok(())
        })
    }

    #[test]
    fn a_reader_waits_for_every_batch_handed_over_before_it() {
        let indexer = Indexer::start().unwrap();
        let applied = Arc::new(AtomicU64::new(0));
        for n in 1..=5 {
            indexer.hand_over(counting(&applied, n), n * 10).unwrap();
            // Never more than MAX_BEHIND batches waiting.
            assert!(n - applied.load(Ordering::SeqCst) <= MAX_BEHIND);
        }
        indexer.caught_up().unwrap();
        assert_eq!(applied.load(Ordering::SeqCst), 5);
        assert_eq!(indexer.next_seq().unwrap(), Some(50));
    }

    #[test]
    fn a_failed_batch_stops_the_ones_after_it_until_reset() {
        let indexer = Indexer::start().unwrap();
        let applied = Arc::new(AtomicU64::new(0));
        indexer.hand_over(counting(&applied, 1), 1).unwrap();
        indexer
            .hand_over(Box::new(|| Err(LogError::Storage("no space".into()))), 2)
            .unwrap();
        // Refused, or taken and dropped, depending on when the failure is seen.
        let _ = indexer.hand_over(counting(&applied, 3), 3);
        let e = indexer.caught_up().unwrap_err().to_string();
        assert!(e.contains("no space"), "{e}");
        // The batch after the failed one was not applied: the engine's
        // newest entry stays before the gap.
        assert_eq!(applied.load(Ordering::SeqCst), 1);
        assert!(indexer.next_seq().is_err());
        assert!(indexer.hand_over(counting(&applied, 4), 4).is_err());
        indexer.reset();
        assert_eq!(indexer.next_seq().unwrap(), None);
        // A batch that panics fails like one that errs, and nobody hangs.
        indexer
            .hand_over(Box::new(|| panic!("engine bug")), 4)
            .unwrap();
        let e = indexer.caught_up().unwrap_err().to_string();
        assert!(e.contains("panicked"), "{e}");
        indexer.reset();
        indexer.hand_over(counting(&applied, 5), 5).unwrap();
        indexer.caught_up().unwrap();
        assert_eq!(applied.load(Ordering::SeqCst), 5);
    }
}
