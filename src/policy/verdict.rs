//! The shapes the policy entry points must return, and evaluating them.
//! Anything else (an error, undefined, a malformed result) is a deny reason.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{PolicyBundle, CONNECTION_ENTRY_POINT, TOOL_CALL_ENTRY_POINT};
use crate::model::scope_token_error;

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
        evaluate::<Self>(bundle, CONNECTION_ENTRY_POINT, "policy", input)?.checked()
    }

    /// Validates the policy's result; the error says what is malformed.
    pub fn from_policy_result(value: Option<Value>) -> Result<Self, String> {
        parse::<Self>(value, "policy")?.checked()
    }

    /// A scope the policy offers must be a scope-token, like a requested one:
    /// the grant joins scopes with spaces.
    fn checked(self) -> Result<Self, String> {
        check_scopes("policy", "scopes", &self.scopes)?;
        Ok(self)
    }
}

/// Refuses a result whose scope list holds something that is not a scope-token.
fn check_scopes<'a>(
    what: &str,
    field: &str,
    scopes: impl IntoIterator<Item = &'a String>,
) -> Result<(), String> {
    match scopes.into_iter().find_map(|s| scope_token_error(s)) {
        Some(problem) => Err(format!("{what} result is malformed: {field}: {problem}")),
        None => Ok(()),
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
        let what = "tool-call policy";
        let verdict: Self = evaluate(bundle, TOOL_CALL_ENTRY_POINT, what, input)?;
        // These go into `WWW-Authenticate: ... scope="..."`, space-joined.
        check_scopes(what, "required_scopes", &verdict.required_scopes)?;
        Ok(verdict)
    }
}
