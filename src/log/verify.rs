//! Offline verification of the decision log: recompute every leaf and the
//! tree from the stored entries, check every checkpoint's signature and root,
//! and name the first entry that was changed, removed, reordered or inserted.
//! Works in constant memory (a compact range of O(log n) hashes).

use std::io::BufRead;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, NoteVerifier};
use super::entry::{LogEntry, Record};
use super::index::{self, IndexRecord};
use super::merkle::{self, node_hash, Hash, HashSource};
use super::retained::{RetentionLedger, RetentionSeen, Unrecorded};
use super::sealed;
use super::storage::LogStore;
use super::LogError;

/// What `log verify` found wrong, naming the first place it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Tampering {
    #[error(
        "entry {seq} was changed: its bytes do not hash to the leaf recorded when it was written"
    )]
    Changed { seq: u64 },
    #[error("entry {seq} was removed")]
    Removed { seq: u64 },
    #[error("entry {seq} was reordered: the entry stored there says it is seq {claims}")]
    Reordered { seq: u64, claims: u64 },
    #[error("entry {seq} was inserted: it is not covered by any signed checkpoint")]
    Inserted { seq: u64 },
    #[error("checkpoint at tree size {size}: {reason}")]
    Checkpoint { size: u64, reason: String },
    #[error("entry {seq} cannot be read to check its index records: {reason}")]
    Unreadable { seq: u64, reason: String },
    #[error("entry {seq} holds a disclosure its commitment does not seal: {reason}")]
    Disclosure { seq: u64, reason: String },
    #[error(
        "entry {seq} lacks its {group} disclosure, and no retention record logged after it \
         redacted that: the entry was edited"
    )]
    UnrecordedRedaction { seq: u64, group: &'static str },
    #[error(
        "entry {seq} was removed: its bytes are gone and no retention record logged after it \
         expired it"
    )]
    UnrecordedExpiry { seq: u64 },
    #[error("the index lacks the {record}")]
    IndexMissing { seq: u64, record: String },
    #[error("the index holds a {record}, which that entry does not carry")]
    IndexForged { record: String },
    #[error("the index changed while it was being verified")]
    IndexChanged,
    #[error("export file line {line}: {reason}")]
    Export { line: usize, reason: String },
    #[error(transparent)]
    Storage(#[from] LogError),
}

/// A verified log: its size and root, and how many checkpoints vouch for it.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub tree_size: u64,
    pub root_hash: String,
    pub checkpoints: usize,
    /// Entries whose bytes were checked.
    pub entries_checked: u64,
    /// What the check shows about the entries left out.
    pub coverage: Coverage,
    /// Entries retention redacted or expired, each covered by a retention
    /// record (a complete verification fails on any that is not).
    pub retention: RetentionSeen,
}

/// Whether a verification shows that nothing was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Every entry of the tree (or of a contiguous range `from..to` of it,
    /// tied to the tree by its prefix and a consistency proof): none can
    /// have been dropped.
    Complete { from: u64, to: u64 },
    /// Chosen entries, each proven included: it cannot show that an entry
    /// was left out.
    Selection,
}

/// The right edge of a Merkle tree: enough to append leaves and compute the
/// root without keeping the tree.
#[derive(Debug, Clone, Default)]
pub struct CompactRange {
    size: u64,
    frontier: Vec<Hash>,
}

impl CompactRange {
    /// A range standing for the first `size` leaves, from the hashes of the
    /// complete subtrees that make them up, largest first.
    pub fn from_prefix(size: u64, hashes: &[Hash]) -> Option<Self> {
        let mut range = Self {
            size,
            frontier: vec![[0; 32]; 64],
        };
        let levels: Vec<u32> = (0..64).rev().filter(|l| size >> l & 1 == 1).collect();
        if levels.len() != hashes.len() {
            return None;
        }
        for (level, hash) in levels.into_iter().zip(hashes) {
            range.frontier[level as usize] = *hash;
        }
        Some(range)
    }

