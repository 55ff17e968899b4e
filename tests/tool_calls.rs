//! After the connection: tool calls checked against the grant and the
//! tool-call policy, revocation (across restarts), introspection agreeing
//! with tool-call answers, delegated sessions, and argument values kept out
//! of the log. All over real HTTP against the real server.

mod common;

use common::*;
use serde_json::{json, Value};
use trustpath::digest::sha256_hex;

/// Log argument values of `write_file`'s `path` only.
fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(
        &path,
        format!("[tool_calls.log_argument_values]\nwrite_file = [\"path\"]\n{extra}"),
    )
    .unwrap();
    path
}

fn call(grant: &str, tool: &str, arguments: Value) -> Value {
    json!({
        "grant": grant, "tool": tool, "method": "tools/call",
        "arguments": arguments, "actor": "agent-1",
    })
}

async fn entry_at(server: &Server, seq: &Value) -> Value {
    get_json(server, &format!("/v1/log/entries/{seq}")).await
}

#[tokio::test]
async fn tool_calls_follow_the_grant_and_introspection_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &repo_policies(),
        Some(&config(dir.path(), "")),
    );
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "sess-a", &["files:read"]).await;
    let grant = grant_token(&decision);

    // Within the grant: allowed, linked to the session and the decision.
    let out = tool_call(&server, &call(&grant, "read_file", json!({"path": "/a"}))).await;
    assert_eq!(out["allow"], true, "{out:#}");
    assert_eq!(out["grant_status"], "active");
    assert_eq!(out["session_id"], "sess-a");
    assert_eq!(out["decision_id"], decision["decision_id"]);
    assert_eq!(out["grant_jti"], decision["grant"]["jti"]);
    let allowed_seq = out["log_entry"]["seq"].clone();
    let active = introspect(&server, &grant).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["scope"], "files:read");
    assert_eq!(active["client_id"], CLIENT_ID);
    assert_eq!(active["sid"], "sess-a");
    assert_eq!(active["jti"], decision["grant"]["jti"]);
    assert_eq!(active["aud"], "https://mcp.example.com/mcp");
    assert!(active["exp"].as_i64().unwrap() > now());
    assert!(active.get("act").is_none());

    // Outside the grant: denied with the scope to step up to. The grant is
    // still active, and introspection says what it covers, which is not this.
    let out = tool_call(
        &server,
        &call(&grant, "write_file", json!({"path": "/a", "content": "x"})),
    )
    .await;
    assert_eq!(out["allow"], false);
    assert_eq!(out["required_scopes"], json!(["files:write"]));
    let reasons = out["reasons"].to_string();
    assert!(reasons.contains("not in the grant"), "{reasons}");
    assert!(reasons.contains("requires scope files:write"), "{reasons}");
    let denied_seq = out["log_entry"]["seq"].clone();
    let still = introspect(&server, &grant).await;
    assert_eq!(still["active"], true);
    assert!(!strs(&still["tools"]).contains(&"write_file".to_string()));
    assert!(!still["scope"].as_str().unwrap().contains("files:write"));

    // The deny list wins over the grant.
    let admin = connect(&server, &key, "sess-admin", &["repo:admin"]).await;
    let out = tool_call(
        &server,
        &call(
            &grant_token(&admin),
            "delete_repository",
            json!({"repository": "r"}),
        ),
    )
    .await;
    assert_eq!(out["allow"], false);
    assert!(out["reasons"].to_string().contains("deny list"));

    // A forged grant: same claims, signed by another key under our kid; and
    // our grant with its payload edited. Both invalid, both logged, neither
    // linked to the session it claims.
    let claims = &get_json(
        &server,
        &format!(
            "/v1/log/entries/{}",
            decision["log_entry"]["seq"].as_u64().unwrap() + 1
        ),
    )
    .await["grant"];
    let forger = TestKey::generate(grant_kid(&grant).as_str());
    let forged = forger.sign(claims);
    let parts: Vec<&str> = grant.split('.').collect();
    let mut widened = claims.clone();
    widened["scope"] = json!("files:read files:write");
    widened["tools"] = json!(["read_file", "write_file"]);
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(&widened.to_string()),
        parts[2]
    );
    for bad in [forged.as_str(), edited.as_str(), "not-a-jwt"] {
        let out = tool_call(&server, &call(bad, "read_file", json!({"path": "/a"}))).await;
        assert_eq!(out["allow"], false, "{bad}");
        assert_eq!(out["grant_status"], "invalid");
        assert!(out["session_id"].is_null());
        let entry = entry_at(&server, &out["log_entry"]["seq"]).await;
        assert_eq!(entry["kind"], "tool_call");
        assert_eq!(entry["input"]["grant"]["status"], "invalid");
        assert_eq!(
            entry["input"]["grant"]["token_sha256"],
            sha256_hex(bad.as_bytes())
        );
        assert!(
            !entry.to_string().contains(bad),
            "token leaked into the log"
        );
        assert_eq!(introspect(&server, bad).await, json!({"active": false}));
    }

    // Revoked: denied, and introspection says inactive.
    let (status, revoked) = post_json(
        &server,
        &format!(
            "/v1/grants/{}/revoke",
            decision["grant"]["jti"].as_str().unwrap()
        ),
        &json!({"reason": "laptop lost"}),
    )
    .await;
    assert_eq!(status, 200, "{revoked:#}");
    let revocation = entry_at(&server, &revoked["log_entry"]["seq"]).await;
    assert_eq!(revocation["kind"], "grant_revoked");
    assert_eq!(revocation["reason"], "laptop lost");
    assert_eq!(revocation["session_id"], "sess-a");
    assert_eq!(revocation["decision_id"], decision["decision_id"]);
    let out = tool_call(&server, &call(&grant, "read_file", json!({"path": "/a"}))).await;
    assert_eq!(out["allow"], false);
    assert_eq!(out["grant_status"], "revoked");
    assert_eq!(out["session_id"], "sess-a");
    let revoked_seq = out["log_entry"]["seq"].clone();
    assert_eq!(introspect(&server, &grant).await, json!({"active": false}));

    // The session trail: decision, grant, every tool call, the revocation.
    let trail = get_json(&server, "/v1/sessions/sess-a").await;
    let kinds: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "connection_decision",
            "grant_issued",
            "tool_call",
            "tool_call",
            "grant_revoked",
            "tool_call"
        ]
    );
    let seqs: Vec<&Value> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["seq"])
        .collect();
    assert!(seqs.contains(&&allowed_seq));
    assert!(seqs.contains(&&denied_seq));
    assert!(seqs.contains(&&revoked_seq));
    let tool_calls = get_json(
        &server,
        "/v1/decisions?session_id=sess-a&kind=tool_call&outcome=denied",
    )
    .await;
    assert_eq!(tool_calls["entries"].as_array().unwrap().len(), 2);

    // Unknown grants and sessions cannot be revoked; a reason is required.
    let (status, _) = post_json(&server, "/v1/grants/nope/revoke", &json!({"reason": "r"})).await;
    assert_eq!(status, 404);
    let (status, body) = post_json(
        &server,
        "/v1/sessions/sess-admin/revoke",
        &json!({"reason": " "}),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("reason")));
    let (status, body) = post_json(&server, "/v1/sessions/sess-admin/revoke", &json!({})).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("reason")));
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn grant_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn expired_grant_is_denied_and_inactive() {
    let dir = tempfile::tempdir().unwrap();
    // `exp` is whole seconds after an `iat` rounded down: a 2 s grant is
    // active for at least 1 s, a 1 s grant perhaps for a few ms only.
    let config = config(
        dir.path(),
        "[grants]\ndefault_ttl_seconds = 2\nmax_ttl_seconds = 2\n",
    );
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "sess-short", &["files:read"]).await;
    let grant = grant_token(&decision);
    assert_eq!(introspect(&server, &grant).await["active"], true);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;

    let out = tool_call(&server, &call(&grant, "read_file", json!({"path": "/a"}))).await;
    assert_eq!(out["allow"], false);
    assert_eq!(out["grant_status"], "expired");
    assert!(out["reasons"][0].as_str().unwrap().contains("expired"));
    assert_eq!(out["session_id"], "sess-short");
    assert_eq!(introspect(&server, &grant).await, json!({"active": false}));
    let entry = entry_at(&server, &out["log_entry"]["seq"]).await;
    assert_eq!(entry["decision"]["allow"], false);
    assert_eq!(entry["input"]["grant"]["status"], "expired");
}

