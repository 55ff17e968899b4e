//! The default embedded engine: one sled database in the data directory.
//!
//! One sled tree holds the entries, their hashes and their postings under
//! the key layout of `keys.rs`, so one atomic batch writes an entry together
//! with everything that points to it and a crash can never leave them out
//! of step (the log's semantics over it are `ordered.rs`'s). Used `jti`s
//! are claimed in memory and written to a second tree of the same database
//! by the flush that makes the decision durable (`used_jtis.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::keys::*;
use super::ordered::{self, failed, KeyRange, KeyedLog, OrderedStore, Pair, Pairs};
use super::used_jtis::{read_claims, Claim, ClaimTree, Jtis, UsedJtis};
use crate::log::index::Field;
use crate::log::storage::LogStore;
use crate::log::LogError;

/// Page cache of [`SledLog::open_for_scan`].
const SCAN_CACHE_BYTES: u64 = 32 * 1024 * 1024;

fn storage(e: sled::Error) -> LogError {
    LogError::Storage(e.to_string())
}

/// The open database and its two trees.
#[derive(Clone)]
struct Open {
    db: sled::Db,
    log: sled::Tree,
    jti: sled::Tree,
}

struct Shared {
    data_dir: PathBuf,
    cache_capacity: Option<u64>,
    handles: ordered::Handles<Open>,
    /// The entries' bytes (`entry_file.rs`); none for a log that keeps
    /// them in the tree, as logs written before the file did.
    entries: ordered::EntryFileSlot,
    /// Read from the `jti` tree when a server first asks for them.
    jtis: OnceLock<UsedJtis>,
}

/// The data directory's sled database: the log and the used `jti`s.
///
/// After a failed write sled refuses every later operation until the
/// database is opened again: the handles can be swapped whole (see
/// `ordered::Handles`).
#[derive(Clone)]
pub struct SledLog(Arc<Shared>);

impl SledLog {
    /// Opens (or creates) the data directory. sled allows one process per
    /// database: a second server (or a tool) on the same directory fails here.
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        Self::create(data_dir, None)
    }

    /// [`SledLog::open`] with a page cache of `bytes` (sled's default is
    /// 1 GiB): a server's memory on a long log is mostly this cache.
    pub fn open_with_cache(data_dir: &Path, bytes: u64) -> Result<Self, LogError> {
        Self::create(data_dir, Some(bytes))
    }

    fn create(data_dir: &Path, cache_capacity: Option<u64>) -> Result<Self, LogError> {
        super::create_private_dir(data_dir).map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::open_with(data_dir, cache_capacity, true)
    }

    /// Opens the data directory for a tool that reads through the whole log
    /// once (verify, export, replay): a small page cache keeps its memory
    /// flat however long the log, where the server's default cache would
    /// grow with every page read. A reading tool creates nothing: a data
    /// directory without a log is an error, not a new empty log.
    pub fn open_for_scan(data_dir: &Path) -> Result<Self, LogError> {
        if !data_dir.join("log.sled").is_dir() {
            return Err(LogError::Open {
                path: data_dir.to_path_buf(),
                message: "no decision log here (give the data directory of a server that has run)"
                    .into(),
            });
        }
        Self::open_with(data_dir, Some(SCAN_CACHE_BYTES), false)
    }

    fn open_with(
        data_dir: &Path,
        cache_capacity: Option<u64>,
        writable: bool,
    ) -> Result<Self, LogError> {
        let handles = open_handles(data_dir, cache_capacity)?;
        let log = Self(Arc::new(Shared {
            data_dir: data_dir.to_path_buf(),
            cache_capacity,
            handles: ordered::Handles::new(handles),
            entries: ordered::EntryFileSlot::default(),
            jtis: OnceLock::new(),
        }));
        log.0.entries.open(&log, data_dir, writable)?;
        Ok(log)
    }

    fn keyed(&self) -> KeyedLog<Self> {
        self.0.entries.log(self.clone())
    }

    fn handles(&self) -> Result<Open, LogError> {
        self.0.handles.current()
    }

    fn tree(&self) -> Result<sled::Tree, LogError> {
        Ok(self.handles()?.log)
    }

    /// The log, behind its storage roles.
    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.keyed())
    }

    /// The used-`jti` store, in the same database: every unexpired claim
    /// is read into memory now.
    pub fn jti_store(&self) -> Result<SledJtis, LogError> {
        if self.0.jtis.get().is_none() {
            let claims = read_claims(self.handles()?.jti.iter())?;
            let _ = self.0.jtis.set(claims);
        }
        Ok(Jtis(self.clone()))
    }

    /// Test and repair tooling only: raw access to the tree, to simulate
    /// tampering.
    pub fn raw_tree(&self) -> sled::Tree {
        self.tree().expect("an open database")
    }
}

