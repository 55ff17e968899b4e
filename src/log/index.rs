//! Secondary indexes of the decision log, written in the same atomic batch
//! as the entry they point to, so they are never out of step after a crash.
//!
//! Key: `i` ‖ field ‖ u32 length ‖ value ‖ u64 seq (big endian). The length
//! prefix means no value can be mistaken for another that shares a prefix
//! or contains separator bytes.

use super::entry::{LogEntry, Record};

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

impl Field {
    fn tag(self) -> u8 {
        match self {
            Field::Session => b's',
            Field::Client => b'c',
            Field::Subject => b'u',
            Field::Issuer => b'i',
            Field::RequestedScope => b'r',
            Field::ApprovedScope => b'a',
            Field::DeniedScope => b'x',
            Field::Outcome => b'o',
            Field::Kind => b'k',
            Field::Grant => b'g',
            Field::Tool => b'T',
            Field::SessionGrant => b'S',
            Field::RevokedGrant => b'R',
            Field::RevokedSession => b'V',
            Field::ClientDocument => b'D',
            Field::SigningKey => b'K',
        }
    }
}

pub const INDEX: u8 = b'i';
/// seq → event time (µs since the epoch), for time filters.
pub const TIME: u8 = b't';

/// The key prefix of every entry indexed under `field = value`.
pub fn posting_prefix(field: Field, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(6 + value.len() + 8);
    key.push(INDEX);
    key.push(field.tag());
    key.extend_from_slice(&(value.len() as u32).to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key
}

pub fn posting_key(field: Field, value: &str, seq: u64) -> Vec<u8> {
    let mut key = posting_prefix(field, value);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub fn time_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = TIME;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
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
    let prefix = posting_prefix(Field::ClientDocument, client_id);
    Ok(store
        .last_under(&prefix)?
        .map(|(_, value)| String::from_utf8_lossy(&value).into_owned()))
}

/// Every (field, value) an entry is found by.
pub fn postings(entry: &LogEntry) -> Vec<(Field, String)> {
    let mut out = vec![(Field::Kind, entry.record.kind().to_string())];
    let mut add = |field, value: &str| out.push((field, value.to_string()));
    match &entry.record {
        Record::ConnectionDecision(r) => {
            add(Field::Session, &r.session_id);
            add(Field::Client, &r.client_id);
            if let Some(sub) = r.input.pointer("/subject/sub").and_then(|v| v.as_str()) {
                add(Field::Subject, sub);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_collide_across_values() {
        // Values that share prefixes, or hold the bytes a naive separator would use.
        let values = ["a", "ab", "a\u{0}b", "a\u{0}", "", "\u{0}\u{0}\u{0}\u{1}a"];
        let mut keys = std::collections::BTreeSet::new();
        for v in values {
            for seq in [0u64, 1, 256] {
                assert!(
                    keys.insert(posting_key(Field::Session, v, seq)),
                    "{v:?}/{seq}"
                );
                // A prefix scan for one value never yields another value's key.
                for other in values.iter().filter(|o| **o != v) {
                    assert!(!posting_key(Field::Session, other, seq)
                        .starts_with(&posting_prefix(Field::Session, v)));
                }
            }
        }
        assert_ne!(
            posting_key(Field::Session, "x", 1),
            posting_key(Field::Client, "x", 1)
        );
    }
}
