//! Secondary indexes of the decision log: which postings an entry gets.
//! The engine writes them in the same atomic append as the entry they
//! point to, so they are never out of step after a crash.

use super::entry::{LogEntry, Record};
use crate::model::ConnectionInput;

/// The indexed fields, each with its one-byte tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Event time in µs since the epoch, from the entry's RFC 3339 time.
pub fn micros(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// (client id, document SHA-256) of a decision that saw a client identity
/// document: posted as [`Field::ClientDocument`] with the hash as value.
pub fn client_document(entry: &LogEntry) -> Option<(&str, &str)> {
    match &entry.record {
        Record::ConnectionDecision(r) => r
            .authentication
            .document
            .as_ref()
            .map(|d| (r.client_id.as_str(), d.sha256.as_str())),
        _ => None,
    }
}

/// The document SHA-256 of `client_id`'s newest decision that saw one.
pub fn previous_document(
    store: &super::LogStore,
    client_id: &str,
) -> Result<Option<String>, super::LogError> {
    Ok(store
        .newest_posting(Field::ClientDocument, client_id)?
        .map(|(_, data)| String::from_utf8_lossy(&data).into_owned()))
}

/// Every (field, value) an entry is found by.
pub fn postings(entry: &LogEntry) -> Vec<(Field, String)> {
    let mut out = vec![(Field::Kind, entry.record.kind().to_string())];
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
        // Found by kind (policy_loaded) or by purpose; nothing else to index.
        Record::PolicyLoaded(_) => {}
        Record::SigningKey(r) => add(Field::SigningKey, r.purpose.as_str()),
    }
    out
}
