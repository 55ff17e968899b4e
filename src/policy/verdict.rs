//! The shape a connection policy must return. Anything else is a deny.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

/// `data.trustpath.connection.decision`, as the policy returned it. Scopes
/// here are an offer: the PDP intersects them with the request.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionVerdict {
    pub allow: bool,
    #[serde(default)]
    pub scopes: BTreeSet<String>,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Why a requested scope was not offered, by scope.
    #[serde(default)]
    pub scope_reasons: BTreeMap<String, String>,
}

impl ConnectionVerdict {
    /// Validates the policy's result; the error says what is malformed.
    pub fn from_policy_result(value: Option<Value>) -> Result<Self, String> {
        let value = value.ok_or("policy result is undefined")?;
        if !value.is_object() {
            return Err(format!("policy result must be an object, got {value}"));
        }
        serde_json::from_value(value).map_err(|e| format!("policy result is malformed: {e}"))
    }
}

/// `data.trustpath.tool_call.decision`, as the policy returned it.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolCallVerdict {
    pub allow: bool,
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Scopes the call needs that the grant lacks: the MCP server answers
    /// `insufficient_scope` with them so the client can step up.
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

impl ToolCallVerdict {
    pub fn from_policy_result(value: Option<Value>) -> Result<Self, String> {
        let value = value.ok_or("tool-call policy result is undefined")?;
        if !value.is_object() {
            return Err(format!(
                "tool-call policy result must be an object, got {value}"
            ));
        }
        serde_json::from_value(value)
            .map_err(|e| format!("tool-call policy result is malformed: {e}"))
    }
}
