//! Identity proofs: JWT client assertions (RFC 7523 `private_key_jwt`) and
//! workload JWTs, checked against a JWK Set.
//!
//! Every number here comes from the presented token, so all arithmetic on
//! it is checked (the lint below keeps it that way).
#![deny(clippy::arithmetic_side_effects)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::digest::sha256_hex;
pub use crate::model::parse_algorithm;
use crate::model::ProofRecord;

/// A JWT as presented, before any check: what the log may keep of it.
#[derive(Debug, Clone)]
pub struct PresentedJwt {
    pub header: Value,
    pub claims: Value,
    pub sha256: String,
}

impl PresentedJwt {
    /// Splits and decodes the token without trusting it. The SHA-256 is
    /// always there, even for garbage, so a reviewer can match what was sent.
    pub fn inspect(token: &str) -> Self {
        let mut parts = token.split('.');
        let mut decode = || {
            parts
                .next()
                .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .unwrap_or(Value::Null)
        };
        let header = decode();
        let claims = decode();
        Self {
            header,
            claims,
            sha256: sha256_hex(token.as_bytes()),
        }
    }

    pub fn record(&self) -> ProofRecord {
        ProofRecord {
            header: self.header.clone(),
            claims: self.claims.clone(),
            sha256: self.sha256.clone(),
        }
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn key_id(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
}

/// The latest time a token may name: 9999-12-31T23:59:59Z. A time claim
/// outside `0..=MAX_UNIX_TIME` is refused before anything is computed with it.
pub const MAX_UNIX_TIME: i64 = 253_402_300_799;

/// What a proof must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// Exact `iss`.
    pub issuer: &'a str,
    /// Exact `sub`, when known in advance (client assertions and workload
    /// JWTs: the client_id).
    pub subject: Option<&'a str>,
    /// A claim that must equal a value (ID-JAG: `client_id`).
    pub bound_claim: Option<(&'a str, &'a str)>,
    /// `aud` must name at least one of these.
    pub audiences: Vec<String>,
    pub leeway_seconds: u64,
    /// Longest `exp - iat` (or `exp - now` without `iat`) accepted.
    pub max_lifetime_seconds: Option<u64>,
    pub require_jti: bool,
    pub algorithms: &'a [Algorithm],
}

/// The checked facts of a proof.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    pub issuer: String,
    pub subject: String,
    pub key_id: Option<String>,
    pub jti: Option<String>,
    pub exp: i64,
}

#[derive(Deserialize)]
struct CheckedClaims {
    iss: String,
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// `exp`, `nbf` and `iat`, when present, must be whole seconds in
/// `0..=MAX_UNIX_TIME`: a float, a string or a time at the edge of `i64`
/// is refused up front, so nothing later can overflow on it.
fn check_time_claims(claims: &Value) -> Result<(), String> {
    for name in ["exp", "nbf", "iat"] {
        let Some(value) = claims.get(name) else {
            continue;
        };
        let in_range = value
            .as_i64()
            .is_some_and(|t| (0..=MAX_UNIX_TIME).contains(&t));
        if !in_range {
            return Err(format!(
                "assertion {name} is not a time in range (whole seconds from 0 to {MAX_UNIX_TIME})"
            ));
        }
    }
    Ok(())
}

/// Verifies signature and claims. Every failure is a reason, never a panic.
pub fn verify(
    token: &str,
    presented: &PresentedJwt,
    keys: &JwkSet,
    expect: &Expectations<'_>,
    now: i64,
) -> Result<VerifiedProof, String> {
    let alg_name = presented
        .header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("assertion header has no alg")?;
    let alg = parse_algorithm(alg_name)
        .filter(|a| expect.algorithms.contains(a))
        .ok_or_else(|| format!("assertion alg {alg_name:?} is not allowed"))?;
    check_time_claims(&presented.claims)?;
    let jwk = select_key(keys, presented.key_id(), alg)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("signing key is unusable: {e}"))?;

    let mut validation = Validation::new(alg);
    validation.leeway = expect.leeway_seconds;
    validation.validate_nbf = true;
    validation.set_issuer(&[expect.issuer]);
    validation.sub = expect.subject.map(str::to_string);
    validation.set_audience(&expect.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);

    let data = jsonwebtoken::decode::<CheckedClaims>(token, &key, &validation)
        .map_err(|e| describe(e.kind()))?;
    let claims = data.claims;

    let leeway = i64::try_from(expect.leeway_seconds).unwrap_or(i64::MAX);
    if let Some(iat) = claims.iat {
        if iat > now.saturating_add(leeway) {
            return Err("assertion iat is in the future".to_string());
        }
    }
    if let Some(max) = expect.max_lifetime_seconds {
        // Both ends are in range, so the difference cannot overflow; it is
        // checked all the same.
        let lifetime = claims
            .exp
            .checked_sub(claims.iat.unwrap_or(now))
            .ok_or("assertion lifetime is out of range")?;
        if lifetime > i64::try_from(max).unwrap_or(i64::MAX) {
            return Err(format!(
                "assertion lifetime {lifetime}s is longer than the allowed {max}s"
            ));
        }
    }
    if expect.require_jti && claims.jti.as_deref().is_none_or(str::is_empty) {
        return Err("assertion has no jti".to_string());
    }
    if let Some((name, expected)) = expect.bound_claim {
        if presented.claim_str(name) != Some(expected) {
            return Err(format!("assertion {name} is not the client_id"));
        }
    }
    Ok(VerifiedProof {
        issuer: claims.iss,
        subject: claims.sub,
        key_id: jwk.common.key_id.clone(),
        jti: claims.jti,
        exp: claims.exp,
    })
}

/// Picks the key named by `kid`, or the only key when no `kid` is given, and
/// refuses keys that do not fit the algorithm.
fn select_key<'k>(keys: &'k JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<&'k Jwk, String> {
    let jwk = match kid {
        Some(kid) => keys
            .find(kid)
            .ok_or_else(|| format!("no key with kid {kid:?} in the client's keys"))?,
        None => match keys.keys.as_slice() {
            [only] => only,
            [] => return Err("the client's key set is empty".to_string()),
            _ => return Err("assertion has no kid and the key set has several keys".to_string()),
        },
    };
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err("symmetric keys are not accepted".to_string());
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        if key_alg.to_string() != format!("{alg:?}") {
            return Err(format!("key is for {key_alg}, assertion uses {alg:?}"));
        }
    }
    let fits = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => alg.family() == jsonwebtoken::AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => alg.family() == jsonwebtoken::AlgorithmFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => alg.family() == jsonwebtoken::AlgorithmFamily::Ed,
        AlgorithmParameters::OctetKey(_) => false,
    };
    if !fits {
        return Err(format!("key type does not match alg {alg:?}"));
    }
    Ok(jwk)
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "assertion signature does not verify".into(),
        ErrorKind::ExpiredSignature => "assertion has expired".into(),
        ErrorKind::ImmatureSignature => "assertion is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "assertion iss is not the expected issuer".into(),
        ErrorKind::InvalidSubject => "assertion sub is not the client_id".into(),
        ErrorKind::InvalidAudience => {
            "assertion aud does not name this authorization server".into()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("assertion has no {c} claim"),
        ErrorKind::InvalidAlgorithm => "assertion alg does not match the key".into(),
        other => format!("assertion is malformed: {other:?}"),
    }
}

/// Parses a JWK Set from JSON, naming what is wrong.
pub fn parse_jwks(value: &Value) -> Result<JwkSet, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("jwks is not a valid JWK Set: {e}"))
}
