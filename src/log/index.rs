//! Secondary indexes of the decision log: what an entry is found by. The
//! engine writes them in the same atomic append as the entry they point
//! to, so they are never out of step after a crash; `log verify` derives
//! them again from the entries ([`derive`]) and compares.

use super::entry::{LogEntry, Record};
use super::sealed;
use super::storage::Posting;
use crate::model::ConnectionInput;

/// The indexed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Session,
    Client,
    Subject,
    Issuer,
    RequestedScope,
    ApprovedScope,
    DeniedScope,
    Outcome,
    Kind,
    /// A grant's `jti`: its issuance, tool calls made with it, revocations.
    Grant,
    Tool,
    /// Lifecycle look-ups that must stay cheap however long a session or a
    /// grant's list of tool calls grows: each is posted only by the rare
    /// entry it names.
    /// A session's grant issuances (by session id).
    SessionGrant,
    /// A grant's own revocation (by jti).
    RevokedGrant,
    /// A session's revocation (by session id).
    RevokedSession,
    /// A client's decisions that saw an identity document (by client id);
    /// the key's value is the document's SHA-256, so the previous document
    /// of a client is one read away.
    ClientDocument,
    /// Signing keys put in use, by purpose (`grant`, `log`).
    SigningKey,
}

impl Field {
    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Field::Session => "session",
            Field::Client => "client",
            Field::Subject => "subject",
            Field::Issuer => "issuer",
            Field::RequestedScope => "requested_scope",
            Field::ApprovedScope => "approved_scope",
            Field::DeniedScope => "denied_scope",
            Field::Outcome => "outcome",
            Field::Kind => "kind",
            Field::Grant => "grant",
            Field::Tool => "tool",
            Field::SessionGrant => "session_grant",
            Field::RevokedGrant => "revoked_grant",
            Field::RevokedSession => "revoked_session",
            Field::ClientDocument => "client_document",
            Field::SigningKey => "signing_key",
        }
    }
}

/// Everything an entry is found by, besides its seq: what the writer
/// stores with it, and what verification expects to find.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    pub postings: Vec<Posting>,
    pub decision_id: Option<String>,
    pub time_micros: Option<i64>,
}

/// One stored index record, engine-neutral: a posting, the decision id
/// look-up, or the event time of an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum IndexRecord {
    Posting {
        field: Field,
        value: String,
        seq: u64,
        data: Vec<u8>,
    },
    Decision {
        id: String,
        seq: u64,
    },
    Time {
        seq: u64,
        micros: i64,
    },
}

impl IndexRecord {
    /// The entry this record points to.
    pub fn seq(&self) -> u64 {
        match self {
            IndexRecord::Posting { seq, .. }
            | IndexRecord::Decision { seq, .. }
            | IndexRecord::Time { seq, .. } => *seq,
        }
    }
}

impl std::fmt::Display for IndexRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexRecord::Posting {
                field, value, seq, ..
            } => write!(f, "{} posting {value:?} of entry {seq}", field.name()),
            IndexRecord::Decision { id, seq } => {
                write!(f, "decision id {id:?} of entry {seq}")
            }
            IndexRecord::Time { seq, micros } => write!(f, "time {micros} of entry {seq}"),
        }
    }
}

impl Derived {
    /// The records an engine holds for this entry at `seq`.
    pub fn records(&self, seq: u64) -> Vec<IndexRecord> {
        let mut out: Vec<IndexRecord> = self
            .postings
            .iter()
            .map(|p| IndexRecord::Posting {
                field: p.field,
                value: p.value.clone(),
                seq,
                data: p.data.clone(),
            })
            .collect();
        if let Some(id) = &self.decision_id {
            out.push(IndexRecord::Decision {
                id: id.clone(),
                seq,
            });
        }
        if let Some(micros) = self.time_micros {
            out.push(IndexRecord::Time { seq, micros });
        }
        out
    }
}

