//! Revoking grants and sessions, for the `admin` role.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Admin, Authorized, JsonBody, PathId};
use super::AppState;
use crate::revocation::{RevocationTarget, RevokeError};
use crate::text::Printable;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why: kept in the log for whoever reviews the revocation.
    reason: String,
}

fn reason_of(request: RevokeRequest) -> Result<String, ApiError> {
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_field("reason", "reason must not be empty"));
    }
    crate::text::check_text(&request.reason).map_err(|e| ApiError::bad_field("reason", e))?;
    Ok(request.reason)
}

fn revoke_error(e: RevokeError) -> ApiError {
    match e {
        RevokeError::NotFound(message) => ApiError::not_found(message),
        RevokeError::Log(e) => ApiError::log(&e),
    }
}

/// `POST /v1/grants/{jti}/revoke`
pub async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    who: Authorized<Admin>,
    PathId(jti): PathId,
    JsonBody(body): JsonBody<RevokeRequest>,
) -> Result<Response, ApiError> {
    revoke(&state, &who.caller, body, RevocationTarget::Grant(jti)).await
}

/// `POST /v1/sessions/{session_id}/revoke`
pub async fn revoke_session(
    State(state): State<Arc<AppState>>,
    who: Authorized<Admin>,
    PathId(session_id): PathId,
    JsonBody(body): JsonBody<RevokeRequest>,
) -> Result<Response, ApiError> {
    revoke(
        &state,
        &who.caller,
        body,
        RevocationTarget::Session(session_id),
    )
    .await
}

async fn revoke(
    state: &AppState,
    caller: &str,
    body: RevokeRequest,
    target: RevocationTarget,
) -> Result<Response, ApiError> {
    let reason = reason_of(body)?;
    let outcome = state
        .revoker
        .revoke(&target, &reason, caller)
        .await
        .map_err(revoke_error)?;
    let (kind, id) = match &target {
        RevocationTarget::Grant(jti) => ("grant", jti),
        RevocationTarget::Session(id) => ("session", id),
    };
    state.metrics.revocation(kind);
    tracing::info!(caller = %Printable(caller), kind, id = %Printable(id), "revoked");
    Ok(Json(outcome).into_response())
}
