//! The log on fjall (an LSM tree) in the data directory's `log.fjall`, with
//! the key layout of `keys.rs`. One partition holds the entries, hashes and
//! postings, written in one atomic batch per append; a second one holds the
//! used `jti`s. `flush` persists the journal (fsync), which makes both
//! durable together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::keys::*;
use crate::identity::replay::JtiStore;
use crate::log::index::{Field, IndexRecord};
use crate::log::merkle::Hash;
use crate::log::storage::{LogAppend, LogIndex, LogRead, LogStore, Scan, StoredEntry};
use crate::log::LogError;

/// A stored key and its value.
type Pair = (Vec<u8>, Vec<u8>);
type Pairs = Box<dyn Iterator<Item = Result<Pair, LogError>>>;

fn storage(e: fjall::Error) -> LogError {
    LogError::Storage(e.to_string())
}

#[derive(Clone)]
struct Handles {
    keyspace: Keyspace,
    log: PartitionHandle,
    jti: PartitionHandle,
}

struct Shared {
    data_dir: PathBuf,
    handles: RwLock<Option<Handles>>,
    /// `first_use` is a read then a write: one at a time.
    jti_claim: Mutex<()>,
}

/// The data directory's fjall keyspace: the log and the used `jti`s.
#[derive(Clone)]
pub struct FjallLog(Arc<Shared>);

/// Where the keyspace lives in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("log.fjall")
}

fn open_handles(data_dir: &Path) -> Result<Handles, LogError> {
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
    Ok(Handles { keyspace, log, jti })
}

impl FjallLog {
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        super::create_private_dir(data_dir).map_err(|e| LogError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self(Arc::new(Shared {
            data_dir: data_dir.to_path_buf(),
            handles: RwLock::new(Some(open_handles(data_dir)?)),
            jti_claim: Mutex::new(()),
        })))
    }

    fn handles(&self) -> Result<Handles, LogError> {
        let slot = self
            .0
            .handles
            .try_read()
            .map_err(|_| LogError::Storage("the keyspace is being reopened".into()))?;
        slot.clone().ok_or_else(|| {
            LogError::Storage("the keyspace could not be reopened after a failure".into())
        })
    }

    fn tree(&self) -> Result<PartitionHandle, LogError> {
        Ok(self.handles()?.log)
    }

    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.clone())
    }

    pub fn jti_store(&self) -> FjallJtis {
        FjallJtis(self.clone())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.tree()?.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    /// Keys and values under `prefix`, in key order or reversed.
    fn scan_prefix(&self, prefix: Vec<u8>, reverse: bool) -> Result<Pairs, LogError> {
        let items = self
            .tree()?
            .prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage));
        Ok(match reverse {
            true => Box::new(items.rev()),
            false => Box::new(items),
        })
    }

    fn first_in(&self, prefix: Vec<u8>, reverse: bool) -> Result<Option<Pair>, LogError> {
        self.scan_prefix(prefix, reverse)?.next().transpose()
    }
}

fn failed<T: 'static>(e: LogError) -> Scan<'static, T> {
    Box::new(std::iter::once(Err(e)))
}

impl LogAppend for FjallLog {
    fn append(&self, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
        let handles = self.handles()?;
        let mut batch = handles.keyspace.batch();
        let log = &handles.log;
        for e in entries {
            batch.insert(log, entry_key(e.seq).to_vec(), e.bytes);
            if let Some(id) = e.decision_id {
                batch.insert(log, decision_key(id), e.seq.to_be_bytes().to_vec());
            }
            for (level, index, hash) in e.hashes {
                batch.insert(log, hash_key(*level, *index).to_vec(), hash.to_vec());
            }
            for p in e.postings {
                batch.insert(
                    log,
                    posting_key(p.field, &p.value, e.seq),
                    p.data.as_slice(),
                );
            }
            if let Some(t) = e.time_micros {
                batch.insert(log, time_key(e.seq).to_vec(), t.to_be_bytes().to_vec());
            }
        }
        batch.commit().map_err(storage)
    }

    fn flush(&self) -> Result<(), LogError> {
        self.handles()?
            .keyspace
            .persist(PersistMode::SyncAll)
            .map_err(storage)
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), LogError> {
        self.tree()?
            .insert(checkpoint_key(size).to_vec(), note.as_bytes())
            .map_err(storage)
    }

