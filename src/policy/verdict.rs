//! The shapes the policy entry points must return, and evaluating them.
//! Anything else (an error, undefined, a malformed result) is a deny reason.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{PolicyBundle, CONNECTION_ENTRY_POINT, TOOL_CALL_ENTRY_POINT};

/// Evaluates `entry_point` on `input` and checks the result's shape; the
/// error says what went wrong, in words fit for a deny reason.
fn evaluate<T: DeserializeOwned>(
    bundle: &PolicyBundle,
    entry_point: &str,
    what: &str,
    input: &Value,
) -> Result<T, String> {
    let value = bundle
        .evaluate(entry_point, input)
        .map_err(|e| e.to_string())?;
    parse(value, what)
}

fn parse<T: DeserializeOwned>(value: Option<Value>, what: &str) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{what} result is undefined"))?;
    if !value.is_object() {
        return Err(format!("{what} result must be an object, got {value}"));
    }
    serde_json::from_value(value).map_err(|e| format!("{what} result is malformed: {e}"))
}

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
    /// `data.trustpath.connection.decision` on `input`.
    pub fn evaluate(bundle: &PolicyBundle, input: &Value) -> Result<Self, String> {
        evaluate(bundle, CONNECTION_ENTRY_POINT, "policy", input)
    }

    /// Validates the policy's result; the error says what is malformed.
    pub fn from_policy_result(value: Option<Value>) -> Result<Self, String> {
        parse(value, "policy")
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
    /// `data.trustpath.tool_call.decision` on `input`.
    pub fn evaluate(bundle: &PolicyBundle, input: &Value) -> Result<Self, String> {
        evaluate(bundle, TOOL_CALL_ENTRY_POINT, "tool-call policy", input)
    }
}
