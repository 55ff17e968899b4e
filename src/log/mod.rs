//! The decision log: an append-only sequence of entries, a Merkle tree over
//! them and signed checkpoints, kept by any engine behind [`storage`].

pub mod checkpoint;
pub mod copy;
pub mod entry;
pub(crate) mod grants;
pub mod hot_index;
pub mod index;
pub mod key_history;
pub mod merkle;
pub mod proof;
pub mod query;
pub mod retained;
pub mod sealed;
pub mod storage;
pub mod verify;
pub(crate) mod writer;

use std::path::PathBuf;

pub use entry::{ConnectionDecisionRecord, EntryReceipt, LogEntry, Record};
pub use merkle::leaf_hash;
pub use storage::LogStore;
pub use writer::{
    Appended, CheckpointPolicy, LogWriter, Observer, WriteObserver, WriterOptions, WriterThread,
};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open data directory {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("stored log data is corrupt")]
    Corrupt,
    /// A stored key or value that no trustpath wrote, with where it is.
    #[error("malformed store data: {0}")]
    Malformed(String),
    #[error("cannot encode entry: {0}")]
    Encode(String),
    #[error("log writer: {0}")]
    Writer(String),
    /// The writer's queue is full: the server is over capacity. Nothing
    /// was logged; the caller answers "not now" at once.
    #[error("the log writer's queue is full ({waiting} appends waiting); retry shortly")]
    Overloaded { waiting: usize },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A fleet engine's batch assumed the log's head where this replica
    /// left it, and another replica had appended since: nothing of the
    /// batch was stored; the next `begin` reads the head again.
    #[error("another replica appended at seq {expected} first; nothing of this batch was stored")]
    HeadMoved { expected: u64 },
}
