//! The enforcement point's API: tool-call checks and grant introspection,
//! for the `enforce` role (the MCP server or gateway).

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Authorized, Enforce, JsonBody};
use super::AppState;
use crate::grant::introspection;
use crate::model::ToolCallRequest;
use crate::text::Printable;
use crate::tool_call;

/// `POST /v1/tool-calls`: may this call run under this grant?
pub async fn tool_call(
    State(state): State<Arc<AppState>>,
    who: Authorized<Enforce>,
    JsonBody(request): JsonBody<ToolCallRequest>,
) -> Result<Response, ApiError> {
    let _permit = state.admit()?;
    tool_call::validate(&request).map_err(|e| ApiError::bad_field(e.field, e.message))?;
    let outcome = check(&state, &who.caller, request).await?;
    Ok(Json(outcome).into_response())
}

/// One tool-call check, counted and logged: `/v1/tool-calls` and each
/// AuthZEN evaluation. `request` has passed `tool_call::validate`.
pub(crate) async fn check(
    state: &AppState,
    caller: &str,
    request: ToolCallRequest,
) -> Result<tool_call::ToolCallOutcome, ApiError> {
    let outcome = state
        .tool_calls
        .check(request)
        .await
        // Not durable, so not answered: the caller must treat this as a deny.
        .map_err(|e| ApiError::log(&e))?;
    state.metrics.tool_call(outcome.allow);
    tracing::info!(
        caller = %Printable(caller),
        tool_call_id = %outcome.tool_call_id,
        session_id = %Printable(outcome.session_id.as_deref().unwrap_or("-")),
        allow = outcome.allow,
        grant_status = outcome.grant_status.as_str(),
        "tool call"
    );
    Ok(outcome)
}

/// RFC 7662 request: form-encoded.
#[derive(Deserialize)]
pub struct IntrospectionRequest {
    token: Option<String>,
    /// Accepted and ignored: trustpath only knows one kind of token.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// `POST /v1/introspect` (RFC 7662).
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    _: Authorized<Enforce>,
    form: Result<Form<IntrospectionRequest>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(request) = form.map_err(|e| {
        let mut err = ApiError::new(e.status(), "invalid_request", e.body_text());
        err.field = Some("token".into());
        err
    })?;
    let token = request
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_field("token", "token is required"))?;
    let check = state
        .grants
        .check_token(&token, chrono::Utc::now().timestamp());
    Ok(Json(introspection::response(&check)).into_response())
}
