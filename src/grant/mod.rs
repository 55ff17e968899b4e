//! Grants: the Ed25519 key, minting grant JWTs, the JWKS that verifies
//! them, checking a presented grant, and introspection.
#![deny(clippy::arithmetic_side_effects)]

pub(crate) mod introspection;
pub(crate) mod status;

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
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
/// (BENCHMARKS.md); and with aws-lc (jsonwebtoken's own backend) rather
/// than ed25519-dalek, whose base-point multiplication is slower here. The
/// tests verify every grant with `jsonwebtoken`.
pub struct GrantSigner {
    key: Ed25519KeyPair,
    /// base64url of the fixed JOSE header.
    encoded_header: String,
    kid: String,
    public_jwk: Value,
    decoding_key: DecodingKey,
    validation: Validation,
    /// Keys rotated out: they sign nothing, but grants they signed still
    /// verify, and they stay in the JWKS, until `keep_until`.
    retired: Vec<RetiredVerifier>,
}

/// A rotated-out key, public half only.
struct RetiredVerifier {
    record: RetiredKey,
    decoding_key: DecodingKey,
}

/// What `trustpath keys rotate` keeps of a key it retires, in
/// `DATA_DIR/retired-grant-keys/KID.json`: the public key and until when
/// grants it signed may still be presented (its last grant's longest
/// lifetime, plus leeway).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RetiredKey {
    pub kid: String,
    pub public_jwk: Value,
    /// Unix seconds.
    pub retired_at: i64,
    /// Unix seconds: after it, the key leaves the JWKS and verifies nothing.
    pub keep_until: i64,
}

