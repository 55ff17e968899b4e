//! Retention and privacy without losing proof: redaction by rule and by
//! erasure request, expiry, and `log verify` telling a recorded redaction
//! from tampering. Real servers, real sled directories, real signed JWTs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use trustpath::log::checkpoint::NoteVerifier;
use trustpath::log::merkle::{self, Hash};
use trustpath::log::sealed::{self, FieldGroup};
use trustpath::store::sled::{raw_entry_key, raw_hash_key};

const AS_ISSUER: &str = "https://auth.example.com";

fn write_config(dir: &Path, retention: &str) -> PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(
        &path,
        format!("[log]\ncheckpoint_every_entries = 1\ncheckpoint_every_seconds = 1\n\n[retention]\n{retention}\n"),
    )
    .unwrap();
    path
}

/// A decision for `sub` in `session`, and a tool call with its grant;
/// returns (decision seq, tool call seq).
async fn decide_and_call(server: &Server, key: &TestKey, session: &str, sub: &str) -> (u64, u64) {
    let mut body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims(&uuid::Uuid::new_v4().to_string()))),
    );
    body["session_id"] = json!(session);
    body["subject"] = json!({"iss": AS_ISSUER, "sub": sub, "claims": {"email": sub}});
    let out = post_decision(server, &body).await;
    assert!(out["grant"]["token"].is_string(), "{out:#}");
    let call = tool_call(
        server,
        &json!({
            "grant": grant_token(&out), "tool": "read_file", "method": "tools/call",
            "arguments": {"path": format!("/home/{sub}/notes")}, "actor": sub,
        }),
    )
    .await;
    (
        out["log_entry"]["seq"].as_u64().unwrap(),
        call["log_entry"]["seq"].as_u64().unwrap(),
    )
}

async fn entry(server: &Server, seq: u64) -> Value {
    get_json(server, &format!("/v1/log/entries/{seq}")).await
}