    /// The hashes `from_prefix` takes, read from a store.
    pub fn prefix_hashes<S: HashSource>(source: &S, size: u64) -> Result<Vec<Hash>, S::Error> {
        let mut start = 0u64;
        let mut out = Vec::new();
        for level in (0..64u32).rev().filter(|l| size >> l & 1 == 1) {
            out.push(source.subtree(level as u8, start >> level)?);
            start += 1 << level;
        }
        Ok(out)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; `None` when the tree already has 2^64 - 1 leaves.
    pub fn push(&mut self, leaf: Hash) -> Option<()> {
        let size = self.size.checked_add(1)?;
        if self.frontier.is_empty() {
            self.frontier = vec![[0; 32]; 64];
        }
        let frontier = &self.frontier;
        let new = merkle::hashes_for_append::<()>(self.size, leaf, |level, _| {
            frontier.get(usize::from(level)).copied().ok_or(())
        })
        .ok()?;
        let (level, _, top) = *new.last()?;
        *self.frontier.get_mut(usize::from(level))? = top;
        self.size = size;
        Some(())
    }

    pub fn root(&self) -> Hash {
        let mut root: Option<Hash> = None;
        for level in (0..64).filter(|l| self.size >> l & 1 == 1) {
            let left = &self.frontier[level as usize];
            root = Some(match root {
                None => *left,
                Some(right) => node_hash(left, &right),
            });
        }
        root.unwrap_or_else(merkle::empty_root)
    }
}

/// The `seq` an entry's bytes claim.
fn claimed_seq(bytes: &[u8]) -> Option<u64> {
    sealed::claimed_seq(bytes)
}

/// Checks one stored entry's disclosures against its seals and notes in
/// `ledger` what retention took from it; returns the entry as read (none
/// when expired).
fn check_entry(
    seq: u64,
    bytes: &[u8],
    ledger: &mut RetentionLedger,
) -> Result<Option<LogEntry>, Tampering> {
    if sealed::is_expired(bytes) {
        ledger.expired(seq);
        return Ok(None);
    }
    let opened = sealed::open(bytes).map_err(|e| Tampering::Disclosure {
        seq,
        reason: e.to_string(),
    })?;
    ledger.redacted(seq, opened.redacted());
    let entry = opened.into_entry().map_err(|e| Tampering::Unreadable {
        seq,
        reason: format!("{e} ({} bytes stored)", bytes.len()),
    })?;
    if let Record::Retention(record) = &entry.record {
        ledger.record(record);
    }
    Ok(Some(entry))
}

/// Fails on the first redaction or expiry no retention record covers.
fn check_recorded(ledger: &RetentionLedger) -> Result<(), Tampering> {
    match ledger.first_unrecorded() {
        None => Ok(()),
        Some(Unrecorded::Redaction { seq, group }) => Err(Tampering::UnrecordedRedaction {
            seq,
            group: group.name(),
        }),
        Some(Unrecorded::Expiry { seq }) => Err(Tampering::UnrecordedExpiry { seq }),
    }
}

/// Verifies a stopped server's log: every entry must be covered by a
/// signed checkpoint.
pub fn verify_store(store: &LogStore, verifier: &NoteVerifier) -> Result<Verified, Tampering> {
    verify_stored(store, verifier, false, &crate::progress::Silent)
}

/// [`verify_store`] (or, `live`, [`verify_live`]) reporting each entry
/// checked to `progress`.
pub fn verify_store_with(
    store: &LogStore,
    verifier: &NoteVerifier,
    live: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<Verified, Tampering> {
    verify_stored(store, verifier, live, progress)
}

/// Verifies a log that is being written (a fleet's, while its replicas
/// serve): everything up to the latest signed checkpoint, as
/// [`verify_store`] does. Entries appended after it are not attested by
/// any signature yet; they are left for a later run, not failed.
pub fn verify_live(store: &LogStore, verifier: &NoteVerifier) -> Result<Verified, Tampering> {
    verify_stored(store, verifier, true, &crate::progress::Silent)
}

fn verify_stored(
    store: &LogStore,
    verifier: &NoteVerifier,
    live: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<Verified, Tampering> {
    progress.start(store.next_seq().ok());
    let mut checkpoints: Vec<(u64, String)> = store.checkpoints().collect::<Result<_, _>>()?;
    checkpoints.sort_by_key(|(size, _)| *size);
    // Each checkpoint under the key in force for its size; every handover
    // to a new key signed by the key before it (see `key_history`).
    let history = super::key_history::KeyHistory::load(store, verifier).map_err(|e| {
        Tampering::Checkpoint {
            size: 0,
            reason: e.to_string(),
        }
    })?;
    for seq in history.handovers() {
        let endorsed = seq.saturating_add(1);
        if !checkpoints.iter().any(|(size, _)| *size == endorsed) {
            return Err(Tampering::Checkpoint {
                size: endorsed,
                reason: format!(
                    "the log key named at entry {seq} has no checkpoint of its predecessor \
                     covering that entry"
                ),
            });
        }
    }
    let opened: Vec<Checkpoint> = checkpoints
        .iter()
        .map(|(size, note)| open_checkpoint(history.verifier_for(*size), *size, note))
        .collect::<Result<_, _>>()?;
    let covered = opened.last().map_or(0, |c| c.size);

    // The records the entries imply, and those stored, as keyed multiset
    // hashes: equal exactly when the two sets are, except with negligible
    // probability, because the key is drawn after the store's content is
    // fixed (nobody can balance one record against others).
    let key: [u8; 32] = rand::random();
    // The stored index is summed on its own thread while the entries are
    // checked (`verify_entries`): the two passes share nothing until they
    // compare.
    let below = live.then_some(covered);
    let (entries, stored) = std::thread::scope(|scope| {
        let stored = scope.spawn(|| stored_index(store, key, below));
        let entries = verify_entries(store, &opened, live, key, progress);
        (entries, stored.join())
    });
    let (range, ledger, expected_index) = entries?;
    let stored = stored.map_err(|_| Tampering::Unreadable {
        seq: 0,
        reason: "the index pass stopped unexpectedly".into(),
    })??;
    // The entries are proven; now the index must be exactly what they say.
    if stored != expected_index {
        return Err(name_index_difference(store, below));
    }
    Ok(Verified {
        tree_size: range.size(),
        root_hash: STANDARD.encode(range.root()),
        checkpoints: opened.len(),
        entries_checked: range.size(),
        coverage: Coverage::Complete {
            from: 0,
            to: range.size(),
        },
        retention: ledger.seen(),
    })
}

/// What checking one entry needs that does not depend on the entries
/// before it, worked out on any core: its leaf hash, and its disclosures
/// opened and the index records it implies.
struct Parsed {
    seq: u64,
    expired: bool,
    /// The seq the bytes claim (none when they do not say).
    claims: Option<u64>,
    /// The leaf hash of the bytes (not of an expired entry: none is left).
    leaf: Option<Hash>,
    /// The entry opened, or why it does not open (none when expired).
    opened: Option<Result<OpenedEntry, Tampering>>,
}

struct OpenedEntry {
    redacted: std::collections::BTreeSet<sealed::FieldGroup>,
    retention: Option<super::entry::RetentionRecord>,
    records: RecordSet,
}

fn parse(seq: u64, bytes: &[u8], key: [u8; 32]) -> Parsed {
    let expired = sealed::is_expired(bytes);
    let mut claims = None;
    let opened = (!expired).then(|| {
        let opened = sealed::open(bytes).map_err(|e| Tampering::Disclosure {
            seq,
            reason: e.to_string(),
        })?;
        let redacted = opened.redacted();
        let entry = opened.into_entry().map_err(|e| Tampering::Unreadable {
            seq,
            reason: format!("{e} ({} bytes stored)", bytes.len()),
        })?;
        claims = Some(entry.seq);
        let mut records = RecordSet::new(key);
        for record in records_of_entry(seq, &entry) {
            records.add(&record);
        }
        let retention = match entry.record {
            Record::Retention(record) => Some(record),
            _ => None,
        };
        Ok(OpenedEntry {
            redacted,
            retention,
            records,
        })
    });
    Parsed {
        seq,
        expired,
        // Read from the entry when it opened: the same field, parsed once.
        claims: claims.or_else(|| claimed_seq(bytes)),
        leaf: (!expired).then(|| sealed::leaf_hash(bytes)),
        opened,
    }
}

/// Entries per chunk handed to a parsing thread.
const PARSE_CHUNK: usize = 256;

/// The store's entries, parsed on `threads` threads, in seq order.
fn parsed_entries<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    store: &'s LogStore,
    key: [u8; 32],
    threads: usize,
) -> impl Iterator<Item = Result<Parsed, LogError>> + 's {
    use std::sync::mpsc::sync_channel;
    type Chunk<T> = (usize, Vec<Result<T, LogError>>);
    let (work, to_parse) = sync_channel::<Chunk<(u64, Vec<u8>)>>(threads * 2);
    let (parsed, results) = sync_channel::<Chunk<Parsed>>(threads * 2);
    scope.spawn(move || {
        let mut entries = store.entries();
        for n in 0.. {
            let chunk: Vec<_> = entries.by_ref().take(PARSE_CHUNK).collect();
            // A closed channel: the checks stopped early; stop reading.
            if chunk.is_empty() || work.send((n, chunk)).is_err() {
                break;
            }
        }
    });
    let to_parse = std::sync::Arc::new(std::sync::Mutex::new(to_parse));
    for _ in 0..threads {
        let (to_parse, parsed) = (to_parse.clone(), parsed.clone());
        scope.spawn(move || loop {
            let next = to_parse.lock().unwrap_or_else(|p| p.into_inner()).recv();
            let Ok((n, chunk)) = next else { break };
            let done = chunk
                .into_iter()
                .map(|item| item.map(|(seq, bytes)| parse(seq, &bytes, key)))
                .collect();
            if parsed.send((n, done)).is_err() {
                break;
            }
        });
    }
    drop(parsed);
    // Chunks finish out of order: hold the early ones until their turn.
    let mut early = std::collections::BTreeMap::new();
    let mut next = 0;
    std::iter::from_fn(move || loop {
        if let Some(chunk) = early.remove(&next) {
            next += 1;
            return Some(chunk);
        }
        let (n, chunk) = results.recv().ok()?;
        early.insert(n, chunk);
    })
    .flatten()
}

/// The entries pass: every entry in seq order against its stored leaf
/// hash, the tree against each checkpoint, every disclosure against its
/// seal, retention against its records. Returns the tree, what retention
/// did, and the index records the entries imply. Entries are parsed on
/// two threads; the checks that depend on order run here.
fn verify_entries(
    store: &LogStore,
    opened: &[Checkpoint],
    live: bool,
    key: [u8; 32],
    progress: &dyn crate::progress::Progress,
) -> Result<(CompactRange, RetentionLedger, RecordSet), Tampering> {
    std::thread::scope(|scope| {
        check_in_order(
            store,
            parsed_entries(scope, store, key, 2),
            opened,
            live,
            key,
            progress,
        )
    })
}

fn check_in_order(
    store: &LogStore,
    entries: impl Iterator<Item = Result<Parsed, LogError>>,
    opened: &[Checkpoint],
    live: bool,
    key: [u8; 32],
    progress: &dyn crate::progress::Progress,
) -> Result<(CompactRange, RetentionLedger, RecordSet), Tampering> {
    let covered = opened.last().map_or(0, |c| c.size);
    let mut range = CompactRange::default();
    let mut next_checkpoint = opened.iter().peekable();
    let mut expected_index = RecordSet::new(key);
    let mut ledger = RetentionLedger::default();
    for item in entries {
        let parsed = item?;
        let seq = parsed.seq;
        progress.advance(1);
        if live && seq >= covered && range.size() == covered {
            // Not attested yet, so not verified; but a retention record
            // here may cover a redaction already applied below. A later
            // run, once a checkpoint covers it, checks the record itself.
            if let Some(Ok(OpenedEntry {
                retention: Some(record),
                ..
            })) = &parsed.opened
            {
                ledger.record(record);
            }
            continue;
        }
        let expected = range.size();
        if seq != expected {
            return Err(Tampering::Removed { seq: expected });
        }
        match parsed.claims {
            Some(claims) if claims != seq && !parsed.expired => {
                return Err(Tampering::Reordered { seq, claims })
            }
            _ => {}
        }
        if seq >= covered {
            return Err(Tampering::Inserted { seq });
        }
        let stored_leaf = store.stored_hash(0, seq)?;
        // An expired entry's leaf hash is all that is left of it: the roots
        // below check it.
        let leaf = match parsed.leaf {
            Some(leaf) => leaf,
            None => stored_leaf.ok_or(Tampering::Removed { seq })?,
        };
        if stored_leaf != Some(leaf) {
            return Err(Tampering::Changed { seq });
        }
        range.push(leaf).ok_or(Tampering::Inserted { seq })?;
        check_due_checkpoints(&range, &mut next_checkpoint)?;
        match parsed.opened {
            None => ledger.expired(seq),
            Some(opened) => {
                let opened = opened?;
                ledger.redacted(seq, opened.redacted);
                if let Some(record) = &opened.retention {
                    ledger.record(record);
                }
                expected_index.merge(&opened.records);
            }
        }
    }
    if range.size() < covered {
        return Err(Tampering::Removed { seq: range.size() });
    }
    check_recorded(&ledger)?;
    Ok((range, ledger, expected_index))
}

/// The index pass: every stored index record (below `below`, when given)
/// but the inert ones an earlier build wrote, summed as a [`RecordSet`].
fn stored_index(
    store: &LogStore,
    key: [u8; 32],
    below: Option<u64>,
) -> Result<RecordSet, Tampering> {
    let mut stored = RecordSet::new(key);
    for record in store.index_records() {
        let record = record?;
        if below.is_none_or(|b| record.seq() < b) && !index::is_inert(&record) {
            stored.add(&record);
        }
    }
    Ok(stored)
}

/// The index records entry `seq` implies as stored, each once.
fn records_of(seq: u64, bytes: &[u8]) -> Result<Vec<IndexRecord>, Tampering> {
    let derived = index::derive_stored(bytes).map_err(|reason| Tampering::Unreadable {
        seq,
        reason: format!("{reason} ({} bytes stored)", bytes.len()),
    })?;
    Ok(unique(derived.records(seq)))
}

fn records_of_entry(seq: u64, entry: &LogEntry) -> Vec<IndexRecord> {
    unique(index::derive(entry).records(seq))
}

fn unique(mut records: Vec<IndexRecord>) -> Vec<IndexRecord> {
    records.sort();
    records.dedup();
    records
}

/// A set of index records in constant memory: their count and the sum of
/// their keyed hashes, so the stored and the expected index compare in one
/// pass each, whatever the log's size.
#[derive(Debug, PartialEq, Eq)]
struct RecordSet {
    key: [u8; 32],
    count: u64,
    sum: u128,
}

impl RecordSet {
    fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            count: 0,
            sum: 0,
        }
    }

    fn add(&mut self, record: &IndexRecord) {
        let mut bytes = Vec::with_capacity(96);
        bytes.extend_from_slice(&self.key);
        let mut put = |tag: u8, text: &[u8], seq: u64, data: &[u8]| {
            bytes.push(tag);
            bytes.extend_from_slice(&(text.len() as u64).to_be_bytes());
            bytes.extend_from_slice(text);
            bytes.extend_from_slice(&seq.to_be_bytes());
            bytes.extend_from_slice(data);
        };
        match record {
            IndexRecord::Posting {
                field,
                value,
                seq,
                data,
            } => put(*field as u8, value.as_bytes(), *seq, data),
            IndexRecord::Decision { id, seq } => put(0xfe, id.as_bytes(), *seq, &[]),
            IndexRecord::Time { seq, micros } => put(0xff, &[], *seq, &micros.to_be_bytes()),
        }
        let hash = crate::digest::sha256(&bytes);
        let mut low = [0u8; 16];
        low.copy_from_slice(&hash[..16]);
        self.count = self.count.wrapping_add(1);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(low));
    }

    /// Adds every record of `other` (summed under the same key).
    fn merge(&mut self, other: &RecordSet) {
        self.count = self.count.wrapping_add(other.count);
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// Names where the index and the entries differ: the first stored record
/// no entry accounts for, else the first record an entry lacks. Runs only
/// when the two sets differ.
/// With `below`, only what concerns the entries below that seq.
fn name_index_difference(store: &LogStore, below: Option<u64>) -> Tampering {
    let checked = |seq: u64| below.is_none_or(|b| seq < b);
    let found = || -> Result<Tampering, Tampering> {
        let mut cached: Option<(u64, Vec<IndexRecord>)> = None;
        for record in store.index_records() {
            let record = record?;
            let seq = record.seq();
            if !checked(seq) || index::is_inert(&record) {
                continue;
            }
            if cached.as_ref().is_none_or(|(s, _)| *s != seq) {
                let records = match store.entry(seq)? {
                    Some(bytes) => records_of(seq, &bytes)?,
                    None => Vec::new(),
                };
                cached = Some((seq, records));
            }
            if !cached.as_ref().is_some_and(|(_, r)| r.contains(&record)) {
                return Ok(Tampering::IndexForged {
                    record: record.to_string(),
                });
            }
        }
        for item in store.entries() {
            let (seq, bytes) = item?;
            if !checked(seq) {
                break;
            }
            for record in records_of(seq, &bytes)? {
                if !store.has_record(&record)? {
                    return Ok(Tampering::IndexMissing {
                        seq,
                        record: record.to_string(),
                    });
                }
            }
        }
        Err(Tampering::IndexChanged)
    };
    found().unwrap_or_else(|t| t)
}

fn open_checkpoint(
    verifier: &NoteVerifier,
    size: u64,
    note: &str,
) -> Result<Checkpoint, Tampering> {
    let cp = verifier.open(note).map_err(|e| Tampering::Checkpoint {
        size,
        reason: e.to_string(),
    })?;
    if cp.size != size {
        return Err(Tampering::Checkpoint {
            size,
            reason: format!("stored under size {size} but says {}", cp.size),
        });
    }
    Ok(cp)
}

/// Every checkpoint whose size the range has reached must have its root.
fn check_due_checkpoints<'a>(
    range: &CompactRange,
    pending: &mut std::iter::Peekable<impl Iterator<Item = &'a Checkpoint>>,
) -> Result<(), Tampering> {
    while let Some(cp) = pending.next_if(|cp| cp.size == range.size()) {
        if cp.root != range.root() {
            return Err(Tampering::Checkpoint {
                size: cp.size,
                reason: "its signed root does not match the entries".to_string(),
            });
        }
    }
    Ok(())
}

