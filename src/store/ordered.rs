//! The log's storage roles over any ordered key-value store that writes a
//! batch atomically. An embedded engine implements [`OrderedStore`] (a few
//! primitives) and gets `LogAppend`, `LogRead` and `LogIndex` from
//! [`KeyedLog`], with the key layout of `keys.rs`: the log's semantics are
//! written once, whatever the engine.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use super::entry_file::{self, EntryFile, Frames, Location, CLAIMS};
use super::indexer::Indexer;
use super::keys::*;
use super::used_jtis::ClaimTree;
use crate::log::index::{self, Field, IndexRecord};
use crate::log::merkle::{BatchHashes, Hash, DERIVABLE_LEVELS};
use crate::log::sealed;
use crate::log::storage::{
    check_follows, AppendBatch, LogAppend, LogIndex, LogRead, LogRetain, LogStore, Retained, Scan,
    StoredEntry,
};
use crate::log::LogError;

/// A stored key and its value.
pub(super) type Pair = (Vec<u8>, Vec<u8>);
/// Stored pairs in key order (or its reverse).
pub(super) type Pairs = Box<dyn Iterator<Item = Result<Pair, LogError>>>;
/// A key range.
pub(super) type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// What the log needs of an engine.
pub(super) trait OrderedStore: ClaimTree + Clone + Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError>;
    /// Stores every pair and removes every key in `removals`, or does
    /// nothing; visible to reads at once.
    fn write_batch(&self, pairs: Vec<Pair>, removals: Vec<Vec<u8>>) -> Result<(), LogError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), LogError>;
    /// Opens the store again after a failure (see `LogAppend::recover`).
    fn reopen(&self) -> Result<(), LogError>;
    /// The pairs in `range`, ascending, or descending when `reverse`.
    fn range(&self, range: KeyRange, reverse: bool) -> Pairs;
}

/// How long a reopen waits for operations in flight to let go of the old
/// handles (and the engine's file lock).
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// An engine's open handles, swapped whole by a reopen. Every operation
/// takes a cheap clone and never waits for a reopen in progress: engines
/// refuse everything after a failed write until they are opened again.
pub(super) struct Handles<H>(RwLock<Option<H>>);

impl<H: Clone> Handles<H> {
    pub fn new(handles: H) -> Self {
        Self(RwLock::new(Some(handles)))
    }

    /// The current handles; an error at once while a reopen is under way.
    pub fn current(&self) -> Result<H, LogError> {
        let slot = self
            .0
            .try_read()
            .map_err(|_| LogError::Storage("the store is being reopened".into()))?;
        slot.clone().ok_or_else(|| {
            LogError::Storage("the store could not be reopened after a failure".into())
        })
    }

