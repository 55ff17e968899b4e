//! OpenID AuthZEN Authorization API 1.0 on the tool-call check: MCP
//! gateways that speak AuthZEN ask trustpath as they would any PDP.
//!
//! | AuthZEN | tool-call check |
//! |---|---|
//! | `subject.id` (type `client` or `agent`) | the client the grant must have been issued to (`agent`: the acting agent) |
//! | `action.name` | the tool; `action.properties.method` the MCP method (default `tools/call`) |
//! | `resource.id` | the MCP server the grant must be for (its `aud`) |
//! | `context.grant` / `grant_id` / `session_id` | the grant presented, as in `/v1/tool-calls` |
//! | `context.arguments` | the call's arguments (logged as names and SHA-256) |
//!
//! Each evaluation is one tool-call check, logged as one `tool_call`
//! entry, answered as `{"decision": bool, "context": {...}}` with the
//! tool-call id, the issuing decision id, the reasons and the entry's
//! receipt in `context`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::extract::{Authorized, Enforce, JsonBody};
use super::AppState;
use crate::model::{ToolCallRequest, TOOLS_CALL};
use crate::tool_call::{self, ToolCallOutcome};

/// AuthZEN's subject and resource: a type and an id. Their `properties`
/// are not part of the tool-call check, so they are not read.
#[derive(Debug, Clone, Deserialize)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub name: String,
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// `POST /access/v1/evaluation`.
#[derive(Debug, Clone, Deserialize)]
pub struct EvaluationRequest {
    pub subject: Subject,
    pub action: Action,
    pub resource: Resource,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

/// One entry of `evaluations`: each part left out is the request's.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EvaluationItem {
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationsSemantic {
    #[default]
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EvaluationsOptions {
    #[serde(default)]
    pub evaluations_semantic: EvaluationsSemantic,
}

/// `POST /access/v1/evaluations`: the top-level parts are defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct EvaluationsRequest {
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub context: Option<Map<String, Value>>,
    #[serde(default)]
    pub evaluations: Vec<EvaluationItem>,
    #[serde(default)]
    pub options: EvaluationsOptions,
}

/// The subject types a tool-call check understands.
const CLIENT_TYPES: [&str; 2] = ["client", "agent"];

/// The tool-call request an evaluation stands for, or the field at fault
/// (named as the AuthZEN request names it, under `at`).
fn to_tool_call(request: &EvaluationRequest, at: &str) -> Result<ToolCallRequest, ApiError> {
    let bad = |field: &str, message: String| ApiError::bad_field(&format!("{at}{field}"), message);
    let context = request.context.clone().unwrap_or_default();
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match context.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(&format!("context.{name}"), "must be a string".into())),
        }
    };
    let (client_id, actor) = match request.subject.kind.as_str() {
        "client" => (Some(request.subject.id.clone()), None),
        "agent" => (None, Some(request.subject.id.clone())),
        other => {
            return Err(bad(
                "subject.type",
                format!(
                    "{other:?} is not a subject a grant is issued to: use one of {}",
                    CLIENT_TYPES.join(", ")
                ),
            ))
        }
    };
    let method = match request
        .action
        .properties
        .as_ref()
        .and_then(|p| p.get("method"))
    {
        None => TOOLS_CALL.to_string(),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(bad("action.properties.method", "must be a string".into())),
    };
    let arguments = match context.get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err(bad("context.arguments", "must be an object".into())),
    };
    let tool_call = ToolCallRequest {
        grant: text("grant")?,
        grant_id: text("grant_id")?,
        session_id: text("session_id")?,
        tool: request.action.name.clone(),
        method,
        arguments,
        actor,
        resource: Some(request.resource.id.clone()),
        client_id,
    };
    // The same edge checks as a JSON body of `/v1/tool-calls` gets.
    let identifiers = [
        ("resource.type", Some(&request.resource.kind)),
        ("subject.id", Some(&request.subject.id)),
        ("action.name", Some(&tool_call.tool)),
        ("action.properties.method", Some(&tool_call.method)),
        ("resource.id", Some(&request.resource.id)),
        ("context.grant_id", tool_call.grant_id.as_ref()),
        ("context.session_id", tool_call.session_id.as_ref()),
    ];
    for (field, value) in identifiers {
        if let Some(value) = value {
            crate::text::check_identifier(value).map_err(|e| bad(field, e))?;
        }
    }
    tool_call::validate(&tool_call).map_err(|e| {
        let field = match e.field {
            "grant" | "grant_id" | "session_id" => format!("context.{}", e.field),
            "tool" | "method" => "action.name".to_string(),
            other => other.to_string(),
        };
        bad(&field, e.message)
    })?;
    Ok(tool_call)
}