/// First line of an export: where it starts and the tree before it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportHeader {
    pub trustpath_export: u32,
    pub from: u64,
    pub to: u64,
    /// Base64 hashes of the complete subtrees covering entries `0..from`.
    pub prefix: Vec<String>,
    /// A filtered export holds chosen entries, each with its own inclusion
    /// proof, instead of a contiguous range.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub filtered: bool,
}

/// Last line of a filtered export: the checkpoint and, for each entry line
/// in order, its RFC 9162 audit path to the checkpoint's root.
#[derive(Debug, Serialize, Deserialize)]
pub struct FilteredTrailer {
    pub checkpoint: String,
    pub inclusion: Vec<Vec<String>>,
}

/// A checkpoint note, its signature checked.
fn open_note(verifier: &NoteVerifier, note: &str) -> Result<Checkpoint, Tampering> {
    verifier.open(note).map_err(|e| Tampering::Checkpoint {
        size: 0,
        reason: e.to_string(),
    })
}

/// The latest checkpoint's note and content, its signature checked.
fn latest_checkpoint(
    store: &LogStore,
    verifier: &NoteVerifier,
) -> Result<(String, Checkpoint), Tampering> {
    let (note, cp) = super::key_history::open_latest(store, verifier)
        .map_err(|e| Tampering::Checkpoint {
            size: 0,
            reason: e.to_string(),
        })?
        .ok_or(Tampering::Checkpoint {
            size: 0,
            reason: "no checkpoint has been signed; start and stop the server once".to_string(),
        })?;
    Ok((note, cp))
}