    /// Drops the current handles and opens new ones with `open`, retrying
    /// while operations in flight still hold the old ones.
    pub fn reopen(&self, open: impl Fn() -> Result<H, LogError>) -> Result<(), LogError> {
        let mut slot = self
            .0
            .write()
            .map_err(|_| LogError::Storage("the store's lock is poisoned".into()))?;
        *slot = None;
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            match open() {
                Ok(handles) => {
                    *slot = Some(handles);
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// An engine's range iterator as [`Pairs`], in order or reversed.
pub(super) fn pairs<I, K, V, E>(items: I, reverse: bool) -> Pairs
where
    I: DoubleEndedIterator<Item = Result<(K, V), E>> + 'static,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let items = items.map(|item| {
        item.map(|(k, v)| (k.as_ref().to_vec(), v.as_ref().to_vec()))
            .map_err(|e| LogError::Storage(e.to_string()))
    });
    match reverse {
        true => Box::new(items.rev()),
        false => Box::new(items),
    }
}

/// A scan that failed before it started.
pub(super) fn failed<T: 'static>(e: LogError) -> Scan<'static, T> {
    Box::new(std::iter::once(Err(e)))
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    match end.iter().rposition(|b| *b != 0xff) {
        Some(i) => {
            end.truncate(i + 1);
            end[i] = end[i].wrapping_add(1);
            Bound::Excluded(end)
        }
        None => Bound::Unbounded,
    }
}

fn prefix_range(prefix: &[u8]) -> KeyRange {
    (Bound::Included(prefix.to_vec()), prefix_end(prefix))
}

/// The entry file of the log in `store` (see `entry_file.rs`), if it has
/// one: a new log gets one when opened `writable`; a log whose entries are
/// already in the engine keeps them there.
pub(super) fn entry_file(
    store: &impl OrderedStore,
    data_dir: &Path,
    writable: bool,
) -> Result<Option<Arc<EntryFile>>, LogError> {
    let path = entry_file::path(data_dir);
    let exists = path
        .try_exists()
        .map_err(|e| LogError::Storage(format!("cannot look for {}: {e}", path.display())))?;
    let file = if exists {
        EntryFile::open(&path, writable)?
    } else if writable && store.range(prefix_range(&[ENTRY]), false).next().is_none() {
        EntryFile::create(&path)?
    } else {
        return Ok(None);
    };
    Ok(Some(Arc::new(file)))
}

/// An engine's entry file, once the engine is open (see [`entry_file`]),
/// and for a writer the indexer that applies the engine's batches behind
/// it (see `indexer.rs`).
#[derive(Default)]
pub(super) struct EntryFileSlot(OnceLock<Option<Behind>>);

/// The entry file and, when writable, its indexer.
#[derive(Clone)]
struct Behind {
    file: Arc<EntryFile>,
    indexer: Option<Arc<Indexer>>,
}

impl EntryFileSlot {
    /// Opens the entry file of the log in `store` and, for a writer,
    /// brings the two in step ([`KeyedLog::settle`]).
    pub fn open<S: OrderedStore>(
        &self,
        store: &S,
        data_dir: &Path,
        writable: bool,
    ) -> Result<(), LogError> {
        let behind = match entry_file(store, data_dir, writable)? {
            Some(file) => Some(Behind {
                file,
                indexer: match writable {
                    true => Some(Arc::new(Indexer::start()?)),
                    false => None,
                },
            }),
            None => None,
        };
        let _ = self.0.set(behind);
        if writable {
            self.log(store.clone()).settle()?;
        }
        Ok(())
    }

    /// The log kept in `store`, with this entry file if it has one.
    pub fn log<S: OrderedStore>(&self, store: S) -> KeyedLog<S> {
        let behind = self.0.get().cloned().flatten();
        KeyedLog {
            engine: store,
            file: behind.as_ref().map(|b| Arc::clone(&b.file)),
            indexer: behind.and_then(|b| b.indexer),
        }
    }
}

/// The decision log kept in an [`OrderedStore`], with its entries' bytes
/// in the entry file beside it or, for a log written before there was
/// one, in the engine.
#[derive(Clone)]
pub struct KeyedLog<S> {
    /// Read through [`KeyedLog::store`], which waits for the indexer.
    engine: S,
    file: Option<Arc<EntryFile>>,
    indexer: Option<Arc<Indexer>>,
}

impl<S> Drop for KeyedLog<S> {
    fn drop(&mut self) {
        // Batches still being indexed hold the store: let them finish, so
        // a store closed now is closed (and may be opened again).
        if let Some(indexer) = &self.indexer {
            let _ = indexer.caught_up();
        }
    }
}

impl<S: OrderedStore> KeyedLog<S> {
    /// The engine, once every batch handed to the indexer is in it.
    fn store(&self) -> Result<&S, LogError> {
        if let Some(indexer) = &self.indexer {
            indexer.caught_up()?;
        }
        Ok(&self.engine)
    }

    /// [`OrderedStore::range`] once the indexer has caught up.
    fn range(&self, range: KeyRange, reverse: bool) -> Pairs {
        match self.store() {
            Ok(store) => store.range(range, reverse),
            Err(e) => failed(e),
        }
    }

