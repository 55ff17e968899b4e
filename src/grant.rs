//! Grant signing: the Ed25519 key, minting grant JWTs, and the JWKS that
//! verifies them.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
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
pub struct GrantSigner {
    encoding_key: EncodingKey,
    kid: String,
    public_jwk: Value,
}

impl GrantSigner {
    /// Loads the PKCS#8 PEM key at `path`, creating it (mode 0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<Self, GrantError> {
        let key_err = |message: String| GrantError::Key {
            path: path.to_path_buf(),
            message,
        };
        let signing_key = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| key_err(e.to_string()))?
        } else {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(Default::default())
                .map_err(|e| key_err(e.to_string()))?;
            crate::secret_file::write_new(path, pem.as_bytes())
                .map_err(|e| key_err(e.to_string()))?;
            key
        };
        Self::from_key(&signing_key).map_err(key_err)
    }

    fn from_key(key: &SigningKey) -> Result<Self, String> {
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        // RFC 7638: members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(sha256(thumbprint_input.as_bytes()));
        Ok(Self {
            encoding_key: EncodingKey::from_ed_der(der.as_bytes()),
            public_jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "x": x,
                "kid": kid, "alg": "EdDSA", "use": "sig",
            }),
            kid,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK Set served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk] })
    }

    pub fn sign(&self, claims: &GrantClaims) -> Result<String, GrantError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key)
            .map_err(|e| GrantError::Sign(e.to_string()))
    }
}