#[tokio::test]
async fn revocation_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = TestKey::generate("k1");
    let server = Server::start(&data, &repo_policies(), None);
    let one = connect(&server, &key, "sess-1", &["files:read"]).await;
    let two = connect(&server, &key, "sess-2", &["files:read"]).await;
    let three = connect(&server, &key, "sess-2", &["files:read"]).await;
    let (status, _) = post_json(
        &server,
        &format!(
            "/v1/grants/{}/revoke",
            one["grant"]["jti"].as_str().unwrap()
        ),
        &json!({"reason": "compromised"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, session) = post_json(
        &server,
        "/v1/sessions/sess-2/revoke",
        &json!({"reason": "workflow cancelled"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        session["grant_jtis"],
        json!([two["grant"]["jti"], three["grant"]["jti"]])
    );
    server.kill();

    let server = Server::start(&data, &repo_policies(), None);
    for decision in [&one, &two, &three] {
        let grant = grant_token(decision);
        let out = tool_call(&server, &call(&grant, "read_file", json!({"path": "/a"}))).await;
        assert_eq!(out["allow"], false, "{out:#}");
        assert_eq!(out["grant_status"], "revoked");
        assert_eq!(introspect(&server, &grant).await["active"], false);
    }
    // Checking by session finds the session's grant, revoked too.
    let out = tool_call(
        &server,
        &json!({"session_id": "sess-2", "tool": "read_file", "method": "tools/call",
                "arguments": {"path": "/a"}}),
    )
    .await;
    assert_eq!(out["grant_status"], "revoked");
    assert_eq!(out["grant_jti"], three["grant"]["jti"]);
    let out = tool_call(
        &server,
        &json!({"grant_id": one["grant"]["jti"], "tool": "read_file", "method": "tools/call"}),
    )
    .await;
    assert_eq!(out["grant_status"], "revoked");
    // A revoked session gets no new grant.
    let mut body = cimd_request(&["files:read"], cimd_document(None), None);
    body["session_id"] = json!("sess-2");
    let again = post_decision(&server, &body).await;
    assert_eq!(again["decision"]["outcome"], "denied");
    assert!(again["decision"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("session was revoked"));
    assert!(again["grant"].is_null());
    // Other sessions are untouched.
    let fresh = connect(&server, &key, "sess-3", &["files:read"]).await;
    let out = tool_call(
        &server,
        &call(&grant_token(&fresh), "read_file", json!({"path": "/a"})),
    )
    .await;
    assert_eq!(out["allow"], true, "{out:#}");
}

#[tokio::test]
async fn a_grant_can_be_named_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "sess-a", &["files:read"]).await;
    let jti = decision["grant"]["jti"].clone();

    // By grant id, as a resource server holding the AS's access token does:
    // the same grant, and its session must match when one is named.
    let by_id = json!({"grant_id": jti, "tool": "read_file", "method": "tools/call",
                       "arguments": {"path": "/a"}, "actor": "agent-1"});
    let out = tool_call(&server, &by_id).await;
    assert_eq!(out["allow"], true, "{out:#}");
    assert_eq!(out["grant_jti"], jti);
    assert_eq!(out["session_id"], "sess-a");
    let mut elsewhere = by_id.clone();
    elsewhere["session_id"] = json!("sess-other");
    let out = tool_call(&server, &elsewhere).await;
    assert_eq!(out["allow"], false);
    assert!(out["reasons"]
        .to_string()
        .contains("belongs to session sess-a"));
    let mut unknown = by_id.clone();
    unknown["grant_id"] = json!("no-such-grant");
    let out = tool_call(&server, &unknown).await;
    assert_eq!(out["allow"], false);
    assert_eq!(out["grant_status"], "missing");

    // Revoked by id is revoked by token too.
    let (status, _) = post_json(
        &server,
        &format!("/v1/grants/{}/revoke", jti.as_str().unwrap()),
        &json!({"reason": "test"}),
    )
    .await;
    assert_eq!(status, 200);
    let out = tool_call(&server, &by_id).await;
    assert_eq!(out["grant_status"], "revoked");
    assert_eq!(out["allow"], false);
}

#[tokio::test]
async fn argument_values_stay_out_of_the_log_unless_allow_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &repo_policies(),
        Some(&config(dir.path(), "")),
    );
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "sess-w", &["files:read", "files:write"]).await;
    let secret = "sk_live_51HxQ2eZvKYlo2CSECRETVALUE";
    let arguments = json!({"path": "/notes/keys.txt", "content": format!("stripe={secret}")});
    let out = tool_call(
        &server,
        &call(&grant_token(&decision), "write_file", arguments.clone()),
    )
    .await;
    assert_eq!(out["allow"], true, "{out:#}");

    let stored = get_ok(
        &server,
        &format!("/v1/log/entries/{}", out["log_entry"]["seq"]),
    )
    .await;
    let text = String::from_utf8(stored.to_vec()).unwrap();
    assert!(!text.contains(secret), "argument value leaked: {text}");
    let entry: Value = serde_json::from_str(&text).unwrap();
    let logged = &entry["input"]["arguments"];
    assert_eq!(logged["names"], json!(["content", "path"]));
    assert_eq!(logged["values"], json!({"path": "/notes/keys.txt"}));
    // RFC 8785 canonical JSON of these arguments is serde_json's sorted,
    // compact form (plain ASCII strings, no numbers).
    assert_eq!(
        logged["sha256"],
        sha256_hex(serde_json::to_string(&arguments).unwrap().as_bytes())
    );
    assert_eq!(entry["tool"], "write_file");
    assert_eq!(entry["method"], "tools/call");
    assert_eq!(entry["input"]["actor"], "agent-1");

    // Nowhere else in the log either: export everything and look.
    server.stop();
    let data = dir.path().join("data");
    let (ok, export, err) = trustpath(&["log", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(!export.contains(secret));
    assert!(export.contains("/notes/keys.txt"));
}

#[tokio::test]
async fn delegated_session_shows_the_approval_once_and_every_agent_action() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let actor = json!({"sub": "agent-7", "act": {"sub": "orchestrator"}});
    let approval = json!({
        "approval_id": "appr-9", "approved_by": "alice@example.com",
        "approved_at": "2026-11-24T08:00:00Z", "actor": actor,
        "scopes": ["files:read", "tickets:read"],
    });
    let mut grants = Vec::new();
    for scopes in [&["files:read", "repo:admin"][..], &["tickets:read"][..]] {
        let mut body = cimd_request(
            scopes,
            cimd_document(Some(key.jwks())),
            Some(key.sign(&assertion_claims(&uuid::Uuid::new_v4().to_string()))),
        );
        body["session_id"] = json!("sess-d");
        body["delegation"] = approval.clone();
        let out = post_decision(&server, &body).await;
        // Delegated: narrower (no repo:admin) and shorter (120 s).
        assert_eq!(
            out["decision"]["denied_scopes"].as_array().unwrap().len(),
            scopes.len() - 1
        );
        let grant = grant_token(&out);
        let claims = introspect(&server, &grant).await;
        assert_eq!(claims["act"], actor, "the grant carries the actor chain");
        assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 120);
        grants.push(grant);
    }

    let mut body = call(&grants[0], "read_file", json!({"path": "/a"}));
    body["actor"] = json!("agent-7");
    assert_eq!(tool_call(&server, &body).await["allow"], true);
    body["actor"] = json!("agent-9");
    let out = tool_call(&server, &body).await;
    assert_eq!(out["allow"], false);
    assert!(out["reasons"].to_string().contains("not the grant's actor"));

    let trail = get_json(&server, "/v1/sessions/sess-d").await;
    let delegations = trail["delegations"].as_array().unwrap();
    assert_eq!(
        delegations.len(),
        1,
        "the approval is shown once: {trail:#}"
    );
    assert_eq!(delegations[0]["approval_id"], "appr-9");
    assert_eq!(delegations[0]["approved_by"], "alice@example.com");
    assert_eq!(delegations[0]["first_seq"], trail["entries"][0]["seq"]);
    let entries = trail["entries"].as_array().unwrap();
    let grants_act: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "grant_issued")
        .map(|e| &e["grant"]["act"])
        .collect();
    assert_eq!(grants_act, [&actor, &actor]);
    let actors: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "tool_call")
        .map(|e| &e["input"]["actor"])
        .collect();
    assert_eq!(actors, [&json!("agent-7"), &json!("agent-9")]);
}