    /// Brings the engine and the entry file in step: at open (before
    /// anything is appended) and after a failure. The file is the log's
    /// durable record and the engine is flushed lazily, so entries whose
    /// frames follow the engine's newest one, seq after seq, are indexed
    /// again ("caught up"), with the used `jti`s claimed in the same
    /// commits; other frames there that nothing points to (a commit that
    /// failed half way) go, and so do the old frames a retention left
    /// pending (see [`LogRetain::retain`]).
    pub(super) fn settle(&self) -> Result<(), LogError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        // Nothing is appended meanwhile: the engine as it stands is read.
        let store = self.store()?;
        let mut from = 0;
        for item in self.range(prefix_range(&[ENTRY]), true) {
            if let Some(at) = Location::decode(&item?.1) {
                from = at.offset;
                break;
            }
        }
        // The entries the engine lacks, from its head on, in commits that
        // reached the file whole (each ends with its claims frame).
        let mut behind = Vec::new();
        let mut open_commit = Vec::new();
        let mut claims = Vec::new();
        let next = self.next_seq()?;
        for found in file.frames_after(from)? {
            let found = found?;
            if found.seq == CLAIMS {
                behind.append(&mut open_commit);
                claims.push(found.at);
            } else if found.seq == next + (behind.len() + open_commit.len()) as u64
                && store.get(&entry_key(found.seq))?.is_none()
            {
                open_commit.push((found.seq, found.at));
            }
        }
        let kept: std::collections::HashSet<u64> = behind
            .iter()
            .map(|(_, at)| at.offset)
            .chain(claims.iter().map(|at| at.offset))
            .collect();
        file.settle(from, |found| {
            if kept.contains(&found.at.offset) {
                return Ok(true);
            }
            let value = store.get(&entry_key(found.seq))?;
            Ok(value.and_then(|v| Location::decode(&v)) == Some(found.at))
        })?;
        self.catch_up(file, &behind, &claims)?;
        let mut pending = Vec::new();
        let mut erase = Vec::new();
        for item in self.range(prefix_range(&[PENDING_ERASE]), false) {
            let (key, value) = item?;
            let (seq, at) = parse_pending_erase(&key, &value)?;
            let current = store.get(&entry_key(seq))?;
            if file.holds(seq, at) && current.and_then(|v| Location::decode(&v)) != Some(at) {
                erase.push(at);
            }
            pending.push(key);
        }
        file.erase(&erase)?;
        if pending.is_empty() {
            return Ok(());
        }
        store.write_batch(Vec::new(), pending)
    }

    /// Indexes the entries at `behind` as the writer did (their hashes,
    /// decision id, time and postings, derived from their bytes) and
    /// claims the used `jti`s of the claims frames at `claims`; flushed.
    fn catch_up(
        &self,
        file: &EntryFile,
        behind: &[(u64, Location)],
        claims: &[Location],
    ) -> Result<(), LogError> {
        let store = self.store()?;
        for at in claims {
            let payload = file.read(CLAIMS, *at)?;
            let claimed = entry_file::parse_claims(&payload)?;
            store.write_claims(&claimed, &[])?;
            if let Some(jtis) = self.engine.used_jtis() {
                for (key, until) in &claimed {
                    jtis.first_use(key, *until);
                }
            }
        }
        if behind.is_empty() {
            // Nothing new to index: flush only claims written just now.
            return match claims.is_empty() {
                true => Ok(()),
                false => store.flush(),
            };
        }
        tracing::info!(
            entries = behind.len(),
            first_seq = behind[0].0,
            "indexing decision log entries the key-value store had not flushed"
        );
        let hashes_from = LogStore::new(self.clone());
        let mut hasher = BatchHashes::default();
        let mut pairs = Vec::new();
        for (seq, at) in behind {
            let bytes = file.read(*seq, *at)?;
            let derived = index::derive_stored(&bytes).map_err(|e| {
                LogError::Malformed(format!(
                    "entry {seq} in log.entries is not a log entry: {e}"
                ))
            })?;
            let hashes = hasher.append(&hashes_from, *seq, sealed::leaf_hash(&bytes))?;
            let entry = StoredEntry {
                seq: *seq,
                bytes: &bytes,
                decision_id: derived.decision_id.as_deref(),
                hashes: &hashes,
                postings: &derived.postings,
                time_micros: derived.time_micros,
            };
            push_records(&mut pairs, &entry, at.encode(), true);
            if pairs.len() >= 10_000 {
                store.write_batch(std::mem::take(&mut pairs), Vec::new())?;
            }
        }
        store.write_batch(pairs, Vec::new())?;
        store.flush()
    }