/// Where retired grant keys are kept.
pub fn retired_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("retired-grant-keys")
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

    /// [`GrantSigner::load_or_create`], with the retired keys in `retired`
    /// whose window is still open at `now` (Unix seconds). Records whose
    /// window has closed are deleted: those keys have left for good.
    pub fn load_with_retired(
        path: &Path,
        retired: &Path,
        issuer: &str,
        now: i64,
    ) -> Result<Self, GrantError> {
        let mut signer = Self::load_or_create(path, issuer)?;
        let key_err = |message: String| GrantError::Key {
            path: retired.to_path_buf(),
            message,
        };
        let entries = match std::fs::read_dir(retired) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(signer),
            Err(e) => return Err(key_err(e.to_string())),
        };
        for entry in entries {
            let file = entry.map_err(|e| key_err(e.to_string()))?.path();
            if file.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&file).map_err(|e| key_err(e.to_string()))?;
            let record: RetiredKey = serde_json::from_str(&text)
                .map_err(|e| key_err(format!("{}: {e}", file.display())))?;
            if record.keep_until <= now {
                std::fs::remove_file(&file).map_err(|e| key_err(e.to_string()))?;
                tracing::info!(kid = %record.kid, "a retired grant key's window closed: it left the JWKS");
                continue;
            }
            let jwk = serde_json::from_value(record.public_jwk.clone())
                .map_err(|e| key_err(format!("{}: {e}", file.display())))?;
            let decoding_key = DecodingKey::from_jwk(&jwk)
                .map_err(|e| key_err(format!("{}: {e}", file.display())))?;
            signer.retired.push(RetiredVerifier {
                record,
                decoding_key,
            });
        }
        signer
            .retired
            .sort_by(|a, b| a.record.kid.cmp(&b.record.kid));
        Ok(signer)
    }

    /// Adds configured verification keys (public JWK files with a `kid`):
    /// they verify grants and are in the JWKS while configured.
    pub fn with_verification_keys(mut self, files: &[PathBuf]) -> Result<Self, GrantError> {
        for file in files {
            let key_err = |message: String| GrantError::Key {
                path: file.clone(),
                message,
            };
            let text = std::fs::read_to_string(file).map_err(|e| key_err(e.to_string()))?;
            let public_jwk: Value =
                serde_json::from_str(&text).map_err(|e| key_err(format!("not JSON: {e}")))?;
            let Some(kid) = public_jwk["kid"].as_str().map(str::to_string) else {
                return Err(key_err("the JWK has no kid".into()));
            };
            if public_jwk.get("d").is_some() {
                return Err(key_err(
                    "the JWK holds a private key (d): give the public key only".into(),
                ));
            }
            let jwk = serde_json::from_value(public_jwk.clone())
                .map_err(|e| key_err(format!("not a JWK: {e}")))?;
            let decoding_key =
                DecodingKey::from_jwk(&jwk).map_err(|e| key_err(format!("not a JWK: {e}")))?;
            self.retired.push(RetiredVerifier {
                record: RetiredKey {
                    kid,
                    public_jwk,
                    retired_at: 0,
                    keep_until: i64::MAX,
                },
                decoding_key,
            });
        }
        Ok(self)
    }

    /// Retires the key at `path` (its public half recorded in `retired`,
    /// kept until `keep_until`) and puts a new key in its place; returns
    /// (old kid, new kid). The new key is written beside the old one and
    /// renamed over it, so the path always holds a whole key.
    pub fn rotate(
        path: &Path,
        retired: &Path,
        issuer: &str,
        now: i64,
        keep_until: i64,
    ) -> Result<(String, String), GrantError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key_err = |p: &Path, message: String| GrantError::Key {
            path: p.to_path_buf(),
            message,
        };
        if !path.exists() {
            return Err(key_err(path, "no grant key to rotate".into()));
        }
        let old = Self::load_or_create(path, issuer)?;
        let record = RetiredKey {
            kid: old.kid.clone(),
            public_jwk: old.public_jwk.clone(),
            retired_at: now,
            keep_until,
        };
        std::fs::create_dir_all(retired).map_err(|e| key_err(retired, e.to_string()))?;
        let record_path = retired.join(format!("{}.json", old.kid));
        let text = serde_json::to_string_pretty(&record)
            .map_err(|e| key_err(&record_path, e.to_string()))?;
        std::fs::write(&record_path, text).map_err(|e| key_err(&record_path, e.to_string()))?;
        let new_key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = new_key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| key_err(path, e.to_string()))?;
        let staged = path.with_extension("pem.new");
        let _ = std::fs::remove_file(&staged);
        crate::secret_file::write_new(&staged, pem.as_bytes())
            .map_err(|e| key_err(&staged, e.to_string()))?;
        std::fs::rename(&staged, path).map_err(|e| key_err(path, e.to_string()))?;
        let new = Self::from_key(&new_key, issuer).map_err(|m| key_err(path, m))?;
        Ok((old.kid, new.kid))
    }

    fn from_key(key: &SigningKey, issuer: &str) -> Result<Self, String> {
        let public = key.verifying_key();
        // aws-lc checks that the public key is the seed's.
        let pair = Ed25519KeyPair::from_seed_and_public_key(key.as_bytes(), public.as_bytes())
            .map_err(|e| format!("the key does not load into aws-lc: {e}"))?;
        let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
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
            key: pair,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            public_jwk,
            kid,
            decoding_key,
            validation,
            retired: Vec::new(),
        })
    }

    /// The retired keys still in their window at `now`.
    fn retired_at(&self, now: i64) -> impl Iterator<Item = &RetiredVerifier> {
        self.retired
            .iter()
            .filter(move |r| r.record.keep_until > now)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (with `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The JWK Set served at `/.well-known/jwks.json`: the signing key,
    /// then the retired keys whose grants may still be presented.
    pub fn jwks(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut keys = vec![self.public_jwk.clone()];
        keys.extend(self.retired_at(now).map(|r| r.record.public_jwk.clone()));
        json!({ "keys": keys })
    }

    /// A compact JWS (RFC 7515) over the claims, EdDSA (RFC 8037).
    pub fn sign(&self, claims: &GrantClaims) -> Result<String, GrantError> {
        let payload = serde_json::to_vec(claims).map_err(|e| GrantError::Sign(e.to_string()))?;
        let mut token = self.encoded_header.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// The claims of a grant this key signed, or why it is not one. Does not
    /// look at `exp`: see [`status::GrantChecker`].
    pub fn verify(&self, token: &str) -> Result<GrantClaims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("grant is malformed: {e}"))?;
        let now = chrono::Utc::now().timestamp();
        let key = match header.kid.as_deref() {
            Some(kid) if kid == self.kid => &self.decoding_key,
            Some(kid) => match self.retired_at(now).find(|r| r.record.kid == kid) {
                Some(retired) => &retired.decoding_key,
                None => return Err("grant was not signed by a current trustpath key".to_string()),
            },
            None => return Err("grant was not signed by a current trustpath key".to_string()),
        };
        jsonwebtoken::decode::<GrantClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| format!("grant does not verify: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ed25519 is deterministic (RFC 8032): aws-lc must sign exactly what
    /// ed25519-dalek, which made and stores the key, would.
    #[test]
    fn a_grant_is_signed_as_ed25519_dalek_would_and_verifies() {
        use ed25519_dalek::Signer as _;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let signer = GrantSigner::from_key(&key, "https://trustpath.test").unwrap();
        let claims = GrantClaims {
            iss: "https://trustpath.test".into(),
            sub: "client".into(),
            aud: None,
            scope: "files:read".into(),
            tools: vec!["read_file".into()],
            sid: "s-1".into(),
            jti: "g-1".into(),
            decision_id: "d-1".into(),
            iat: 1,
            exp: 2,
            act: None,
        };
        let token = signer.sign(&claims).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let expected = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
        assert_eq!(signature, expected);
        assert_eq!(signer.verify(&token).unwrap().jti, "g-1");
    }
}
