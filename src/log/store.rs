//! The sled store behind the decision log.
//!
//! One sled tree holds the entries and their indexes under distinct key
//! prefixes, so one atomic batch writes an entry together with its index
//! keys and a crash can never leave them out of step.

use std::path::Path;

use super::merkle::{Hash, HashSource};
use super::LogError;

const ENTRY: u8 = b'e';
const DECISION: u8 = b'd';
/// Stored Merkle subtree hashes: level, index.
const HASH: u8 = b'h';
/// Signed checkpoints, by tree size.
const CHECKPOINT: u8 = b'c';

/// Page cache of [`LogStore::open_for_scan`].
const SCAN_CACHE_BYTES: u64 = 32 * 1024 * 1024;

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

/// An entry ready to be written: its seq, its canonical bytes, the decision
/// id it is found by, and the Merkle hashes its append completes.
pub struct StoredEntry<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    pub decision_id: Option<&'a str>,
    pub hashes: &'a [(u8, u64, Hash)],
    /// Secondary index keys and their values (most empty), written with it.
    pub index_keys: &'a [(Vec<u8>, Vec<u8>)],
    pub time_micros: Option<i64>,
}

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
}

impl LogStore {
    /// Opens (or creates) the data directory. sled allows one process per
    /// directory; a second one gets a clear error.
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
        let open_err = |message: String| LogError::Open {
            path: data_dir.to_path_buf(),
            message,
        };
        let db = config
            .path(data_dir.join("log.sled"))
            .open()
            .map_err(|e| open_err(e.to_string()))?;
        let log = db.open_tree("log")?;
        Ok(Self { db, log })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The seq the next entry gets: one past the last stored entry.
    pub fn next_seq(&self) -> Result<u64, LogError> {
        let last = self.log.scan_prefix([ENTRY]).next_back().transpose()?;
        Ok(match last {
            Some((key, _)) => {
                u64::from_be_bytes(key[1..9].try_into().map_err(|_| LogError::Corrupt)?) + 1
            }
            None => 0,
        })
    }

    /// Writes entries and their index keys in one atomic batch.
    pub fn append(&self, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&entry_key(e.seq), e.bytes);
            if let Some(id) = e.decision_id {
                batch.insert(decision_key(id), &e.seq.to_be_bytes());
            }
            for (level, index, hash) in e.hashes {
                batch.insert(&hash_key(*level, *index), hash);
            }
            for (key, value) in e.index_keys {
                batch.insert(key.as_slice(), value.as_slice());
            }
            if let Some(t) = e.time_micros {
                batch.insert(&super::index::time_key(e.seq), &t.to_be_bytes());
            }
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), LogError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn entry(&self, seq: u64) -> Result<Option<sled::IVec>, LogError> {
        Ok(self.log.get(entry_key(seq))?)
    }

    pub fn seq_of_decision(&self, decision_id: &str) -> Result<Option<u64>, LogError> {
        let Some(value) = self.log.get(decision_key(decision_id))? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| LogError::Corrupt)?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    /// The entry a decision id names, as stored.
    pub fn decision(&self, decision_id: &str) -> Result<Option<sled::IVec>, LogError> {
        match self.seq_of_decision(decision_id)? {
            Some(seq) => self.entry(seq),
            None => Ok(None),
        }
    }

    /// A stored subtree hash, if present.
    pub fn stored_hash(&self, level: u8, index: u64) -> Result<Option<Hash>, LogError> {
        match self.log.get(hash_key(level, index))? {
            Some(v) => Ok(Some(v.as_ref().try_into().map_err(|_| LogError::Corrupt)?)),
            None => Ok(None),
        }
    }

    /// Stores a signed checkpoint note for `size` entries.
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), LogError> {
        self.log.insert(checkpoint_key(size), note.as_bytes())?;
        Ok(())
    }

    /// The newest signed checkpoint note.
    pub fn latest_checkpoint(&self) -> Result<Option<String>, LogError> {
        let last = self.log.scan_prefix([CHECKPOINT]).next_back().transpose()?;
        Ok(last.map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every stored checkpoint, oldest first: (size named by its key, note).
    pub fn checkpoints(&self) -> impl Iterator<Item = Result<(u64, String), LogError>> + '_ {
        self.log.scan_prefix([CHECKPOINT]).map(|item| {
            let (k, v) = item?;
            let size = u64::from_be_bytes(k[1..9].try_into().map_err(|_| LogError::Corrupt)?);
            Ok((size, String::from_utf8_lossy(&v).into_owned()))
        })
    }

    /// Every stored entry in key order: (seq named by its key, bytes).
    pub fn entries(&self) -> impl Iterator<Item = Result<(u64, sled::IVec), LogError>> + '_ {
        self.log.scan_prefix([ENTRY]).map(|item| {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k[1..9].try_into().map_err(|_| LogError::Corrupt)?);
            Ok((seq, v))
        })
    }

    /// Whether `key` exists (index look-ups).
    pub fn contains(&self, key: &[u8]) -> Result<bool, LogError> {
        Ok(self.log.contains_key(key)?)
    }

    /// The highest key under `prefix` and its value (the newest posting).
    pub fn last_under(&self, prefix: &[u8]) -> Result<Option<(sled::IVec, sled::IVec)>, LogError> {
        Ok(self.log.scan_prefix(prefix).next_back().transpose()?)
    }

    /// The lowest key under `prefix` (the oldest entry of a posting list).
    pub fn first_key(&self, prefix: &[u8]) -> Result<Option<sled::IVec>, LogError> {
        Ok(self.log.scan_prefix(prefix).keys().next().transpose()?)
    }

    /// Keys under `prefix`, newest (highest) first, strictly below `below` when given.
    pub fn keys_descending(
        &self,
        prefix: &[u8],
        below: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<sled::IVec, LogError>> + '_ {
        let mut end = prefix.to_vec();
        let upper = match below {
            Some(b) => std::ops::Bound::Excluded(b.to_vec()),
            None => {
                // Everything under the prefix: the bound just past it.
                match end.iter().rposition(|b| *b != 0xff) {
                    Some(i) => {
                        end.truncate(i + 1);
                        end[i] += 1;
                        std::ops::Bound::Excluded(end)
                    }
                    None => std::ops::Bound::Unbounded,
                }
            }
        };
        self.log
            .range::<Vec<u8>, _>((std::ops::Bound::Included(prefix.to_vec()), upper))
            .rev()
            .map(|item| item.map(|(k, _)| k).map_err(LogError::from))
    }

    /// The event time of entry `seq`, in µs since the epoch.
    pub fn time_of(&self, seq: u64) -> Result<Option<i64>, LogError> {
        Ok(self
            .log
            .get(super::index::time_key(seq))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    /// Test and repair tooling only: raw access to the tree, to simulate tampering.
    pub fn raw_tree(&self) -> &sled::Tree {
        &self.log
    }
}

impl LogStore {
    /// A subtree hash that must exist.
    pub fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        self.stored_hash(level, index)?.ok_or(LogError::Corrupt)
    }
}

impl HashSource for LogStore {
    type Error = LogError;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        self.subtree_hash(level, index)
    }
}

/// Key of entry `seq`, for tools that edit a stopped data directory.
pub fn raw_entry_key(seq: u64) -> Vec<u8> {
    entry_key(seq).to_vec()
}

/// Key of the checkpoint for `size`, for tools that edit a stopped data directory.
pub fn raw_checkpoint_key(size: u64) -> Vec<u8> {
    checkpoint_key(size).to_vec()
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