/// Writes the entries `seqs` (ascending, all covered by the latest
/// checkpoint) with inclusion proofs, as NDJSON.
pub fn export_selected(
    store: &LogStore,
    verifier: &NoteVerifier,
    seqs: &[u64],
    out: &mut impl std::io::Write,
) -> Result<u64, Tampering> {
    let (note, cp) = latest_checkpoint(store, verifier)?;
    let io = |e: std::io::Error| Tampering::Storage(LogError::Writer(e.to_string()));
    // An expired entry has nothing left to prove but its leaf: left out.
    let mut covered = Vec::with_capacity(seqs.len());
    for seq in seqs.iter().copied().filter(|s| *s < cp.size) {
        if store.entry(seq)?.is_some_and(|b| !sealed::is_expired(&b)) {
            covered.push(seq);
        }
    }
    let header = ExportHeader {
        trustpath_export: 1,
        from: covered.first().copied().unwrap_or(0),
        to: covered.last().map_or(0, |s| s.saturating_add(1)),
        prefix: Vec::new(),
        filtered: true,
    };
    writeln!(
        out,
        "{}",
        serde_json::to_string(&header).expect("serialisable")
    )
    .map_err(io)?;
    let mut inclusion = Vec::with_capacity(covered.len());
    for seq in &covered {
        let bytes = store.entry(*seq)?.ok_or(Tampering::Removed { seq: *seq })?;
        out.write_all(&bytes).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        let proof = merkle::inclusion_proof(store, *seq, cp.size)?;
        inclusion.push(proof.iter().map(|h| STANDARD.encode(h)).collect());
    }
    let trailer = FilteredTrailer {
        checkpoint: note,
        inclusion,
    };
    writeln!(
        out,
        "{}",
        serde_json::to_string(&trailer).expect("serialisable")
    )
    .map_err(io)?;
    Ok(covered.len() as u64)
}

