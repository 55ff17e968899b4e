//! Erasure requests, for the `admin` role: one person's personal fields
//! redacted across the whole log, with a logged record of the erasure.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Admin, Authorized, JsonBody};
use super::AppState;
use crate::retention::{RetentionError, SubjectRef};
use crate::text::Printable;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The subject's issuer, as connection requests named it; absent: any.
    #[serde(default)]
    iss: Option<String>,
    sub: String,
}

/// `POST /v1/erasures`
pub async fn erase(
    State(state): State<Arc<AppState>>,
    who: Authorized<Admin>,
    JsonBody(body): JsonBody<ErasureRequest>,
) -> Result<Response, ApiError> {
    if body.sub.is_empty() {
        return Err(ApiError::bad_field("sub", "sub must not be empty"));
    }
    crate::text::check_text(&body.sub).map_err(|e| ApiError::bad_field("sub", e))?;
    if let Some(iss) = &body.iss {
        crate::text::check_text(iss).map_err(|e| ApiError::bad_field("iss", e))?;
    }
    let subject = SubjectRef {
        iss: body.iss,
        sub: body.sub,
    };
    let applied = state
        .retainer
        .erase(&subject, &who.caller)
        .await
        .map_err(|e| match e {
            RetentionError::NotFound(message) => ApiError::not_found(message),
            RetentionError::Log(e) => ApiError::log(&e),
            other => ApiError::internal(other.to_string()),
        })?;
    // The log line names who asked and how much, never whom it was about.
    tracing::info!(caller = %Printable(&who.caller), entries = applied.entries, "erasure applied");
    Ok(Json(applied).into_response())
}
