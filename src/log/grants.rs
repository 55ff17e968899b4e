//! Issued grants and revocations, read back from the log's indexes: the
//! grant registry every grant check and revocation reads.

use serde::Serialize;

use super::entry::GrantIssuedRecord;
use super::index::Field;
use super::query;
use super::{LogError, LogStore, Record};
use crate::model::GrantClaims;

/// Why a grant no longer counts.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// The revocation's log entry.
    pub seq: u64,
    /// `grant_revoked` or `session_revoked`.
    pub kind: &'static str,
}

/// The revocation that applies to a grant, if any: its session's, or its own.
pub fn revocation_of(store: &LogStore, grant: &GrantClaims) -> Result<Option<Revoked>, LogError> {
    if let Some(seq) = session_revocation(store, &grant.sid)? {
        return Ok(Some(Revoked {
            seq,
            kind: "session_revoked",
        }));
    }
    let own = query::oldest_posting(store, Field::RevokedGrant, &grant.jti)?;
    Ok(own.map(|seq| Revoked {
        seq,
        kind: "grant_revoked",
    }))
}

/// The entry that revoked `session_id`, if it was revoked.
pub fn session_revocation(store: &LogStore, session_id: &str) -> Result<Option<u64>, LogError> {
    query::oldest_posting(store, Field::RevokedSession, session_id)
}

/// The issuance of grant `jti`: the first entry that names the grant.
pub fn issued_grant(store: &LogStore, jti: &str) -> Result<Option<GrantIssuedRecord>, LogError> {
    match query::oldest_posting(store, Field::Grant, jti)? {
        Some(seq) => issuance_at(store, seq).map(Some),
        None => Ok(None),
    }
}

/// The newest grant issued in `session_id`.
pub fn session_grant(
    store: &LogStore,
    session_id: &str,
) -> Result<Option<GrantIssuedRecord>, LogError> {
    match query::newest_posting(store, Field::SessionGrant, session_id)? {
        Some(seq) => issuance_at(store, seq).map(Some),
        None => Ok(None),
    }
}

pub fn issuance_at(store: &LogStore, seq: u64) -> Result<GrantIssuedRecord, LogError> {
    match query::entry(store, seq)?.record {
        Record::GrantIssued(r) => Ok(r),
        _ => Err(LogError::Corrupt),
    }
}
