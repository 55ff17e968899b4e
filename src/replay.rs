//! Replay: re-evaluates logged decisions against a candidate policy
//! directory and reports every one that would come out differently.
//!
//! Each logged entry holds the exact policy input (the evaluation time and
//! the authentication result included), so the replay is deterministic and
//! does not re-run authentication: a `failed` authentication still denies.
//! Entries stream through a bounded pipeline (a reader, one evaluator per
//! core, an in-order collector), so memory stays flat however long the log.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::decide::trim;
use crate::log::entry::{ConnectionDecisionRecord, ToolCallRecord};
use crate::log::query::Filter;
use crate::log::verify::{ExportHeader, ExportTrailer, FilteredTrailer};
use crate::log::{sealed, LogEntry, LogError, LogStore, Record};
use crate::model::{ConnectionInput, Decision, ToolCallDecision, ToolCallInput};
use crate::policy::verdict::{ConnectionVerdict, ToolCallVerdict};
use crate::policy::PolicyBundle;
use crate::tool_call::enforce;

/// Entries per unit of work handed to an evaluator.
const CHUNK: usize = 256;

/// A numbered run of stored entries: (chunk index, [(seq, bytes)]).
type Chunk = (usize, Vec<(u64, Vec<u8>)>);
/// A chunk's results, by chunk index.
type Done = (usize, Result<Vec<Replayed>, ReplayError>);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not a log entry: {message}")]
    Export {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("entry {seq} is not valid JSON of a log entry: {message}")]
    Entry { seq: u64, message: String },
}

/// Where the logged decisions come from.
pub enum ReplaySource {
    /// A stopped server's data directory.
    Log(LogStore),
    /// An NDJSON file written by `trustpath log export` (header line,
    /// entries, trailer line).
    Export(PathBuf),
}

/// How a replayed entry differs from what was logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    NewlyDenied,
    NewlyAllowed,
    /// Approved scopes gained one the logged decision did not approve.
    Widened,
    /// Approved scopes lost one the logged decision approved.
    Narrowed,
    Tools,
    Ttl,
    /// The candidate policy failed (error, undefined, malformed result).
    Error,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 7] = [
        ChangeKind::NewlyDenied,
        ChangeKind::NewlyAllowed,
        ChangeKind::Widened,
        ChangeKind::Narrowed,
        ChangeKind::Tools,
        ChangeKind::Ttl,
        ChangeKind::Error,
    ];

    /// The name used in `--fail-on` and in output.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::NewlyDenied => "newly-denied",
            ChangeKind::NewlyAllowed => "newly-allowed",
            ChangeKind::Widened => "widened",
            ChangeKind::Narrowed => "narrowed",
            ChangeKind::Tools => "tools",
            ChangeKind::Ttl => "ttl",
            ChangeKind::Error => "error",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The parts of a decision a replay compares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparable {
    pub allow: bool,
    /// `approved`/`reduced`/`denied` for connections, `allowed`/`denied` for tool calls.
    pub outcome: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_scopes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied_scopes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    pub reasons: Vec<String>,
}

impl Comparable {
    fn of_decision(d: &Decision) -> Self {
        Self {
            allow: d.allow,
            outcome: d.outcome.as_str().to_string(),
            approved_scopes: d.approved_scopes.as_slice().to_vec(),
            denied_scopes: d.denied_scopes.iter().map(|s| s.scope.clone()).collect(),
            tools: d.tools.as_slice().to_vec(),
            ttl_seconds: d.allow.then_some(d.ttl_seconds),
            reasons: d.reasons.clone(),
        }
    }

    fn of_tool_call(d: &ToolCallDecision) -> Self {
        Self {
            allow: d.allow,
            outcome: if d.allow { "allowed" } else { "denied" }.to_string(),
            approved_scopes: Vec::new(),
            denied_scopes: Vec::new(),
            tools: Vec::new(),
            ttl_seconds: None,
            reasons: d.reasons.clone(),
        }
    }
}

/// One logged entry that would come out differently.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub seq: u64,
    /// `connection_decision` or `tool_call`.
    pub kind: &'static str,
    pub decision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    pub session_id: Option<String>,
    pub client_id: Option<String>,
    pub changes: Vec<ChangeKind>,
    pub before: Comparable,
    pub after: Comparable,
}

