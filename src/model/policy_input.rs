//! The documents the policies see: typed, built once, serialised for the
//! engine and the log, and read back by replay and indexing. The shape is
//! the one the README documents; `tests/policy_input.rs` pins it.
//!
//! Absent optional fields are left out rather than set to null, because
//! null is truthy in Rego.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ArgumentsSummary, Authentication, Delegation, GrantCheck, MetadataSource, RequestedScopes,
    Subject,
};

/// Grant lifetimes the PDP enforces whatever the policy says. Kept in the
/// policy input (`limits`), so a replay enforces the ones then in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantLimits {
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
}

/// `input` of `data.trustpath.connection.decision`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionInput {
    /// RFC 3339, UTC: the evaluation time (a replay evaluates at it again).
    pub now: String,
    pub now_unix: i64,
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub scopes: RequestedScopes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    pub metadata_source: MetadataSource,
    pub client: ClientInput,
    /// The authentication result, kept apart from the decision. The raw
    /// assertion is never here: its claims and SHA-256 are.
    pub authentication: Authentication,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Delegation>,
    pub limits: GrantLimits,
    /// Why the session may get no new grant, when it was revoked (or its
    /// revocation state could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_revoked: Option<String>,
}

/// The parts of a logged connection input that the log's indexes and the
/// session trail read, deserialised without the rest (its document can be
/// large). Field names as in [`ConnectionInput`].
#[derive(Deserialize)]
struct LoggedParts {
    #[serde(default)]
    subject: Option<Subject>,
    #[serde(default)]
    delegation: Option<Delegation>,
}

impl ConnectionInput {
    fn logged_parts(input: &Value) -> Option<LoggedParts> {
        LoggedParts::deserialize(input).ok()
    }

    /// The subject of a logged connection input.
    pub fn logged_subject(input: &Value) -> Option<Subject> {
        Self::logged_parts(input)?.subject
    }

    /// The delegation of a logged connection input.
    pub fn logged_delegation(input: &Value) -> Option<Delegation> {
        Self::logged_parts(input)?.delegation
    }
}

/// `input.client`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientInput {
    pub client_id: String,
    /// The host as the URL parser reads it (CIMD clients only): policies
    /// compare hosts with this, never with pieces of the client_id text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// The identity document as checked (sent or fetched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
    pub assertion_present: bool,
}

/// `input` of `data.trustpath.tool_call.decision`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolCallInput {
    pub now: String,
    pub now_unix: i64,
    pub tool: String,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The session the enforcement point named, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The MCP server the enforcement point named, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The client the enforcement point named, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub arguments: ArgumentsSummary,
    /// What trustpath found about the presented grant.
    pub grant: GrantCheck,
}

/// Serialises an input for the engine and the log.
pub fn to_document<T: Serialize>(input: &T) -> Value {
    // These types hold only strings, numbers, booleans and JSON values:
    // serialising them cannot fail.
    serde_json::to_value(input).unwrap_or(Value::Null)
}
