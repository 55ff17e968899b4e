//! The log on fjall (an LSM tree) in the data directory's `log.fjall`, with
//! the key layout of `keys.rs` and the log's semantics of `ordered.rs`. One partition holds the entries, hashes and
//! postings, written in one atomic batch per append; a second one holds the
//! used `jti`s, claimed in memory and written there by the next flush
//! (`used_jtis.rs`). `flush` persists the journal (fsync), which makes both
//! durable together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::ordered::{self, failed, KeyRange, KeyedLog, OrderedStore, Pair, Pairs};
use super::used_jtis::{read_claims, Claim, ClaimTree, Jtis, UsedJtis};
use crate::log::storage::LogStore;
use crate::log::LogError;

fn storage(e: fjall::Error) -> LogError {
    LogError::Storage(e.to_string())
}

#[derive(Clone)]
struct Open {
    keyspace: Keyspace,
    log: PartitionHandle,
    jti: PartitionHandle,
}

struct Shared {
    data_dir: PathBuf,
    handles: ordered::Handles<Open>,
    /// The entries' bytes (`entry_file.rs`); none for a log that keeps
    /// them in the partition, as logs written before the file did.
    entries: ordered::EntryFileSlot,
    /// Read from the `jti` partition when a server first asks for them.
    jtis: OnceLock<UsedJtis>,
}

/// The data directory's fjall keyspace: the log and the used `jti`s.
#[derive(Clone)]
pub struct FjallLog(Arc<Shared>);

/// Where the keyspace lives in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("log.fjall")
}

fn open_handles(data_dir: &Path) -> Result<Open, LogError> {
    let keyspace = fjall::Config::new(path(data_dir))
        .manual_journal_persist(true)
        .open()
        .map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
    let log = keyspace
        .open_partition("log", PartitionCreateOptions::default())
        .map_err(storage)?;
    let jti = keyspace
        .open_partition("jti", PartitionCreateOptions::default())
        .map_err(storage)?;
    Ok(Open { keyspace, log, jti })
}

impl FjallLog {
    /// Opens (or creates) the data directory's keyspace for a server or a
    /// writing command.
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        Self::open_with(data_dir, true)
    }

    /// Opens it for a command that only reads: nothing is created, and the
    /// entry file is left as it is.
    pub fn open_for_scan(data_dir: &Path) -> Result<Self, LogError> {
        Self::open_with(data_dir, false)
    }

    fn open_with(data_dir: &Path, writable: bool) -> Result<Self, LogError> {
        super::create_private_dir(data_dir).map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let log = Self(Arc::new(Shared {
            data_dir: data_dir.to_path_buf(),
            handles: ordered::Handles::new(open_handles(data_dir)?),
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

    fn tree(&self) -> Result<PartitionHandle, LogError> {
        Ok(self.handles()?.log)
    }

    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.keyed())
    }

    /// The used-`jti` store: every unexpired claim is read into memory now.
    pub fn jti_store(&self) -> Result<FjallJtis, LogError> {
        if self.0.jtis.get().is_none() {
            let claims = read_claims(self.handles()?.jti.iter())?;
            let _ = self.0.jtis.set(claims);
        }
        Ok(Jtis(self.clone()))
    }
}

impl OrderedStore for FjallLog {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.tree()?.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn write_batch(&self, pairs: Vec<Pair>, removals: Vec<Vec<u8>>) -> Result<(), LogError> {
        let handles = self.handles()?;
        let mut batch = handles.keyspace.batch();
        for (key, value) in pairs {
            batch.insert(&handles.log, key, value);
        }
        for key in removals {
            batch.remove(&handles.log, key);
        }
        batch.commit().map_err(storage)
    }

    fn flush(&self) -> Result<(), LogError> {
        if let Some(jtis) = self.used_jtis() {
            jtis.write_unwritten(|claims| self.write_claims(claims, &[]))?;
        }
        self.handles()?
            .keyspace
            .persist(PersistMode::SyncAll)
            .map_err(storage)
    }

    fn reopen(&self) -> Result<(), LogError> {
        // A failed journal write poisons the keyspace until it is opened
        // again; the reopened one holds what was persisted.
        let shared = &self.0;
        shared.handles.reopen(|| open_handles(&shared.data_dir))?;
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

/// Used `jti`s in the data directory's keyspace (see `used_jtis.rs`).
pub type FjallJtis = Jtis<FjallLog>;

impl ClaimTree for FjallLog {
    fn used_jtis(&self) -> Option<&UsedJtis> {
        self.0.jtis.get()
    }

    fn write_claims(&self, claims: &[Claim], removals: &[Vec<u8>]) -> Result<(), LogError> {
        let handles = self.handles()?;
        let mut batch = handles.keyspace.batch();
        for (key, until) in claims {
            batch.insert(&handles.jti, key.as_slice(), until.to_be_bytes());
        }
        for key in removals {
            batch.remove(&handles.jti, key.as_slice());
        }
        batch.commit().map_err(storage)
    }
}