/// Counts over a whole replay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Entries read, of every kind, matching the filters or not.
    pub entries_read: u64,
    /// Connection decisions and tool calls re-evaluated.
    pub replayed: u64,
    pub connection_decisions: u64,
    pub tool_calls: u64,
    pub unchanged: u64,
    pub changed: u64,
    /// Decisions that could not be replayed because retention redacted
    /// what the policy saw, and entries it expired: the log no longer
    /// holds their inputs.
    pub withheld: u64,
    /// Changed entries by kind of change (an entry can count under several).
    pub by_kind: BTreeMap<ChangeKind, u64>,
}

impl Summary {
    pub fn count(&self, kind: ChangeKind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    fn add(&mut self, outcome: &Replayed) {
        self.entries_read += 1;
        match outcome {
            Replayed::Skipped => return,
            Replayed::Withheld => {
                self.withheld += 1;
                return;
            }
            Replayed::Connection(None) | Replayed::ToolCall(None) => self.unchanged += 1,
            Replayed::Connection(Some(c)) | Replayed::ToolCall(Some(c)) => {
                self.changed += 1;
                for kind in &c.changes {
                    *self.by_kind.entry(*kind).or_default() += 1;
                }
            }
        }
        self.replayed += 1;
        match outcome {
            Replayed::Connection(_) => self.connection_decisions += 1,
            Replayed::ToolCall(_) => self.tool_calls += 1,
            Replayed::Skipped | Replayed::Withheld => {}
        }
    }
}

/// What replaying one entry gave.
enum Replayed {
    /// Not a kind that replays (grant issued, revocations), or filtered out.
    Skipped,
    /// Retention removed what the policy saw (or the whole entry).
    Withheld,
    Connection(Option<Change>),
    ToolCall(Option<Change>),
}

/// Replays every entry of `source` that matches `filter` against
/// `candidate` on `workers` threads. `on_change` sees each change in seq
/// order as soon as it is known.
pub fn replay(
    source: ReplaySource,
    candidate: &PolicyBundle,
    filter: &Filter,
    workers: usize,
    on_change: impl FnMut(&Change),
) -> Result<Summary, ReplayError> {
    replay_with(
        source,
        candidate,
        filter,
        workers,
        on_change,
        &crate::progress::Silent,
    )
}

/// [`replay`], reporting each entry read to `progress`.
pub fn replay_with(
    source: ReplaySource,
    candidate: &PolicyBundle,
    filter: &Filter,
    workers: usize,
    mut on_change: impl FnMut(&Change),
    progress: &dyn crate::progress::Progress,
) -> Result<Summary, ReplayError> {
    let workers = workers.max(1);
    let (chunks_tx, chunks_rx) = mpsc::sync_channel::<Chunk>(workers * 2);
    let chunks_rx = Arc::new(Mutex::new(chunks_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<Done>(workers * 2);

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_chunks(source, chunks_tx, progress));
        for _ in 0..workers {
            let (rx, tx) = (chunks_rx.clone(), done_tx.clone());
            scope.spawn(move || evaluate_chunks(&rx, &tx, candidate, filter));
        }
        drop(done_tx);
        let summary = collect_in_order(done_rx, &mut on_change);
        let read = reader.join().expect("replay reader panicked");
        read?;
        summary
    })
}

fn read_chunks(
    source: ReplaySource,
    tx: SyncSender<Chunk>,
    progress: &dyn crate::progress::Progress,
) -> Result<(), ReplayError> {
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut index = 0;
    let mut push = |item: (u64, Vec<u8>)| -> bool {
        progress.advance(1);
        chunk.push(item);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            // The receivers are gone only if the collector stopped on an error.
            if tx.send((index, full)).is_err() {
                return false;
            }
            index += 1;
        }
        true
    };
    match source {
        ReplaySource::Log(store) => {
            let size = store.next_seq()?;
            progress.start(Some(size));
            // One look-up per seq rather than a scan: sled keeps the pages a
            // scan passes in memory, so a scan grows with the log.
            for seq in 0..size {
                let bytes = store.entry(seq)?.ok_or(LogError::Corrupt)?;
                if !push((seq, bytes.to_vec())) {
                    return Ok(());
                }
            }
        }
        ReplaySource::Export(path) => {
            let read_err = |source| ReplayError::Read {
                path: path.clone(),
                source,
            };
            let export_err = |line: usize, message: String| ReplayError::Export {
                path: path.clone(),
                line,
                message,
            };
            let file = std::fs::File::open(&path).map_err(read_err)?;
            let mut lines = std::io::BufReader::new(file).lines();
            // Line 1 must be an export header: anything else (a query's
            // NDJSON, an empty file) is the wrong input, not zero entries.
            let header = match lines.next() {
                Some(line) => line.map_err(read_err)?,
                None => return Err(export_err(1, "the file is empty: not an export".into())),
            };
            let header: ExportHeader = serde_json::from_str(&header)
                .map_err(|e| export_err(1, format!("not a trustpath export header: {e}")))?;
            progress.start(header.to.checked_sub(header.from));
            // The last line is the trailer: hold one line back so that it is
            // never taken for an entry, and check it once the file ends.
            let mut held: Option<(usize, String)> = None;
            let mut entries = 0u64;
            for (i, line) in lines.enumerate() {
                let line = line.map_err(read_err)?;
                let number = i.saturating_add(2);
                if let Some((number, text)) = held.replace((number, line)) {
                    let seq = seq_of_line(&path, number, &text)?;
                    let expected = header.from.checked_add(entries);
                    if !header.filtered && Some(seq) != expected {
                        return Err(export_err(
                            number,
                            format!("entry {seq} out of place: a full export holds consecutive seqs from {}", header.from),
                        ));
                    }
                    entries = entries.saturating_add(1);
                    if !push((seq, text.into_bytes())) {
                        return Ok(());
                    }
                }
            }
            let Some((number, trailer)) = held else {
                return Err(export_err(2, "no trailer: the export is truncated".into()));
            };
            check_trailer(&header, entries, &trailer)
                .map_err(|message| export_err(number, message))?;
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send((index, chunk));
    }
    Ok(())
}

