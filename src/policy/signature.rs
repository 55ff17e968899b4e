//! Signed OPA bundles: `.signatures.json` holds one JWS whose payload lists
//! every file of the bundle with its digest. The JWS must verify with a
//! configured key, its scope must match, and the listed files must be
//! exactly the bundle's files with those digests: what OPA checks before it
//! activates a signed bundle.
//!
//! Digests follow OPA: a data document, `.manifest` or `.signatures.json`
//! is hashed as its JSON value (object keys sorted, no spaces, strings as
//! Go writes them without HTML escaping, numbers as written), so the
//! signature does not depend on formatting; any other file as its bytes.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Digest as _;

use super::bundle::{Bundle, BundleError, MANIFEST_FILE, SIGNATURES_FILE};
use crate::config::BundleConfig;

/// `.signatures.json`.
#[derive(Deserialize)]
struct SignaturesFile {
    signatures: Vec<String>,
}

/// The signed payload.
#[derive(Deserialize)]
struct SignedFiles {
    files: Vec<FileDigest>,
    /// The key id, when the JWS header names none (deprecated in OPA).
    #[serde(default)]
    keyid: String,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
struct FileDigest {
    name: String,
    hash: String,
    algorithm: String,
}

/// The keys bundles must be signed with, from `[bundle]`.
pub struct BundleVerifier {
    keys: BTreeMap<String, (Algorithm, DecodingKey)>,
    key_id: Option<String>,
    scope: String,
}

impl std::fmt::Debug for BundleVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleVerifier")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("key_id", &self.key_id)
            .field("scope", &self.scope)
            .finish()
    }
}

impl BundleVerifier {
    /// The verifier `[bundle]` configures; `None` when it names no keys
    /// (bundles are then not checked for signatures).
    pub fn from_config(config: &BundleConfig) -> Result<Option<Self>, String> {
        if config.verification_keys.is_empty() {
            return Ok(None);
        }
        let mut keys = BTreeMap::new();
        for (i, key) in config.verification_keys.iter().enumerate() {
            let at = format!("bundle.verification_keys[{i}] ({})", key.id);
            let algorithm: Algorithm = key
                .algorithm
                .parse()
                .map_err(|_| format!("{at}: unknown algorithm {:?}", key.algorithm))?;
            let bytes = std::fs::read(&key.file)
                .map_err(|e| format!("{at}: cannot read {}: {e}", key.file.display()))?;
            let decoding = decoding_key(algorithm, &bytes)
                .map_err(|e| format!("{at}: {}: {e}", key.file.display()))?;
            keys.insert(key.id.clone(), (algorithm, decoding));
        }
        Ok(Some(Self {
            keys,
            key_id: config.key_id.clone(),
            scope: config.scope.clone(),
        }))
    }

    /// Checks `bundle`'s signature and every file's digest. Returns the id
    /// of the key that signed it.
    pub fn verify(&self, bundle: &Bundle) -> Result<String, BundleError> {
        let bad = |m: String| BundleError::Signature(m);
        let Some(signatures) = &bundle.signatures else {
            return Err(bad(format!(
                "the bundle has no {SIGNATURES_FILE}, and bundles must be signed"
            )));
        };
        let file: SignaturesFile = serde_json::from_slice(signatures)
            .map_err(|e| bad(format!("{SIGNATURES_FILE}: {e}")))?;
        let [token] = file.signatures.as_slice() else {
            return Err(bad(format!(
                "{SIGNATURES_FILE} must hold exactly one JWT, it holds {}",
                file.signatures.len()
            )));
        };
        let (key_id, signed) = self.verify_token(token)?;
        let mut listed: BTreeMap<&str, &FileDigest> = BTreeMap::new();
        for digest in &signed.files {
            listed.insert(digest.name.trim_start_matches('/'), digest);
        }
        for (path, bytes) in &bundle.files {
            let Some(digest) = listed.remove(path.as_str()) else {
                return Err(bad(format!("{path} is not in the bundle's signature")));
            };
            let actual = file_digest(path, bytes, &digest.algorithm)?;
            let expected = hex::decode(&digest.hash)
                .map_err(|_| bad(format!("{path}: the signed digest is not hex")))?;
            if actual != expected {
                return Err(bad(format!(
                    "{path}: digest mismatch (signed {}, bundle has {})",
                    digest.hash,
                    hex::encode(&actual)
                )));
            }
        }
        if let Some(missing) = listed.keys().next() {
            return Err(bad(format!(
                "{missing} is in the bundle's signature but not in the bundle"
            )));
        }
        Ok(key_id)
    }

    /// Verifies the JWS and its scope; the key is the configured `key_id`,
    /// else the header's `kid`, else the payload's `keyid` (OPA's order).
    fn verify_token(&self, token: &str) -> Result<(String, SignedFiles), BundleError> {
        let bad = |m: String| BundleError::Signature(m);
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| bad(format!("the JWT: {e}")))?;
        let unverified = unverified_payload(token)?;
        let key_id = self
            .key_id
            .clone()
            .or(header.kid)
            .filter(|k| !k.is_empty())
            .or_else(|| Some(unverified.keyid).filter(|k| !k.is_empty()))
            .ok_or_else(|| bad("the JWT names no key id (kid)".into()))?;
        let (algorithm, key) = self
            .keys
            .get(&key_id)
            .ok_or_else(|| bad(format!("key id {key_id:?} is not a configured key")))?;
        let mut validation = Validation::new(*algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let signed = jsonwebtoken::decode::<SignedFiles>(token, key, &validation)
            .map_err(|e| bad(format!("the JWT does not verify with key {key_id:?}: {e}")))?
            .claims;
        if signed.scope != self.scope {
            return Err(bad(format!(
                "scope mismatch: signed {:?}, required {:?}",
                signed.scope, self.scope
            )));
        }
        Ok((key_id, signed))
    }
}

