//! Searching the decision log through its secondary indexes: combinable
//! filters (AND), newest first, paged by a cursor that neither skips nor
//! repeats an entry while new ones are appended (new entries have higher seqs).
#![deny(clippy::arithmetic_side_effects)]

use super::entry::LogEntry;
use super::index::{self, Field};
use super::sealed;
use super::storage::{LogStore, Scan};
use super::LogError;

/// Which scope list a scope filter looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeState {
    Requested,
    Approved,
    Denied,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub session: Option<String>,
    pub client: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub scope: Option<(String, ScopeState)>,
    pub outcome: Option<String>,
    pub kind: Option<String>,
    /// A grant's `jti`.
    pub grant: Option<String>,
    pub tool: Option<String>,
    /// Event time bounds, µs since the epoch: since inclusive, until exclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A filter parameter that is unknown or has a value it cannot take.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FilterError {
    /// The parameter's name, as given (`session_id`, `since`, …).
    pub field: String,
    pub message: String,
}

impl Filter {
    /// A filter from named parameters, as `GET /v1/decisions` and the CLI
    /// name them (`session_id`, `client_id`, `subject`, `issuer`, `scope`,
    /// `scope_state`, `outcome`, `kind`, `grant`, `tool`, `since`,
    /// `until`): every name known, every value checked.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Filter, FilterError> {
        let bad = |field: &str, message: String| FilterError {
            field: field.to_string(),
            message,
        };
        let time = |field: &str, value: &str| {
            index::micros(value).ok_or_else(|| {
                bad(
                    field,
                    format!("{field} must be an RFC 3339 time, got {value:?}"),
                )
            })
        };
        let mut filter = Filter::default();
        let mut scope = None;
        let mut scope_state = None;
        for (name, value) in params {
            let v = Some(value.to_string());
            match name {
                "session_id" => filter.session = v,
                "client_id" => filter.client = v,
                "subject" => filter.subject = v,
                "issuer" => filter.issuer = v,
                "scope" => scope = v,
                "scope_state" => {
                    scope_state = Some(match value {
                        "requested" => ScopeState::Requested,
                        "approved" => ScopeState::Approved,
                        "denied" => ScopeState::Denied,
                        _ => {
                            return Err(bad(
                                name,
                                "scope_state must be requested, approved or denied".into(),
                            ))
                        }
                    })
                }
                "outcome" => {
                    if !["approved", "reduced", "denied", "allowed"].contains(&value) {
                        return Err(bad(
                            name,
                            "outcome must be approved, reduced, denied or (tool calls) allowed"
                                .into(),
                        ));
                    }
                    filter.outcome = v
                }
                "kind" => {
                    if !super::entry::KINDS.contains(&value) {
                        return Err(bad(
                            name,
                            format!("kind must be one of {}", super::entry::KINDS.join(", ")),
                        ));
                    }
                    filter.kind = v
                }
                "grant" => filter.grant = v,
                "tool" => filter.tool = v,
                "since" => filter.since = Some(time(name, value)?),
                "until" => filter.until = Some(time(name, value)?),
                _ => return Err(bad(name, format!("unknown filter {name:?}"))),
            }
        }
        if scope_state.is_some() && scope.is_none() {
            return Err(bad("scope_state", "scope_state needs scope".into()));
        }
        filter.scope = scope.map(|s| (s, scope_state.unwrap_or(ScopeState::Requested)));
        Ok(filter)
    }

    /// The equality filters as the entries state them, most selective
    /// first (a session names few entries): what [`Filter::matches`] judges.
    fn stated(&self) -> Vec<(Field, &str)> {
        let scope = self.scope.as_ref().map(|(s, state)| {
            let field = match state {
                ScopeState::Requested => Field::RequestedScope,
                ScopeState::Approved => Field::ApprovedScope,
                ScopeState::Denied => Field::DeniedScope,
            };
            (field, s.as_str())
        });
        [
            self.grant.as_deref().map(|v| (Field::Grant, v)),
            self.session.as_deref().map(|v| (Field::Session, v)),
            self.subject.as_deref().map(|v| (Field::Subject, v)),
            self.client.as_deref().map(|v| (Field::Client, v)),
            self.issuer.as_deref().map(|v| (Field::Issuer, v)),
            scope,
            self.tool.as_deref().map(|v| (Field::Tool, v)),
            self.outcome.as_deref().map(|v| (Field::Outcome, v)),
            self.kind.as_deref().map(|v| (Field::Kind, v)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The equality filters as the index answers them, in the same order:
    /// a requested scope is one approved or denied, a value that is not
    /// posted (`index::is_posted`) is read from the entry.
    fn terms(&self) -> Vec<Term<'_>> {
        self.stated()
            .into_iter()
            .map(|(field, value)| match field {
                Field::RequestedScope => Term::Posted {
                    fields: vec![Field::ApprovedScope, Field::DeniedScope],
                    value,
                },
                _ if !index::is_posted(field, value) => Term::Stated(field, value),
                _ => Term::Posted {
                    fields: vec![field],
                    value,
                },
            })
            .collect()
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.stated().is_empty() && self.since.is_none() && self.until.is_none()
    }

    fn time_ok(&self, micros: Option<i64>) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(t) = micros else { return false };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// Whether `entry` matches, judged from the entry itself: the reference
    /// the indexes must agree with.
    pub fn matches(&self, entry: &LogEntry) -> bool {
        let has = index::stated(entry);
        self.stated()
            .iter()
            .all(|(f, v)| has.iter().any(|(field, value)| field == f && value == v))
            && self.time_ok(index::micros(&entry.time))
    }
}

/// How one equality filter is answered.
#[derive(Debug, Clone)]
enum Term<'a> {
    /// Entries posted under any of `fields` with `value`.
    Posted { fields: Vec<Field>, value: &'a str },
    /// Entries stating `field = value`, which is not posted: each entry is
    /// read (this is for values most entries have, so few are skipped).
    Stated(Field, &'a str),
}

impl Term<'_> {
    /// Whether entry `seq` satisfies this term.
    fn holds(&self, store: &LogStore, seq: u64) -> Result<bool, LogError> {
        match self {
            Term::Posted { fields, value } => {
                for field in fields {
                    if store.has_posting(*field, value, seq)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Term::Stated(field, value) => {
                let Some(bytes) = store.entry(seq)? else {
                    return Ok(false);
                };
                if sealed::is_expired(&bytes) {
                    return Ok(false);
                }
                Ok(index::stated(&decode(seq, &bytes)?)
                    .iter()
                    .any(|(f, v)| f == field && v == value))
            }
        }
    }
}

/// The union of descending seq scans, descending, each seq once.
struct Union<'a> {
    scans: Vec<std::iter::Peekable<Scan<'a, u64>>>,
}

impl Iterator for Union<'_> {
    type Item = Result<u64, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut top: Option<u64> = None;
        for scan in &mut self.scans {
            match scan.peek() {
                Some(Err(_)) => return scan.next(),
                Some(Ok(seq)) => top = Some(top.map_or(*seq, |t| t.max(*seq))),
                None => {}
            }
        }
        let top = top?;
        for scan in &mut self.scans {
            if matches!(scan.peek(), Some(Ok(seq)) if *seq == top) {
                scan.next();
            }
        }
        Some(Ok(top))
    }
}

