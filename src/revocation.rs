//! Revoking grants and whole sessions, and asking whether a grant is revoked.
//!
//! A revocation is a log entry and nothing else: it is found again through
//! the log's grant and session indexes, so it survives restarts and can
//! never disagree with the log.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::log::entry::{GrantRevokedRecord, SessionRevokedRecord};
use crate::log::grants::issuance_at;
use crate::log::grants::issued_grant;
use crate::log::index::Field;
use crate::log::query::{self, Filter};
use crate::log::{EntryReceipt, LogError, LogStore, LogWriter, Record};
use crate::policy::PolicyStore;
use crate::time::rfc3339;

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

/// What a revocation produced.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationOutcome {
    pub revocation_id: String,
    pub session_id: String,
    /// The grants named by the revocation.
    pub grant_jtis: Vec<String>,
    pub log_entry: EntryReceipt,
}

/// What an administrator revokes.
#[derive(Debug, Clone)]
pub enum RevocationTarget {
    /// One grant, by `jti`.
    Grant(String),
    /// A session: every grant it has, and any it would get later.
    Session(String),
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

    pub async fn revoke(
        &self,
        target: &RevocationTarget,
        reason: &str,
        revoked_by: &str,
    ) -> Result<RevocationOutcome, RevokeError> {
        match target {
            RevocationTarget::Grant(jti) => self.revoke_grant(jti, reason, revoked_by).await,
            RevocationTarget::Session(id) => self.revoke_session(id, reason, revoked_by).await,
        }
    }

    /// Revokes one grant, found by its `jti`.
    async fn revoke_grant(
        &self,
        jti: &str,
        reason: &str,
        revoked_by: &str,
    ) -> Result<RevocationOutcome, RevokeError> {
        let issued = issued_grant(&self.store, jti)?
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
    async fn revoke_session(
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
        let issuances = query::postings(
            &self.store,
            Field::SessionGrant,
            session_id,
            MAX_LISTED_GRANTS,
        )?;
        let mut grant_jtis = Vec::new();
        for seq in issuances.into_iter().rev() {
            grant_jtis.push(issuance_at(&self.store, seq)?.grant.jti);
        }
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
