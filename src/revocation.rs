//! Revoking grants and whole sessions, and asking whether a grant is revoked.
//!
//! A revocation is a log entry and nothing else: it is found again through
//! the log's grant and session indexes, so it survives restarts and can
//! never disagree with the log.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::decide::rfc3339;
use crate::log::entry::{GrantIssuedRecord, GrantRevokedRecord, SessionRevokedRecord};
use crate::log::query::{self, Filter};
use crate::log::{EntryReceipt, LogError, LogStore, LogWriter, Record};
use crate::model::GrantClaims;
use crate::policy::PolicyStore;

/// Most grants one session revocation lists by jti (all are revoked anyway,
/// through the session).
const MAX_LISTED_GRANTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Why a grant no longer counts.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// The revocation's log entry.
    pub seq: u64,
    /// `grant_revoked` or `session_revoked`.
    pub kind: &'static str,
}

/// The revocation that applies to a grant, if any: its own, or its session's.
pub fn revocation_of(store: &LogStore, grant: &GrantClaims) -> Result<Option<Revoked>, LogError> {
    if let Some(seq) = session_revocation(store, &grant.sid)? {
        return Ok(Some(Revoked {
            seq,
            kind: "session_revoked",
        }));
    }
    let filter = Filter {
        grant: Some(grant.jti.clone()),
        kind: Some("grant_revoked".into()),
        ..Filter::default()
    };
    let page = query::query(store, &filter, 1, None)?;
    Ok(page.seqs.first().map(|seq| Revoked {
        seq: *seq,
        kind: "grant_revoked",
    }))
}

/// The entry that revoked `session_id`, if it was revoked.
pub fn session_revocation(store: &LogStore, session_id: &str) -> Result<Option<u64>, LogError> {
    let filter = Filter {
        session: Some(session_id.to_string()),
        kind: Some("session_revoked".into()),
        ..Filter::default()
    };
    Ok(query::query(store, &filter, 1, None)?.seqs.first().copied())
}

/// The issuance of the newest grant matching `filter` (a jti or a session).
pub fn issued_grant(
    store: &LogStore,
    mut filter: Filter,
) -> Result<Option<GrantIssuedRecord>, LogError> {
    filter.kind = Some("grant_issued".into());
    Ok(match query::newest(store, &filter)? {
        Some((_, entry)) => match entry.record {
            Record::GrantIssued(r) => Some(r),
            _ => return Err(LogError::Corrupt),
        },
        None => None,
    })
}

/// What a revocation produced.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationOutcome {
    pub revocation_id: String,
    pub session_id: String,
    /// The grants named by the revocation.
    pub grant_jtis: Vec<String>,
    pub log_entry: EntryReceipt,
}

/// Writes revocations for the `admin` role.
pub struct Revoker {
    store: LogStore,
    log: LogWriter,
    policies: Arc<PolicyStore>,
}

impl Revoker {
    pub fn new(store: LogStore, log: LogWriter, policies: Arc<PolicyStore>) -> Self {
        Self {
            store,
            log,
            policies,
        }
    }

    /// Revokes one grant, found by its `jti`.
    pub async fn revoke_grant(
        &self,
        jti: &str,
        reason: &str,
        revoked_by: &str,
    ) -> Result<RevocationOutcome, RevokeError> {
        let filter = Filter {
            grant: Some(jti.to_string()),
            ..Filter::default()
        };
        let issued = issued_grant(&self.store, filter)?
            .ok_or_else(|| RevokeError::NotFound(format!("no grant {jti} was issued")))?;
        let record = GrantRevokedRecord {
            revocation_id: uuid::Uuid::now_v7().to_string(),
            grant_jti: jti.to_string(),
            session_id: issued.session_id,
            client_id: issued.client_id,
            decision_id: issued.decision_id,
            reason: reason.to_string(),
            revoked_by: revoked_by.to_string(),
        };
        let outcome = RevocationOutcome {
            revocation_id: record.revocation_id.clone(),
            session_id: record.session_id.clone(),
            grant_jtis: vec![record.grant_jti.clone()],
            log_entry: self.append(Record::GrantRevoked(record)).await?,
        };
        Ok(outcome)
    }

    /// Revokes a session: every grant it has, and any it would get later.
    pub async fn revoke_session(
        &self,
        session_id: &str,
        reason: &str,
        revoked_by: &str,
    ) -> Result<RevocationOutcome, RevokeError> {
        let in_session = Filter {
            session: Some(session_id.to_string()),
            ..Filter::default()
        };
        if query::query(&self.store, &in_session, 1, None)?
            .seqs
            .is_empty()
        {
            return Err(RevokeError::NotFound(format!(
                "no entries for session {session_id}"
            )));
        }
        let grants = Filter {
            kind: Some("grant_issued".into()),
            ..in_session
        };
        let mut grant_jtis = Vec::new();
        for seq in query::query(&self.store, &grants, MAX_LISTED_GRANTS, None)?.seqs {
            let bytes = self.store.entry(seq)?.ok_or(LogError::Corrupt)?;
            let entry: crate::log::LogEntry =
                serde_json::from_slice(&bytes).map_err(|_| LogError::Corrupt)?;
            if let Record::GrantIssued(r) = entry.record {
                grant_jtis.push(r.grant.jti);
            }
        }
        grant_jtis.reverse();
        let record = SessionRevokedRecord {
            revocation_id: uuid::Uuid::now_v7().to_string(),
            session_id: session_id.to_string(),
            grant_jtis,
            reason: reason.to_string(),
            revoked_by: revoked_by.to_string(),
        };
        let outcome = RevocationOutcome {
            revocation_id: record.revocation_id.clone(),
            session_id: record.session_id.clone(),
            grant_jtis: record.grant_jtis.clone(),
            log_entry: self.append(Record::SessionRevoked(record)).await?,
        };
        Ok(outcome)
    }

    async fn append(&self, record: Record) -> Result<EntryReceipt, LogError> {
        let revision = self.policies.current().revision().as_str().to_string();
        self.log.append(rfc3339(Utc::now()), revision, record).await
    }
}