    fn recover(&self) -> Result<(), LogError> {
        let mut slot = self
            .0
            .handles
            .write()
            .map_err(|_| LogError::Storage("the keyspace lock is poisoned".into()))?;
        *slot = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match open_handles(&self.0.data_dir) {
                Ok(handles) => {
                    *slot = Some(handles);
                    return Ok(());
                }
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
}

impl LogRead for FjallLog {
    fn next_seq(&self) -> Result<u64, LogError> {
        match self.first_in(vec![ENTRY], true)? {
            Some((key, _)) => seq_of_key(&key)?.checked_add(1).ok_or(LogError::Corrupt),
            None => Ok(0),
        }
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, LogError> {
        self.get(&entry_key(seq))
    }

    fn seq_of_decision(&self, decision_id: &str) -> Result<Option<u64>, LogError> {
        let key = decision_key(decision_id);
        match self.get(&key)? {
            Some(value) => u64_at(&key, &value, "its seq").map(Some),
            None => Ok(None),
        }
    }

    fn stored_hash(&self, level: u8, index: u64) -> Result<Option<Hash>, LogError> {
        let key = hash_key(level, index);
        match self.get(&key)? {
            Some(v) => Ok(Some(v.as_slice().try_into().map_err(|_| {
                malformed(&key, format!("a hash is 32 bytes, this one {}", v.len()))
            })?)),
            None => Ok(None),
        }
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, LogError> {
        Ok(self
            .first_in(vec![CHECKPOINT], true)?
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
    }

    fn checkpoints(&self) -> Scan<'_, (u64, String)> {
        match self.scan_prefix(vec![CHECKPOINT], false) {
            Ok(items) => Box::new(items.map(|item| {
                let (k, v) = item?;
                Ok((seq_of_key(&k)?, String::from_utf8_lossy(&v).into_owned()))
            })),
            Err(e) => failed(e),
        }
    }

    fn entries(&self) -> Scan<'_, (u64, Vec<u8>)> {
        match self.scan_prefix(vec![ENTRY], false) {
            Ok(items) => Box::new(items.map(|item| {
                let (k, v) = item?;
                Ok((seq_of_key(&k)?, v))
            })),
            Err(e) => failed(e),
        }
    }

    fn seqs_descending(&self, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(&[ENTRY], below.map(|b| entry_key(b).to_vec()), seq_of_key)
    }

    fn time_of(&self, seq: u64) -> Result<Option<i64>, LogError> {
        Ok(self
            .get(&time_key(seq))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_be_bytes))
    }
}

impl FjallLog {
    fn keys_descending(
        &self,
        prefix: &[u8],
        below: Option<Vec<u8>>,
        seq_of: fn(&[u8]) -> Result<u64, LogError>,
    ) -> Scan<'_, u64> {
        use std::ops::Bound;
        let tree = match self.tree() {
            Ok(tree) => tree,
            Err(e) => return failed(e),
        };
        let upper = match below {
            Some(b) => Bound::Excluded(b),
            None => match prefix_end(prefix) {
                Some(end) => Bound::Excluded(end),
                None => Bound::Unbounded,
            },
        };
        Box::new(
            tree.range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), upper))
                .rev()
                .map(move |item| seq_of(&item.map_err(storage)?.0)),
        )
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    let i = end.iter().rposition(|b| *b != 0xff)?;
    end.truncate(i + 1);
    end[i] += 1;
    Some(end)
}

impl LogIndex for FjallLog {
    fn postings_descending(&self, field: Field, value: &str, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(
            &posting_prefix(field, value),
            below.map(|b| posting_key(field, value, b)),
            seq_of_posting,
        )
    }

    fn oldest_posting(&self, field: Field, value: &str) -> Result<Option<u64>, LogError> {
        self.first_in(posting_prefix(field, value), false)?
            .map(|(k, _)| seq_of_posting(&k))
            .transpose()
    }

    fn newest_posting(
        &self,
        field: Field,
        value: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        self.first_in(posting_prefix(field, value), true)?
            .map(|(k, v)| Ok((seq_of_posting(&k)?, v)))
            .transpose()
    }

    fn has_posting(&self, field: Field, value: &str, seq: u64) -> Result<bool, LogError> {
        self.tree()?
            .contains_key(posting_key(field, value, seq))
            .map_err(storage)
    }

    fn index_records(&self) -> Scan<'_, IndexRecord> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let tree = match self.tree() {
            Ok(tree) => tree,
            Err(e) => return failed(e),
        };
        let ranges = [
            (Unbounded, Excluded(vec![CHECKPOINT])),
            (Included(vec![CHECKPOINT + 1]), Excluded(vec![ENTRY])),
            (Included(vec![ENTRY + 1]), Excluded(vec![HASH])),
            (Included(vec![HASH + 1]), Unbounded),
        ];
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
        Ok(self.get(&key)?.is_some_and(|v| v == value))
    }
}

/// Used `jti`s in the data directory's keyspace.
pub struct FjallJtis(FjallLog);

impl JtiStore for FjallJtis {
    fn first_use(&self, key: &[u8], until: i64) -> Result<bool, String> {
        let jti = self.0.handles().map_err(|e| e.to_string())?.jti;
        let _one_at_a_time = self
            .0
             .0
            .jti_claim
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if jti.contains_key(key).map_err(|e| e.to_string())? {
            return Ok(false);
        }
        jti.insert(key, until.to_be_bytes())
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    fn prune(&self, now: i64) -> Result<usize, String> {
        let jti = self.0.handles().map_err(|e| e.to_string())?.jti;
        let mut removed: usize = 0;
        for item in jti.iter() {
            let (key, value) = item.map_err(|e| e.to_string())?;
            let until = <[u8; 8]>::try_from(&value[..]).map_or(i64::MIN, i64::from_be_bytes);
            if until < now {
                jti.remove(key).map_err(|e| e.to_string())?;
                removed = removed.saturating_add(1);
            }
        }
        Ok(removed)
    }
}
