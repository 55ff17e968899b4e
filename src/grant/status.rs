//! What a presented grant is worth right now: signed by trustpath, logged
//! as issued, not revoked, not expired. Tool calls and introspection share
//! this one check, so they always agree.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;

use super::GrantSigner;
use crate::digest::sha256_hex;
use crate::log::entry::GrantIssuedRecord;
use crate::log::grants;
use crate::log::{LogError, LogStore};
use crate::model::{GrantCheck, GrantClaims, GrantStatus};

pub struct GrantChecker {
    signer: Arc<GrantSigner>,
    store: LogStore,
}

impl GrantChecker {
    pub fn new(signer: Arc<GrantSigner>, store: LogStore) -> Self {
        Self { signer, store }
    }

    /// Checks a presented grant token at `now` (Unix seconds).
    pub fn check_token(&self, token: &str, now: i64) -> GrantCheck {
        let token_sha256 = Some(sha256_hex(token.as_bytes()));
        match self.signer.verify(token) {
            Ok(claims) => self.check_claims(claims, token_sha256, now),
            Err(reason) => GrantCheck::failed(GrantStatus::Invalid, reason, token_sha256),
        }
    }

    /// Checks the grant logged as issued under `jti`: for a resource server
    /// that holds the AS's access token, which carries the grant id, not the
    /// grant itself.
    pub fn check_grant_id(&self, jti: &str, now: i64) -> GrantCheck {
        let issued = grants::issued_grant(&self.store, jti);
        self.check_logged(issued, || format!("no grant {jti} was issued"), now)
    }

    /// Checks the newest grant issued in `session_id`.
    pub fn check_session(&self, session_id: &str, now: i64) -> GrantCheck {
        let issued = grants::session_grant(&self.store, session_id);
        self.check_logged(issued, || format!("session {session_id} has no grant"), now)
    }

    /// A grant found in the log rather than presented as a token.
    fn check_logged(
        &self,
        issued: Result<Option<GrantIssuedRecord>, LogError>,
        missing: impl FnOnce() -> String,
        now: i64,
    ) -> GrantCheck {
        match issued {
            Ok(Some(issued)) => self.check_claims(issued.grant, None, now),
            Ok(None) => GrantCheck::failed(GrantStatus::Missing, missing(), None),
            Err(e) => unreadable(e, None),
        }
    }

    /// Claims from a verified token or from the log: the rest of the check.
    fn check_claims(
        &self,
        claims: GrantClaims,
        token_sha256: Option<String>,
        now: i64,
    ) -> GrantCheck {
        // A correctly signed grant that was never logged as issued is not
        // one trustpath gave out (a stolen key, a lost log): refuse it. Nor
        // is a token that differs from the one logged under its jti (one
        // re-signed with wider scope, tools or expiry).
        match grants::issued_grant(&self.store, &claims.jti) {
            Ok(Some(issued)) => {
                if token_sha256
                    .as_ref()
                    .is_some_and(|presented| *presented != issued.token_sha256)
                {
                    return GrantCheck::failed(
                        GrantStatus::Invalid,
                        format!(
                            "grant token is not the one logged as issued under jti {} \
                             (its SHA-256 differs)",
                            claims.jti
                        ),
                        token_sha256,
                    );
                }
            }
            Ok(None) => {
                return GrantCheck::failed(
                    GrantStatus::Invalid,
                    format!("grant {} was never logged as issued", claims.jti),
                    token_sha256,
                )
            }
            Err(e) => return unreadable(e, token_sha256),
        }
        let (status, reason) = match grants::revocation_of(&self.store, &claims) {
            Err(e) => return unreadable(e, token_sha256),
            Ok(Some(revoked)) => (
                GrantStatus::Revoked,
                Some(format!(
                    "grant revoked ({}, log entry {})",
                    revoked.kind, revoked.seq
                )),
            ),
            Ok(None) if claims.exp <= now => (
                GrantStatus::Expired,
                Some(format!(
                    "grant expired {}s ago",
                    now.saturating_sub(claims.exp)
                )),
            ),
            Ok(None) => (GrantStatus::Active, None),
        };
        GrantCheck {
            status,
            reason,
            token_sha256,
            scopes: claims
                .scope
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            claims: Some(claims),
        }
    }
}

/// The grant's state could not be read: it does not count (fail closed).
fn unreadable(e: impl std::fmt::Display, token_sha256: Option<String>) -> GrantCheck {
    GrantCheck::failed(
        GrantStatus::Invalid,
        format!("grant state could not be read: {e}"),
        token_sha256,
    )
}