    /// An entry's bytes from its stored value: the bytes themselves, or
    /// where they are in the entry file.
    fn resolve(&self, seq: u64, value: Vec<u8>) -> Result<Vec<u8>, LogError> {
        let Some(at) = Location::decode(&value) else {
            return Ok(value);
        };
        match &self.file {
            Some(file) => file.read(seq, at),
            None => Err(malformed(
                &entry_key(seq),
                format!(
                    "points to {} bytes at offset {} of log.entries, and this data directory has no such file",
                    at.len, at.offset
                ),
            )),
        }
    }

    /// Entry `seq`'s stored leaf hash, and the event time it carries.
    fn leaf(&self, seq: u64) -> Result<Option<Leaf>, LogError> {
        let key = hash_key(0, seq);
        self.store()?
            .get(&key)?
            .map(|v| split_hash_value(&key, &v))
            .transpose()
    }

    fn first_in(&self, prefix: &[u8], reverse: bool) -> Result<Option<Pair>, LogError> {
        self.range(prefix_range(prefix), reverse).next().transpose()
    }

    /// The seqs of the keys under `prefix`, highest first, strictly below
    /// the key `below` when given.
    fn keys_descending(
        &self,
        prefix: &[u8],
        below: Option<Vec<u8>>,
        seq_of: fn(&[u8]) -> Result<u64, LogError>,
    ) -> Scan<'_, u64> {
        let upper = match below {
            Some(b) => Bound::Excluded(b),
            None => prefix_end(prefix),
        };
        Box::new(
            self.range((Bound::Included(prefix.to_vec()), upper), true)
                .map(move |item| seq_of(&item?.0)),
        )
    }
}

/// The pairs that store entry `e` with `value` under its key (its bytes,
/// or where they are in the entry file), and everything that finds it.
fn push_records(pairs: &mut Vec<Pair>, e: &StoredEntry<'_>, value: Vec<u8>, lean: bool) {
    pairs.push((entry_key(e.seq).to_vec(), value));
    push_index(pairs, e, lean);
}

/// The pairs that find entry `e`: its decision id, hashes (with its time)
/// and postings. `lean` leaves out the inner hashes every reader can
/// derive from the leaves (`merkle::DERIVABLE_LEVELS`): a log with an
/// entry file is one no release before it opens, so nothing needs them.
fn push_index(pairs: &mut Vec<Pair>, e: &StoredEntry<'_>, lean: bool) {
    if let Some(id) = e.decision_id {
        pairs.push((decision_key(id), e.seq.to_be_bytes().to_vec()));
    }
    for (level, index, hash) in e.hashes {
        if lean && (1..=DERIVABLE_LEVELS).contains(level) {
            continue;
        }
        // The entry's own leaf carries its time (see `keys::HASH`).
        let value = match (*level, *index == e.seq) {
            (0, true) => leaf_value(hash, e.time_micros),
            _ => hash.to_vec(),
        };
        pairs.push((hash_key(*level, *index).to_vec(), value));
    }
    for p in e.postings {
        pairs.push((posting_key(p.field, &p.value, e.seq), p.data.clone()));
    }
}

