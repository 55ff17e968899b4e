//! HTTP API: routes, caller authentication and error mapping.

pub mod callers;
pub mod enforcement;
pub mod error;
pub mod log_routes;
pub mod revocation_routes;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::config::Role;
use crate::decide::{DecideError, Decider};
use crate::grant::status::GrantChecker;
use crate::grant::GrantSigner;
use crate::lifecycle::PolicyRecorder;
use crate::log::checkpoint::NoteVerifier;
use crate::log::LogStore;
use crate::model::ConnectionRequest;
use crate::revocation::Revoker;
use crate::tool_call::ToolCallChecker;
use callers::Callers;
use error::{parse_json, ApiError};

pub struct AppState {
    pub decider: Decider,
    /// Puts reloaded policies in force, each logged first.
    pub policy_recorder: PolicyRecorder,
    pub tool_calls: ToolCallChecker,
    pub grants: Arc<GrantChecker>,
    pub revoker: Revoker,
    pub signer: Arc<GrantSigner>,
    pub store: LogStore,
    pub log_verifier: NoteVerifier,
    pub callers: Callers,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/v1/decisions",
            post(create_decision).get(log_routes::search),
        )
        .route("/v1/sessions/{session_id}", get(log_routes::session))
        .route(
            "/v1/sessions/{session_id}/revoke",
            post(revocation_routes::revoke_session),
        )
        .route(
            "/v1/grants/{jti}/revoke",
            post(revocation_routes::revoke_grant),
        )
        .route("/v1/tool-calls", post(enforcement::tool_call))
        .route("/v1/introspect", post(enforcement::introspect))
        .route("/v1/decisions/{decision_id}", get(read_decision))
        .route("/v1/log/checkpoint", get(log_routes::checkpoint))
        .route("/v1/log/public-key", get(log_routes::public_key))
        .route("/v1/log/entries/{seq}", get(log_routes::entry))
        .route("/v1/log/proof/inclusion", get(log_routes::inclusion))
        .route("/v1/log/proof/consistency", get(log_routes::consistency))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let bundle = state.decider.policies().current();
    Json(json!({ "status": "ok", "policy_revision": bundle.revision().as_str() }))
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.signer.jwks()),
    )
        .into_response()
}

async fn create_decision(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = state.callers.authorize(&headers, Role::Decide)?;
    let body = body.map_err(body_error)?;
    let request: ConnectionRequest = parse_json(&body)?;
    let outcome = state.decider.decide(request).await.map_err(|e| match e {
        // Not durable, so not answered: the AS must treat this as a deny.
        DecideError::Log(e) => ApiError::unavailable(e.to_string()),
    })?;
    tracing::info!(
        caller = %caller,
        decision_id = %outcome.decision_id,
        session_id = %outcome.session_id,
        outcome = ?outcome.decision.outcome,
        authentication = ?outcome.authentication.result,
        "decision"
    );
    Ok(Json(outcome).into_response())
}

async fn read_decision(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(decision_id): Path<String>,
) -> Result<Response, ApiError> {
    state.callers.authorize(&headers, Role::Audit)?;
    let entry = state
        .store
        .decision(&decision_id)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no decision {decision_id}")))?;
    // The stored bytes as they are, so they can be hashed by the reader.
    Ok(([(header::CONTENT_TYPE, "application/json")], entry.to_vec()).into_response())
}

pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "invalid_request"
    };
    ApiError::new(status, error, rejection.body_text())
}
