//! Decision log entries: what is stored, byte for byte, and hashed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Authentication, Decision, GrantClaims};

/// One entry of the append-only log. Its `seq` is its leaf index.
///
/// The stored bytes are this struct serialised by serde_json: fields in
/// declaration order, JSON objects with sorted keys, so the same entry always
/// produces the same bytes and the same hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    /// When the event happened (RFC 3339, UTC).
    pub time: String,
    /// The policy revision in force.
    pub policy_revision: String,
    #[serde(flatten)]
    pub record: Record,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    ConnectionDecision(ConnectionDecisionRecord),
}

impl Record {
    pub fn decision_id(&self) -> Option<&str> {
        match self {
            Record::ConnectionDecision(r) => Some(&r.decision_id),
        }
    }
}

/// A connection decision: the request as the policy saw it, the
/// authentication result and the decision kept apart, and the grant's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionDecisionRecord {
    pub decision_id: String,
    pub session_id: String,
    pub client_id: String,
    /// The exact policy input, secrets replaced by claims and SHA-256.
    pub input: Value,
    pub authentication: Authentication,
    pub decision: Decision,
    /// The grant's claims; the token itself is never stored.
    pub grant: Option<GrantClaims>,
}

/// Where an appended entry landed, as told to the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryReceipt {
    pub seq: u64,
    /// Base64 RFC 9162 leaf hash of the stored bytes.
    pub leaf_hash: String,
    /// Size of the tree the entry was first included in: ask for an
    /// inclusion proof at this size or any later checkpoint.
    pub tree_size: u64,
}

impl EntryReceipt {
    pub fn new(seq: u64, hash: &[u8; 32], tree_size: u64) -> Self {
        Self {
            seq,
            leaf_hash: STANDARD.encode(hash),
            tree_size,
        }
    }
}