impl<S: OrderedStore> LogAppend for KeyedLog<S> {
    fn begin(&self) -> Result<Box<dyn AppendBatch + '_>, LogError> {
        // One writer by contract: the head is where its last commit left
        // it (the indexer may still be applying that commit's batch), or
        // else the log's size as stored.
        let remembered = match &self.indexer {
            Some(indexer) => indexer.next_seq()?,
            None => None,
        };
        Ok(Box::new(KeyedBatch {
            log: self,
            next: match remembered {
                Some(next) => next,
                None => self.next_seq()?,
            },
            pairs: Vec::new(),
            frames: Frames::default(),
        }))
    }

    fn flush(&self) -> Result<(), LogError> {
        self.store()?.flush()
    }

    fn recover(&self) -> Result<(), LogError> {
        if let Some(indexer) = &self.indexer {
            indexer.reset();
        }
        self.engine.reopen()?;
        self.settle()
    }

    /// With an entry file, a commit's frames (and the used `jti`s claimed
    /// since the last one) are synced before it returns, and `settle`
    /// indexes again whatever the engine had not flushed: the engine's
    /// own flush can wait.
    fn durable_on_commit(&self) -> bool {
        self.file.is_some()
    }
}

/// A batch of pairs written in one atomic `write_batch` on commit, after
/// its entries' frames are in the entry file.
struct KeyedBatch<'a, S> {
    log: &'a KeyedLog<S>,
    next: u64,
    pairs: Vec<Pair>,
    frames: Frames,
}

impl<S: OrderedStore> AppendBatch for KeyedBatch<'_, S> {
    fn next_seq(&self) -> u64 {
        self.next
    }

    fn append(&mut self, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
        check_follows(self.next, entries)?;
        for e in entries {
            match self.log.file {
                // Its key gets its location once the frames are written.
                Some(_) => {
                    self.frames.push(e.seq, e.bytes)?;
                    push_index(&mut self.pairs, e, true);
                }
                None => push_records(&mut self.pairs, e, e.bytes.to_vec(), false),
            }
        }
        self.next += entries.len() as u64;
        Ok(())
    }

    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), LogError> {
        self.pairs
            .push((checkpoint_key(size).to_vec(), note.as_bytes().to_vec()));
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), LogError> {
        let KeyedBatch {
            log,
            next,
            mut pairs,
            mut frames,
        } = *self;
        let Some(file) = &log.file else {
            return match pairs.is_empty() {
                true => Ok(()),
                false => log.store()?.write_batch(pairs, Vec::new()),
            };
        };
        let write = |claims: &[(Vec<u8>, i64)]| {
            // The claims frame ends the commit's frames, even empty: an
            // entry frame with none after it was never committed whole.
            if !claims.is_empty() || !frames.is_empty() {
                frames.push_claims(claims)?;
            }
            file.commit(&frames, |placed| {
                for (seq, at) in placed {
                    pairs.push((entry_key(seq).to_vec(), at.encode()));
                }
                let store = log.engine.clone();
                let claims = claims.to_vec();
                let index = move || {
                    if !claims.is_empty() {
                        store.write_claims(&claims, &[])?;
                    }
                    match pairs.is_empty() {
                        true => Ok(()),
                        false => store.write_batch(pairs, Vec::new()),
                    }
                };
                // Durable now (the frames are synced): the engine's batch
                // only makes the entries findable, so it may follow.
                match &log.indexer {
                    Some(indexer) => indexer.hand_over(Box::new(index), next),
                    None => index(),
                }
            })
        };
        // The `jti`s claimed since the last commit go into its frames, so
        // they are as durable as the decisions that used them.
        match log.engine.used_jtis() {
            Some(jtis) => jtis.with_unwritten(write),
            None => write(&[]),
        }
    }
}

