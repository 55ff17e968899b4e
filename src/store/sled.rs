//! The embedded engine: one sled database in the data directory.
//!
//! One sled tree holds the entries, their hashes and their postings under
//! distinct key prefixes, so one atomic batch writes an entry together with
//! everything that points to it and a crash can never leave them out of
//! step. Used `jti`s live in a second tree of the same database, so the
//! flush that makes a decision durable makes its `jti` durable too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::keys::*;
use crate::identity::replay::JtiStore;
use crate::log::index::{Field, IndexRecord};
use crate::log::merkle::Hash;
use crate::log::storage::{LogAppend, LogIndex, LogRead, LogStore, Scan, StoredEntry};
use crate::log::LogError;

/// How long a reopen waits for operations in flight to let go of the
/// old database.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// Page cache of [`SledLog::open_for_scan`].
const SCAN_CACHE_BYTES: u64 = 32 * 1024 * 1024;

fn storage(e: sled::Error) -> LogError {
    LogError::Storage(e.to_string())
}

/// The open database and its two trees.
#[derive(Clone)]
struct Handles {
    db: sled::Db,
    log: sled::Tree,
    jti: sled::Tree,
}

struct Shared {
    data_dir: PathBuf,
    cache_capacity: Option<u64>,
    /// `None` while the database is being reopened, or when reopening failed.
    handles: RwLock<Option<Handles>>,
}

/// The data directory's sled database: the log and the used `jti`s.
///
/// After a failed write sled refuses every later operation until the
/// database is opened again, so the handles sit behind a lock that
/// [`LogAppend::recover`] swaps: every operation takes a cheap clone of the
/// current handles and never waits for a reopen in progress.
#[derive(Clone)]
pub struct SledLog(Arc<Shared>);

impl SledLog {
    /// Opens (or creates) the data directory. sled allows one process per
    /// database: a second server (or a tool) on the same directory fails here.
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        super::create_private_dir(data_dir).map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::open_with(data_dir, None)
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
        Self::open_with(data_dir, Some(SCAN_CACHE_BYTES))
    }

    fn open_with(data_dir: &Path, cache_capacity: Option<u64>) -> Result<Self, LogError> {
        let handles = open_handles(data_dir, cache_capacity)?;
        Ok(Self(Arc::new(Shared {
            data_dir: data_dir.to_path_buf(),
            cache_capacity,
            handles: RwLock::new(Some(handles)),
        })))
    }

    /// The current handles; an error at once while a reopen is under way.
    fn handles(&self) -> Result<Handles, LogError> {
        let unavailable = || LogError::Storage("the database is being reopened".into());
        let slot = self.0.handles.try_read().map_err(|_| unavailable())?;
        slot.clone().ok_or_else(|| {
            LogError::Storage("the database could not be reopened after a failure".into())
        })
    }

    fn tree(&self) -> Result<sled::Tree, LogError> {
        Ok(self.handles()?.log)
    }

    /// The log, behind its storage roles.
    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.clone())
    }

    /// The used-`jti` store, in the same database.
    pub fn jti_store(&self) -> Result<SledJtis, LogError> {
        Ok(SledJtis(self.clone()))
    }

    /// Test and repair tooling only: raw access to the tree, to simulate
    /// tampering.
    pub fn raw_tree(&self) -> sled::Tree {
        self.tree().expect("an open database")
    }
}

fn open_handles(data_dir: &Path, cache_capacity: Option<u64>) -> Result<Handles, LogError> {
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
    Ok(Handles { db, log, jti })
}

