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

/// The log's checkpoint key rotated: the old key signs the handover, the
/// server starts on the new key, and `log verify` accepts the history
/// pinned to either key; a handover without the old key's checkpoint fails.
#[tokio::test]
async fn a_rotated_log_key_hands_over_and_verify_follows_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("trustpath.toml");
    std::fs::write(&config, "[log]\ncheckpoint_every_entries = 1\n").unwrap();
    let key = TestKey::generate("k1");
    let server = Server::start(&data, &repo_policies(), Some(&config));
    connect(&server, &key, "s-1", &["files:read"]).await;
    let old_vkey = String::from_utf8(get_ok(&server, "/v1/log/public-key").await.to_vec()).unwrap();
    server.stop();
    let before = trustpath(&["log", "export", "--data-dir", data.to_str().unwrap()]).1;
    let handover_seq = (before.lines().count() - 2) as u64;

    let (ok, out, err) = trustpath(&[
        "keys",
        "rotate",
        "--log",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(old_vkey.trim()), "{out}");

    let server = Server::start(&data, &repo_policies(), Some(&config));
    let new_vkey = String::from_utf8(get_ok(&server, "/v1/log/public-key").await.to_vec()).unwrap();
    assert_ne!(new_vkey, old_vkey);
    connect(&server, &key, "s-2", &["files:read"]).await;
    let handover = get_json(&server, &format!("/v1/log/entries/{handover_seq}")).await;
    assert_eq!(handover["kind"], "signing_key", "{handover:#}");
    assert_eq!(handover["purpose"], "log");
    assert_eq!(handover["previous_key_id"], old_vkey.trim());
    assert_eq!(handover["key_id"], new_vkey.trim());
    // The new key signs the checkpoints after the handover.
    let mut size = 0;
    for _ in 0..50 {
        let checkpoint =
            String::from_utf8(get_ok(&server, "/v1/log/checkpoint").await.to_vec()).unwrap();
        size = checkpoint.lines().nth(1).unwrap().parse::<u64>().unwrap();
        if size > handover_seq + 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        size > handover_seq + 1,
        "no checkpoint by the new key: {size}"
    );
    let proof = get_json(&server, "/v1/log/proof/inclusion?seq=3").await;
    assert_eq!(proof["tree_size"], size, "{proof:#}");
    server.stop();
    // The offline proof bundle names the key that signed its checkpoint.
    let (ok, out, err) = trustpath(&[
        "log",
        "proof",
        "--seq",
        "3",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let bundle: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bundle["public_key"], new_vkey.trim());

    // Pinned to the key file (the new key), and to the old key.
    let (ok, report) = verify_dir(&data);
    assert!(ok, "{report}");
    let old_file = dir.path().join("old.vkey");
    std::fs::write(&old_file, old_vkey.trim()).unwrap();
    let (ok, out, err) = trustpath(&[
        "log",
        "verify",
        "--data-dir",
        data.to_str().unwrap(),
        "--public-key",
        old_file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    // A key the log never named is refused.
    let stranger = "trustpath.local/decision-log+00000000+AQ==";
    let (ok, ..) = trustpath(&[
        "log",
        "verify",
        "--data-dir",
        data.to_str().unwrap(),
        "--public-key",
        stranger,
    ]);
    assert!(!ok);

    // Without the old key's checkpoint over the handover, it is not one.
    let mut key = [0u8; 9];
    key[0] = b'c';
    key[1..].copy_from_slice(&(handover_seq + 1).to_be_bytes());
    let (ok, report) = tampered(&data, "no-handover", |tree| {
        assert!(
            tree.remove(key).unwrap().is_some(),
            "the handover checkpoint exists"
        );
    });
    assert!(!ok, "{report}");
    assert!(
        report.contains("no checkpoint of its predecessor"),
        "{report}"
    );
}

/// `grants.verification_key_files`: a configured public key is in the JWKS
/// while configured; a file holding a private key is refused at start.
#[tokio::test]
async fn configured_verification_keys_join_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let other = Server::start(&dir.path().join("other"), &repo_policies(), None);
    let other_jwks = get_json(&other, "/.well-known/jwks.json").await;
    other.stop();
    let jwk_file = dir.path().join("other.jwk.json");
    std::fs::write(&jwk_file, other_jwks["keys"][0].to_string()).unwrap();
    let config = dir.path().join("trustpath.toml");
    std::fs::write(
        &config,
        format!(
            "[grants]\nverification_key_files = [\"{}\"]\n",
            jwk_file.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), Some(&config));
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    let listed = kids(&jwks);
    assert_eq!(listed.len(), 2, "{jwks}");
    assert_eq!(listed[1], other_jwks["keys"][0]["kid"].as_str().unwrap());
    server.stop();

    let mut private = other_jwks["keys"][0].clone();
    private["d"] = serde_json::json!("AAAA");
    std::fs::write(&jwk_file, private.to_string()).unwrap();
    let (ok, _, err) = trustpath(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--policies",
        repo_policies().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("other.jwk.json") && err.contains("private key"),
        "{err}"
    );
}