/// The export's last line must be its trailer, and account for exactly
/// the entries read: a truncated export has lost its trailer (or entries).
fn check_trailer(header: &ExportHeader, entries: u64, trailer: &str) -> Result<(), String> {
    let counted = if header.filtered {
        let trailer: FilteredTrailer = serde_json::from_str(trailer)
            .map_err(|e| format!("not the export's trailer (is the file truncated?): {e}"))?;
        trailer.inclusion.len()
    } else {
        let trailer: ExportTrailer = serde_json::from_str(trailer)
            .map_err(|e| format!("not the export's trailer (is the file truncated?): {e}"))?;
        let span = header.to.checked_sub(header.from);
        if span != Some(entries) {
            return Err(format!(
                "the header promises entries {}..{} but {entries} were read",
                header.from, header.to
            ));
        }
        trailer.leaf_hashes.len()
    };
    if u64::try_from(counted).ok() != Some(entries) {
        return Err(format!(
            "the trailer accounts for {counted} entries but {entries} were read"
        ));
    }
    Ok(())
}

fn seq_of_line(path: &Path, line: usize, text: &str) -> Result<u64, ReplayError> {
    sealed::claimed_seq(text.as_bytes()).ok_or_else(|| ReplayError::Export {
        path: path.to_path_buf(),
        line,
        message: "not a log entry: no seq".to_string(),
    })
}

fn evaluate_chunks(
    rx: &Mutex<Receiver<Chunk>>,
    tx: &SyncSender<Done>,
    candidate: &PolicyBundle,
    filter: &Filter,
) {
    loop {
        let next = rx.lock().map(|rx| rx.recv());
        let Ok(Ok((index, chunk))) = next else {
            return;
        };
        let results = chunk
            .iter()
            .map(|(seq, bytes)| {
                let unreadable = |message: String| ReplayError::Entry { seq: *seq, message };
                let opened = sealed::open_at(*seq, bytes).map_err(|e| unreadable(e.to_string()))?;
                if opened.expired {
                    return Ok(Replayed::Withheld);
                }
                let input_withheld = opened.withheld.iter().any(|w| w.path.starts_with("input"));
                let entry: LogEntry = opened.into_entry().map_err(|e| unreadable(e.to_string()))?;
                Ok(match replay_entry(&entry, candidate, filter) {
                    Replayed::Connection(_) | Replayed::ToolCall(_) if input_withheld => {
                        Replayed::Withheld
                    }
                    replayed => replayed,
                })
            })
            .collect();
        if tx.send((index, results)).is_err() {
            return;
        }
    }
}

/// Hands results on in chunk order, holding back only chunks that finished
/// early (at most the few in flight).
fn collect_in_order(
    rx: Receiver<Done>,
    on_change: &mut impl FnMut(&Change),
) -> Result<Summary, ReplayError> {
    let mut summary = Summary::default();
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (index, results) in rx {
        waiting.insert(index, results?);
        while let Some(results) = waiting.remove(&next) {
            for replayed in results {
                if let Replayed::Connection(Some(c)) | Replayed::ToolCall(Some(c)) = &replayed {
                    on_change(c);
                }
                summary.add(&replayed);
            }
            next += 1;
        }
    }
    Ok(summary)
}

