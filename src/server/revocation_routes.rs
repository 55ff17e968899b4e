//! Revoking grants and sessions, for the `admin` role.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::{parse_json, ApiError};
use super::{body_error, AppState};
use crate::config::Role;
use crate::revocation::{RevocationTarget, RevokeError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// Why: kept in the log for whoever reviews the revocation.
    reason: String,
}

fn reason_of(body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let body = body.map_err(body_error)?;
    let request: RevokeRequest = parse_json(&body)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_field("reason", "reason must not be empty"));
    }
    Ok(request.reason)
}

fn revoke_error(e: RevokeError) -> ApiError {
    match e {
        RevokeError::NotFound(message) => ApiError::not_found(message),
        RevokeError::Log(e) => ApiError::unavailable(e.to_string()),
    }
}

/// `POST /v1/grants/{jti}/revoke`
pub async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(jti): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    revoke(&state, &headers, body, RevocationTarget::Grant(jti)).await
}

/// `POST /v1/sessions/{session_id}/revoke`
pub async fn revoke_session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(session_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    revoke(
        &state,
        &headers,
        body,
        RevocationTarget::Session(session_id),
    )
    .await
}

async fn revoke(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    target: RevocationTarget,
) -> Result<Response, ApiError> {
    let caller = state.callers.authorize(headers, Role::Admin)?;
    let reason = reason_of(body)?;
    let outcome = state
        .revoker
        .revoke(&target, &reason, &caller)
        .await
        .map_err(revoke_error)?;
    tracing::info!(caller = %caller, target = ?target, "revoked");
    Ok(Json(outcome).into_response())
}