impl<S: OrderedStore> LogRetain for KeyedLog<S> {
    /// With an entry file, the new bytes get frames of their own and the
    /// old frames are zeroed once the engine points away from them (and
    /// that is durable); until then the engine lists them as pending, so
    /// a crash in between leaves them to `settle`.
    fn retain(&self, changes: &[Retained]) -> Result<(), LogError> {
        let mut pairs = Vec::with_capacity(changes.len());
        let mut removals = Vec::new();
        let mut frames = Frames::default();
        let mut superseded = Vec::new();
        for change in changes {
            let key = entry_key(change.seq);
            if self.file.is_some() {
                if let Some(old) = self.store()?.get(&key)?.and_then(|v| Location::decode(&v)) {
                    pairs.push(pending_erase(change.seq, old));
                    superseded.push(old);
                }
            }
            match (&self.file, change.bytes.is_empty()) {
                (Some(_), false) => frames.push(change.seq, &change.bytes)?,
                _ => pairs.push((key.to_vec(), change.bytes.clone())),
            }
            for record in &change.dropped {
                if let IndexRecord::Time { seq, .. } = record {
                    // The time a leaf carries goes; its hash stays.
                    if let Some((hash, Some(_))) = self.leaf(*seq)? {
                        pairs.push((hash_key(0, *seq).to_vec(), hash.to_vec()));
                    }
                }
                removals.push(record_key_value(record).0);
            }
        }
        let write = |placed: Vec<(u64, Location)>| {
            for (seq, at) in placed {
                pairs.push((entry_key(seq).to_vec(), at.encode()));
            }
            self.store()?.write_batch(pairs, removals)
        };
        let Some(file) = &self.file else {
            return write(Vec::new());
        };
        file.commit(&frames, write)?;
        if superseded.is_empty() {
            return Ok(());
        }
        self.store()?.flush()?;
        file.erase(&superseded)?;
        let done = superseded
            .iter()
            .map(|at| pending_erase_key(at.offset))
            .collect();
        self.store()?.write_batch(Vec::new(), done)
    }
}

impl<S: OrderedStore> LogRead for KeyedLog<S> {
    fn next_seq(&self) -> Result<u64, LogError> {
        match self.first_in(&[ENTRY], true)? {
            Some((key, _)) => seq_of_key(&key)?.checked_add(1).ok_or(LogError::Corrupt),
            None => Ok(0),
        }
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, LogError> {
        self.store()?
            .get(&entry_key(seq))?
            .map(|value| self.resolve(seq, value))
            .transpose()
    }

    fn seq_of_decision(&self, decision_id: &str) -> Result<Option<u64>, LogError> {
        let key = decision_key(decision_id);
        match self.store()?.get(&key)? {
            Some(value) => u64_at(&key, &value, "its seq").map(Some),
            None => Ok(None),
        }
    }

    fn stored_hash(&self, level: u8, index: u64) -> Result<Option<Hash>, LogError> {
        let key = hash_key(level, index);
        match self.store()?.get(&key)? {
            Some(v) => Ok(Some(split_hash_value(&key, &v)?.0)),
            None => Ok(None),
        }
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, LogError> {
        Ok(self
            .first_in(&[CHECKPOINT], true)?
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
    }

    fn checkpoints(&self) -> Scan<'_, (u64, String)> {
        Box::new(self.range(prefix_range(&[CHECKPOINT]), false).map(|item| {
            let (k, v) = item?;
            Ok((seq_of_key(&k)?, String::from_utf8_lossy(&v).into_owned()))
        }))
    }

    fn entries(&self) -> Scan<'_, (u64, Vec<u8>)> {
        Box::new(self.range(prefix_range(&[ENTRY]), false).map(|item| {
            let (key, value) = item?;
            let seq = seq_of_key(&key)?;
            Ok((seq, self.resolve(seq, value)?))
        }))
    }

    fn seqs_descending(&self, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(&[ENTRY], below.map(|b| entry_key(b).to_vec()), seq_of_key)
    }

    fn time_of(&self, seq: u64) -> Result<Option<i64>, LogError> {
        if let Some((_, Some(micros))) = self.leaf(seq)? {
            return Ok(Some(micros));
        }
        // A log written before the time moved into the leaf.
        Ok(self
            .store()?
            .get(&time_key(seq))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_be_bytes))
    }
}

