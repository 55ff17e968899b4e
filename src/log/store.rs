//! The sled store behind the decision log.
//!
//! One sled tree holds the entries and their indexes under distinct key
//! prefixes, so one atomic batch writes an entry together with its index
//! keys and a crash can never leave them out of step.

use std::path::Path;

use super::LogError;

const ENTRY: u8 = b'e';
const DECISION: u8 = b'd';

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

/// An entry ready to be written: its seq, its canonical bytes, and the
/// decision id it is found by.
pub struct StoredEntry<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    pub decision_id: Option<&'a str>,
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
        std::fs::create_dir_all(data_dir).map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let db = sled::open(data_dir.join("log.sled")).map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
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
}
