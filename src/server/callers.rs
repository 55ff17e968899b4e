//! Caller authentication: bearer tokens mapped to roles, and the guard of
//! the open mode (no callers configured).

use std::collections::HashMap;
use std::net::IpAddr;

use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};

use super::error::ApiError;
use crate::config::{CallerConfig, Role};
use crate::digest::sha256;

/// Who is calling, as authentication found: put in the request's
/// extensions for the handlers' role checks.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Every caller of the open mode: every role.
    fn local() -> Caller {
        Caller {
            name: "local".to_string(),
            role: Role::Admin,
        }
    }
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

    /// The caller a request's bearer token names (401 without a valid one).
    /// In the open mode every request is the `local` caller, with every
    /// role: the router lets only requests that pass [`local_only`] get here.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token {
            Some(token) => self.authenticate_token(token),
            None if self.is_open() => Ok(Caller::local()),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// The caller `token` names (401 unless it is a known caller's); in the
    /// open mode, the `local` caller.
    pub fn authenticate_token(&self, token: &str) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller::local());
        }
        self.by_token_hash
            .get(&sha256(token.trim().as_bytes()))
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The open mode trusts whoever can reach the loopback port, so it must
/// not be reachable through a browser: a web page can make the browser
/// post to 127.0.0.1 (cross-site request) or point a name of its own at
/// it (DNS rebinding). Refused: a `Host` that is not a loopback name or
/// address, an `Origin` other than a loopback one, and a request the
/// browser marks as cross-site.
pub fn local_only(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |field: &str, message: &str| {
        let mut err = ApiError::new(StatusCode::FORBIDDEN, "forbidden", message);
        err.field = Some(field.to_string());
        Err(err)
    };
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(is_loopback_authority) {
        return refuse(
            "host",
            "with no callers configured only a loopback Host (localhost, 127.0.0.1, [::1]) is served",
        );
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let local = origin
            .to_str()
            .ok()
            .and_then(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
            })
            .is_some_and(is_loopback_authority);
        if !local {
            return refuse(
                "origin",
                "with no callers configured cross-site requests are refused",
            );
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return refuse(
            "sec-fetch-site",
            "with no callers configured cross-site requests are refused",
        );
    }
    Ok(())
}

/// `localhost`, a 127.0.0.0/8 address or `[::1]`, with an optional port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, port)) if port.is_empty() || is_port(port) => host,
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        },
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .unwrap_or(text)
        .parse::<u16>()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_loopback_authority;

    #[test]
    fn loopback_authorities() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:80",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]:80",
            "127.0.0.1:x",
            "localhost:99999",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }
}
