//! The single log writer, with group commit and checkpoints.
//!
//! Every append goes through one thread, which gives entries gap-free seqs
//! in order. It takes whatever appends are waiting, writes them with their
//! Merkle hashes in one atomic batch, makes it durable once, and only then
//! answers each of them: many decisions share one fsync, and none is
//! answered before it is durable. (With an entry file the commit's sync is
//! that moment, and the engine's index follows on the store's indexer
//! thread; see `store/indexer.rs`.) The same thread signs checkpoints, so
//! a checkpoint always describes a tree that is on disk.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint::LogSigner;
use super::entry::{EntryReceipt, LogEntry, Record, Revokes};
use super::index::{self, Field};
use super::key_history::KeyHistory;
use super::merkle::{self, Hash};
use super::sealed;
use super::storage::{LogStore, StoredEntry};
use super::LogError;
use crate::trace_context::TraceContext;

/// Appends waiting beyond this many are taken in the next batch.
const MAX_BATCH: usize = 1024;

/// How often a batch is built again when another replica moved the log's
/// head first ([`LogError::HeadMoved`]); the engine holds the head on the
/// next try, so one is enough but for a failing database.
const HEAD_RETRIES: usize = 2;

/// When to sign a new checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// Sign once this many entries are not yet covered...
    pub every_entries: u64,
    /// ...or once the oldest uncovered entry is this old.
    pub every: Duration,
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub checkpoints: CheckpointPolicy,
    /// Answer an append only once it is flushed to disk.
    pub durable: bool,
    /// Appends that may wait for the writer; beyond them an append fails
    /// at once with [`LogError::Overloaded`] instead of queueing.
    pub max_queue: usize,
    /// The replica's name, recorded in each entry it writes (a fleet).
    pub node: Option<String>,
    /// Told about batches, checkpoints and storage failures (metrics).
    pub observer: Observer,
}

/// What the writer reports as it works; the server's metrics listen.
/// Called on the writer thread: implementations must be quick.
pub trait WriteObserver: Send + Sync {
    /// A batch of `entries` was written in `write` and flushed in `flush`.
    fn batch(&self, entries: usize, write: Duration, flush: Duration);
    /// A checkpoint for a tree of `size` entries was signed.
    fn checkpoint(&self, size: u64);
    /// The storage failed (an append, a flush, a recovery).
    fn storage_error(&self);
}

/// A [`WriteObserver`] handle; the default listens to nothing.
#[derive(Clone)]
pub struct Observer(Arc<dyn WriteObserver>);

impl Observer {
    pub fn new(observer: Arc<dyn WriteObserver>) -> Self {
        Self(observer)
    }
}

struct Unobserved;

impl WriteObserver for Unobserved {
    fn batch(&self, _: usize, _: Duration, _: Duration) {}
    fn checkpoint(&self, _: u64) {}
    fn storage_error(&self) {}
}

impl Default for Observer {
    fn default() -> Self {
        Self(Arc::new(Unobserved))
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

// Appends dominate the channel; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Message {
    Append(Append),
    /// Time has passed: sign if `CheckpointPolicy::every` says so.
    Tick,
}

/// Entries that are written together, at consecutive seqs, or not at all.
struct Append {
    entries: Vec<Pending>,
    /// Set by the writer when a revocation logged earlier overruled the
    /// allow in `entries[0]`.
    overruled: Option<String>,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// An entry waiting for its seq, sealed already by the request that made
/// it (so the writer, which every entry passes through in turn, only puts
/// the number in), unless sealing failed there: then the writer seals it
/// and reports the error.
struct Pending {
    /// `seq` is set by the writer.
    entry: LogEntry,
    sealed: Option<sealed::Unnumbered>,
}

impl Pending {
    fn new(entry: LogEntry) -> Self {
        let sealed = sealed::seal_unnumbered(&entry).ok();
        Self { entry, sealed }
    }

