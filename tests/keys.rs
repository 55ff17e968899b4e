//! Grant key rotation over the real CLI and server: grants signed before
//! and after a rotation both verify and introspect, the log records the
//! new key, and the old key leaves the JWKS once its grants have expired.

mod common;

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// The grant verifies with the key the served JWKS holds for its `kid`.
fn verifies_with(jwks: &Value, token: &str) -> bool {
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let Some(jwk) = header.kid.as_deref().and_then(|kid| set.find(kid)) else {
        return false;
    };
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).is_ok()
}

#[tokio::test]
async fn a_rotated_grant_key_verifies_until_its_grants_expire_then_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("trustpath.toml");
    // Short grants and little leeway: the old key's window is 4 + 1 s.
    std::fs::write(
        &config,
        "[grants]\ndefault_ttl_seconds = 4\nmax_ttl_seconds = 4\n\n[assertions]\nleeway_seconds = 1\n",
    )
    .unwrap();
    let key = TestKey::generate("k1");
    let rotate = || {
        trustpath(&[
            "keys",
            "rotate",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
    };

    let server = Server::start(&data, &repo_policies(), Some(&config));
    let before = connect(&server, &key, "s-before", &["files:read"]).await;
    let old_kids = kids(&get_json(&server, "/.well-known/jwks.json").await);
    assert_eq!(old_kids.len(), 1);
    // Not while a server runs on the directory.
    let (ok, _, err) = rotate();
    assert!(!ok && err.contains("server stopped"), "{err}");
    server.stop();

    let (ok, out, err) = rotate();
    assert!(ok, "{err}");
    assert!(out.contains(&old_kids[0]), "{out}");
    let rotated_at = std::time::Instant::now();

    let server = Server::start(&data, &repo_policies(), Some(&config));
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    let both = kids(&jwks);
    assert_eq!(both.len(), 2, "{jwks}");
    assert_eq!(both[1], old_kids[0], "the old key follows the new one");
    let after = connect(&server, &key, "s-after", &["files:read"]).await;
    let (old_token, new_token) = (grant_token(&before), grant_token(&after));
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_eq!(kid_of(&old_token), old_kids[0]);
    assert_eq!(kid_of(&new_token), both[0]);
    assert!(verifies_with(&jwks, &old_token) && verifies_with(&jwks, &new_token));
    assert_eq!(introspect(&server, &old_token).await["active"], true);
    assert_eq!(introspect(&server, &new_token).await["active"], true);

    // The log records the new key and the one it replaced.
    let page = get_json(&server, "/v1/log/entries?from_seq=0&limit=1000").await;
    let rotation = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "signing_key" && e["purpose"] == "grant" && e["key_id"] == both[0])
        .cloned()
        .unwrap_or_else(|| panic!("no signing_key entry for the new key: {page:#}"));
    assert_eq!(rotation["previous_key_id"], old_kids[0], "{rotation:#}");

    // Past the window (max_ttl + leeway after the rotation) the old key has
    // left the JWKS of the running server, and its grants verify nowhere.
    let window = std::time::Duration::from_secs(4 + 1 + 1);
    tokio::time::sleep(window.saturating_sub(rotated_at.elapsed())).await;
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    assert_eq!(kids(&jwks), [both[0].clone()]);
    assert!(!verifies_with(&jwks, &old_token));
    assert_eq!(introspect(&server, &old_token).await["active"], false);
    server.stop();
    // And its record is gone at the next start.
    let server = Server::start(&data, &repo_policies(), Some(&config));
    let retired = std::fs::read_dir(data.join("retired-grant-keys"))
        .unwrap()
        .count();
    assert_eq!(retired, 0);
    server.stop();
}
