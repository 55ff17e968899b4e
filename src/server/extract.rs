//! Extractors for the API's handlers: the caller's role, a JSON body, and
//! an identifier from the path. Each rejects with the API's JSON error
//! shape, naming the field, and each runs after authentication (the
//! `authenticate` middleware), so nothing about a path or a body is
//! answered to a caller without a valid token.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::callers::Caller;
use super::error::{parse_json, ApiError};
use crate::config::Role;

/// A role a handler requires, as a type.
pub trait RequiredRole {
    const ROLE: Role;
}

/// The authorization server.
pub struct Decide;
/// Security reviewers.
pub struct Audit;
/// The enforcement point.
pub struct Enforce;
/// Administrators.
pub struct Admin;

impl RequiredRole for Decide {
    const ROLE: Role = Role::Decide;
}
impl RequiredRole for Audit {
    const ROLE: Role = Role::Audit;
}
impl RequiredRole for Enforce {
    const ROLE: Role = Role::Enforce;
}
impl RequiredRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// The authenticated caller, holding role `R` (else 403).
pub struct Authorized<R> {
    pub caller: String,
    role: PhantomData<R>,
}

impl<S: Send + Sync, R: RequiredRole> FromRequestParts<S> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Set by the `authenticate` middleware; its absence is a wiring
        // bug, and it denies.
        let caller = parts
            .extensions
            .get::<Caller>()
            .ok_or_else(ApiError::unauthorized)?;
        if !caller.role.permits(R::ROLE) {
            return Err(ApiError::forbidden(R::ROLE.name()));
        }
        Ok(Self {
            caller: caller.name.clone(),
            role: PhantomData,
        })
    }
}

/// A JSON request body: `Content-Type: application/json` required (so a
/// cross-site form or `text/plain` post is refused), size-limited, and
/// parsed with the offending field named.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_content_type(req.headers(), "application/json")?;
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "invalid_request"
            };
            ApiError::new(status, error, rejection.body_text())
        })?;
        parse_json(&body).map(JsonBody)
    }
}

/// 415 unless the request's media type is `expected` (parameters such as
/// `charset` allowed).
pub fn require_content_type(
    headers: &axum::http::HeaderMap,
    expected: &str,
) -> Result<(), ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match media_type {
        Some(t) if t.eq_ignore_ascii_case(expected) => Ok(()),
        _ => {
            let mut err = ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the body must be sent as Content-Type: {expected}"),
            );
            err.field = Some("content-type".into());
            Err(err)
        }
    }
}

/// One identifier from the path (`{session_id}`, `{jti}`), checked like an
/// identifier in a body: bounded, no control characters.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_field("path", e.body_text()))?;
        let [(name, value)] = <[(String, String); 1]>::try_from(params)
            .map_err(|_| ApiError::internal("route has not exactly one path parameter"))?;
        crate::text::check_identifier(&value).map_err(|e| ApiError::bad_field(&name, e))?;
        Ok(Self(value))
    }
}
