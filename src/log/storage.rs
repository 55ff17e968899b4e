//! The decision log's storage, behind the roles its callers need: the
//! writer appends ([`LogAppend`]), readers and proofs read ([`LogRead`]),
//! search and lifecycle look-ups go through the postings ([`LogIndex`]).
//! An engine implements all three ([`LogStorage`]); the sled engine lives in
//! `crate::store::sled`. Nothing above this module knows which engine runs.
//!
//! Contracts every engine keeps (the writer and the proofs rely on them):
//! - One head. Entries are appended in an [`AppendBatch`], which holds the
//!   log's head: its `next_seq` is the log's size, and its entries follow
//!   it without a gap. An embedded engine has one writer (the server's log
//!   writer thread); a shared (fleet) engine holds the head in the database
//!   against every other replica until the batch commits or is dropped, so
//!   two replicas never take the same seq. Or, when it knows where its own
//!   last commit left the head, it may start the batch there without
//!   holding anything, and `commit` stores the batch only if the head has
//!   not moved since, else nothing, failing with [`LogError::HeadMoved`].
//!   Either way, what the writer reads after `begin` is what the log held
//!   at the head the batch commits at: the head only grows, and every
//!   posting comes with an entry.
//! - Atomic. A batch stores every entry with its hashes, decision id,
//!   postings and time, and its checkpoints, or none of them.
//! - Visible on commit. What a committed batch stored is read back by
//!   every method as soon as `commit` returns, flushed or not.
//! - Durable after `flush`. Once `flush` returns, everything committed
//!   before it survives a crash; until then it may be lost, but never in
//!   part (a lost batch loses whole entries from the end). A fleet engine,
//!   and an embedded one that keeps its entries in an entry file, are
//!   durable on commit ([`LogAppend::durable_on_commit`]).
//! - Append-only, but for retention. A hash or checkpoint once stored is
//!   never changed or removed. An entry's bytes change only through
//!   [`LogRetain`]: to fewer disclosures or to none at all (expired), the
//!   commitment its leaf hash covers kept; and an index record goes only
//!   with what its entry no longer carries.

use std::collections::HashMap;
use std::sync::Arc;

use super::hot_index::{HotIndex, Keep};
use super::index::{Field, IndexRecord};
use super::merkle::{self, Hash, HashSource};
use super::LogError;

/// An entry ready to be written: its seq, its canonical bytes, the decision
/// id it is found by, the Merkle hashes its append completes, its postings
/// and its event time.
pub struct StoredEntry<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    pub decision_id: Option<&'a str>,
    pub hashes: &'a [(u8, u64, Hash)],
    pub postings: &'a [Posting],
    pub time_micros: Option<i64>,
}

/// The entry is found under `field = value`; `data` is kept with the
/// posting (the document hash of [`Field::ClientDocument`], else empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub field: Field,
    pub value: String,
    pub data: Vec<u8>,
}

/// One end of a value's postings, if it has any: the entry's seq and the
/// posting's data (see [`LogIndex::posting_ends`]).
pub type PostingEnd = Option<(u64, Vec<u8>)>;

/// [`LogIndex::posting_ends`] by one look-up per key.
fn ends_one_by_one(
    keys: &[(Field, &str, Keep)],
    oldest: impl Fn(Field, &str) -> Result<Option<u64>, LogError>,
    newest: impl Fn(Field, &str) -> Result<PostingEnd, LogError>,
) -> Result<Vec<PostingEnd>, LogError> {
    keys.iter()
        .map(|(field, value, keep)| match keep {
            Keep::Oldest => Ok(oldest(*field, value)?.map(|seq| (seq, Vec::new()))),
            Keep::Newest => newest(*field, value),
        })
        .collect()
}

/// A future a storage method returns when it may wait on a network.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A scan over stored items, in the order a method names.
pub type Scan<'a, T> = Box<dyn Iterator<Item = Result<T, LogError>> + 'a>;

/// Writing: the log writer's role.
pub trait LogAppend {
    /// Takes the log's head for a batch of appends and checkpoints (see
    /// the module's contracts).
    fn begin(&self) -> Result<Box<dyn AppendBatch + '_>, LogError>;
    /// Makes everything committed so far durable.
    fn flush(&self) -> Result<(), LogError>;
    /// After a failed append or flush (a full disk, an I/O error): makes
    /// the engine usable again, holding exactly what was durable. Appends
    /// that were not flushed may be gone afterwards, whole. Called by the
    /// writer only, with no append in progress; an `Err` means still
    /// broken, and the writer tries again later.
    fn recover(&self) -> Result<(), LogError>;
    /// Whether a commit is durable by itself (a fleet's database; an entry
    /// file synced by the commit, whose engine indexes again at open what
    /// it had not flushed): then
    /// every entry [`LogRead::next_seq`] counts may leave the box, whoever
    /// wrote it. Otherwise only what the writer says it flushed.
    fn durable_on_commit(&self) -> bool {
        false
    }
    /// Whether other processes append to this log too (a fleet's
    /// database): then nothing read from it may be remembered between
    /// calls (see `log::hot_index`).
    fn shared(&self) -> bool {
        false
    }
}