async fn latest_checkpoint(server: &Server, at_least: u64) -> (String, u64, Hash) {
    let vkey = String::from_utf8(get_ok(server, "/v1/log/public-key").await.to_vec()).unwrap();
    let verifier = NoteVerifier::from_vkey(&vkey).unwrap();
    for _ in 0..200 {
        let note = String::from_utf8(get_ok(server, "/v1/log/checkpoint").await.to_vec()).unwrap();
        let cp = verifier.open(&note).unwrap();
        if cp.size >= at_least {
            return (note, cp.size, cp.root);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint covering {at_least} entries");
}

/// The leaf hash a reader computes from what the entry route gives:
/// SHA-256(0x00 ‖ commitment), or the stored leaf hash of an expired entry.
fn reader_leaf(entry: &Value) -> Hash {
    match entry["commitment"].as_str() {
        Some(commitment) => {
            let mut input = vec![0u8];
            input.extend_from_slice(commitment.as_bytes());
            Sha256::digest(&input).into()
        }
        None => STANDARD
            .decode(entry["leaf_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    }
}

async fn proves_inclusion(server: &Server, seq: u64, size: u64, root: &Hash) -> bool {
    let leaf = reader_leaf(&entry(server, seq).await);
    let proof = get_json(
        server,
        &format!("/v1/log/proof/inclusion?seq={seq}&tree_size={size}"),
    )
    .await;
    let path: Vec<Hash> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    merkle::verify_inclusion(seq, size, &leaf, &path, root)
}

async fn poll_entry(server: &Server, seq: u64, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let e = entry(server, seq).await;
        if done(&e) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "entry {seq} never reached the expected state: {:#}",
        entry(server, seq).await
    );
}

/// Validates every entry of the log, and a redacted and an expired form,
/// against the schema the server publishes (no credentials needed).
async fn check_against_schema(server: &Server) {
    let resp = http()
        .get(server.url("/schemas/log-entry/v2.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let schema: Value = resp.json().await.unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let size = latest_checkpoint(server, 1).await.1;
    let mut kinds = std::collections::BTreeSet::new();
    for seq in 0..size {
        let mut e = entry(server, seq).await;
        for api_only in ["leaf_hash", "commitment", "disclosures"] {
            e.as_object_mut().unwrap().remove(api_only);
        }
        let errors: Vec<String> = validator.iter_errors(&e).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "entry {seq}: {errors:?}\n{e:#}");
        kinds.insert(e["kind"].as_str().unwrap_or("expired").to_string());
    }
    for kind in trustpath::log::entry::KINDS {
        assert!(
            kinds.contains(kind) || kind == "grant_revoked",
            "no {kind} entry checked"
        );
    }
    assert!(validator.is_valid(&json!({"seq": 3, "expired": true})));
    // And it can fail: a revocation without what it revoked.
    let bad = json!({"seq": 1, "time": "2026-01-01T00:00:00Z", "policy_revision": "r",
        "kind": "grant_revoked", "revocation_id": "x"});
    assert!(!validator.is_valid(&bad));
}

/// The line number of the last connection decision still whole in an export.
fn carol_line(export: &str) -> usize {
    export
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("\"kind\":\"connection_decision\"") && l.contains('\t'))
        .map(|(i, _)| i)
        .last()
        .expect("a whole connection decision")
}

fn stored(raw: &RawLog, seq: u64) -> Vec<u8> {
    raw.entry(seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rules_redact_then_expire_and_every_proof_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        "end_user = \"2s\"\ntool_arguments = \"2s\"\nexpire = \"5s\"\ninterval = \"1s\"",
    );
    let server = Server::start(&data, &repo_policies(), Some(&config));
    let key = TestKey::generate("k1");
    let (decision, call) = decide_and_call(&server, &key, "s-alice", "alice@example.com").await;
    let before = entry(&server, decision).await;
    assert_eq!(before["input"]["subject"]["sub"], "alice@example.com");
    let (_, old_size, old_root) = latest_checkpoint(&server, call + 1).await;
    assert!(proves_inclusion(&server, decision, old_size, &old_root).await);

    // The end user's fields go first; the commitment and leaf stay.
    let redacted = poll_entry(&server, decision, |e| {
        e["input"]["subject"]["_sealed"] == "end_user"
    })
    .await;
    assert_eq!(redacted["commitment"], before["commitment"]);
    assert_eq!(redacted["leaf_hash"], before["leaf_hash"]);
    assert_eq!(redacted["session_id"], "s-alice", "correlation stays");
    assert!(
        !redacted.to_string().contains("alice@example.com"),
        "{redacted:#}"
    );
    let call_entry = poll_entry(&server, call, |e| {
        e["input"]["arguments"]["_sealed"] == "tool_arguments"
    })
    .await;
    assert!(
        !call_entry.to_string().contains("/home/alice"),
        "{call_entry:#}"
    );
    let by_subject = get_json(&server, "/v1/decisions?subject=alice@example.com").await;
    assert_eq!(
        by_subject["entries"],
        json!([]),
        "its subject posting went with it"
    );
    assert!(proves_inclusion(&server, decision, old_size, &old_root).await);

    // Then the whole entry: only its leaf hash is left, still proven.
    let expired = poll_entry(&server, decision, |e| e["expired"] == true).await;
    assert_eq!(expired["leaf_hash"], before["leaf_hash"]);
    assert!(proves_inclusion(&server, decision, old_size, &old_root).await);
    let (_, new_size, new_root) = latest_checkpoint(&server, old_size + 1).await;
    assert!(proves_inclusion(&server, decision, new_size, &new_root).await);
    // The session's later entries (its grant, its tool call) fall due a
    // moment after the decision did.
    let mut left = Value::Null;
    for _ in 0..100 {
        left = get_json(&server, "/v1/decisions?session_id=s-alice").await["entries"].clone();
        if left == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        left,
        json!([]),
        "the session's postings went with its entries"
    );
    // The work is in the log, as retention entries.
    let records = get_json(&server, "/v1/decisions?kind=retention").await;
    let settings: Vec<&str> = records["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cause"]["setting"].as_str().unwrap())
        .collect();
    assert!(
        settings.contains(&"end_user") && settings.contains(&"expire"),
        "{settings:?}"
    );
    // One decision young enough to be whole when the server stops.
    decide_and_call(&server, &key, "s-bob", "bob@example.com").await;
    let vkey = dir.path().join("log.vkey");
    std::fs::write(&vkey, get_ok(&server, "/v1/log/public-key").await).unwrap();
    server.stop();

    let (ok, out) = verify_dir(&data);
    assert!(ok, "{out}");
    assert!(out.contains("expired by recorded retention"), "{out}");

    // A third party with an export and the key checks the same.
    let (ok, export, err) = trustpath(&["log", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(export.contains(&format!("{{\"expired\":true,\"seq\":{decision}}}")));
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &export).unwrap();
    let (ok, out) = verify_export_file(&file, &vkey, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("expired by recorded retention"), "{out}");
    // An expired line forged into a full export is caught: no record covers it.
    let line = export.lines().nth(carol_line(&export)).unwrap().to_string();
    let seq = sealed::claimed_seq(line.as_bytes()).unwrap();
    let forged = export.replacen(&line, &format!("{{\"expired\":true,\"seq\":{seq}}}"), 1);
    std::fs::write(&file, forged).unwrap();
    let (ok, out) = verify_export_file(&file, &vkey, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("entry {seq} was removed: its bytes are gone")),
        "{out}"
    );

    let (ok, stats, err) = trustpath(&[
        "log",
        "stats",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert!(stats["expired_entries"].as_u64().unwrap() >= 3, "{stats:#}");
    assert!(stats["by_kind"]["retention"]["entries"].as_u64().unwrap() >= 2);

    // An expired leaf hash edited: the signed roots no longer match.
    let (ok, out) = tampered(&data, "leaf-edited", |t| {
        t.insert(raw_hash_key(0, decision), &[7u8; 32]).unwrap();
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains("its signed root does not match the entries"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_redacts_one_person_and_verify_tells_it_from_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "");
    let policies = dir.path().join("policies");
    copy_dir(&repo_policies(), &policies);
    let server = Server::start(&data, &policies, Some(&config));
    let key = TestKey::generate("k1");
    let (alice, alice_call) = decide_and_call(&server, &key, "s-alice", "alice@example.com").await;
    let (bob, _) = decide_and_call(&server, &key, "s-bob", "bob@example.com").await;
    let (carol, _) = decide_and_call(&server, &key, "s-carol", "carol@example.com").await;
    let before = entry(&server, alice).await;
    let (_, old_size, old_root) = latest_checkpoint(&server, carol + 2).await;

    // Bad input names the field; an unknown person is a 404.
    let (status, out) = post_json(&server, "/v1/erasures", &json!({"iss": AS_ISSUER})).await;
    assert_eq!((status, out["field"].as_str()), (400, Some("sub")), "{out}");
    let (status, _) = post_json(
        &server,
        "/v1/erasures",
        &json!({"iss": AS_ISSUER, "sub": "nobody@example.com"}),
    )
    .await;
    assert_eq!(status, 404);

    let (status, out) = post_json(
        &server,
        "/v1/erasures",
        &json!({"iss": AS_ISSUER, "sub": "alice@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    // Her decision and her tool call (the grant's issuance names no person
    // without a delegation).
    assert_eq!(out["entries"], 2, "{out}");
    let record_seq = out["log_entry"]["seq"].as_u64().unwrap();

    let after = entry(&server, alice).await;
    assert_eq!(after["commitment"], before["commitment"]);
    assert_eq!(after["input"]["subject"]["_sealed"], "end_user");
    assert!(
        after["input"]["client"]["document"].is_object(),
        "not personal: kept"
    );
    assert!(!after.to_string().contains("alice@example.com"));
    let call = entry(&server, alice_call).await;
    assert!(!call.to_string().contains("alice@example.com"), "{call:#}");
    assert!(!call.to_string().contains("/home/alice"), "{call:#}");
    let untouched = entry(&server, bob).await;
    assert_eq!(untouched["input"]["subject"]["sub"], "bob@example.com");

    // The record says who asked and how much, never whom.
    let record = entry(&server, record_seq).await;
    assert_eq!(record["kind"], "retention");
    assert_eq!(record["cause"]["by"], "erasure");
    let subject_hash = hex::encode(Sha256::digest(
        format!("{AS_ISSUER}/alice@example.com").as_bytes(),
    ));
    assert_eq!(record["cause"]["subject_sha256"], subject_hash);
    assert!(!record.to_string().contains("alice"), "{record:#}");

    // Every kind of entry, as read back, fits the published audit schema.
    let (status, _) = post_json(
        &server,
        "/v1/sessions/s-carol/revoke",
        &json!({"reason": "schema check"}),
    )
    .await;
    assert_eq!(status, 200);
    let bob_grant = entry(&server, bob).await["grant_jti"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = post_json(
        &server,
        &format!("/v1/grants/{bob_grant}/revoke"),
        &json!({"reason": "schema check"}),
    )
    .await;
    assert_eq!(status, 200);
    // A broken policy edit, refused (and logged) while the policy in force stays.
    let broken = policies.join("trustpath/broken.rego");
    std::fs::write(&broken, "package trustpath.broken\n\nx := \n").unwrap();
    for _ in 0..100 {
        let found = get_json(&server, "/v1/decisions?kind=policy_rejected").await;
        if !found["entries"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_file(&broken).unwrap();
    check_against_schema(&server).await;

    // Inclusion against the checkpoint from before and one from after.
    assert!(proves_inclusion(&server, alice, old_size, &old_root).await);
    let (_, new_size, new_root) = latest_checkpoint(&server, record_seq + 1).await;
    assert!(proves_inclusion(&server, alice, new_size, &new_root).await);
    let found = get_json(&server, "/v1/decisions?subject=alice@example.com").await;
    assert_eq!(found["entries"], json!([]));
    let found = get_json(&server, "/v1/decisions?subject=bob@example.com").await;
    assert_eq!(found["entries"].as_array().unwrap().len(), 1);
    server.stop();

    // The CLI does the same on a stopped server's directory.
    let (ok, out, err) = trustpath(&[
        "log",
        "redact",
        "--subject",
        &format!("{AS_ISSUER}/bob@example.com"),
        "--requested-by",
        "dpo",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("erased: 2 entries redacted"), "{out}");
    let (ok, out) = verify_dir(&data);
    assert!(ok, "{out}");
    assert!(
        out.contains("redacted by recorded retention: 4 entries"),
        "{out}"
    );
    // Replay cannot re-run what it no longer has, and says so.
    let (_, out, err) = trustpath(&[
        "replay",
        "--policies",
        repo_policies().to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.contains("withheld: 4 (retention redacted"),
        "{out}{err}"
    );

    // A disclosure dropped with no record of it.
    let (ok, out) = tampered(&data, "unrecorded", |t| {
        let bytes = stored(t, carol);
        let groups = [FieldGroup::EndUser].into_iter().collect();
        let less = sealed::redact(&bytes, &groups).unwrap().unwrap();
        t.insert(raw_entry_key(carol), less).unwrap();
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "entry {carol} lacks its end_user disclosure, and no retention record"
        )),
        "{out}"
    );
    // A disclosed value edited.
    let (ok, out) = tampered(&data, "disclosure-edited", |t| {
        let text = String::from_utf8(stored(t, carol)).unwrap();
        t.insert(
            raw_entry_key(carol),
            text.replace("carol@", "mallory@").as_bytes(),
        )
        .unwrap();
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "entry {carol} holds a disclosure its commitment does not seal"
        )),
        "{out}"
    );
    // A seal's digest edited in a redacted entry.
    let (ok, out) = tampered(&data, "digest-edited", |t| {
        let text = String::from_utf8(stored(t, alice)).unwrap();
        let at = text.find("\"sha256\":\"").unwrap() + 10;
        let mut edited = text.into_bytes();
        edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
        t.insert(raw_entry_key(alice), edited).unwrap();
    });
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("entry {alice} was changed")), "{out}");
    // An entry emptied as if expired, with no record.
    let (ok, out) = tampered(&data, "unrecorded-expiry", |t| {
        t.insert(raw_entry_key(carol), b"".as_slice()).unwrap();
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("entry {carol} was removed: its bytes are gone")),
        "{out}"
    );
}

#[test]
fn a_bad_retention_setting_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (setting, expected) in [
        ("end_user = \"30 parsecs\"", "line 6"),
        ("end_user = \"30 parsecs\"", "is not a period with units"),
        ("end_user = \"500ms\"", "a period is at least one second"),
        (
            "end_user = \"300d\"\nbody = \"30d\"",
            "retention.end_user (300d) is longer than retention.body (30d)",
        ),
        ("batch_size = 0", "retention.batch_size must be positive"),
        ("tool_args = \"7d\"", "unknown field `tool_args`"),
    ] {
        let config = write_config(dir.path(), setting);
        let (ok, out, err) = trustpath(&[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert!(!ok, "{setting}: {out}");
        assert!(err.contains(expected), "{setting}: {err}");
    }
    assert!(!data.exists(), "nothing is created for a bad config");
}