/// A scan that failed before it started.
fn failed<T: 'static>(e: LogError) -> Scan<'static, T> {
    Box::new(std::iter::once(Err(e)))
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

/// Key of the checkpoint for `size`, for tools that edit a stopped data directory.
pub fn raw_checkpoint_key(size: u64) -> Vec<u8> {
    checkpoint_key(size).to_vec()
}

impl LogAppend for SledLog {
    fn append(&self, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&entry_key(e.seq), e.bytes);
            if let Some(id) = e.decision_id {
                batch.insert(decision_key(id), &e.seq.to_be_bytes());
            }
            for (level, index, hash) in e.hashes {
                batch.insert(&hash_key(*level, *index), hash);
            }
            for p in e.postings {
                batch.insert(posting_key(p.field, &p.value, e.seq), p.data.as_slice());
            }
            if let Some(t) = e.time_micros {
                batch.insert(&time_key(e.seq), &t.to_be_bytes());
            }
        }
        self.tree()?.apply_batch(batch).map_err(storage)
    }

    fn flush(&self) -> Result<(), LogError> {
        self.handles()?.db.flush().map_err(storage)?;
        Ok(())
    }

    fn recover(&self) -> Result<(), LogError> {
        let mut slot = self
            .0
            .handles
            .write()
            .map_err(|_| LogError::Storage("the database lock is poisoned".into()))?;
        // sled refuses everything after a failed write until the database is
        // opened again; what was flushed is what the reopened one holds.
        *slot = None;
        // An operation in flight may hold the old handles (and the file
        // lock) a moment longer: retry until they are gone.
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            match open_handles(&self.0.data_dir, self.0.cache_capacity) {
                Ok(handles) => {
                    *slot = Some(handles);
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), LogError> {
        self.tree()?
            .insert(checkpoint_key(size), note.as_bytes())
            .map_err(storage)?;
        Ok(())
    }
}

impl LogRead for SledLog {
    fn next_seq(&self) -> Result<u64, LogError> {
        let last = self
            .tree()?
            .scan_prefix([ENTRY])
            .next_back()
            .transpose()
            .map_err(storage)?;
        match last {
            Some((key, _)) => seq_of_key(&key)?.checked_add(1).ok_or(LogError::Corrupt),
            None => Ok(0),
        }
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self
            .tree()?
            .get(entry_key(seq))
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    fn seq_of_decision(&self, decision_id: &str) -> Result<Option<u64>, LogError> {
        let key = decision_key(decision_id);
        let Some(value) = self.tree()?.get(&key).map_err(storage)? else {
            return Ok(None);
        };
        u64_at(&key, &value, "its seq").map(Some)
    }

    fn stored_hash(&self, level: u8, index: u64) -> Result<Option<Hash>, LogError> {
        let key = hash_key(level, index);
        match self.tree()?.get(key).map_err(storage)? {
            Some(v) => Ok(Some(v.as_ref().try_into().map_err(|_| {
                malformed(&key, format!("a hash is 32 bytes, this one {}", v.len()))
            })?)),
            None => Ok(None),
        }
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, LogError> {
        let last = self
            .tree()?
            .scan_prefix([CHECKPOINT])
            .next_back()
            .transpose()
            .map_err(storage)?;
        Ok(last.map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
    }

    fn checkpoints(&self) -> Scan<'_, (u64, String)> {
        let tree = match self.tree() {
            Ok(tree) => tree,
            Err(e) => return failed(e),
        };
        Box::new(tree.scan_prefix([CHECKPOINT]).map(|item| {
            let (k, v) = item.map_err(storage)?;
            Ok((seq_of_key(&k)?, String::from_utf8_lossy(&v).into_owned()))
        }))
    }

    fn entries(&self) -> Scan<'_, (u64, Vec<u8>)> {
        let tree = match self.tree() {
            Ok(tree) => tree,
            Err(e) => return failed(e),
        };
        Box::new(tree.scan_prefix([ENTRY]).map(|item| {
            let (k, v) = item.map_err(storage)?;
            Ok((seq_of_key(&k)?, v.to_vec()))
        }))
    }

    fn seqs_descending(&self, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(&[ENTRY], below.map(|b| entry_key(b).to_vec()), seq_of_key)
    }

    fn time_of(&self, seq: u64) -> Result<Option<i64>, LogError> {
        Ok(self
            .tree()?
            .get(time_key(seq))
            .map_err(storage)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }
}

impl SledLog {
    /// The seqs of the keys under `prefix`, highest first, strictly below
    /// the key `below` when given.
    fn keys_descending(
        &self,
        prefix: &[u8],
        below: Option<Vec<u8>>,
        seq_of: fn(&[u8]) -> Result<u64, LogError>,
    ) -> Scan<'_, u64> {
        use std::ops::Bound;
        let upper = match below {
            Some(b) => Bound::Excluded(b),
            None => {
                // Everything under the prefix: the bound just past it.
                let mut end = prefix.to_vec();
                match end.iter().rposition(|b| *b != 0xff) {
                    Some(i) => {
                        end.truncate(i + 1);
                        end[i] += 1;
                        Bound::Excluded(end)
                    }
                    None => Bound::Unbounded,
                }
            }
        };
        let tree = match self.tree() {
            Ok(tree) => tree,
            Err(e) => return failed(e),
        };
        Box::new(
            tree.range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), upper))
                .rev()
                .map(move |item| seq_of(&item.map_err(storage)?.0)),
        )
    }
}