    /// The stored bytes of the entry at `seq`.
    fn seal(&mut self, seq: u64) -> Result<Vec<u8>, LogError> {
        self.entry.seq = seq;
        match &self.sealed {
            Some(sealed) => Ok(sealed.number(seq)),
            None => sealed::seal(&self.entry).map_err(|e| LogError::Encode(e.to_string())),
        }
    }
}

/// What an append produced.
#[derive(Debug)]
pub struct Appended {
    /// One per entry written, in order.
    pub receipts: Vec<EntryReceipt>,
    /// Why the allow appended was logged as a denial instead: a revocation
    /// covering it was logged first. Entries that followed from the allow
    /// (its grant's issuance) were not written.
    pub overruled: Option<String>,
}

/// How long a failing log waits between attempts to recover.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How soon entries are flushed when appends need not wait for it.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often a failing log says it is still failing.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Whether the log takes entries now: what readiness reports.
#[derive(Clone, Default)]
pub struct LogHealth(Arc<Mutex<Option<String>>>);

impl LogHealth {
    /// Why the log cannot take entries, while it cannot.
    pub fn problem(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, problem: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// A cheap handle to the writer thread.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Message>,
    health: LogHealth,
    node: Option<String>,
    durable: watch::Receiver<u64>,
}

/// Joins the writer thread once every [`LogWriter`] is dropped.
pub struct WriterThread(JoinHandle<()>);

impl WriterThread {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl LogWriter {
    pub fn start(
        store: LogStore,
        signer: LogSigner,
        options: WriterOptions,
    ) -> Result<(Self, WriterThread), LogError> {
        let health = LogHealth::default();
        let node = options.node.clone();
        let max_queue = options.max_queue.max(1);
        let mut state = WriterState::open(store, signer, options, health.clone())?;
        let durable = state.durable_size.subscribe();
        // Entries written before a crash have no checkpoint yet: cover them now.
        state.checkpoint_if(|uncovered, _| uncovered > 0);
        let (tx, rx) = mpsc::channel(max_queue);
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| LogError::Writer(e.to_string()))?;
        Ok((
            Self {
                tx,
                health,
                node,
                durable,
            },
            WriterThread(handle),
        ))
    }

    /// Whether the log takes entries now.
    pub fn health(&self) -> &LogHealth {
        &self.health
    }

