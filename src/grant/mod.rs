//! Grants: the Ed25519 key, minting grant JWTs, the JWKS that verifies
//! them, checking a presented grant, and introspection.
#![deny(clippy::arithmetic_side_effects)]

pub(crate) mod introspection;
pub(crate) mod status;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use crate::digest::sha256;
use crate::model::GrantClaims;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("grant signing failed: {0}")]
    Sign(String),
}

/// The key that signs grants. Its `kid` is the RFC 7638 thumbprint of the
/// public key, so the same key always has the same `kid`.
///
/// Grants are signed here with the expanded key kept in memory, not through
/// `jsonwebtoken::encode`, which re-parses the PKCS#8 key and recomputes
/// the public key on every call: about 49 µs against 23 µs per grant
/// (BENCHMARKS.md). The tests verify every grant with `jsonwebtoken`.
pub struct GrantSigner {
    key: SigningKey,
    /// base64url of the fixed JOSE header.
    encoded_header: String,
    kid: String,
    public_jwk: Value,
    decoding_key: DecodingKey,
    validation: Validation,
}

impl GrantSigner {
    /// Loads the PKCS#8 PEM key at `path`, creating it (mode 0600) when absent.
    /// Verification expects `issuer` as the grants' `iss`.
    pub fn load_or_create(path: &Path, issuer: &str) -> Result<Self, GrantError> {
        let key_err = |message: String| GrantError::Key {
            path: path.to_path_buf(),
            message,
        };
        let signing_key = crate::secret_file::ed25519_key(path).map_err(key_err)?;
        Self::from_key(&signing_key, issuer).map_err(key_err)
    }

    fn from_key(key: &SigningKey, issuer: &str) -> Result<Self, String> {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        // RFC 7638: members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(sha256(thumbprint_input.as_bytes()));
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let public_jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "x": x,
            "kid": kid, "alg": "EdDSA", "use": "sig",
        });
        let jwk = serde_json::from_value(public_jwk.clone()).map_err(|e| e.to_string())?;
        let decoding_key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        // Expiry is checked by the caller against its own `now`, so a check
        // can say "expired" rather than "invalid", and replay is deterministic.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "jti"]);
        Ok(Self {
            key: key.clone(),
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            public_jwk,
            kid,
            decoding_key,
            validation,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (with `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The JWK Set served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk] })
    }

    /// A compact JWS (RFC 7515) over the claims, EdDSA (RFC 8037).
    pub fn sign(&self, claims: &GrantClaims) -> Result<String, GrantError> {
        let payload = serde_json::to_vec(claims).map_err(|e| GrantError::Sign(e.to_string()))?;
        let mut token = self.encoded_header.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
    }

    /// The claims of a grant this key signed, or why it is not one. Does not
    /// look at `exp`: see [`status::GrantChecker`].
    pub fn verify(&self, token: &str) -> Result<GrantClaims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("grant is malformed: {e}"))?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err("grant was not signed by a current trustpath key".to_string());
        }
        jsonwebtoken::decode::<GrantClaims>(token, &self.decoding_key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| format!("grant does not verify: {e}"))
    }
}