/// Appends and checkpoints written together while the log's head is held.
/// Dropped without `commit`, none of it is stored.
pub trait AppendBatch {
    /// The seq the next entry appended gets.
    fn next_seq(&self) -> u64;
    /// Adds entries, which start at `next_seq` and follow on without a gap
    /// (anything else is refused).
    fn append(&mut self, entries: &[StoredEntry<'_>]) -> Result<(), LogError>;
    /// Adds the signed checkpoint note for a tree of `size` entries.
    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), LogError>;
    /// Stores the batch atomically and lets go of the head.
    fn commit(self: Box<Self>) -> Result<(), LogError>;
}

/// Refuses entries that do not start at `next` or leave a gap.
pub fn check_follows(next: u64, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
    for (expected, e) in (next..).zip(entries) {
        if e.seq != expected {
            return Err(LogError::Writer(format!(
                "entry {} appended where the log's head is at {expected}",
                e.seq
            )));
        }
    }
    Ok(())
}

/// Reading entries, hashes and checkpoints: proofs, verification, export.
pub trait LogRead {
    /// One past the last stored entry.
    fn next_seq(&self) -> Result<u64, LogError>;
    /// Entry `seq`, exactly the bytes stored (and hashed).
    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, LogError>;
    /// The seq of the connection decision `decision_id`.
    fn seq_of_decision(&self, decision_id: &str) -> Result<Option<u64>, LogError>;
    /// A stored Merkle subtree hash.
    fn stored_hash(&self, level: u8, index: u64) -> Result<Option<Hash>, LogError>;
    /// The checkpoint note of the largest tree.
    fn latest_checkpoint(&self) -> Result<Option<String>, LogError>;
    /// Every checkpoint, smallest tree first: (size, note).
    fn checkpoints(&self) -> Scan<'_, (u64, String)>;
    /// Every entry in seq order, as stored: (seq, bytes). A gap or a
    /// changed entry shows through (verification relies on it).
    fn entries(&self) -> Scan<'_, (u64, Vec<u8>)>;
    /// Entry seqs, newest first, strictly below `below` when given.
    fn seqs_descending(&self, below: Option<u64>) -> Scan<'_, u64>;
    /// The event time of entry `seq`, in µs since the epoch.
    fn time_of(&self, seq: u64) -> Result<Option<i64>, LogError>;
}

/// The postings: search, and look-ups that must stay cheap however long
/// the log (a session's revocation, a grant's issuance, a client's last
/// document).
pub trait LogIndex {
    /// Entries posted under `field = value`, newest first, strictly below
    /// `below` when given.
    fn postings_descending(&self, field: Field, value: &str, below: Option<u64>) -> Scan<'_, u64>;
    /// The oldest entry posted under `field = value`.
    fn oldest_posting(&self, field: Field, value: &str) -> Result<Option<u64>, LogError>;
    /// [`LogIndex::oldest_posting`] of each key, for those that have one:
    /// many look-ups at once (a database engine makes them one query).
    fn oldest_postings(
        &self,
        keys: &[(Field, &str)],
    ) -> Result<std::collections::HashMap<(Field, String), u64>, LogError> {
        let mut found = std::collections::HashMap::new();
        for (field, value) in keys {
            if let Some(seq) = self.oldest_posting(*field, value)? {
                found.insert((*field, value.to_string()), seq);
            }
        }
        Ok(found)
    }
    /// The newest entry posted under `field = value`, with its data.
    fn newest_posting(&self, field: Field, value: &str)
        -> Result<Option<(u64, Vec<u8>)>, LogError>;
    /// For each key in order, its oldest or newest posting: the entry's
    /// seq, and for [`Keep::Newest`] the posting's data (empty for
    /// [`Keep::Oldest`]). The decision path's look-ups at once (a database
    /// engine makes them one query).
    fn posting_ends(&self, keys: &[(Field, &str, Keep)]) -> Result<Vec<PostingEnd>, LogError> {
        ends_one_by_one(
            keys,
            |f, v| self.oldest_posting(f, v),
            |f, v| self.newest_posting(f, v),
        )
    }
    /// [`LogIndex::posting_ends`] for a caller on an async worker (the
    /// decision path): an engine that waits on a network (a fleet's
    /// database) answers without holding the worker's thread. By default
    /// it answers at once, from `posting_ends`.
    fn posting_ends_async<'a>(
        &'a self,
        keys: &'a [(Field, &'a str, Keep)],
    ) -> BoxFuture<'a, Result<Vec<PostingEnd>, LogError>> {
        Box::pin(std::future::ready(self.posting_ends(keys)))
    }
    /// Whether entry `seq` is posted under `field = value`.
    fn has_posting(&self, field: Field, value: &str, seq: u64) -> Result<bool, LogError>;
    /// Every index record stored (postings, decision ids, times), in the
    /// engine's order. A record the engine cannot read (a malformed key or
    /// value, an unknown key) is an `Err` naming where it is, and the scan
    /// goes on after it. Verification compares these with the entries.
    fn index_records(&self) -> Scan<'_, IndexRecord>;
    /// For each value of `field`, its oldest posting (or newest, when
    /// `newest`), as [`IndexRecord::Posting`]s. An engine whose keys are
    /// ordered by field and value seeks from one value to the next.
    fn field_ends(&self, field: Field, newest: bool) -> Scan<'_, IndexRecord> {
        let mut ends: HashMap<String, IndexRecord> = HashMap::new();
        for record in self.index_records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => return Box::new(std::iter::once(Err(e))),
            };
            let IndexRecord::Posting {
                field: f, value, ..
            } = &record
            else {
                continue;
            };
            if *f != field {
                continue;
            }
            let seq = record.seq();
            let later = |known: &IndexRecord| match newest {
                true => seq > known.seq(),
                false => seq < known.seq(),
            };
            if ends.get(value).is_none_or(later) {
                ends.insert(value.clone(), record);
            }
        }
        Box::new(ends.into_values().map(Ok))
    }
    /// Whether `record` is stored exactly so (a posting's data included).
    fn has_record(&self, record: &IndexRecord) -> Result<bool, LogError>;
}

