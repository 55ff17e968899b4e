//! Decision log entries: what is stored, byte for byte, and hashed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::sealed::FieldGroup;
use crate::model::{
    Authentication, Decision, GrantClaims, PolicyBundleOrigin, PolicyFile, ToolCallDecision,
};

/// One entry of the append-only log. Its `seq` is its leaf index.
///
/// It is stored in its sealed form (`log::sealed`, LOG-FORMAT.md): RFC 8785
/// canonical JSON, every object's keys sorted, top level included, so the
/// same entry always produces the same bytes and the same hash.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub seq: u64,
    /// When the event happened (RFC 3339, UTC).
    pub time: String,
    /// The policy revision in force.
    pub policy_revision: String,
    /// The fleet replica that wrote the entry (absent on a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The W3C trace id of the request that made the entry (absent for
    /// entries no request made: start, reloads, retention passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(flatten)]
    pub record: Record,
}

impl LogEntry {
    /// The entry a parsed JSON object holds: the header fields, then the
    /// record its `kind` names from the rest. Written out instead of
    /// `#[serde(flatten)]` over the tagged `Record`, which buffers the whole
    /// entry twice on the way in (every reader, `log verify` above all).
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let Value::Object(mut fields) = value else {
            return Err(serde_json::Error::custom("an entry is a JSON object"));
        };
        let seq = required(&mut fields, "seq")?;
        let time = required(&mut fields, "time")?;
        let policy_revision = required(&mut fields, "policy_revision")?;
        let node = optional(&mut fields, "node")?;
        let trace_id = optional(&mut fields, "trace_id")?;
        let kind: String = required(&mut fields, "kind")?;
        // The policy input stays the JSON it is: moved, not rebuilt.
        let input = fields.remove("input").unwrap_or(Value::Null);
        let rest = Value::Object(fields);
        let record = match kind.as_str() {
            "connection_decision" => {
                let mut decision: ConnectionDecisionRecord = serde_json::from_value(rest)?;
                decision.input = input;
                Record::ConnectionDecision(Box::new(decision))
            }
            "grant_issued" => Record::GrantIssued(serde_json::from_value(rest)?),
            "tool_call" => {
                let mut call: ToolCallRecord = serde_json::from_value(rest)?;
                call.input = input;
                Record::ToolCall(call)
            }
            "grant_revoked" => Record::GrantRevoked(serde_json::from_value(rest)?),
            "session_revoked" => Record::SessionRevoked(serde_json::from_value(rest)?),
            "policy_loaded" => Record::PolicyLoaded(serde_json::from_value(rest)?),
            "policy_rejected" => Record::PolicyRejected(serde_json::from_value(rest)?),
            "signing_key" => Record::SigningKey(serde_json::from_value(rest)?),
            "retention" => Record::Retention(serde_json::from_value(rest)?),
            other => return Err(serde_json::Error::unknown_variant(other, &KINDS)),
        };
        Ok(Self {
            seq,
            time,
            policy_revision,
            node,
            trace_id,
            record,
        })
    }
}

impl<'de> Deserialize<'de> for LogEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::Object(Map::deserialize(deserializer)?);
        Self::from_value(value).map_err(D::Error::custom)
    }
}

fn required<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &'static str,
) -> Result<T, serde_json::Error> {
    let value = fields
        .remove(name)
        .ok_or_else(|| serde_json::Error::missing_field(name))?;
    serde_json::from_value(value).map_err(|e| serde_json::Error::custom(format!("{name}: {e}")))
}

fn optional<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<T>, serde_json::Error> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| serde_json::Error::custom(format!("{name}: {e}"))),
    }
}

/// Every entry kind, as [`Record::kind`] names them.
pub const KINDS: [&str; 9] = [
    "connection_decision",
    "grant_issued",
    "tool_call",
    "grant_revoked",
    "session_revoked",
    "policy_loaded",
    "policy_rejected",
    "signing_key",
    "retention",
];

