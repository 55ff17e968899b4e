//! The embedded engine: one sled database in the data directory.
//!
//! One sled tree holds the entries, their hashes and their postings under
//! distinct key prefixes, so one atomic batch writes an entry together with
//! everything that points to it and a crash can never leave them out of
//! step. Used `jti`s live in a second tree of the same database, so the
//! flush that makes a decision durable makes its `jti` durable too.

use std::path::Path;

use crate::identity::replay::JtiStore;
use crate::log::index::Field;
use crate::log::merkle::Hash;
use crate::log::storage::{LogAppend, LogIndex, LogRead, LogStore, Scan, StoredEntry};
use crate::log::LogError;

const ENTRY: u8 = b'e';
const DECISION: u8 = b'd';
/// Stored Merkle subtree hashes: level, index.
const HASH: u8 = b'h';
/// Signed checkpoints, by tree size.
const CHECKPOINT: u8 = b'c';
/// Postings: `i` ‖ field tag ‖ u32 length ‖ value ‖ u64 seq (big endian).
/// The length prefix means no value can be mistaken for another that
/// shares a prefix or contains separator bytes.
const INDEX: u8 = b'i';
/// seq → event time (µs since the epoch), for time filters.
const TIME: u8 = b't';

/// Page cache of [`SledLog::open_for_scan`].
const SCAN_CACHE_BYTES: u64 = 32 * 1024 * 1024;

fn storage(e: sled::Error) -> LogError {
    LogError::Storage(e.to_string())
}

fn hash_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = HASH;
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

fn checkpoint_key(size: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = CHECKPOINT;
    key[1..].copy_from_slice(&size.to_be_bytes());
    key
}

fn entry_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = ENTRY;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn decision_key(decision_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + decision_id.len());
    key.push(DECISION);
    key.extend_from_slice(decision_id.as_bytes());
    key
}

fn time_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = TIME;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn field_tag(field: Field) -> u8 {
    match field {
        Field::Session => b's',
        Field::Client => b'c',
        Field::Subject => b'u',
        Field::Issuer => b'i',
        Field::RequestedScope => b'r',
        Field::ApprovedScope => b'a',
        Field::DeniedScope => b'x',
        Field::Outcome => b'o',
        Field::Kind => b'k',
        Field::Grant => b'g',
        Field::Tool => b'T',
        Field::SessionGrant => b'S',
        Field::RevokedGrant => b'R',
        Field::RevokedSession => b'V',
        Field::ClientDocument => b'D',
        Field::SigningKey => b'K',
    }
}

/// The key prefix of every entry posted under `field = value`.
fn posting_prefix(field: Field, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(6 + value.len() + 8);
    key.push(INDEX);
    key.push(field_tag(field));
    // Values come from bounded requests, far below 4 GiB.
    let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
    key.extend_from_slice(&length.to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key
}

fn posting_key(field: Field, value: &str, seq: u64) -> Vec<u8> {
    let mut key = posting_prefix(field, value);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The seq in the last 8 bytes of an entry or posting key.
fn seq_of_key(key: &[u8]) -> Result<u64, LogError> {
    let tail = key.len().checked_sub(8).ok_or(LogError::Corrupt)?;
    Ok(u64::from_be_bytes(
        key[tail..].try_into().map_err(|_| LogError::Corrupt)?,
    ))
}

/// The data directory's sled database: the log and the used `jti`s.
#[derive(Clone)]
pub struct SledLog {
    db: sled::Db,
    log: sled::Tree,
}

impl SledLog {
    /// Opens (or creates) the data directory. sled allows one process per
    /// database: a second server (or a tool) on the same directory fails here.
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        create_private_dir(data_dir).map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::open_with(data_dir, sled::Config::new())
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
        Self::open_with(
            data_dir,
            sled::Config::new().cache_capacity(SCAN_CACHE_BYTES),
        )
    }

    fn open_with(data_dir: &Path, config: sled::Config) -> Result<Self, LogError> {
        let db = config
            .path(data_dir.join("log.sled"))
            .open()
            .map_err(|e| LogError::Open {
                path: data_dir.to_path_buf(),
                message: e.to_string(),
            })?;
        let log = db.open_tree("log").map_err(storage)?;
        Ok(Self { db, log })
    }

    /// The log, behind its storage roles.
    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.clone())
    }

    /// The used-`jti` store, in the same database.
    pub fn jti_store(&self) -> Result<SledJtis, LogError> {
        Ok(SledJtis(self.db.open_tree("jti").map_err(storage)?))
    }

    /// Test and repair tooling only: raw access to the tree, to simulate
    /// tampering.
    pub fn raw_tree(&self) -> &sled::Tree {
        &self.log
    }
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
        self.log.apply_batch(batch).map_err(storage)
    }

    fn flush(&self) -> Result<(), LogError> {
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), LogError> {
        self.log
            .insert(checkpoint_key(size), note.as_bytes())
            .map_err(storage)?;
        Ok(())
    }
}

