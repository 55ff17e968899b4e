//! The single log writer, with group commit.
//!
//! Every append goes through one thread, which gives entries gap-free seqs
//! in order. It takes whatever appends are waiting, writes them in one
//! batch, flushes once, and only then answers each of them: many decisions
//! share one fsync, and none is answered before it is durable.

use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::entry::{EntryReceipt, LogEntry, Record};
use super::merkle::leaf_hash;
use super::store::{LogStore, StoredEntry};
use super::LogError;

/// Appends waiting beyond this many are taken in the next batch.
const MAX_BATCH: usize = 1024;

struct Append {
    /// `seq` is set by the writer.
    entry: LogEntry,
    reply: oneshot::Sender<Result<EntryReceipt, LogError>>,
}

/// A cheap handle to the writer thread.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Append>,
}

/// Joins the writer thread once every [`LogWriter`] is dropped.
pub struct WriterThread(JoinHandle<()>);

impl WriterThread {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl LogWriter {
    pub fn start(store: LogStore, durable: bool) -> Result<(Self, WriterThread), LogError> {
        let next_seq = store.next_seq()?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || run(store, rx, next_seq, durable))
            .map_err(|e| LogError::Writer(e.to_string()))?;
        Ok((Self { tx }, WriterThread(handle)))
    }

    /// Appends a record; returns once it is stored (and flushed, if durable).
    pub async fn append(
        &self,
        time: String,
        policy_revision: String,
        record: Record,
    ) -> Result<EntryReceipt, LogError> {
        let (reply, answer) = oneshot::channel();
        let entry = LogEntry {
            seq: 0,
            time,
            policy_revision,
            record,
        };
        let append = Append { entry, reply };
        self.tx
            .send(append)
            .await
            .map_err(|_| LogError::Writer("log writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| LogError::Writer("log writer dropped the append".into()))?
    }
}

fn run(store: LogStore, mut rx: mpsc::Receiver<Append>, mut next_seq: u64, durable: bool) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        match write_batch(&store, &mut batch, next_seq, durable) {
            Ok(receipts) => {
                next_seq += receipts.len() as u64;
                for (append, receipt) in batch.drain(..).zip(receipts) {
                    let _ = append.reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                // Nothing of the batch counts as written: seqs are reused by
                // the next batch, so the log stays gap-free.
                tracing::error!(error = %e, "decision log write failed");
                for append in batch.drain(..) {
                    let _ = append.reply.send(Err(LogError::Writer(e.to_string())));
                }
            }
        }
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final decision log flush failed");
    }
}

fn write_batch(
    store: &LogStore,
    batch: &mut [Append],
    first_seq: u64,
    durable: bool,
) -> Result<Vec<EntryReceipt>, LogError> {
    let mut encoded = Vec::with_capacity(batch.len());
    for (seq, append) in (first_seq..).zip(batch.iter_mut()) {
        append.entry.seq = seq;
        let bytes =
            serde_json::to_vec(&append.entry).map_err(|e| LogError::Encode(e.to_string()))?;
        encoded.push((seq, bytes, append.entry.record.decision_id()));
    }
    let stored: Vec<StoredEntry<'_>> = encoded
        .iter()
        .map(|(seq, bytes, id)| StoredEntry {
            seq: *seq,
            bytes,
            decision_id: *id,
        })
        .collect();
    store.append(&stored)?;
    if durable {
        store.flush()?;
    }
    Ok(encoded
        .iter()
        .map(|(seq, bytes, _)| EntryReceipt::new(*seq, &leaf_hash(bytes)))
        .collect())
}