/// What happened. `kind` in the stored JSON names the variant (an entry
/// reads its record by [`LogEntry::from_value`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    ConnectionDecision(Box<ConnectionDecisionRecord>),
    /// A credential was issued: every grant has one, so the log holds the
    /// whole lifecycle of each non-human identity's credentials.
    GrantIssued(GrantIssuedRecord),
    ToolCall(ToolCallRecord),
    GrantRevoked(GrantRevokedRecord),
    SessionRevoked(SessionRevokedRecord),
    /// A policy bundle went into force (the entry's `policy_revision`).
    PolicyLoaded(PolicyLoadedRecord),
    /// A new policy set was refused (it did not load, or a bundle's
    /// signature did not verify); the entry's `policy_revision` stayed in
    /// force.
    PolicyRejected(PolicyRejectedRecord),
    /// A signing key went into use: created, or a different key than the
    /// log last saw for its purpose.
    SigningKey(SigningKeyRecord),
    /// Retention redacted fields of earlier entries or expired them: the
    /// record `log verify` holds every missing disclosure against.
    Retention(RetentionRecord),
}

impl Record {
    /// The decision id an entry is looked up by (`GET /v1/decisions/{id}`).
    pub fn decision_id(&self) -> Option<&str> {
        match self {
            Record::ConnectionDecision(r) => Some(&r.decision_id),
            _ => None,
        }
    }

    /// What this record revokes, if it is a revocation.
    pub fn revokes(&self) -> Option<Revokes<'_>> {
        match self {
            Record::SessionRevoked(r) => Some(Revokes::Session(&r.session_id)),
            Record::GrantRevoked(r) => Some(Revokes::Grant(&r.grant_jti)),
            _ => None,
        }
    }

    /// The session and grant an allow in this record stands on; `None` for
    /// denials and records that allow nothing. A revocation of either,
    /// logged before this record, overrules the allow.
    pub fn allow_rests_on(&self) -> Option<(&str, Option<&str>)> {
        match self {
            Record::ConnectionDecision(r) if r.decision.allow => Some((&r.session_id, None)),
            Record::ToolCall(r) if r.decision.allow => {
                Some((r.session_id.as_deref()?, r.grant_jti.as_deref()))
            }
            _ => None,
        }
    }

    /// Turns the allow in this record into a denial for `reason`.
    pub fn overrule(&mut self, reason: &str) {
        match self {
            Record::ConnectionDecision(r) => {
                r.decision = r.decision.clone().overruled(reason);
                r.grant_jti = None;
                r.overruled = Some(reason.to_string());
            }
            Record::ToolCall(r) => {
                r.decision = r.decision.clone().overruled(reason);
                r.overruled = Some(reason.to_string());
            }
            _ => {}
        }
    }

    /// The session the entry belongs to, if any.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Record::ConnectionDecision(r) => Some(&r.session_id),
            Record::GrantIssued(r) => Some(&r.session_id),
            Record::ToolCall(r) => r.session_id.as_deref(),
            Record::GrantRevoked(r) => Some(&r.session_id),
            Record::SessionRevoked(r) => Some(&r.session_id),
            Record::PolicyLoaded(_)
            | Record::PolicyRejected(_)
            | Record::SigningKey(_)
            | Record::Retention(_) => None,
        }
    }

    /// The client the entry is about, if any.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Record::ConnectionDecision(r) => Some(&r.client_id),
            Record::GrantIssued(r) => Some(&r.client_id),
            Record::ToolCall(r) => r.client_id.as_deref(),
            Record::GrantRevoked(r) => Some(&r.client_id),
            Record::SessionRevoked(_)
            | Record::PolicyLoaded(_)
            | Record::PolicyRejected(_)
            | Record::SigningKey(_)
            | Record::Retention(_) => None,
        }
    }

    /// The `kind` field of the stored entry.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::ConnectionDecision(_) => "connection_decision",
            Record::GrantIssued(_) => "grant_issued",
            Record::ToolCall(_) => "tool_call",
            Record::GrantRevoked(_) => "grant_revoked",
            Record::SessionRevoked(_) => "session_revoked",
            Record::PolicyLoaded(_) => "policy_loaded",
            Record::PolicyRejected(_) => "policy_rejected",
            Record::SigningKey(_) => "signing_key",
            Record::Retention(_) => "retention",
        }
    }
}

/// What a revocation entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revokes<'a> {
    Session(&'a str),
    Grant(&'a str),
}

/// A connection decision: the request as the policy saw it, the
/// authentication result and the decision kept apart, and the grant issued
/// for it (its own `grant_issued` entry, right after this one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionDecisionRecord {
    pub decision_id: String,
    pub session_id: String,
    pub client_id: String,
    /// The exact policy input, secrets replaced by claims and SHA-256
    /// (null once retention expired it).
    #[serde(default)]
    pub input: Value,
    pub authentication: Authentication,
    pub decision: Decision,
    pub grant_jti: Option<String>,
    /// Set when the policy allowed but a revocation covering the session
    /// was logged first: the log writer turned the allow into this denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overruled: Option<String>,
}