/// What `entry` is found by. The one derivation the writer stores and
/// verification checks against.
pub fn derive(entry: &LogEntry) -> Derived {
    let mut postings: Vec<Posting> = stated(entry)
        .into_iter()
        .filter(|(field, value)| is_posted(*field, value))
        .map(|(field, value)| Posting {
            field,
            value,
            data: Vec::new(),
        })
        .collect();
    if let Some((client_id, sha256)) = client_document(entry) {
        postings.push(Posting {
            field: Field::ClientDocument,
            value: client_id.to_string(),
            data: sha256.as_bytes().to_vec(),
        });
    }
    Derived {
        postings,
        decision_id: entry.record.decision_id().map(str::to_string),
        time_micros: micros(&entry.time),
    }
}

/// What an entry is found by as it is stored now: a redacted field posts
/// nothing, an expired entry nothing at all (see `log::sealed`).
pub fn derive_stored(stored: &[u8]) -> Result<Derived, String> {
    if sealed::is_expired(stored) {
        return Ok(Derived::default());
    }
    let opened = sealed::open(stored).map_err(|e| e.to_string())?;
    let entry = opened.into_entry().map_err(|e| e.to_string())?;
    Ok(derive(&entry))
}

/// Event time in µs since the epoch, from the entry's RFC 3339 time.
pub fn micros(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// (client id, document SHA-256) of a decision that saw a client identity
/// document: posted as [`Field::ClientDocument`] with the hash as value.
fn client_document(entry: &LogEntry) -> Option<(&str, &str)> {
    match &entry.record {
        Record::ConnectionDecision(r) => r
            .authentication
            .document
            .as_ref()
            .map(|d| (r.client_id.as_str(), d.sha256.as_str())),
        _ => None,
    }
}

/// What a decision reads from the log about its client and session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAndSession {
    /// The document SHA-256 of the client's newest decision that saw one.
    pub previous_document: Option<String>,
    /// The entry that revoked the session, if it was revoked.
    pub session_revoked: Option<u64>,
}

/// [`ClientAndSession`] for `client_id` and `session_id`, in one look-up
/// (one round trip on a fleet's database, memory on a single node).
pub async fn client_and_session(
    store: &super::LogStore,
    client_id: &str,
    session_id: &str,
) -> Result<ClientAndSession, super::LogError> {
    use super::hot_index::Keep;
    let ends = store
        .posting_ends_async(&[
            (Field::ClientDocument, client_id, Keep::Newest),
            (Field::RevokedSession, session_id, Keep::Oldest),
        ])
        .await?;
    let [document, revoked]: [super::storage::PostingEnd; 2] = ends
        .try_into()
        .map_err(|_| super::LogError::Storage("two look-ups did not give two answers".into()))?;
    Ok(ClientAndSession {
        previous_document: document.map(|(_, data)| String::from_utf8_lossy(&data).into_owned()),
        session_revoked: revoked.map(|(seq, _)| seq),
    })
}

/// Whether `field = value` is posted. Each posting is a store key the
/// writer adds on every decision, so the values nearly every entry has are
/// not: a requested scope (search takes approved ∪ denied, the same set:
/// `decide` puts every requested scope in one of the two), the kind of a
/// connection decision or a grant issuance, and the outcomes `approved`
/// and (tool calls) `allowed`. Search checks those on the entry itself
/// (`log::query`); the rarer values an investigation starts from
/// (`denied`, `reduced`) stay posted.
pub fn is_posted(field: Field, value: &str) -> bool {
    match field {
        Field::RequestedScope => false,
        Field::Kind => !matches!(value, "connection_decision" | "grant_issued"),
        Field::Outcome => !matches!(value, "approved" | "allowed"),
        _ => true,
    }
}