/// Verifies a filtered export: each entry, by its own inclusion proof.
/// (A selection cannot show that an entry was left out; a full export can.)
fn verify_selected(
    entry_lines: &[String],
    trailer: &str,
    trailer_line: usize,
    verifier: &NoteVerifier,
) -> Result<Verified, Tampering> {
    let export_err = |line: usize, reason: &str| Tampering::Export {
        line,
        reason: reason.to_string(),
    };
    let trailer: FilteredTrailer =
        serde_json::from_str(trailer).map_err(|e| export_err(trailer_line, &e.to_string()))?;
    let cp = open_note(verifier, &trailer.checkpoint)?;
    if trailer.inclusion.len() != entry_lines.len() {
        return Err(export_err(
            trailer_line,
            "one inclusion proof per entry line is needed",
        ));
    }
    let mut last: Option<u64> = None;
    let mut ledger = RetentionLedger::default();
    for (i, (line, proof)) in entry_lines.iter().zip(&trailer.inclusion).enumerate() {
        let seq =
            claimed_seq(line.as_bytes()).ok_or_else(|| export_err(i + 2, "not a log entry"))?;
        if last.is_some_and(|l| seq <= l) {
            return Err(Tampering::Reordered {
                seq: last.unwrap_or(0).saturating_add(1),
                claims: seq,
            });
        }
        if seq >= cp.size {
            return Err(Tampering::Inserted { seq });
        }
        if sealed::is_expired(line.as_bytes()) {
            return Err(export_err(
                i + 2,
                "an expired entry has no bytes to prove in a selection",
            ));
        }
        let proof = decode_hashes(trailer_line, proof)?;
        let leaf = sealed::leaf_hash(line.as_bytes());
        if !merkle::verify_inclusion(seq, cp.size, &leaf, &proof, &cp.root) {
            return Err(Tampering::Changed { seq });
        }
        check_entry(seq, line.as_bytes(), &mut ledger)?;
        last = Some(seq);
    }
    Ok(Verified {
        tree_size: cp.size,
        root_hash: STANDARD.encode(cp.root),
        checkpoints: 1,
        entries_checked: entry_lines.len() as u64,
        coverage: Coverage::Selection,
        retention: ledger.seen(),
    })
}