/// A grant was signed. The token itself is never stored, only its claims
/// and SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantIssuedRecord {
    pub decision_id: String,
    pub session_id: String,
    pub client_id: String,
    pub grant: GrantClaims,
    pub token_sha256: String,
}

/// A tool call checked for an MCP server or gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub tool_call_id: String,
    /// Session, grant and issuing decision, from a grant trustpath could
    /// verify; absent when the presented grant did not check out.
    pub session_id: Option<String>,
    pub grant_jti: Option<String>,
    pub decision_id: Option<String>,
    pub client_id: Option<String>,
    pub tool: String,
    pub method: String,
    /// The exact policy input: the grant check and the arguments summary
    /// (names and SHA-256; values only where allow-listed). Null once
    /// retention expired it.
    #[serde(default)]
    pub input: Value,
    pub decision: ToolCallDecision,
    /// Set when the call was allowed but a revocation covering its grant or
    /// session was logged first: the log writer turned it into this denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overruled: Option<String>,
}

/// One grant revoked by an administrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRevokedRecord {
    pub revocation_id: String,
    pub grant_jti: String,
    pub session_id: String,
    pub client_id: String,
    pub decision_id: String,
    pub reason: String,
    pub revoked_by: String,
}

/// A whole session revoked: every grant of it, issued before or after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRevokedRecord {
    pub revocation_id: String,
    pub session_id: String,
    /// The grants the session had when it was revoked.
    pub grant_jtis: Vec<String>,
    pub reason: String,
    pub revoked_by: String,
}

/// What put a policy bundle in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyTrigger {
    /// The server started with a revision the log had not seen in force.
    Start,
    /// The policy files changed on disk.
    FileChange,
    /// SIGHUP.
    Sighup,
    /// The bundle server had a new bundle.
    Poll,
}

/// A policy bundle went into force. Written before the bundle decides
/// anything, so every entry's `policy_revision` after it can be traced to
/// its files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyLoadedRecord {
    pub trigger: PolicyTrigger,
    /// The revision in force before, as the log last recorded it.
    pub previous_revision: Option<String>,
    /// Where the policies were read from, as configured: a directory, a
    /// bundle file or a bundle URL.
    pub directory: String,
    pub files: Vec<PolicyFile>,
    /// The OPA bundle they came in (absent for a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PolicyBundleOrigin>,
}

/// A policy set that was not put in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRejectedRecord {
    pub trigger: PolicyTrigger,
    /// Where it was read from, as configured.
    pub source: String,
    /// Which content was refused: a bundle's SHA-256, or the hash of a
    /// directory's files.
    pub sha256: String,
    /// Why, as the loader said it.
    pub error: String,
}

/// Which signature a key makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPurpose {
    /// Grants (JWTs); `key_id` is the JWK thumbprint `kid`.
    Grant,
    /// Log checkpoints; `key_id` is the signed-note verifier key.
    Log,
}

impl KeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Grant => "grant",
            KeyPurpose::Log => "log",
        }
    }
}

/// How a signing key came to be in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEvent {
    /// trustpath made the key file at this start.
    Created,
    /// A different key than the one the log last saw for this purpose.
    Rotated,
    /// A key that existed before but was never recorded (a configured key
    /// file, or a data directory from before these entries).
    Adopted,
}

/// A signing key went into use. Only public material is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub purpose: KeyPurpose,
    pub event: KeyEvent,
    pub key_id: String,
    /// The public key: a JWK for grants, the vkey for the log.
    pub public_key: Value,
    pub previous_key_id: Option<String>,
}

/// Entries `[from, to)` by seq.
pub type SeqRange = [u64; 2];

/// Sorted, distinct seqs as the fewest ranges.
pub fn seq_ranges(seqs: impl IntoIterator<Item = u64>) -> Vec<SeqRange> {
    let mut out: Vec<SeqRange> = Vec::new();
    for seq in seqs {
        match out.last_mut() {
            Some(last) if last[1] == seq => last[1] = seq + 1,
            _ => out.push([seq, seq + 1]),
        }
    }
    out
}