impl LogIndex for SledLog {
    fn postings_descending(&self, field: Field, value: &str, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(
            &posting_prefix(field, value),
            below.map(|b| posting_key(field, value, b)),
            seq_of_posting,
        )
    }

    fn oldest_posting(&self, field: Field, value: &str) -> Result<Option<u64>, LogError> {
        self.tree()?
            .scan_prefix(posting_prefix(field, value))
            .keys()
            .next()
            .transpose()
            .map_err(storage)?
            .map(|k| seq_of_posting(&k))
            .transpose()
    }

    fn newest_posting(
        &self,
        field: Field,
        value: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        self.tree()?
            .scan_prefix(posting_prefix(field, value))
            .next_back()
            .transpose()
            .map_err(storage)?
            .map(|(k, v)| Ok((seq_of_posting(&k)?, v.to_vec())))
            .transpose()
    }

    fn has_posting(&self, field: Field, value: &str, seq: u64) -> Result<bool, LogError> {
        self.tree()?
            .contains_key(posting_key(field, value, seq))
            .map_err(storage)
    }

    fn index_records(&self) -> Scan<'_, IndexRecord> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // Every key but the entries', hashes' and checkpoints' (which
        // verification reads on their own), so unknown keys show too.
        let ranges = [
            (Unbounded, Excluded(vec![CHECKPOINT])),
            (Included(vec![CHECKPOINT + 1]), Excluded(vec![ENTRY])),
            (Included(vec![ENTRY + 1]), Excluded(vec![HASH])),
            (Included(vec![HASH + 1]), Unbounded),
        ];
        let tree = match self.tree() {
            Ok(tree) => tree,
            Err(e) => return failed(e),
        };
        Box::new(
            ranges
                .into_iter()
                .flat_map(move |range| tree.range::<Vec<u8>, _>(range))
                .filter_map(|item| match item {
                    Ok((key, value)) => index_record(&key, &value),
                    Err(e) => Some(Err(storage(e))),
                }),
        )
    }

    fn has_record(&self, record: &IndexRecord) -> Result<bool, LogError> {
        let (key, value) = record_key_value(record);
        Ok(self
            .tree()?
            .get(key)
            .map_err(storage)?
            .is_some_and(|v| *v == value[..]))
    }
}

/// Used `jti`s in the data directory's database.
pub struct SledJtis(SledLog);

impl SledJtis {
    fn tree(&self) -> Result<sled::Tree, String> {
        self.0.handles().map(|h| h.jti).map_err(|e| e.to_string())
    }
}

impl JtiStore for SledJtis {
    fn first_use(&self, key: &[u8], until: i64) -> Result<bool, String> {
        let swapped = self
            .tree()?
            .compare_and_swap(key, None::<&[u8]>, Some(&until.to_be_bytes()[..]))
            .map_err(|e| e.to_string())?;
        Ok(swapped.is_ok())
    }

    fn prune(&self, now: i64) -> Result<usize, String> {
        let mut removed: usize = 0;
        let tree = self.tree()?;
        for item in tree.iter() {
            let (key, value) = item.map_err(|e| e.to_string())?;
            let until = <[u8; 8]>::try_from(value.as_ref()).map_or(i64::MIN, i64::from_be_bytes);
            if until < now {
                tree.remove(key).map_err(|e| e.to_string())?;
                removed = removed.saturating_add(1);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posting_keys_cannot_collide_across_values() {
        // Values that share prefixes, or hold the bytes a naive separator would use.
        let values = ["a", "ab", "a\u{0}b", "a\u{0}", "", "\u{0}\u{0}\u{0}\u{1}a"];
        let mut keys = std::collections::BTreeSet::new();
        for v in values {
            for seq in [0u64, 1, 256] {
                assert!(
                    keys.insert(posting_key(Field::Session, v, seq)),
                    "{v:?}/{seq}"
                );
                // A prefix scan for one value never yields another value's key.
                for other in values.iter().filter(|o| **o != v) {
                    assert!(!posting_key(Field::Session, other, seq)
                        .starts_with(&posting_prefix(Field::Session, v)));
                }
            }
        }
        assert_ne!(
            posting_key(Field::Session, "x", 1),
            posting_key(Field::Client, "x", 1)
        );
    }
}