/// Last line of an export: the checkpoint and the proof tying `to` to it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportTrailer {
    pub checkpoint: String,
    /// Consistency proof from tree size `to` to the checkpoint's size.
    pub consistency: Vec<String>,
    /// The leaf hash recorded for each exported entry when it was written.
    /// They are checked against the signed root first; then an entry whose
    /// bytes no longer hash to its leaf is named.
    pub leaf_hashes: Vec<String>,
}

/// Writes entries `from..to` (to ≤ the latest checkpoint) as NDJSON.
pub fn export(
    store: &LogStore,
    verifier: &NoteVerifier,
    from: u64,
    to: Option<u64>,
    out: &mut impl std::io::Write,
) -> Result<u64, Tampering> {
    export_with(store, verifier, from, to, out, &crate::progress::Silent)
}

/// [`export`], reporting each entry written to `progress`.
pub fn export_with(
    store: &LogStore,
    verifier: &NoteVerifier,
    from: u64,
    to: Option<u64>,
    out: &mut impl std::io::Write,
    progress: &dyn crate::progress::Progress,
) -> Result<u64, Tampering> {
    let (note, cp) = latest_checkpoint(store, verifier)?;
    let to = to.unwrap_or(cp.size).min(cp.size);
    let from = from.min(to);
    progress.start(Some(to.saturating_sub(from)));
    let io = |e: std::io::Error| Tampering::Storage(LogError::Writer(e.to_string()));
    let mut leaf_hashes = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
    let header = ExportHeader {
        trustpath_export: 1,
        from,
        to,
        prefix: CompactRange::prefix_hashes(store, from)?
            .iter()
            .map(|h| STANDARD.encode(h))
            .collect(),
        filtered: false,
    };
    writeln!(
        out,
        "{}",
        serde_json::to_string(&header).expect("serialisable")
    )
    .map_err(io)?;
    for seq in from..to {
        progress.advance(1);
        let bytes = store.entry(seq)?.ok_or(Tampering::Removed { seq })?;
        let line = if sealed::is_expired(&bytes) {
            sealed::expired_line(seq)
        } else {
            bytes
        };
        out.write_all(&line).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        leaf_hashes.push(STANDARD.encode(store.subtree_hash(0, seq)?));
    }
    let consistency = if to == cp.size || to == 0 {
        Vec::new()
    } else {
        merkle::consistency_proof(store, to, cp.size)?
    };
    let trailer = ExportTrailer {
        checkpoint: note,
        consistency: consistency.iter().map(|h| STANDARD.encode(h)).collect(),
        leaf_hashes,
    };
    writeln!(
        out,
        "{}",
        serde_json::to_string(&trailer).expect("serialisable")
    )
    .map_err(io)?;
    Ok(to - from)
}