/// `{"decision": …, "context": …}` for one checked call.
fn answer(outcome: &ToolCallOutcome) -> Value {
    let mut context = json!({
        "id": outcome.tool_call_id,
        "tool_call_id": outcome.tool_call_id,
        "decision_id": outcome.decision_id,
        "session_id": outcome.session_id,
        "grant_status": outcome.grant_status.as_str(),
        "policy_revision": outcome.policy_revision,
        "log_entry": outcome.log_entry,
    });
    if !outcome.allow {
        context["reason_admin"] = json!({ "en": outcome.reasons.join("; ") });
        context["reasons"] = json!(outcome.reasons);
        if !outcome.required_scopes.is_empty() {
            context["required_scopes"] = json!(outcome.required_scopes);
        }
    }
    json!({ "decision": outcome.allow, "context": context })
}

async fn check(
    state: &AppState,
    caller: &str,
    request: ToolCallRequest,
) -> Result<Value, ApiError> {
    let outcome = super::enforcement::check(state, caller, request).await?;
    Ok(answer(&outcome))
}

/// AuthZEN asks a PDP to echo the PEP's `X-Request-ID`.
fn with_request_id(headers: &HeaderMap, body: Value) -> Response {
    let mut response = Json(body).into_response();
    if let Some(id) = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 256)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

/// `POST /access/v1/evaluation`.
pub async fn evaluation(
    State(state): State<Arc<AppState>>,
    who: Authorized<Enforce>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<EvaluationRequest>,
) -> Result<Response, ApiError> {
    let _permit = state.admit()?;
    let tool_call = to_tool_call(&request, "")?;
    let body = check(&state, &who.caller, tool_call).await?;
    Ok(with_request_id(&headers, body))
}

/// Most evaluations in one batch.
const MAX_EVALUATIONS: usize = 100;

/// `POST /access/v1/evaluations`.
pub async fn evaluations(
    State(state): State<Arc<AppState>>,
    who: Authorized<Enforce>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<EvaluationsRequest>,
) -> Result<Response, ApiError> {
    let _permit = state.admit()?;
    // No evaluations: the request is one evaluation, answered as one.
    if request.evaluations.is_empty() {
        let single = EvaluationRequest {
            subject: required(request.subject, "subject")?,
            action: required(request.action, "action")?,
            resource: required(request.resource, "resource")?,
            context: request.context,
        };
        let body = check(&state, &who.caller, to_tool_call(&single, "")?).await?;
        return Ok(with_request_id(&headers, body));
    }
    if request.evaluations.len() > MAX_EVALUATIONS {
        return Err(ApiError::bad_field(
            "evaluations",
            format!("at most {MAX_EVALUATIONS} evaluations per request"),
        ));
    }
    // Every item is checked for shape before any is evaluated (and logged).
    let mut tool_calls = Vec::with_capacity(request.evaluations.len());
    for (i, item) in request.evaluations.iter().enumerate() {
        let at = format!("evaluations[{i}].");
        let context = match (&request.context, &item.context) {
            (Some(default), Some(own)) => {
                let mut merged = default.clone();
                merged.extend(own.clone());
                Some(merged)
            }
            (default, own) => own.clone().or_else(|| default.clone()),
        };
        let single = EvaluationRequest {
            subject: pick(&item.subject, &request.subject, &at, "subject")?,
            action: pick(&item.action, &request.action, &at, "action")?,
            resource: pick(&item.resource, &request.resource, &at, "resource")?,
            context,
        };
        tool_calls.push(to_tool_call(&single, &at)?);
    }
    let semantic = request.options.evaluations_semantic;
    let mut answers = Vec::with_capacity(tool_calls.len());
    for tool_call in tool_calls {
        let answer = check(&state, &who.caller, tool_call).await?;
        let allowed = answer["decision"] == Value::Bool(true);
        answers.push(answer);
        let stop = match semantic {
            EvaluationsSemantic::ExecuteAll => false,
            EvaluationsSemantic::DenyOnFirstDeny => !allowed,
            EvaluationsSemantic::PermitOnFirstPermit => allowed,
        };
        if stop {
            break;
        }
    }
    Ok(with_request_id(&headers, json!({ "evaluations": answers })))
}

/// An evaluation's own part, or else the request's default.
fn pick<T: Clone>(
    own: &Option<T>,
    default: &Option<T>,
    at: &str,
    name: &str,
) -> Result<T, ApiError> {
    own.clone().or_else(|| default.clone()).ok_or_else(|| {
        ApiError::bad_field(
            &format!("{at}{name}"),
            format!("{name} is required (in the evaluation or as the request's default)"),
        )
    })
}

fn required<T>(part: Option<T>, name: &str) -> Result<T, ApiError> {
    part.ok_or_else(|| ApiError::bad_field(name, format!("{name} is required")))
}

/// `GET /.well-known/authzen-configuration` (AuthZEN PDP metadata).
pub async fn configuration(State(state): State<Arc<AppState>>) -> Response {
    let base = state.public_url();
    Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
    }))
    .into_response()
}