/// Entries posted under any of `fields` with `value`, below `before`,
/// newest first.
fn posted<'s>(
    store: &'s LogStore,
    fields: &[Field],
    value: &str,
    before: Option<u64>,
) -> Scan<'s, u64> {
    if let [field] = fields {
        return store.postings_descending(*field, value, before);
    }
    Box::new(Union {
        scans: fields
            .iter()
            .map(|f| store.postings_descending(*f, value, before).peekable())
            .collect(),
    })
}

/// One page of results, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub seqs: Vec<u64>,
    /// Pass back as `before` for the next page; `None` when there is no more.
    pub next_cursor: Option<u64>,
}

/// Runs `filter`, returning up to `limit` seqs below `before` (newest first).
pub fn query(
    store: &LogStore,
    filter: &Filter,
    limit: usize,
    before: Option<u64>,
) -> Result<Page, LogError> {
    let mut terms = filter.terms();
    // Drive from the most selective index; without one, from the entries.
    let driver = terms
        .iter()
        .position(|t| matches!(t, Term::Posted { .. }))
        .map(|i| terms.remove(i));
    let candidates = match driver {
        Some(Term::Posted { fields, value }) => posted(store, &fields, value, before),
        _ => store.seqs_descending(before),
    };
    let mut seqs = Vec::new();
    for seq in candidates {
        let seq = seq?;
        let mut ok = true;
        for term in &terms {
            if !term.holds(store, seq)? {
                ok = false;
                break;
            }
        }
        if ok && filter.time_ok(store.time_of(seq)?) {
            seqs.push(seq);
            if seqs.len() == limit {
                break;
            }
        }
    }
    let next_cursor = (seqs.len() == limit)
        .then(|| seqs.last().copied())
        .flatten();
    Ok(Page { seqs, next_cursor })
}

/// Up to `limit` entries posted under `field = value`, newest first.
pub fn postings(
    store: &LogStore,
    field: Field,
    value: &str,
    limit: usize,
) -> Result<Vec<u64>, LogError> {
    store
        .postings_descending(field, value, None)
        .take(limit)
        .collect()
}

/// The newest entry posted under `field = value`.
pub fn newest_posting(
    store: &LogStore,
    field: Field,
    value: &str,
) -> Result<Option<u64>, LogError> {
    Ok(store.newest_posting(field, value)?.map(|(seq, _)| seq))
}

/// The oldest entry posted under `field = value`.
pub fn oldest_posting(
    store: &LogStore,
    field: Field,
    value: &str,
) -> Result<Option<u64>, LogError> {
    store.oldest_posting(field, value)
}

/// Entry `seq`, decoded; a field retention redacted reads as absent.
pub fn entry(store: &LogStore, seq: u64) -> Result<LogEntry, LogError> {
    let bytes = store.entry(seq)?.ok_or(LogError::Corrupt)?;
    decode(seq, &bytes)
}

/// Entry `seq`'s stored bytes, decoded.
fn decode(seq: u64, bytes: &[u8]) -> Result<LogEntry, LogError> {
    let opened =
        sealed::open(bytes).map_err(|e| LogError::Malformed(format!("entry {seq}: {e}")))?;
    opened
        .into_entry()
        .map_err(|e| LogError::Malformed(format!("entry {seq}: {e}")))
}

/// Entry `seq` as JSON for a reader, with its leaf hash: every disclosed
/// field in place, a redacted one as its seal, an expired entry as
/// `{"seq", "expired": true}`. `None` when the log has no such entry.
pub fn entry_document(store: &LogStore, seq: u64) -> Result<Option<serde_json::Value>, LogError> {
    use base64::Engine as _;
    let Some(bytes) = store.entry(seq)? else {
        return Ok(None);
    };
    let opened = sealed::open_at(seq, &bytes)
        .map_err(|e| LogError::Malformed(format!("entry {seq}: {e}")))?;
    let leaf = if opened.expired {
        store.subtree_hash(0, seq)?
    } else {
        sealed::leaf_hash(&bytes)
    };
    let mut value = opened.value;
    value["leaf_hash"] =
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(leaf));
    Ok(Some(value))
}
