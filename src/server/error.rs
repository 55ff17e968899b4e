//! API errors: always a JSON body, naming the field when one is at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            field: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
        )
    }

    pub fn forbidden(role: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this caller lacks the {role} role"),
        )
    }

    /// 400 naming the request field or parameter at fault.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        err.field = Some(field.to_string());
        err
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The log could not take an entry: 503, `overloaded` when its queue
    /// is full, else `unavailable`.
    pub fn log(e: &crate::log::LogError) -> Self {
        match e {
            crate::log::LogError::Overloaded { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e.to_string())
            }
            _ => Self::unavailable(e.to_string()),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error, "message": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

/// Parses a JSON body; a 400 names the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::input::parse_json(bytes).map_err(|e| {
        let message = format!("{} (line {}, column {})", e.message, e.line, e.column);
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        err.field = e.field;
        err
    })
}
