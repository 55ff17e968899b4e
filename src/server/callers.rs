//! Caller authentication: bearer tokens mapped to roles.

use std::collections::HashMap;

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use super::error::ApiError;
use crate::config::{CallerConfig, Role};
use crate::digest::sha256;

pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Known callers by the SHA-256 of their token: the server never holds the
/// tokens themselves.
pub struct Callers {
    by_token_hash: HashMap<[u8; 32], Caller>,
}

impl Callers {
    pub fn from_config(callers: &[CallerConfig]) -> Self {
        let by_token_hash = callers
            .iter()
            .filter_map(|c| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&c.token_sha256, &mut hash).ok()?;
                Some((
                    hash,
                    Caller {
                        name: c.name.clone(),
                        role: c.role,
                    },
                ))
            })
            .collect();
        Self { by_token_hash }
    }

    /// With no callers configured the server is loopback-only (checked at
    /// start) and open to local callers.
    pub fn is_open(&self) -> bool {
        self.by_token_hash.is_empty()
    }

    /// Returns the caller's name if its token carries `role`.
    pub fn authorize(&self, headers: &HeaderMap, role: Role) -> Result<String, ApiError> {
        if self.is_open() {
            return Ok("local".to_string());
        }
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        let caller = self
            .by_token_hash
            .get(&sha256(token.trim().as_bytes()))
            .ok_or_else(ApiError::unauthorized)?;
        if !caller.role.permits(role) {
            return Err(ApiError::forbidden(role_name(role)));
        }
        Ok(caller.name.clone())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Decide => "decide",
        Role::Audit => "audit",
        Role::Enforce => "enforce",
        Role::Admin => "admin",
    }
}
