//! Security II: revocation that holds under races, bounded resources, a safe
//! open mode, and an honest log and CLI surface. One test per defect of the
//! review, named after it, over real HTTP against the real server (or the
//! real CLI). Everything stays on loopback.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The repo's policies with a deliberately slow check in front of every
/// allow, so that decisions are in flight for several milliseconds after
/// their early revocation check.
fn slow_policies(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    copy_dir(&repo_policies(), &policies);
    // Tens of thousands of iterations: a few milliseconds per evaluation.
    let slow = "\nslow_check if count([x | some x in numbers.range(1, 30000); x > 0]) > 0\n";
    for file in ["connection.rego", "tool_call.rego"] {
        let path = policies.join("trustpath").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen("allow if {\n", "allow if {\n\tslow_check\n", 1);
        assert!(text.contains("\tslow_check\n"), "{file} has no allow rule");
        std::fs::write(&path, text + slow).unwrap();
    }
    policies
}

/// A connection request for `session` by a verified client.
fn signed_request(key: &TestKey, session: &str) -> Value {
    let mut body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims(&uuid::Uuid::new_v4().to_string()))),
    );
    body["session_id"] = json!(session);
    body
}

/// What one raced request saw: when it was sent, when answered, the answer.
struct Raced {
    sent: Instant,
    answered: Instant,
    out: Value,
}

/// Sends `count` requests made by `make`, spread over `spread`, while the
/// `revoke` path is posted half-way; returns the answers and the instant
/// the revocation's 200 arrived, with its log seq.
async fn race(
    server: &Server,
    count: usize,
    spread: Duration,
    make: impl Fn() -> (String, Value),
    revoke: &str,
) -> (Vec<Raced>, Instant, u64) {
    let mut tasks = Vec::new();
    for i in 0..count {
        let (path, body) = make();
        let url = server.url(&path);
        let delay = spread.mul_f64(i as f64 / count as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let sent = Instant::now();
            let resp = http().post(url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let out: Value = resp.json().await.unwrap();
            Raced {
                sent,
                answered: Instant::now(),
                out,
            }
        }));
    }
    tokio::time::sleep(spread / 2).await;
    let (status, revoked) = post_json(server, revoke, &json!({"reason": "race"})).await;
    let revoked_at = Instant::now();
    assert_eq!(status, 200, "{revoked:#}");
    let seq = revoked["log_entry"]["seq"].as_u64().unwrap();
    let mut raced = Vec::new();
    for task in tasks {
        raced.push(task.await.unwrap());
    }
    (raced, revoked_at, seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_revoke_races_decisions_in_that_session() {
    let dir = tempfile::tempdir().unwrap();
    let policies = slow_policies(dir.path());
    let server = Server::start(&dir.path().join("data"), &policies, None);
    let key = TestKey::generate("k1");
    let mut late_allows = 0;
    let mut denied_by_revocation = 0;
    for round in 0..6 {
        let session = format!("sess-race-{round}");
        connect(&server, &key, &session, &["files:read"]).await;
        let (raced, revoked_at, revocation_seq) = race(
            &server,
            40,
            Duration::from_millis(300),
            || ("/v1/decisions".to_string(), signed_request(&key, &session)),
            &format!("/v1/sessions/{session}/revoke"),
        )
        .await;
        for r in &raced {
            let allowed = r.out["decision"]["allow"] == true;
            let seq = r.out["log_entry"]["seq"].as_u64().unwrap();
            if allowed {
                // Logged before the revocation, and never sent after its 200.
                if seq > revocation_seq || r.sent > revoked_at {
                    late_allows += 1;
                }
                assert!(r.out["grant"]["token"].is_string());
            } else {
                assert!(r.out["grant"].is_null(), "{:#}", r.out);
                if r.answered > revoked_at || seq > revocation_seq {
                    denied_by_revocation += 1;
                }
            }
        }
        // The log agrees: no allow in the session after the revocation.
        let trail = get_json(&server, &format!("/v1/sessions/{session}")).await;
        for entry in trail["entries"].as_array().unwrap() {
            let seq = entry["seq"].as_u64().unwrap();
            if seq > revocation_seq {
                assert_ne!(entry["kind"], "grant_issued", "{entry:#}");
                if entry["kind"] == "connection_decision" {
                    assert_eq!(entry["decision"]["allow"], false, "{entry:#}");
                }
            }
        }
    }
    assert_eq!(late_allows, 0, "allows logged or answered after the revoke");
    assert!(denied_by_revocation > 0, "the race never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_revoke_races_tool_calls_with_that_grant() {
    let dir = tempfile::tempdir().unwrap();
    let policies = slow_policies(dir.path());
    let server = Server::start(&dir.path().join("data"), &policies, None);
    let key = TestKey::generate("k1");
    let mut late_allows = 0;
    for round in 0..6 {
        let decision = connect(&server, &key, &format!("sess-g{round}"), &["files:read"]).await;
        let grant = grant_token(&decision);
        let jti = decision["grant"]["jti"].as_str().unwrap().to_string();
        let call = json!({
            "grant": grant, "tool": "read_file", "method": "tools/call",
            "arguments": {"path": "/a"}, "actor": "agent-1",
        });
        let (raced, revoked_at, revocation_seq) = race(
            &server,
            40,
            Duration::from_millis(300),
            || ("/v1/tool-calls".to_string(), call.clone()),
            &format!("/v1/grants/{jti}/revoke"),
        )
        .await;
        let mut allowed_any = false;
        for r in &raced {
            let seq = r.out["log_entry"]["seq"].as_u64().unwrap();
            if r.out["allow"] == true {
                allowed_any = true;
                if seq > revocation_seq || r.sent > revoked_at {
                    late_allows += 1;
                }
            }
        }
        assert!(allowed_any, "the grant never allowed a call: {round}");
        let calls = get_json(&server, &format!("/v1/decisions?grant={jti}&kind=tool_call")).await;
        for entry in calls["entries"].as_array().unwrap() {
            if entry["seq"].as_u64().unwrap() > revocation_seq {
                assert_eq!(entry["decision"]["allow"], false, "{entry:#}");
            }
        }
    }
    assert_eq!(late_allows, 0, "tool calls allowed after the grant's revoke");
}