impl<S: OrderedStore> LogIndex for KeyedLog<S> {
    fn postings_descending(&self, field: Field, value: &str, below: Option<u64>) -> Scan<'_, u64> {
        self.keys_descending(
            &posting_prefix(field, value),
            below.map(|b| posting_key(field, value, b)),
            seq_of_posting,
        )
    }

    fn oldest_posting(&self, field: Field, value: &str) -> Result<Option<u64>, LogError> {
        self.first_in(&posting_prefix(field, value), false)?
            .map(|(k, _)| seq_of_posting(&k))
            .transpose()
    }

    fn newest_posting(
        &self,
        field: Field,
        value: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        self.first_in(&posting_prefix(field, value), true)?
            .map(|(k, v)| Ok((seq_of_posting(&k)?, v)))
            .transpose()
    }

    fn has_posting(&self, field: Field, value: &str, seq: u64) -> Result<bool, LogError> {
        Ok(self
            .store()?
            .get(&posting_key(field, value, seq))?
            .is_some())
    }

    fn index_records(&self) -> Scan<'_, IndexRecord> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // Every key but the entries', checkpoints' and inner hashes' (which
        // verification reads on their own), so unknown keys show too; the
        // leaf hashes for the times they carry.
        let ranges = [
            (Unbounded, Excluded(vec![CHECKPOINT])),
            (Included(vec![CHECKPOINT + 1]), Excluded(vec![ENTRY])),
            (Included(vec![ENTRY + 1]), Excluded(vec![HASH])),
            (Included(vec![HASH, 0]), Excluded(vec![HASH, 1])),
            (Included(vec![HASH + 1]), Excluded(vec![PENDING_ERASE])),
            (Included(vec![PENDING_ERASE + 1]), Unbounded),
        ];
        Box::new(
            ranges
                .into_iter()
                .flat_map(|range| self.range(range, false))
                .filter_map(|item| match item {
                    Ok((key, value)) => index_record(&key, &value),
                    Err(e) => Some(Err(e)),
                }),
        )
    }

    fn field_ends(&self, field: Field, newest: bool) -> Scan<'_, IndexRecord> {
        // One seek per value, not a walk over every posting: a client with
        // a million decisions costs two look-ups.
        let field_prefix = [INDEX, field_tag(field)];
        let end = prefix_end(&field_prefix);
        let mut from = Bound::Included(field_prefix.to_vec());
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let next = (|| -> Result<Option<IndexRecord>, LogError> {
                let Some((first, data)) = self
                    .range((from.clone(), end.clone()), false)
                    .next()
                    .transpose()?
                else {
                    return Ok(None);
                };
                let (_, value, _) = parse_posting_key(&first)?;
                let value_prefix = posting_prefix(field, &value);
                from = prefix_end(&value_prefix);
                let (key, data) = match newest {
                    false => (first, data),
                    true => self.first_in(&value_prefix, true)?.unwrap_or((first, data)),
                };
                let (_, value, seq) = parse_posting_key(&key)?;
                Ok(Some(IndexRecord::Posting {
                    field,
                    value,
                    seq,
                    data,
                }))
            })();
            match next {
                Ok(Some(record)) => Some(Ok(record)),
                Ok(None) => {
                    done = true;
                    None
                }
                // A key that does not parse ends the scan: no seek past it.
                Err(e) => {
                    done = true;
                    Some(Err(e))
                }
            }
        }))
    }

    fn has_record(&self, record: &IndexRecord) -> Result<bool, LogError> {
        if let IndexRecord::Time { seq, micros } = record {
            if self.leaf(*seq)?.is_some_and(|(_, t)| t == Some(*micros)) {
                return Ok(true);
            }
        }
        let (key, value) = record_key_value(record);
        Ok(self.store()?.get(&key)?.is_some_and(|v| v == value))
    }
}
