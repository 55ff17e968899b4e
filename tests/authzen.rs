//! The OpenID AuthZEN Authorization API 1.0 endpoints and the discovery
//! documents, over real HTTP against the real server: each evaluation is a
//! tool-call check, logged as one.

mod common;

use common::*;
use serde_json::{json, Value};

const MCP: &str = "https://mcp.example.com/mcp";

async fn post(
    server: &Server,
    path: &str,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = http()
        .post(server.url(path))
        .header("x-request-id", "req-42")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap(), headers)
}

fn evaluation(tool: &str, token: &str) -> Value {
    json!({
        "subject": {"type": "client", "id": CLIENT_ID},
        "action": {"name": tool},
        "resource": {"type": "mcp_server", "id": MCP},
        "context": {"grant": token, "arguments": {"path": "/etc/motd"}},
    })
}

#[tokio::test]
async fn an_evaluation_is_a_logged_tool_call_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "s-authzen", &["files:read"]).await;
    let token = grant_token(&decision);

    let (status, out, headers) = post(
        &server,
        "/access/v1/evaluation",
        &evaluation("read_file", &token),
    )
    .await;
    assert_eq!(status, 200, "{out:#}");
    assert_eq!(out["decision"], true, "{out:#}");
    assert_eq!(headers["x-request-id"], "req-42");
    let context = &out["context"];
    assert_eq!(context["decision_id"], decision["decision_id"]);
    assert_eq!(context["session_id"], "s-authzen");
    let seq = context["log_entry"]["seq"].as_u64().unwrap();
    let entry = get_json(&server, &format!("/v1/log/entries/{seq}")).await;
    assert_eq!(entry["kind"], "tool_call");
    assert_eq!(entry["tool_call_id"], context["tool_call_id"]);
    assert_eq!(entry["tool"], "read_file");
    assert_eq!(entry["method"], "tools/call");
    assert_eq!(entry["input"]["resource"], MCP);
    assert_eq!(entry["input"]["client_id"], CLIENT_ID);
    // Arguments are logged as names and a hash, never their values.
    assert!(!entry.to_string().contains("/etc/motd"), "{entry:#}");

    // The grant's audience and client are checked.
    let mut elsewhere = evaluation("read_file", &token);
    elsewhere["resource"]["id"] = json!("https://other.example.com/mcp");
    let (_, out, _) = post(&server, "/access/v1/evaluation", &elsewhere).await;
    assert_eq!(out["decision"], false);
    let why = out["context"]["reason_admin"]["en"].as_str().unwrap();
    assert!(why.contains("not https://other.example.com/mcp"), "{why}");
    let mut stranger = evaluation("read_file", &token);
    stranger["subject"]["id"] = json!("https://evil.example.com/client.json");
    let (_, out, _) = post(&server, "/access/v1/evaluation", &stranger).await;
    assert_eq!(out["decision"], false);
    // A tool outside the grant.
    let (_, out, _) = post(
        &server,
        "/access/v1/evaluation",
        &evaluation("write_file", &token),
    )
    .await;
    assert_eq!(out["decision"], false);
    assert!(
        out["context"]["reasons"].to_string().contains("write_file"),
        "{out:#}"
    );

    // The spec's own example names a user and an account, and no grant: a
    // clear 400 naming the field, and nothing logged.
    let size_before = get_json(&server, "/v1/log/entries?from_seq=0&limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .len();
    let spec_example = json!({
        "subject": {"type": "user", "id": "alice@acmecorp.com"},
        "resource": {"type": "account", "id": "123"},
        "action": {"name": "can_read", "properties": {"method": "GET"}},
        "context": {"time": "1985-10-26T01:22-07:00"}
    });
    let (status, out, _) = post(&server, "/access/v1/evaluation", &spec_example).await;
    assert_eq!(status, 400, "{out:#}");
    assert_eq!(out["field"], "subject.type", "{out:#}");
    let mut client_example = spec_example.clone();
    client_example["subject"] = json!({"type": "client", "id": CLIENT_ID});
    let (status, out, _) = post(&server, "/access/v1/evaluation", &client_example).await;
    assert_eq!(status, 400, "{out:#}");
    assert_eq!(out["field"], "context.grant", "{out:#}");
    let size_after = get_json(&server, "/v1/log/entries?from_seq=0&limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(size_before, size_after);
}

#[tokio::test]
async fn evaluations_take_defaults_and_the_three_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "s-batch", &["files:read"]).await;
    let token = grant_token(&decision);
    let batch = |semantic: Option<&str>, tools: &[&str]| {
        let mut body = json!({
            "subject": {"type": "client", "id": CLIENT_ID},
            "resource": {"type": "mcp_server", "id": MCP},
            "context": {"grant": token},
            "evaluations": tools.iter().map(|t| json!({"action": {"name": t}})).collect::<Vec<_>>(),
        });
        if let Some(semantic) = semantic {
            body["options"] = json!({"evaluations_semantic": semantic});
        }
        body
    };
    let decisions = |out: &Value| -> Vec<bool> {
        out["evaluations"]
            .as_array()
            .unwrap_or_else(|| panic!("{out:#}"))
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect()
    };
    let tools = ["read_file", "write_file", "list_files"];
    let (status, out, headers) =
        post(&server, "/access/v1/evaluations", &batch(None, &tools)).await;
    assert_eq!(status, 200, "{out:#}");
    assert_eq!(decisions(&out), [true, false, true]);
    assert_eq!(headers["x-request-id"], "req-42");
    let ids: std::collections::BTreeSet<_> = out["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["context"]["tool_call_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "each evaluation is a check of its own");
    let (_, out, _) = post(
        &server,
        "/access/v1/evaluations",
        &batch(Some("deny_on_first_deny"), &tools),
    )
    .await;
    assert_eq!(decisions(&out), [true, false]);
    let (_, out, _) = post(
        &server,
        "/access/v1/evaluations",
        &batch(
            Some("permit_on_first_permit"),
            &["write_file", "read_file", "list_files"],
        ),
    )
    .await;
    assert_eq!(decisions(&out), [false, true]);

    // An item overriding a default; and no items is one evaluation.
    let mut body = batch(None, &["read_file"]);
    body["evaluations"][0]["resource"] =
        json!({"type": "mcp_server", "id": "https://x.example/mcp"});
    let (_, out, _) = post(&server, "/access/v1/evaluations", &body).await;
    assert_eq!(decisions(&out), [false]);
    let mut single = batch(None, &[]);
    single["action"] = json!({"name": "list_files"});
    let (_, out, _) = post(&server, "/access/v1/evaluations", &single).await;
    assert_eq!(out["decision"], true, "{out:#}");

    // A bad item is refused before any item is checked, naming it.
    let mut bad = batch(None, &["read_file", "list_files"]);
    bad["evaluations"][1]["subject"] = json!({"type": "user", "id": "bob"});
    let (status, out, _) = post(&server, "/access/v1/evaluations", &bad).await;
    assert_eq!(status, 400);
    assert_eq!(out["field"], "evaluations[1].subject.type", "{out:#}");
}