fn replay_entry(entry: &LogEntry, candidate: &PolicyBundle, filter: &Filter) -> Replayed {
    if !filter.matches(entry) {
        return Replayed::Skipped;
    }
    match &entry.record {
        Record::ConnectionDecision(r) => {
            Replayed::Connection(replay_connection(entry.seq, r, candidate))
        }
        Record::ToolCall(r) => Replayed::ToolCall(replay_tool_call(entry.seq, r, candidate)),
        _ => Replayed::Skipped,
    }
}

/// The logged connection decision against the candidate's.
fn replay_connection(
    seq: u64,
    logged: &ConnectionDecisionRecord,
    candidate: &PolicyBundle,
) -> Option<Change> {
    let input = &logged.input;
    let verdict = ConnectionVerdict::evaluate(candidate, input);
    let failed = verdict.is_err();
    let typed = serde_json::from_value::<ConnectionInput>(input.clone());
    let unreadable = typed.is_err();
    let after = match typed {
        Ok(typed) => trim(
            &logged.decision.requested_scopes,
            typed.tools.as_deref(),
            &logged.authentication,
            verdict,
            &typed.limits,
            typed.session_revoked.as_deref(),
        ),
        Err(e) => Decision::deny_all(
            logged.decision.requested_scopes.clone(),
            vec![format!("logged input is not a connection input: {e}")],
        ),
    };
    // A revocation logged before the decision still covers it.
    let after = match &logged.overruled {
        Some(reason) => after.overruled(reason),
        None => after,
    };
    let before = Comparable::of_decision(&logged.decision);
    let after = Comparable::of_decision(&after);
    let mut changes = compare(&before, &after);
    if failed || unreadable {
        changes.push(ChangeKind::Error);
    }
    (!changes.is_empty()).then(|| Change {
        seq,
        kind: "connection_decision",
        decision_id: Some(logged.decision_id.clone()),
        tool_call_id: None,
        session_id: Some(logged.session_id.clone()),
        client_id: Some(logged.client_id.clone()),
        changes,
        before,
        after,
    })
}

/// The logged tool-call answer against the candidate's.
fn replay_tool_call(seq: u64, logged: &ToolCallRecord, candidate: &PolicyBundle) -> Option<Change> {
    let input = &logged.input;
    let verdict = ToolCallVerdict::evaluate(candidate, input);
    let failed = verdict.is_err();
    let after = match serde_json::from_value::<ToolCallInput>(input.clone()) {
        Ok(typed) => enforce(&typed, verdict),
        Err(e) => ToolCallDecision {
            allow: false,
            reasons: vec![format!("logged input is not a tool-call input: {e}")],
            required_scopes: Vec::new(),
        },
    };
    let after = match &logged.overruled {
        Some(reason) => after.overruled(reason),
        None => after,
    };
    let before = Comparable::of_tool_call(&logged.decision);
    let after = Comparable::of_tool_call(&after);
    let mut changes = compare(&before, &after);
    if failed {
        changes.push(ChangeKind::Error);
    }
    (!changes.is_empty()).then(|| Change {
        seq,
        kind: "tool_call",
        decision_id: logged.decision_id.clone(),
        tool_call_id: Some(logged.tool_call_id.clone()),
        session_id: logged.session_id.clone(),
        client_id: logged.client_id.clone(),
        changes,
        before,
        after,
    })
}

/// Every way `after` differs from `before` that a policy change matters for.
/// Reason wording alone is not a change.
fn compare(before: &Comparable, after: &Comparable) -> Vec<ChangeKind> {
    let mut changes = Vec::new();
    match (before.allow, after.allow) {
        (true, false) => changes.push(ChangeKind::NewlyDenied),
        (false, true) => changes.push(ChangeKind::NewlyAllowed),
        _ => {}
    }
    if before.allow && after.allow {
        let gained = after
            .approved_scopes
            .iter()
            .any(|s| !before.approved_scopes.contains(s));
        let lost = before
            .approved_scopes
            .iter()
            .any(|s| !after.approved_scopes.contains(s));
        if gained {
            changes.push(ChangeKind::Widened);
        }
        if lost {
            changes.push(ChangeKind::Narrowed);
        }
        let mut tools = (before.tools.clone(), after.tools.clone());
        tools.0.sort();
        tools.1.sort();
        if tools.0 != tools.1 {
            changes.push(ChangeKind::Tools);
        }
        if before.ttl_seconds != after.ttl_seconds {
            changes.push(ChangeKind::Ttl);
        }
    }
    changes
}
