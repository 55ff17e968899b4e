//! Lifecycle entries: which policy bundle and which signing keys were in
//! force. Every entry names its policy revision; a `policy_loaded` entry
//! written before that revision decides anything says which files it was.
//! A `signing_key` entry says which key made the grants and checkpoints
//! that follow it.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use crate::log::entry::{
    KeyEvent, KeyPurpose, PolicyLoadedRecord, PolicyRejectedRecord, PolicyTrigger, SigningKeyRecord,
};
use crate::log::index::Field;
use crate::log::{query, LogError, LogStore, LogWriter, Record};
use crate::policy::{PolicyBundle, PolicyRejection, PolicyStore};
use crate::time::rfc3339;

/// The `policy_loaded` entry for `bundle`, or `None` when the log already
/// has that revision and those files in force (a plain restart, a SIGHUP
/// with no change). A bundle whose manifest keeps its revision while its
/// files change is logged: the revision alone would not account for them.
pub fn policy_loaded(
    store: &LogStore,
    bundle: &PolicyBundle,
    source: &str,
    trigger: PolicyTrigger,
) -> Result<Option<Record>, LogError> {
    let previous = match query::newest_posting(store, Field::Kind, "policy_loaded")? {
        Some(seq) => Some(query::entry(store, seq)?),
        None => None,
    };
    let same_files = |entry: &crate::log::LogEntry| match &entry.record {
        Record::PolicyLoaded(r) => r.files == bundle.manifest(),
        _ => false,
    };
    if let Some(previous) = &previous {
        if previous.policy_revision == bundle.revision().as_str() && same_files(previous) {
            return Ok(None);
        }
    }
    Ok(Some(Record::PolicyLoaded(PolicyLoadedRecord {
        trigger,
        previous_revision: previous.map(|e| e.policy_revision),
        directory: source.to_string(),
        files: bundle.manifest().to_vec(),
        bundle: bundle.bundle().cloned(),
    })))
}

/// A signing key as the server is about to use it.
pub struct KeyInUse {
    pub purpose: KeyPurpose,
    pub key_id: String,
    pub public_key: Value,
    /// The key file was made by this start.
    pub created: bool,
}

/// The `signing_key` entry for `key`, or `None` when it is the key the log
/// last recorded for its purpose.
pub fn signing_key(store: &LogStore, key: KeyInUse) -> Result<Option<Record>, LogError> {
    let previous = match query::newest_posting(store, Field::SigningKey, key.purpose.as_str())? {
        Some(seq) => match query::entry(store, seq)?.record {
            Record::SigningKey(r) => Some(r.key_id),
            _ => return Err(LogError::Corrupt),
        },
        None => None,
    };
    if previous.as_deref() == Some(key.key_id.as_str()) {
        return Ok(None);
    }
    let event = match (key.created, &previous) {
        (true, _) => KeyEvent::Created,
        (false, Some(_)) => KeyEvent::Rotated,
        (false, None) => KeyEvent::Adopted,
    };
    Ok(Some(Record::SigningKey(SigningKeyRecord {
        purpose: key.purpose,
        event,
        key_id: key.key_id,
        public_key: key.public_key,
        previous_key_id: previous,
    })))
}

/// At start, before anything is decided or signed: logs the keys and the
/// policy bundle the log has not seen in force (nothing on a plain restart).
pub async fn record_start(
    store: &LogStore,
    log: &LogWriter,
    keys: impl IntoIterator<Item = KeyInUse>,
    bundle: &PolicyBundle,
    source: &str,
) -> Result<(), LogError> {
    let mut records = Vec::new();
    for key in keys {
        records.extend(signing_key(store, key)?);
    }
    records.extend(policy_loaded(store, bundle, source, PolicyTrigger::Start)?);
    if !records.is_empty() {
        let revision = bundle.revision().as_str().to_string();
        log.append_all(rfc3339(Utc::now()), revision, records)
            .await?;
    }
    Ok(())
}

/// Puts reloaded policy bundles in force, each logged first.
#[derive(Clone)]
pub struct PolicyRecorder {
    policies: Arc<PolicyStore>,
    store: LogStore,
    log: LogWriter,
}

impl PolicyRecorder {
    pub fn new(policies: Arc<PolicyStore>, store: LogStore, log: LogWriter) -> Self {
        Self {
            policies,
            store,
            log,
        }
    }

    /// Logs `bundle` as loaded, then puts it in force. If it cannot be
    /// logged, the running bundle stays: no decision is made under a
    /// revision the log cannot account for.
    pub async fn put_in_force(
        &self,
        bundle: PolicyBundle,
        trigger: PolicyTrigger,
    ) -> Result<Arc<PolicyBundle>, LogError> {
        let source = self.policies.source().to_string();
        if let Some(record) = policy_loaded(&self.store, &bundle, &source, trigger)? {
            let revision = bundle.revision().as_str().to_string();
            self.log
                .append(rfc3339(Utc::now()), revision, record)
                .await?;
        }
        Ok(self.policies.install(bundle))
    }

    /// Logs that a policy set was refused. The policy in force stays; the
    /// entry names the refused content and why.
    pub async fn rejected(
        &self,
        rejection: &PolicyRejection,
        trigger: PolicyTrigger,
    ) -> Result<(), LogError> {
        let Some(sha256) = rejection.fingerprint.clone() else {
            // Nothing was read (a server down): nothing to account for.
            return Ok(());
        };
        let record = Record::PolicyRejected(PolicyRejectedRecord {
            trigger,
            source: self.policies.source().to_string(),
            sha256,
            error: rejection.error.clone(),
        });
        let revision = self.policies.current().revision().as_str().to_string();
        self.log
            .append(rfc3339(Utc::now()), revision, record)
            .await?;
        Ok(())
    }

    pub fn policies(&self) -> &PolicyStore {
        &self.policies
    }
}