/// An old entry's new bytes (see `log::sealed`: the same commitment with
/// fewer disclosures, or empty when the entry expired) and the index
/// records it no longer carries.
#[derive(Debug, Clone)]
pub struct Retained {
    pub seq: u64,
    pub bytes: Vec<u8>,
    pub dropped: Vec<IndexRecord>,
}

/// Retention's role: redacting and expiring entries already written.
pub trait LogRetain {
    /// Stores every change or none. Never touches hashes, checkpoints or
    /// the log's head, so it runs beside the writer.
    fn retain(&self, changes: &[Retained]) -> Result<(), LogError>;
}

/// A whole engine.
pub trait LogStorage: LogAppend + LogRead + LogIndex + LogRetain + Send + Sync {}

impl<T: LogAppend + LogRead + LogIndex + LogRetain + Send + Sync> LogStorage for T {}

/// A cheap handle to the log's storage, whatever the engine; on a log
/// this process alone writes, with the decision path's postings in memory
/// ([`HotIndex`]). Its own `begin`, `retain`, `recover` and posting
/// look-ups keep that memory in step; everything else reads the engine.
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn LogStorage>,
    hot: Option<Arc<HotIndex>>,
}

impl LogStore {
    pub fn new(engine: impl LogStorage + 'static) -> Self {
        Self {
            engine: Arc::new(engine),
            hot: None,
        }
    }

    /// The same store, answering the decision path's look-ups from memory
    /// (read from the store once, now). A shared (fleet) store is returned
    /// as it is: other replicas write it.
    pub fn remembering(self) -> Result<Self, LogError> {
        if self.engine.shared() || self.hot.is_some() {
            return Ok(self);
        }
        let hot = HotIndex::build(&*self.engine)?;
        Ok(Self {
            hot: Some(Arc::new(hot)),
            ..self
        })
    }

    /// The in-memory postings, when this handle keeps them.
    pub fn hot_index(&self) -> Option<&HotIndex> {
        self.hot.as_deref()
    }