fn open_handles(data_dir: &Path, cache_capacity: Option<u64>) -> Result<Open, LogError> {
    // No background flusher: the log writer decides when to flush (every
    // commit when durable, else once a second), and sees every failure.
    let mut config = sled::Config::new()
        .path(data_dir.join("log.sled"))
        .flush_every_ms(None);
    if let Some(bytes) = cache_capacity {
        config = config.cache_capacity(bytes);
    }
    let db = config.open().map_err(|e| LogError::Open {
        path: data_dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let log = db.open_tree("log").map_err(storage)?;
    let jti = db.open_tree("jti").map_err(storage)?;
    Ok(Open { db, log, jti })
}

/// Opens the data directory's log for a server or a writing command.
pub fn open(data_dir: &Path) -> Result<LogStore, LogError> {
    SledLog::open(data_dir).map(|s| s.log_store())
}

/// Opens the data directory's log for a reading command; never creates.
pub fn open_for_scan(data_dir: &Path) -> Result<LogStore, LogError> {
    SledLog::open_for_scan(data_dir).map(|s| s.log_store())
}

/// Key of entry `seq`, for tools that edit a stopped data directory.
pub fn raw_entry_key(seq: u64) -> Vec<u8> {
    entry_key(seq).to_vec()
}

/// Key of a posting, for tools that edit a stopped data directory.
pub fn raw_posting_key(field: Field, value: &str, seq: u64) -> Vec<u8> {
    posting_key(field, value, seq)
}

/// Key of a Merkle hash, for tools that edit a stopped data directory.
pub fn raw_hash_key(level: u8, index: u64) -> Vec<u8> {
    hash_key(level, index).to_vec()
}

/// Key of an entry's time as logs written before the time moved into the
/// leaf hash keep it, for tools that edit a stopped data directory.
pub fn raw_time_key(seq: u64) -> Vec<u8> {
    time_key(seq).to_vec()
}

/// Key of the checkpoint for `size`, for tools that edit a stopped data directory.
pub fn raw_checkpoint_key(size: u64) -> Vec<u8> {
    checkpoint_key(size).to_vec()
}

impl OrderedStore for SledLog {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.tree()?.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn write_batch(&self, pairs: Vec<Pair>, removals: Vec<Vec<u8>>) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        for (key, value) in pairs {
            batch.insert(key, value);
        }
        for key in removals {
            batch.remove(key);
        }
        self.tree()?.apply_batch(batch).map_err(storage)
    }

    fn flush(&self) -> Result<(), LogError> {
        if let Some(jtis) = self.used_jtis() {
            jtis.write_unwritten(|claims| self.write_claims(claims, &[]))?;
        }
        self.handles()?.db.flush().map_err(storage)?;
        Ok(())
    }

    fn reopen(&self) -> Result<(), LogError> {
        // sled refuses everything after a failed write until the database is
        // opened again; what was flushed is what the reopened one holds.
        let shared = &self.0;
        shared
            .handles
            .reopen(|| open_handles(&shared.data_dir, shared.cache_capacity))?;
        if let Some(jtis) = shared.jtis.get() {
            jtis.rewrite_all();
        }
        Ok(())
    }

    fn range(&self, range: KeyRange, reverse: bool) -> Pairs {
        match self.tree() {
            Ok(tree) => ordered::pairs(tree.range::<Vec<u8>, _>(range), reverse),
            Err(e) => failed(e),
        }
    }
}

/// Used `jti`s in the data directory's database (see `used_jtis.rs`).
pub type SledJtis = Jtis<SledLog>;

impl ClaimTree for SledLog {
    fn used_jtis(&self) -> Option<&UsedJtis> {
        self.0.jtis.get()
    }

    fn write_claims(&self, claims: &[Claim], removals: &[Vec<u8>]) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        for (key, until) in claims {
            batch.insert(key.as_slice(), &until.to_be_bytes()[..]);
        }
        for key in removals {
            batch.remove(key.as_slice());
        }
        self.handles()?.jti.apply_batch(batch).map_err(storage)
    }
}