/// What retention did, written before it does it (so a crash in between
/// leaves a record of work not yet done, never work without a record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionRecord {
    pub cause: RetentionCause,
    /// The entries whose disclosures of a group were dropped.
    pub redacted: Vec<GroupRedaction>,
    /// The entries expired: their bytes are gone, their leaf hashes stay.
    pub expired: Vec<SeqRange>,
    /// How many entries this changed.
    pub entries: u64,
}

/// One group's disclosures dropped from the entries in `seqs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRedaction {
    pub group: FieldGroup,
    pub seqs: Vec<SeqRange>,
}

/// Why retention acted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum RetentionCause {
    /// A `[retention]` setting: entries whose time is before `before`.
    Rule {
        /// The setting: a field group's name, `body` or `expire`.
        setting: String,
        /// Entries whose time is before this were due.
        before: String,
        /// The entries looked at, `[from, to)`.
        scanned: SeqRange,
    },
    /// A person's erasure request. The subject is kept as its SHA-256 of
    /// `iss/sub`, never in the clear.
    Erasure {
        requested_by: String,
        subject_sha256: String,
    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision() -> Value {
        json!({
            "authentication": {
                "document": {"changed": false, "previous_sha256": "df88", "sha256": "df88", "source": "inline"},
                "issuer": null, "key_id": null, "method": "none", "reasons": [],
                "result": "document_only", "subject": "https://agents.example.com/client.json"
            },
            "client_id": "https://agents.example.com/client.json",
            "decision": {
                "allow": true, "approved_scopes": ["files:read"],
                "denied_scopes": [{"reason": "unknown scope", "scope": "payroll"}],
                "outcome": "reduced", "reasons": [],
                "requested_scopes": ["files:read", "payroll"],
                "tools": ["read_file"], "ttl_seconds": 300
            },
            "decision_id": "d-1",
            "grant_jti": "g-1",
            "input": {"scopes": ["files:read", "payroll"], "session_id": "s-1"},
            "kind": "connection_decision",
            "node": "a",
            "policy_revision": "rev",
            "seq": 7,
            "session_id": "s-1",
            "time": "2026-11-29T08:57:09.830899Z",
            "trace_id": "e97d"
        })
    }

    fn grant() -> Value {
        json!({
            "client_id": "https://agents.example.com/client.json",
            "decision_id": "d-1",
            "grant": {
                "aud": "https://mcp.example.com/mcp", "decision_id": "d-1",
                "exp": 1795942929, "iat": 1795942629, "iss": "https://trustpath.local",
                "jti": "g-1", "scope": "files:read", "sid": "s-1",
                "sub": "https://agents.example.com/client.json", "tools": ["read_file"]
            },
            "kind": "grant_issued",
            "policy_revision": "rev",
            "seq": 8,
            "session_id": "s-1",
            "time": "2026-11-29T08:57:09.830899Z",
            "token_sha256": "5b54"
        })
    }

    #[test]
    fn an_entry_reads_back_as_it_was_written() {
        for value in [decision(), grant()] {
            let entry = LogEntry::from_value(value.clone()).unwrap();
            assert_eq!(serde_json::to_value(&entry).unwrap(), value);
            let parsed: LogEntry = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
        }
        let entry = LogEntry::from_value(decision()).unwrap();
        let Record::ConnectionDecision(record) = entry.record else {
            panic!("a connection decision");
        };
        assert_eq!(record.input["session_id"], "s-1", "the input moved in");
        let mut expired_input = decision();
        expired_input.as_object_mut().unwrap().remove("input");
        let entry = LogEntry::from_value(expired_input).unwrap();
        let Record::ConnectionDecision(record) = entry.record else {
            panic!("a connection decision");
        };
        assert!(record.input.is_null(), "an expired input reads as null");
    }

    #[test]
    fn a_malformed_entry_names_what_is_wrong() {
        let error = |edit: fn(&mut Map<String, Value>)| {
            let mut value = decision();
            edit(value.as_object_mut().unwrap());
            LogEntry::from_value(value).unwrap_err().to_string()
        };
        assert!(error(|m| {
            m.remove("kind");
        })
        .contains("missing field `kind`"));
        assert!(error(|m| {
            m.insert("kind".into(), json!("teleport"));
        })
        .contains("unknown variant `teleport`"));
        assert!(error(|m| {
            m.insert("seq".into(), json!("seven"));
        })
        .contains("seq"));
        assert!(error(|m| {
            m.remove("decision_id");
        })
        .contains("missing field `decision_id`"));
        assert!(LogEntry::from_value(json!([1, 2])).is_err());
    }
}