#[tokio::test]
async fn discovery_documents_list_every_endpoint_and_the_log_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let authzen = get_json(&server, "/.well-known/authzen-configuration").await;
    assert_eq!(authzen["policy_decision_point"], "https://trustpath.local");
    assert_eq!(
        authzen["access_evaluation_endpoint"],
        "https://trustpath.local/access/v1/evaluation"
    );
    assert_eq!(
        authzen["access_evaluations_endpoint"],
        "https://trustpath.local/access/v1/evaluations"
    );
    let doc = get_json(&server, "/.well-known/trustpath-configuration").await;
    assert_eq!(doc["issuer"], "https://trustpath.local");
    assert_eq!(
        doc["jwks_uri"],
        "https://trustpath.local/.well-known/jwks.json"
    );
    assert_eq!(
        doc["introspection_endpoint"],
        "https://trustpath.local/v1/introspect"
    );
    let vkey = String::from_utf8(get_ok(&server, "/v1/log/public-key").await.to_vec()).unwrap();
    assert_eq!(doc["decision_log"]["verifier_key"], vkey.trim());
    assert_eq!(
        doc["decision_log"]["origin"],
        "trustpath.local/decision-log"
    );
    // Every endpoint listed is served (relative to this server).
    for path in [
        "/.well-known/jwks.json",
        "/v1/log/checkpoint",
        "/v1/log/public-key",
        "/schemas/log-entry/v2.json",
        "/.well-known/authzen-configuration",
    ] {
        let listed = doc
            .to_string()
            .contains(&format!("https://trustpath.local{path}"));
        assert!(listed, "{path} not listed: {doc:#}");
        let status = status_of(&server, path).await;
        assert!(
            status == 200 || status == 404 && path == "/v1/log/checkpoint",
            "{path}: {status}"
        );
    }
}