    /// The log's size as far as it is durable (flushed), as this writer
    /// knows it: what may leave the box without ever being taken back.
    pub fn durable_size(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Appends waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Appends a record; returns once it is stored (and flushed, if durable).
    pub async fn append(
        &self,
        time: String,
        policy_revision: String,
        record: Record,
    ) -> Result<EntryReceipt, LogError> {
        let mut appended = self.append_all(time, policy_revision, vec![record]).await?;
        appended.receipts.pop().ok_or(LogError::Corrupt)
    }

    /// Appends records at consecutive seqs in one atomic write: all of them
    /// are stored, or none.
    ///
    /// When the first record allows something a revocation already logged
    /// covers, the writer (which orders every entry) logs it as a denial
    /// and drops the records that followed from the allow: no allow is
    /// ever logged after the revocation that covers it.
    pub async fn append_all(
        &self,
        time: String,
        policy_revision: String,
        records: Vec<Record>,
    ) -> Result<Appended, LogError> {
        let (reply, answer) = oneshot::channel();
        let trace_id = TraceContext::current_trace_id();
        let entries = records
            .into_iter()
            .map(|record| {
                Pending::new(LogEntry {
                    seq: 0,
                    time: time.clone(),
                    policy_revision: policy_revision.clone(),
                    node: self.node.clone(),
                    trace_id: trace_id.clone(),
                    record,
                })
            })
            .collect();
        let append = Message::Append(Append {
            entries,
            overruled: None,
            reply,
        });
        self.tx.try_send(append).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LogError::Overloaded {
                waiting: self.tx.max_capacity(),
            },
            mpsc::error::TrySendError::Closed(_) => {
                LogError::Writer("log writer has stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| LogError::Writer("log writer dropped the append".into()))?
    }

    /// Lets a time-based checkpoint happen when no appends arrive.
    pub async fn tick(&self) {
        // A full queue will wake the writer anyway.
        let _ = self.tx.try_send(Message::Tick);
    }
}

/// Revocations in the batch being written: not yet readable from the store.
#[derive(Default)]
struct BatchRevocations {
    sessions: HashSet<String>,
    grants: HashSet<String>,
}

/// Revocations logged, by (field, session id or grant jti): their seq.
type Revocations = HashMap<(Field, String), u64>;

/// Why an allow resting on `session` (and `grant`) may not be logged, if
/// a revocation logged before (or earlier in this batch) covers it.
fn revocation_of(
    session: &str,
    grant: Option<&str>,
    logged: &Result<Revocations, LogError>,
    in_batch: &BatchRevocations,
) -> Result<Option<String>, LogError> {
    let logged = logged
        .as_ref()
        .map_err(|e| LogError::Storage(e.to_string()))?;
    let seq_of = |field, value: &str| logged.get(&(field, value.to_string())).copied();
    if in_batch.sessions.contains(session) {
        return Ok(Some("session was revoked before this was logged".into()));
    }
    if let Some(seq) = seq_of(Field::RevokedSession, session) {
        return Ok(Some(format!(
            "session was revoked (log entry {seq}) before this was logged"
        )));
    }
    let Some(jti) = grant else { return Ok(None) };
    if in_batch.grants.contains(jti) {
        return Ok(Some("grant was revoked before this was logged".into()));
    }
    Ok(seq_of(Field::RevokedGrant, jti)
        .map(|seq| format!("grant was revoked (log entry {seq}) before this was logged")))
}

/// The storage failed and the writer is waiting for it to recover.
struct Failing {
    reason: String,
    since: Instant,
    last_attempt: Instant,
    last_report: Instant,
    /// Appends refused since the last report.
    refused: u64,
}

struct WriterState {
    store: LogStore,
    signer: LogSigner,
    policy: CheckpointPolicy,
    durable: bool,
    size: u64,
    /// (size, root) of the last checkpoint signed.
    checkpointed: (u64, Hash),
    /// When the first entry not covered by a checkpoint was written.
    uncovered_since: Option<Instant>,
    failing: Option<Failing>,
    health: LogHealth,
    /// When entries were first written and not yet flushed (non-durable mode).
    unflushed_since: Option<Instant>,
    /// The size last known flushed: published after every flush.
    durable_size: watch::Sender<u64>,
    observer: Observer,
    /// The log's keys over time: read at open and after a recovery, and
    /// again whenever a batch logs a signing key (a rotation's handover).
    history: KeyHistory,
    /// The right edge of the tree as the last batch stored it: the next
    /// batch's left siblings, without a read (a round trip in a fleet).
    /// Emptied whenever the store fails, since a failed flush may lose it.
    frontier: merkle::BatchHashes,
}

/// The log's checkpoint keys over time, read from its `signing_key`
/// entries. Refuses a key that is not the log's own.
fn key_history(store: &LogStore, signer: &LogSigner) -> Result<KeyHistory, LogError> {
    // Only a key the log does not know gets the hint; a store that cannot
    // be read says so as it is.
    KeyHistory::load(store, signer.verifier()).map_err(|e| match e {
        LogError::Checkpoint(why) => LogError::Checkpoint(format!(
            "{why}; a log key is changed with `trustpath keys rotate --log`"
        )),
        other => other,
    })
}

/// The log's size and its latest checkpoint, as stored.
/// Refuses a key that is not the log's current one (see `key_history`):
/// a key is changed with `trustpath keys rotate --log`, whose handover the
/// old key signs.
fn stored_state(
    store: &LogStore,
    signer: &LogSigner,
    history: &KeyHistory,
) -> Result<(u64, (u64, Hash)), LogError> {
    let size = store.next_seq()?;
    let checkpointed = latest_checkpoint(store, history)?;
    // The key that signs the next checkpoint: over what is uncovered now,
    // or over the next entry. During a rotation that is still the old key
    // (it signs the handover); after it, the new one.
    let next = if checkpointed.0 < size {
        size
    } else {
        size + 1
    };
    let due = history.verifier_for(next).vkey();
    if due != signer.verifier().vkey() {
        return Err(LogError::Checkpoint(format!(
            "the log's key for its next checkpoint is {due}, not this server's; a log key is \
             changed with `trustpath keys rotate --log` (after a crash during one, the new \
             key is the key file's name with `.pem.new`)"
        )));
    }
    Ok((size, checkpointed))
}

/// (size, root) of the latest stored checkpoint, its signature checked.
fn latest_checkpoint(store: &LogStore, history: &KeyHistory) -> Result<(u64, Hash), LogError> {
    match store.latest_checkpoint()? {
        Some(note) => {
            let cp = history
                .open(&note)
                .map_err(|e| LogError::Checkpoint(format!("latest stored checkpoint: {e}")))?;
            Ok((cp.size, cp.root))
        }
        None => Ok((0, merkle::empty_root())),
    }
}

impl WriterState {
    fn open(
        store: LogStore,
        signer: LogSigner,
        options: WriterOptions,
        health: LogHealth,
    ) -> Result<Self, LogError> {
        let history = key_history(&store, &signer)?;
        let (size, checkpointed) = stored_state(&store, &signer, &history)?;
        Ok(Self {
            store,
            signer,
            policy: options.checkpoints,
            durable: options.durable,
            size,
            checkpointed,
            uncovered_since: None,
            failing: None,
            health,
            unflushed_since: None,
            // What the store holds at open survived whatever came before.
            durable_size: watch::channel(size).0,
            observer: options.observer,
            history,
            frontier: merkle::BatchHashes::default(),
        })
    }

    /// The storage failed: refuse appends until it recovers. Said once
    /// now, then every [`REPORT_EVERY`] while it lasts.
    fn fail(&mut self, e: &LogError) {
        self.frontier = merkle::BatchHashes::default();
        self.observer.0.storage_error();
        let reason = e.to_string();
        if self.failing.is_none() {
            tracing::error!(error = %reason, "decision log storage failed; refusing appends until it recovers");
            let now = Instant::now();
            self.failing = Some(Failing {
                reason: reason.clone(),
                since: now,
                last_attempt: now,
                last_report: now,
                refused: 0,
            });
        } else if let Some(f) = self.failing.as_mut() {
            f.reason = reason.clone();
            f.last_attempt = Instant::now();
        }
        self.health
            .set(Some(format!("decision log storage failed: {reason}")));
    }

    /// Whether the log takes appends now: true when healthy, or when a
    /// recovery due now succeeds.
    fn writable(&mut self) -> bool {
        let Some(f) = self.failing.as_mut() else {
            return true;
        };
        if f.last_report.elapsed() >= REPORT_EVERY {
            tracing::error!(
                error = %f.reason,
                refused = f.refused,
                failing_for_s = f.since.elapsed().as_secs(),
                "decision log storage still failing"
            );
            f.last_report = Instant::now();
            f.refused = 0;
        }
        if f.last_attempt.elapsed() < RETRY_EVERY {
            return false;
        }
        self.try_recover()
    }

    /// Tries to recover a failing log now; true when it is writable again.
    fn try_recover(&mut self) -> bool {
        if let Some(f) = self.failing.as_mut() {
            f.last_attempt = Instant::now();
        }
        match self.recover() {
            Ok(()) => {
                if let Some(f) = self.failing.take() {
                    tracing::warn!(
                        failing_for_ms = f.since.elapsed().as_millis() as u64,
                        tree_size = self.size,
                        "decision log storage recovered"
                    );
                }
                self.health.set(None);
                true
            }
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }

    /// Reopens the storage, takes the log as it stands there (appends that
    /// were not flushed may be gone), and proves it writable again by
    /// storing a checkpoint that covers every entry it holds.
    fn recover(&mut self) -> Result<(), LogError> {
        self.frontier = merkle::BatchHashes::default();
        self.store.recover()?;
        self.history = key_history(&self.store, &self.signer)?;
        let (size, checkpointed) = stored_state(&self.store, &self.signer, &self.history)?;
        self.size = size;
        self.checkpointed = checkpointed;
        self.uncovered_since = None;
        self.unflushed_since = None;
        self.sign_checkpoint()?;
        self.published_durable();
        Ok(())
    }

    /// Tells readers (sinks) how far the log is durable now.
    fn published_durable(&self) {
        self.durable_size.send_if_modified(|size| {
            let changed = *size != self.size;
            *size = self.size;
            changed
        });
    }

    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            let mut message = Some(first);
            while let Some(m) = message.take() {
                if let Message::Append(append) = m {
                    batch.push(append);
                }
                if batch.len() < MAX_BATCH {
                    message = rx.try_recv().ok();
                }
            }
            if !self.writable() {
                self.refuse(&mut batch);
                continue;
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            let policy = self.policy;
            self.checkpoint_if(|uncovered, since| {
                uncovered >= policy.every_entries
                    || (uncovered > 0 && since.is_some_and(|t| t.elapsed() >= policy.every))
            });
            // Not durable: flushed within about a second all the same.
            if self
                .unflushed_since
                .is_some_and(|t| t.elapsed() >= FLUSH_EVERY)
            {
                match self.store.flush() {
                    Ok(()) => {
                        self.unflushed_since = None;
                        self.published_durable();
                    }
                    Err(e) => self.fail(&e),
                }
            }
        }
        // Shutting down: the last checkpoint covers everything written.
        if self.failing.is_some() && !self.try_recover() {
            return;
        }
        self.checkpoint_if(|uncovered, _| uncovered > 0);
        match self.store.flush() {
            Ok(()) => self.published_durable(),
            Err(e) => tracing::error!(error = %e, "final decision log flush failed"),
        }
    }

    /// Answers every append of `batch` with the failure in force.
    fn refuse(&mut self, batch: &mut Vec<Append>) {
        let Some(f) = self.failing.as_mut() else {
            return;
        };
        f.refused = f.refused.saturating_add(batch.len() as u64);
        let why = format!(
            "decision log storage is failing ({}); retry shortly",
            f.reason
        );
        for append in batch.drain(..) {
            let _ = append.reply.send(Err(LogError::Writer(why.clone())));
        }
    }

    fn commit(&mut self, batch: &mut Vec<Append>) {
        let fail_all = |batch: &mut Vec<Append>, why: String| {
            for append in batch.drain(..) {
                let _ = append.reply.send(Err(LogError::Writer(why.clone())));
            }
        };
        let started = Instant::now();
        let written = self.at_head(|writer| writer.write_batch(batch));
        let (receipts, size) = match written {
            Ok(written) => written,
            Err(e) => {
                // Nothing of the batch was written (one atomic batch): its
                // seqs are taken by the next one, so the log stays gap-free.
                self.fail(&e);
                return fail_all(batch, e.to_string());
            }
        };
        // Committed: these seqs are taken, flushed or not, so later entries
        // never overwrite them (their index keys would point at strangers).
        self.size = size;
        let logs_a_key = batch
            .iter()
            .flat_map(|a| &a.entries)
            .any(|e| matches!(e.entry.record, Record::SigningKey(_)));
        if logs_a_key {
            match key_history(&self.store, &self.signer) {
                Ok(history) => self.history = history,
                Err(e) => self.fail(&e),
            }
        }
        self.uncovered_since.get_or_insert_with(Instant::now);
        let written = started.elapsed();
        if !self.durable {
            self.unflushed_since.get_or_insert_with(Instant::now);
        } else if self.store.durable_on_commit() {
            // Durable already (a fleet's database; an entry file, synced by
            // the commit): the engine's own flush can wait for the tick.
            self.unflushed_since.get_or_insert_with(Instant::now);
            self.published_durable();
        } else if let Err(e) = self.store.flush() {
            // Not durable, so not acknowledged. Recovery takes the log as the
            // storage kept it, with or without this batch.
            self.fail(&e);
            return fail_all(batch, format!("not flushed: {e}"));
        } else {
            self.published_durable();
        }
        let entries = batch.iter().map(|a| a.entries.len()).sum();
        self.observer
            .0
            .batch(entries, written, started.elapsed() - written);
        let mut receipts = receipts.into_iter();
        for append in batch.drain(..) {
            let mine = receipts.by_ref().take(append.entries.len()).collect();
            let _ = append.reply.send(Ok(Appended {
                receipts: mine,
                overruled: append.overruled,
            }));
        }
    }

    /// Turns an allow whose session or grant is revoked (in the store, or
    /// earlier in this batch) into a denial, and drops what followed from
    /// it. Unreadable revocation state denies too (fail closed).
    fn overrule_revoked(
        &self,
        append: &mut Append,
        logged: &Result<Revocations, LogError>,
        in_batch: &mut BatchRevocations,
    ) {
        let Some(first) = append.entries.first_mut() else {
            return;
        };
        if let Some((session, grant)) = first.entry.record.allow_rests_on() {
            let reason = match revocation_of(session, grant, logged, in_batch) {
                Ok(None) => None,
                Ok(Some(reason)) => Some(reason),
                Err(e) => Some(format!("revocation state could not be read: {e}")),
            };
            if let Some(reason) = reason {
                first.entry.record.overrule(&reason);
                // What the request sealed is an allow no longer.
                first.sealed = None;
                append.entries.truncate(1);
                append.overruled = Some(reason);
            }
        }
        for pending in &append.entries {
            match pending.entry.record.revokes() {
                Some(Revokes::Session(id)) => in_batch.sessions.insert(id.to_string()),
                Some(Revokes::Grant(jti)) => in_batch.grants.insert(jti.to_string()),
                None => false,
            };
        }
    }

    /// The revocations already logged of every session and grant an allow
    /// in `batch` rests on: one look-up for the batch.
    fn logged_revocations(&self, batch: &[Append]) -> Result<Revocations, LogError> {
        let mut keys = Vec::new();
        for append in batch {
            if let Some((session, grant)) = append
                .entries
                .first()
                .and_then(|e| e.entry.record.allow_rests_on())
            {
                keys.push((Field::RevokedSession, session));
                if let Some(jti) = grant {
                    keys.push((Field::RevokedGrant, jti));
                }
            }
        }
        if keys.is_empty() {
            return Ok(Revocations::new());
        }
        self.store.oldest_postings(&keys)
    }

    /// Writes the batch at the log's head; returns a receipt per entry and
    /// the log's size after it.
    fn write_batch(&mut self, batch: &mut [Append]) -> Result<(Vec<EntryReceipt>, u64), LogError> {
        let mut hasher = std::mem::take(&mut self.frontier);
        let mut head = self.store.begin()?;
        // Read at the head this batch commits at (see `log::storage`): in
        // a fleet, no replica can log a revocation between this check and
        // this batch.
        let logged = self.logged_revocations(batch);
        let mut in_batch = BatchRevocations::default();
        for append in batch.iter_mut() {
            self.overrule_revoked(append, &logged, &mut in_batch);
        }
        let first = head.next_seq();
        let count: usize = batch.iter().map(|a| a.entries.len()).sum();
        let entries = batch.iter_mut().flat_map(|a| a.entries.iter_mut());
        let tree_size = first + count as u64;
        let mut encoded = Vec::with_capacity(count);
        for (seq, pending) in (first..).zip(entries) {
            let bytes = pending.seal(seq)?;
            let leaf = sealed::leaf_hash(&bytes);
            let hashes = hasher.append(&self.store, seq, leaf)?;
            let derived = index::derive(&pending.entry);
            encoded.push((seq, bytes, leaf, hashes, derived));
        }
        let stored: Vec<StoredEntry<'_>> = encoded
            .iter()
            .map(|(seq, bytes, _, hashes, derived)| StoredEntry {
                seq: *seq,
                bytes,
                decision_id: derived.decision_id.as_deref(),
                hashes,
                postings: &derived.postings,
                time_micros: derived.time_micros,
            })
            .collect();
        head.append(&stored)?;
        head.commit()?;
        self.frontier = hasher.frontier(tree_size);
        let receipts = encoded
            .iter()
            .map(|(seq, _, leaf, ..)| EntryReceipt::new(*seq, leaf, tree_size))
            .collect();
        Ok((receipts, tree_size))
    }

    /// Signs a checkpoint for the current size when `due(uncovered entries,
    /// uncovered since)` says so, and only if it is consistent with the last one.
    fn checkpoint_if(&mut self, due: impl FnOnce(u64, Option<Instant>) -> bool) {
        let uncovered = self.size.saturating_sub(self.checkpointed.0);
        if !due(uncovered, self.uncovered_since) {
            return;
        }
        match self.sign_checkpoint() {
            Ok(()) => self.uncovered_since = None,
            Err(e) => self.fail(&e),
        }
    }

    /// Signs a checkpoint over the whole log as it stands at its head, and
    /// only if it extends the latest one stored (which, in a fleet, another
    /// replica may have signed since).
    fn sign_checkpoint(&mut self) -> Result<(), LogError> {
        self.at_head(Self::sign_checkpoint_at_head)
    }

    /// Runs `write`, which begins a batch at the log's head, again while
    /// another replica moved the head first (nothing was stored); the
    /// engine holds the head on the next try.
    fn at_head<T>(
        &mut self,
        mut write: impl FnMut(&mut Self) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let mut written = write(self);
        for _ in 0..HEAD_RETRIES {
            if !matches!(written, Err(LogError::HeadMoved { .. })) {
                break;
            }
            written = write(self);
        }
        written
    }

    fn sign_checkpoint_at_head(&mut self) -> Result<(), LogError> {
        let mut head = self.store.begin()?;
        let size = head.next_seq();
        let (_, (old_size, old_root)) = match stored_state(&self.store, &self.signer, &self.history)
        {
            Ok(state) => state,
            // Keys this writer has not read yet: read them again.
            Err(_) => {
                self.history = key_history(&self.store, &self.signer)?;
                stored_state(&self.store, &self.signer, &self.history)?
            }
        };
        if old_size > size && self.store.shared() {
            // Another replica appended and signed past where this one
            // left the head: sign again at the head as it is now.
            return Err(LogError::HeadMoved { expected: size });
        }
        if size == 0 {
            drop(head);
            return self.store.flush();
        }
        let root = merkle::root(&self.store, size)?;
        let proof = if old_size == 0 {
            Vec::new()
        } else {
            merkle::consistency_proof(&self.store, old_size, size)?
        };
        if !merkle::verify_consistency(old_size, size, &proof, &old_root, &root) {
            return Err(LogError::Checkpoint(format!(
                "tree of size {size} is not consistent with the checkpoint at size {old_size}"
            )));
        }
        let note = self.signer.sign(size, root);
        head.put_checkpoint(size, &note)?;
        head.commit()?;
        self.store.flush()?;
        self.size = size;
        self.checkpointed = (size, root);
        self.published_durable();
        self.observer.0.checkpoint(size);
        Ok(())
    }
}
