//! The policy input documents keep the shape the README documents: the
//! fields a policy author reads never change by accident. Each documented
//! example is compared with what the real server stores as `input`.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

/// The first ```json block after `marker` in the README.
fn documented(marker: &str) -> Value {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = &readme[readme.find(marker).expect(marker)..];
    let start = after.find("```json\n").expect("a json block") + "```json\n".len();
    let block = &after[start..];
    let end = block.find("```").unwrap();
    serde_json::from_str(&block[..end]).expect("the README's example is JSON")
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn connection_and_tool_call_inputs_match_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let mut body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims("jti-shape"))),
    );
    body["session_id"] = json!("sess-shape");
    body["tools"] = json!(["read_file"]);
    body["metadata_source"]["protected_resource_metadata"] =
        json!({"resource": "https://mcp.example.com/mcp", "authorization_servers": [AS_ISSUER]});
    body["subject"] = json!({"iss": AS_ISSUER, "sub": "alice@example.com"});
    body["delegation"] = json!({
        "approval_id": "appr-1", "approved_by": "alice@example.com",
        "approved_at": "2026-11-23T09:00:00Z", "actor": {"sub": "agent-7"},
    });
    let out = post_decision(&server, &body).await;
    let entry: Value = serde_json::from_str(&stored_entry(&server, &out).await).unwrap();
    let stored = &entry["input"];
    let readme = documented("### The input document");
    assert_eq!(
        keys(stored),
        keys(&readme),
        "top-level fields of the connection input"
    );
    for part in ["client", "limits", "subject"] {
        assert_eq!(keys(&stored[part]), keys(&readme[part]), "input.{part}");
    }
    assert!(stored["session_revoked"].is_null(), "absent unless revoked");

    // The tool-call input, with every optional field sent.
    let token = grant_token(&out);
    let jti = out["grant"]["jti"].as_str().unwrap();
    let call = tool_call(
        &server,
        &json!({
            "grant": token, "grant_id": jti, "session_id": "sess-shape", "tool": "read_file",
            "method": "tools/call", "arguments": {"path": "/a"}, "actor": "agent-7",
        }),
    )
    .await;
    let seq = call["log_entry"]["seq"].as_u64().unwrap();
    let entry = get_json(&server, &format!("/v1/log/entries/{seq}")).await;
    let stored = &entry["input"];
    let readme = documented("input, stored as the entry's `input`");
    assert_eq!(
        keys(stored),
        keys(&readme),
        "top-level fields of the tool-call input"
    );
    assert_eq!(keys(&stored["arguments"]), keys(&readme["arguments"]));
}