/// Whether an index record is one an earlier build wrote and nothing reads
/// any more (see [`is_posted`]). A log written before still holds them;
/// verification passes over them and search never reads them, so adding or
/// removing one changes no answer.
pub fn is_inert(record: &IndexRecord) -> bool {
    match record {
        IndexRecord::Posting { field, value, .. } => !is_posted(*field, value),
        _ => false,
    }
}

/// The inert postings an earlier build stored for `entry`: what retention
/// removes along with an entry's own.
pub fn legacy_postings(entry: &LogEntry) -> Vec<Posting> {
    stated(entry)
        .into_iter()
        .filter(|(field, value)| !is_posted(*field, value))
        .map(|(field, value)| Posting {
            field,
            value,
            data: Vec::new(),
        })
        .collect()
}

/// The kind and event time (µs) of a stored entry, read from its
/// commitment alone (no disclosure opened); `None` for an expired entry.
pub fn kind_and_time(stored: &[u8]) -> Option<(String, i64)> {
    #[derive(serde::Deserialize)]
    struct Head {
        kind: String,
        time: String,
    }
    if sealed::is_expired(stored) {
        return None;
    }
    let head: Head = serde_json::from_slice(sealed::commitment(stored)).ok()?;
    let micros = micros(&head.time)?;
    Some((head.kind, micros))
}

/// Every (field, value) `entry` states, posted or not: what search answers
/// for, and through [`is_posted`] what the index holds.
pub fn stated(entry: &LogEntry) -> Vec<(Field, String)> {
    let mut out = Vec::with_capacity(20);
    out.push((Field::Kind, entry.record.kind().to_string()));
    let mut add = |field, value: &str| out.push((field, value.to_string()));
    match &entry.record {
        Record::ConnectionDecision(r) => {
            add(Field::Session, &r.session_id);
            add(Field::Client, &r.client_id);
            if let Some(subject) = ConnectionInput::logged_subject(&r.input) {
                add(Field::Subject, &subject.sub);
            }
            if let Some(iss) = &r.authentication.issuer {
                add(Field::Issuer, iss);
            }
            add(Field::Outcome, r.decision.outcome.as_str());
            for s in r.decision.requested_scopes.as_slice() {
                add(Field::RequestedScope, s);
            }
            for s in r.decision.approved_scopes.as_slice() {
                add(Field::ApprovedScope, s);
            }
            for d in &r.decision.denied_scopes {
                add(Field::DeniedScope, &d.scope);
            }
        }
        Record::GrantIssued(r) => {
            add(Field::Session, &r.session_id);
            add(Field::Client, &r.client_id);
            // The issuance is the first entry of its grant's posting list.
            add(Field::Grant, &r.grant.jti);
            add(Field::SessionGrant, &r.session_id);
        }
        Record::ToolCall(r) => {
            for (field, value) in [
                (Field::Session, &r.session_id),
                (Field::Client, &r.client_id),
                (Field::Grant, &r.grant_jti),
            ] {
                if let Some(v) = value {
                    add(field, v);
                }
            }
            add(Field::Tool, &r.tool);
            add(
                Field::Outcome,
                if r.decision.allow {
                    "allowed"
                } else {
                    "denied"
                },
            );
        }
        Record::GrantRevoked(r) => {
            add(Field::Session, &r.session_id);
            add(Field::Client, &r.client_id);
            add(Field::Grant, &r.grant_jti);
            add(Field::RevokedGrant, &r.grant_jti);
        }
        Record::SessionRevoked(r) => {
            add(Field::Session, &r.session_id);
            add(Field::RevokedSession, &r.session_id);
            for jti in &r.grant_jtis {
                add(Field::Grant, jti);
            }
        }
        // Found by kind (policy_loaded, policy_rejected, retention) or by purpose.
        Record::PolicyLoaded(_) | Record::PolicyRejected(_) | Record::Retention(_) => {}
        Record::SigningKey(r) => add(Field::SigningKey, r.purpose.as_str()),
    }
    out
}