/// The payload before its signature is checked: only to find the key id.
fn unverified_payload(token: &str) -> Result<SignedFiles, BundleError> {
    use base64::Engine as _;
    let bad = |m: String| BundleError::Signature(m);
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| bad("the JWT is not a compact JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| bad(format!("the JWT's payload: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("the JWT's payload: {e}")))
}

fn decoding_key(algorithm: Algorithm, bytes: &[u8]) -> Result<DecodingKey, String> {
    use Algorithm::*;
    let text = String::from_utf8_lossy(bytes);
    if !matches!(algorithm, HS256 | HS384 | HS512) && text.contains("PRIVATE KEY") {
        return Err("holds a private key; configure the public key".into());
    }
    let key = match algorithm {
        HS256 | HS384 | HS512 => Ok(DecodingKey::from_secret(bytes)),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(bytes),
        ES256 | ES384 => DecodingKey::from_ec_pem(bytes),
        EdDSA => DecodingKey::from_ed_pem(bytes),
    };
    key.map_err(|e| format!("not a PEM public key for {algorithm:?}: {e}"))
}

/// A bundle file's digest as OPA computes it for signatures.
pub fn file_digest(path: &str, bytes: &[u8], algorithm: &str) -> Result<Vec<u8>, BundleError> {
    let content = if is_structured(path) {
        canonical_document(path, bytes)?
    } else {
        bytes.to_vec()
    };
    Ok(match algorithm {
        "SHA-224" => sha2::Sha224::digest(&content).to_vec(),
        "SHA-256" => sha2::Sha256::digest(&content).to_vec(),
        "SHA-384" => sha2::Sha384::digest(&content).to_vec(),
        "SHA-512" => sha2::Sha512::digest(&content).to_vec(),
        "SHA-512-224" => sha2::Sha512_224::digest(&content).to_vec(),
        "SHA-512-256" => sha2::Sha512_256::digest(&content).to_vec(),
        // OPA accepts MD5 and SHA-1 too; a forged file is easy with those.
        other => {
            return Err(BundleError::Signature(format!(
                "{path}: digest algorithm {other:?} is not accepted (use SHA-256 or stronger)"
            )))
        }
    })
}

/// The files OPA hashes as JSON values.
fn is_structured(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(name, "data.json" | "data.yaml") || path == MANIFEST_FILE || path == SIGNATURES_FILE
}

/// A structured file's canonical bytes: what Go's `json.Marshal` (without
/// HTML escaping) writes for the value OPA decodes with `UseNumber`.
fn canonical_document(path: &str, bytes: &[u8]) -> Result<Vec<u8>, BundleError> {
    let bad = |e: String| BundleError::Signature(format!("{path}: {e}"));
    let text = if path.ends_with(".yaml") {
        let value: serde_json::Value =
            yaml_serde::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        serde_json::to_string(&value).map_err(|e| bad(e.to_string()))?
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|e| bad(e.to_string()))?
    };
    let raw: Box<RawValue> = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(text.len());
    canonical(&raw, &mut out).map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

fn canonical(raw: &RawValue, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            // Go's map keeps the last of repeated keys; so does this one.
            let object: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text)?;
            out.push(b'{');
            for (i, (key, value)) in object.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                go_string(key, out);
                out.push(b':');
                canonical(value, out)?;
            }
            out.push(b'}');
        }
        Some(b'[') => {
            let array: Vec<Box<RawValue>> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, value) in array.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(value, out)?;
            }
            out.push(b']');
        }
        Some(b'"') => go_string(&serde_json::from_str::<String>(text)?, out),
        // Numbers keep their text (json.Number); true, false, null as written.
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// A string as Go's encoder writes it with HTML escaping off: serde_json's
/// escapes plus the JavaScript line separators.
fn go_string(s: &str, out: &mut Vec<u8>) {
    let quoted = serde_json::to_string(s).expect("a string serialises");
    for c in quoted.chars() {
        match c {
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical_text(text: &str) -> String {
        String::from_utf8(canonical_document("data.json", text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn documents_hash_as_gos_marshal_writes_them() {
        // OPA's own hash test: the digest of a structured file is that of
        // json.Marshal of its value, keys sorted, numbers as written.
        assert_eq!(
            canonical_text(
                r#"{ "key2": {"c": 123.45678911111111111111111111111111111111111111111111111,
                    "b": 1, "a": 0}, "key1": ["element1", "element2"] }"#
            ),
            r#"{"key1":["element1","element2"],"key2":{"a":0,"b":1,"c":123.45678911111111111111111111111111111111111111111111111}}"#
        );
        assert_eq!(
            canonical_text(r#""<foo></foo> & \u2028""#),
            "\"<foo></foo> & \\u2028\""
        );
        assert_eq!(
            canonical_text(r#"["$", "α", "©", "™", 1e3, 1.0]"#),
            r#"["$","α","©","™",1e3,1.0]"#
        );
        assert_eq!(canonical_text(r#"{"a": 1, "a": 2}"#), r#"{"a":2}"#);
    }

    #[test]
    fn rego_files_hash_as_bytes() {
        let bytes = b"package x\n";
        assert_eq!(
            file_digest("x/x.rego", bytes, "SHA-256").unwrap(),
            sha2::Sha256::digest(bytes).to_vec()
        );
        assert!(file_digest("x/x.rego", bytes, "MD5").is_err());
    }
}