    /// See [`LogAppend::begin`]; what the batch commits is learnt by the
    /// in-memory postings before `commit` returns.
    pub fn begin(&self) -> Result<Box<dyn AppendBatch + '_>, LogError> {
        let inner = self.engine.begin()?;
        Ok(match &self.hot {
            None => inner,
            Some(hot) => Box::new(LearningBatch {
                inner,
                hot,
                learnt: Vec::new(),
            }),
        })
    }

    /// See [`LogRetain::retain`]; dropped postings are forgotten in memory.
    pub fn retain(&self, changes: &[Retained]) -> Result<(), LogError> {
        self.engine.retain(changes)?;
        if let Some(hot) = &self.hot {
            for record in changes.iter().flat_map(|c| &c.dropped) {
                hot.forget(&*self.engine, record)?;
            }
        }
        Ok(())
    }

    /// See [`LogAppend::recover`]; memory is read again from what survived.
    pub fn recover(&self) -> Result<(), LogError> {
        self.engine.recover()?;
        if let Some(hot) = &self.hot {
            hot.rebuild(&*self.engine)?;
        }
        Ok(())
    }

    /// See [`LogIndex::oldest_posting`].
    pub fn oldest_posting(&self, field: Field, value: &str) -> Result<Option<u64>, LogError> {
        match self.remembered(field, value, Keep::Oldest) {
            Some(answer) => Ok(answer.map(|(seq, _)| seq)),
            None => self.engine.oldest_posting(field, value),
        }
    }

    /// See [`LogIndex::newest_posting`].
    pub fn newest_posting(
        &self,
        field: Field,
        value: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        match self.remembered(field, value, Keep::Newest) {
            Some(answer) => Ok(answer),
            None => self.engine.newest_posting(field, value),
        }
    }

    /// See [`LogIndex::posting_ends`]: memory answers what it keeps.
    pub fn posting_ends(&self, keys: &[(Field, &str, Keep)]) -> Result<Vec<PostingEnd>, LogError> {
        if self.hot.is_none() {
            return self.engine.posting_ends(keys);
        }
        ends_one_by_one(
            keys,
            |f, v| self.oldest_posting(f, v),
            |f, v| self.newest_posting(f, v),
        )
    }

    /// See [`LogIndex::posting_ends_async`]: memory answers what it keeps.
    pub async fn posting_ends_async(
        &self,
        keys: &[(Field, &str, Keep)],
    ) -> Result<Vec<PostingEnd>, LogError> {
        match self.hot {
            None => self.engine.posting_ends_async(keys).await,
            Some(_) => self.posting_ends(keys),
        }
    }

    /// See [`LogIndex::oldest_postings`].
    pub fn oldest_postings(
        &self,
        keys: &[(Field, &str)],
    ) -> Result<HashMap<(Field, String), u64>, LogError> {
        if self.hot.is_none() {
            return self.engine.oldest_postings(keys);
        }
        let mut found = HashMap::new();
        for (field, value) in keys {
            if let Some(seq) = self.oldest_posting(*field, value)? {
                found.insert((*field, value.to_string()), seq);
            }
        }
        Ok(found)
    }

    /// Memory's answer for the `which` posting of `field = value`, if
    /// memory has one.
    fn remembered(&self, field: Field, value: &str, which: Keep) -> Option<Option<(u64, Vec<u8>)>> {
        self.hot.as_ref()?.lookup(field, value, which)
    }

    /// The entry a decision id names, as stored.
    pub fn decision(&self, decision_id: &str) -> Result<Option<Vec<u8>>, LogError> {
        match self.seq_of_decision(decision_id)? {
            Some(seq) => self.entry(seq),
            None => Ok(None),
        }
    }

    /// Appends entries in a batch of their own.
    pub fn append(&self, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
        let mut batch = self.begin()?;
        batch.append(entries)?;
        batch.commit()
    }

    /// Stores a checkpoint note in a batch of its own.
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), LogError> {
        let mut batch = self.begin()?;
        batch.put_checkpoint(size, note)?;
        batch.commit()
    }

    /// A subtree hash that must exist: stored, or for the low levels a log
    /// may leave out (`merkle::DERIVABLE_LEVELS`), derived from its leaves.
    pub fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        let stored = |level, index| self.stored_hash(level, index)?.ok_or(LogError::Corrupt);
        match self.stored_hash(level, index)? {
            Some(hash) => Ok(hash),
            None if (1..=merkle::DERIVABLE_LEVELS).contains(&level) => {
                merkle::derived_subtree(level, index, |leaf| stored(0, leaf))
            }
            None => Err(LogError::Corrupt),
        }
    }
}

/// An engine's batch whose kept postings memory learns once it commits.
struct LearningBatch<'a> {
    inner: Box<dyn AppendBatch + 'a>,
    hot: &'a HotIndex,
    learnt: Vec<(Field, String, u64, Vec<u8>)>,
}

impl AppendBatch for LearningBatch<'_> {
    fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }

    fn append(&mut self, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
        self.inner.append(entries)?;
        for entry in entries {
            for p in entry.postings.iter().filter(|p| HotIndex::keeps(p.field)) {
                self.learnt
                    .push((p.field, p.value.clone(), entry.seq, p.data.clone()));
            }
        }
        Ok(())
    }

    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), LogError> {
        self.inner.put_checkpoint(size, note)
    }

    fn commit(self: Box<Self>) -> Result<(), LogError> {
        let LearningBatch { inner, hot, learnt } = *self;
        inner.commit()?;
        for (field, value, seq, data) in learnt {
            hot.learn(field, &value, seq, &data);
        }
        Ok(())
    }
}

impl std::ops::Deref for LogStore {
    type Target = dyn LogStorage;
    fn deref(&self) -> &Self::Target {
        &*self.engine
    }
}

impl HashSource for LogStore {
    type Error = LogError;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        self.subtree_hash(level, index)
    }
}