#[tokio::test]
async fn enforcement_api_checks_roles_and_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trustpath.toml");
    let mut toml = String::new();
    for role in ["decide", "enforce", "admin", "audit"] {
        toml += &format!(
            "[[callers]]\nname = \"{role}-caller\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(format!("{role}-token").as_bytes())
        );
    }
    std::fs::write(&config, toml).unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let send = |path: &str, token: &str, body: Value| {
        http()
            .post(server.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let decision: Value = send(
        "/v1/decisions",
        "decide-token",
        cimd_request(&["files:read"], cimd_document(None), None),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let grant = grant_token(&decision);
    let jti = decision["grant"]["jti"].as_str().unwrap();
    let body = call(&grant, "read_file", json!({"path": "/a"}));

    for (token, status) in [
        ("decide-token", 403),
        ("audit-token", 403),
        ("enforce-token", 200),
    ] {
        let resp = send("/v1/tool-calls", token, body.clone()).await.unwrap();
        assert_eq!(resp.status(), status, "{token}");
    }
    let revoke = format!("/v1/grants/{jti}/revoke");
    for token in ["enforce-token", "decide-token"] {
        let resp = send(&revoke, token, json!({"reason": "r"})).await.unwrap();
        assert_eq!(resp.status(), 403, "{token}");
    }
    let introspect = |token: &str| {
        http()
            .post(server.url("/v1/introspect"))
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={grant}"))
            .send()
    };
    assert_eq!(introspect("audit-token").await.unwrap().status(), 403);
    assert_eq!(introspect("enforce-token").await.unwrap().status(), 200);

    for (bad, field) in [
        (
            json!({"tool": "read_file", "method": "tools/call"}),
            "grant",
        ),
        (json!({"grant": grant, "method": "tools/call"}), "tool"),
        (
            json!({"grant": grant, "tool": "read_file", "method": "tools/call", "arguments": [1]}),
            "arguments",
        ),
        (
            json!({"grant": grant, "tool": "", "method": "tools/call"}),
            "tool",
        ),
        (
            json!({"grant": grant, "tool": "t", "method": "tools/call", "argument": {}}),
            "argument",
        ),
    ] {
        let resp = send("/v1/tool-calls", "enforce-token", bad.clone())
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(resp.json::<Value>().await.unwrap()["field"], field, "{bad}");
    }
    let resp = http()
        .post(server.url("/v1/introspect"))
        .bearer_auth("enforce-token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token_type_hint=access_token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["field"], "token");

    let resp = send(&revoke, "admin-token", json!({"reason": "offboarding"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let entry: Value = http()
        .get(server.url(&format!(
            "/v1/log/entries/{}",
            resp.json::<Value>().await.unwrap()["log_entry"]["seq"]
        )))
        .bearer_auth("audit-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entry["revoked_by"], "admin-caller");
}

#[tokio::test]
async fn a_policy_set_without_tool_call_rules_denies_every_tool_call() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("trustpath")).unwrap();
    for file in ["data.json", "trustpath/connection.rego"] {
        std::fs::copy(repo_policies().join(file), policies.join(file)).unwrap();
    }
    let server = Server::start(&dir.path().join("data"), &policies, None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "sess-u", &["files:read"]).await;
    let out = tool_call(
        &server,
        &call(&grant_token(&decision), "read_file", json!({"path": "/a"})),
    )
    .await;
    assert_eq!(out["allow"], false);
    assert_eq!(out["grant_status"], "active");
    assert!(out["reasons"].to_string().contains("undefined"), "{out:#}");
    let entry = entry_at(&server, &out["log_entry"]["seq"]).await;
    assert_eq!(entry["decision"]["allow"], false);
}