impl LogRead for SledLog {
    fn next_seq(&self) -> Result<u64, LogError> {
        let last = self
            .log
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
            .log
            .get(entry_key(seq))
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    fn seq_of_decision(&self, decision_id: &str) -> Result<Option<u64>, LogError> {
        let Some(value) = self.log.get(decision_key(decision_id)).map_err(storage)? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| LogError::Corrupt)?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    fn stored_hash(&self, level: u8, index: u64) -> Result<Option<Hash>, LogError> {
        match self.log.get(hash_key(level, index)).map_err(storage)? {
            Some(v) => Ok(Some(v.as_ref().try_into().map_err(|_| LogError::Corrupt)?)),
            None => Ok(None),
        }
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, LogError> {
        let last = self
            .log
            .scan_prefix([CHECKPOINT])
            .next_back()
            .transpose()
            .map_err(storage)?;
        Ok(last.map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
    }

    fn checkpoints(&self) -> Scan<'_, (u64, String)> {
        Box::new(self.log.scan_prefix([CHECKPOINT]).map(|item| {
            let (k, v) = item.map_err(storage)?;
            Ok((seq_of_key(&k)?, String::from_utf8_lossy(&v).into_owned()))
        }))
    }

    fn entries(&self) -> Scan<'_, (u64, Vec<u8>)> {
        Box::new(self.log.scan_prefix([ENTRY]).map(|item| {
            let (k, v) = item.map_err(storage)?;
            Ok((seq_of_key(&k)?, v.to_vec()))
        }))
    }

    fn seqs_descending(&self, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(&[ENTRY], below.map(|b| entry_key(b).to_vec()))
    }

    fn time_of(&self, seq: u64) -> Result<Option<i64>, LogError> {
        Ok(self
            .log
            .get(time_key(seq))
            .map_err(storage)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }
}

impl SledLog {
    /// The seqs of the keys under `prefix`, highest first, strictly below
    /// the key `below` when given.
    fn keys_descending(&self, prefix: &[u8], below: Option<Vec<u8>>) -> Scan<'_, u64> {
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
        Box::new(
            self.log
                .range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), upper))
                .rev()
                .map(|item| seq_of_key(&item.map_err(storage)?.0)),
        )
    }
}

impl LogIndex for SledLog {
    fn postings_descending(&self, field: Field, value: &str, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(
            &posting_prefix(field, value),
            below.map(|b| posting_key(field, value, b)),
        )
    }

    fn oldest_posting(&self, field: Field, value: &str) -> Result<Option<u64>, LogError> {
        self.log
            .scan_prefix(posting_prefix(field, value))
            .keys()
            .next()
            .transpose()
            .map_err(storage)?
            .map(|k| seq_of_key(&k))
            .transpose()
    }

    fn newest_posting(
        &self,
        field: Field,
        value: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        self.log
            .scan_prefix(posting_prefix(field, value))
            .next_back()
            .transpose()
            .map_err(storage)?
            .map(|(k, v)| Ok((seq_of_key(&k)?, v.to_vec())))
            .transpose()
    }

    fn has_posting(&self, field: Field, value: &str, seq: u64) -> Result<bool, LogError> {
        self.log
            .contains_key(posting_key(field, value, seq))
            .map_err(storage)
    }
}

/// Used `jti`s in the data directory's database.
pub struct SledJtis(sled::Tree);

impl JtiStore for SledJtis {
    fn first_use(&self, key: &[u8], until: i64) -> Result<bool, String> {
        let swapped = self
            .0
            .compare_and_swap(key, None::<&[u8]>, Some(&until.to_be_bytes()[..]))
            .map_err(|e| e.to_string())?;
        Ok(swapped.is_ok())
    }

    fn prune(&self, now: i64) -> Result<usize, String> {
        let mut removed: usize = 0;
        for item in self.0.iter() {
            let (key, value) = item.map_err(|e| e.to_string())?;
            let until = <[u8; 8]>::try_from(value.as_ref()).map_or(i64::MIN, i64::from_be_bytes);
            if until < now {
                self.0.remove(key).map_err(|e| e.to_string())?;
                removed = removed.saturating_add(1);
            }
        }
        Ok(removed)
    }
}

/// Creates the data directory readable by its owner only, and narrows an
/// existing one to that: it holds the log, keys and replay state.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
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