fn decode_hashes(line: usize, hashes: &[String]) -> Result<Vec<Hash>, Tampering> {
    hashes
        .iter()
        .map(|h| {
            STANDARD
                .decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Tampering::Export {
                    line,
                    reason: "a hash is not 32 bytes of base64".to_string(),
                })
        })
        .collect()
}

/// Verifies an export file against its checkpoint, without the data directory.
pub fn verify_export(input: impl BufRead, verifier: &NoteVerifier) -> Result<Verified, Tampering> {
    let lines: Vec<String> =
        input
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| Tampering::Export {
                line: 0,
                reason: e.to_string(),
            })?;
    let export_err = |line: usize, reason: &str| Tampering::Export {
        line,
        reason: reason.to_string(),
    };
    if lines.len() < 2 {
        return Err(export_err(
            lines.len(),
            "an export has a header and a checkpoint line",
        ));
    }
    let header: ExportHeader =
        serde_json::from_str(&lines[0]).map_err(|e| export_err(1, &e.to_string()))?;
    let trailer_line = lines.len();
    if header.filtered {
        let entries = &lines[1..trailer_line - 1];
        return verify_selected(entries, &lines[trailer_line - 1], trailer_line, verifier);
    }
    let trailer: ExportTrailer = serde_json::from_str(&lines[trailer_line - 1])
        .map_err(|e| export_err(trailer_line, &e.to_string()))?;
    let cp = open_note(verifier, &trailer.checkpoint)?;
    // Bounded by the signed tree before anything is sized or indexed by them.
    if header.from > header.to || header.to > cp.size {
        return Err(export_err(
            1,
            &format!(
                "entries {}..{} are not a range of the checkpoint's tree of size {}",
                header.from, header.to, cp.size
            ),
        ));
    }
    let prefix = decode_hashes(1, &header.prefix)?;
    let mut range = CompactRange::from_prefix(header.from, &prefix)
        .ok_or_else(|| export_err(1, "prefix does not fit the starting seq"))?;

    // The recorded leaf hashes must lead to the signed root...
    let leaves = decode_hashes(trailer_line, &trailer.leaf_hashes)?;
    let mut claimed = range.clone();
    for leaf in &leaves {
        claimed
            .push(*leaf)
            .ok_or_else(|| export_err(trailer_line, "more leaf hashes than a tree holds"))?;
    }
    let proof = decode_hashes(trailer_line, &trailer.consistency)?;
    let consistent = if claimed.size() == cp.size {
        claimed.root() == cp.root
    } else {
        merkle::verify_consistency(claimed.size(), cp.size, &proof, &claimed.root(), &cp.root)
    };
    if !consistent || claimed.size() != header.to {
        return Err(Tampering::Checkpoint {
            size: cp.size,
            reason: "the recorded leaf hashes do not lead to the signed root".to_string(),
        });
    }

    // ...and every entry line must be the one its leaf hash was made from.
    let mut ledger = RetentionLedger::default();
    for (i, line) in lines[1..trailer_line - 1].iter().enumerate() {
        let expected = range.size();
        let claims =
            claimed_seq(line.as_bytes()).ok_or_else(|| export_err(i + 2, "not a log entry"))?;
        if claims != expected {
            // The missing seq further down means a move; nowhere, a removal.
            let later = &lines[i + 2..trailer_line - 1];
            let moved = claims < expected
                || later
                    .iter()
                    .any(|l| claimed_seq(l.as_bytes()) == Some(expected));
            return Err(if moved {
                Tampering::Reordered {
                    seq: expected,
                    claims,
                }
            } else {
                Tampering::Removed { seq: expected }
            });
        }
        let index = expected
            .checked_sub(header.from)
            .and_then(|i| usize::try_from(i).ok());
        let Some(recorded) = index.and_then(|i| leaves.get(i)) else {
            return Err(Tampering::Inserted { seq: expected });
        };
        let leaf = if sealed::is_expired(line.as_bytes()) {
            *recorded
        } else {
            sealed::leaf_hash(line.as_bytes())
        };
        if leaf != *recorded {
            return Err(Tampering::Changed { seq: expected });
        }
        check_entry(expected, line.as_bytes(), &mut ledger)?;
        range
            .push(leaf)
            .ok_or(Tampering::Inserted { seq: expected })?;
    }
    if range.size() != header.to {
        return Err(Tampering::Removed { seq: range.size() });
    }
    // Retention records come after what they cover: an export that runs to
    // the checkpoint holds every record that can cover its entries.
    if header.to == cp.size {
        check_recorded(&ledger)?;
    }
    Ok(Verified {
        tree_size: cp.size,
        root_hash: STANDARD.encode(cp.root),
        checkpoints: 1,
        entries_checked: header.to.saturating_sub(header.from),
        coverage: Coverage::Complete {
            from: header.from,
            to: header.to,
        },
        retention: ledger.seen(),
    })
}
