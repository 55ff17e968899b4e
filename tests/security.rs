//! Security I: no allow and no grant that should not exist. One test per
//! defect of the review, named after it, each over real HTTP against the
//! real server (or the real CLI). Fetching stays on loopback.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// The reasons of a decision's authentication, as one string.
fn auth_reasons(out: &Value) -> String {
    out["authentication"]["reasons"].to_string()
}

/// Asserts that a decision failed authentication, got no grant, and says
/// `needle` among its reasons.
fn assert_refused(out: &Value, needle: &str) {
    assert_eq!(out["authentication"]["result"], "failed", "{out:#}");
    assert_eq!(out["decision"]["allow"], false, "{out:#}");
    assert!(out["grant"].is_null(), "{out:#}");
    assert!(
        auth_reasons(out).contains(needle),
        "{needle:?} not in {}",
        auth_reasons(out)
    );
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A JWK Set as a TOML inline value.
fn toml_value(json: &Value) -> String {
    toml::Value::try_from(json).unwrap().to_string()
}

/// The claims of a compact JWS, undecoded by any key.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A tiny JSON host on loopback that counts what it served.
async fn json_host(body: Value) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/{*path}",
        get(move || {
            let body = body.clone();
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                ([("content-type", "application/json")], body.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

// ------------------------------------------------------------ authentication

/// Defect 1: `exp - iat` wrapped in i64, so an `iat` near `i64::MIN` made a
/// lifetime look short. Out-of-range times are now refused up front.
#[tokio::test]
async fn assertion_lifetime_overflow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let edges: [(&str, Value); 6] = [
        ("iat", json!(i64::MIN + 10)),
        ("iat", json!(-1)),
        ("iat", json!(1.5e9)),
        ("iat", json!("1700000000")),
        ("nbf", json!(i64::MIN)),
        ("exp", json!(u64::MAX)),
    ];
    for (i, (claim, value)) in edges.into_iter().enumerate() {
        let mut claims = assertion_claims(&format!("jti-edge-{i}"));
        claims[claim] = value.clone();
        let body = cimd_request(
            &["files:read"],
            cimd_document(Some(key.jwks())),
            Some(key.sign(&claims)),
        );
        let out = post_decision(&server, &body).await;
        assert_refused(&out, &format!("assertion {claim} is not a time in range"));
    }
}

/// Defect 2: a jti was forgotten at `exp`, while the assertion is accepted
/// until `exp + leeway`: after a prune (here, the one at start) the same
/// assertion was verified again.
#[tokio::test]
async fn used_assertion_cannot_be_replayed_after_its_jti_is_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::generate("k1");
    let t = now();
    // Expired 5 s ago: inside the default 30 s leeway.
    let claims = json!({
        "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": AS_ISSUER,
        "iat": t - 60, "exp": t - 5, "jti": "jti-in-leeway",
    });
    let body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&claims)),
    );
    let server = Server::start(dir.path(), &repo_policies(), None);
    let first = post_decision(&server, &body).await;
    assert_eq!(first["authentication"]["result"], "verified", "{first:#}");
    server.stop();

    // The restart prunes the replay guard.
    let server = Server::start(dir.path(), &repo_policies(), None);
    let again = post_decision(&server, &body).await;
    assert_refused(&again, "already used (replay)");
}

/// Defect 3: a workload JWT was not bound to the client_id, so a low-
/// privilege workload's token got a grant naming another client.
#[tokio::test]
async fn workload_jwt_is_bound_to_the_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let issuer_key = TestKey::generate("spire-1");
    let config = write_config(
        dir.path(),
        &format!(
            "[[trusted_issuers]]\nissuer = \"https://spire.example.com\"\naudience = \"trustpath\"\n\
             jwks = {}\n",
            toml_value(&issuer_key.jwks())
        ),
    );
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let t = now();
    let request = |kind: &str, client_id: &str, claims: Value| {
        json!({
            "scopes": ["files:read"],
            "metadata_source": { "kind": kind, "authorization_server": { "issuer": AS_ISSUER } },
            "client": { "client_id": client_id, "assertion": issuer_key.sign(&claims) },
        })
    };
    let svid = |sub: &str, lifetime: i64| {
        json!({"iss": "https://spire.example.com", "sub": sub, "aud": "trustpath",
               "iat": t, "exp": t + lifetime})
    };
    let low = "spiffe://example.org/low-priv-agent";
    let admin = "spiffe://example.org/payroll-admin";

    // Another workload's JWT: failed, no grant.
    let out = post_decision(&server, &request("wif", admin, svid(low, 300))).await;
    assert_refused(&out, "sub is not the client_id");

    // Its own JWT: verified, and the grant is for the verified identity.
    let out = post_decision(&server, &request("wif", low, svid(low, 300))).await;
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
    let grant = out["grant"]["token"].as_str().expect("a grant");
    assert_eq!(payload(grant)["sub"], low);

    // The configured maximum lifetime (300 s) holds for workload JWTs too.
    let out = post_decision(&server, &request("wif", low, svid(low, 3600))).await;
    assert_refused(&out, "longer than the allowed 300s");

    // An ID-JAG names its client in `client_id`.
    let jag = |client: &str| {
        json!({"iss": "https://spire.example.com", "sub": "alice@example.com",
               "aud": "trustpath", "client_id": client, "iat": t, "exp": t + 120})
    };
    let out = post_decision(&server, &request("id-jag", admin, jag(low))).await;
    assert_refused(&out, "client_id is not the client_id");
    let out = post_decision(&server, &request("id-jag", low, jag(low))).await;
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
}

/// Defect 4: a CIMD client_id that the URL parser reads with another host
/// than the policy saw in its text was approved as the host in the text.
#[tokio::test]
async fn cimd_client_id_must_be_its_canonical_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    for spelling in [
        r"https:\\evil.example\x://agents.example.com/client.json",
        "https:agents.example.com/client.json",
        "https://AGENTS.example.com/client.json",
        "https://agents.example.com:443/client.json",
    ] {
        let mut document = cimd_document(None);
        document["client_id"] = json!(spelling);
        document["token_endpoint_auth_method"] = json!("none");
        let mut body = cimd_request(&["files:read"], document, None);
        body["client"]["client_id"] = json!(spelling);
        let out = post_decision(&server, &body).await;
        assert_refused(&out, "not in canonical URL form");
    }

    // The policy reads the parsed host from the input, not the text.
    let mut document = cimd_document(None);
    document["token_endpoint_auth_method"] = json!("none");
    let out = post_decision(&server, &cimd_request(&["files:read"], document, None)).await;
    assert_eq!(out["decision"]["allow"], true, "{out:#}");
    let entry: Value = serde_json::from_str(&stored_entry(&server, &out).await).unwrap();
    assert_eq!(entry["input"]["client"]["host"], "agents.example.com");
}

/// Defect 5: an inline `document.jwks` replaced the keys configured for a
/// pre-registered client, so any key the caller chose verified.
#[tokio::test]
async fn configured_client_keys_are_the_only_keys() {
    let dir = tempfile::tempdir().unwrap();
    let configured = TestKey::generate("configured");
    let attacker = TestKey::generate("attacker");
    let client_id = "payroll-agent";
    let config = write_config(
        dir.path(),
        &format!(
            "[clients.{client_id}]\nredirect_uris = [\"https://payroll.example.com/cb\"]\njwks = {}\n",
            toml_value(&configured.jwks())
        ),
    );
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let request = |key: &TestKey, jti: &str, document: Option<Value>| {
        let t = now();
        let claims = json!({"iss": client_id, "sub": client_id, "aud": AS_ISSUER,
                            "iat": t, "exp": t + 60, "jti": jti});
        let mut client = json!({"client_id": client_id, "assertion": key.sign(&claims)});
        if let Some(document) = document {
            client["document"] = document;
        }
        json!({
            "scopes": ["files:read"],
            "metadata_source": { "kind": "preregistered", "authorization_server": { "issuer": AS_ISSUER } },
            "client": client,
        })
    };
    let foreign = json!({"client_id": client_id, "jwks": attacker.jwks()});
    let out = post_decision(&server, &request(&attacker, "j1", Some(foreign))).await;
    assert_refused(&out, "keys come from the configuration");

    // Without a document, with a document naming other keys by URL, or
    // signed by another key: never verified.
    // (An IP literal in a documentation range: never fetched, never resolved.)
    let by_uri = json!({"client_id": client_id, "jwks_uri": "https://192.0.2.1/jwks.json"});
    let out = post_decision(&server, &request(&configured, "j2", Some(by_uri))).await;
    assert_refused(&out, "must not carry jwks_uri");
    assert_eq!(
        out["authentication"]["keys"]["source"], "config",
        "nothing fetched"
    );
    let out = post_decision(&server, &request(&attacker, "j3", None)).await;
    assert_refused(&out, "no key with kid");

    let out = post_decision(&server, &request(&configured, "j4", None)).await;
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
    assert_eq!(out["authentication"]["keys"]["source"], "config");
}

/// Defect 6: with `allow_http_loopback`, IPv6 forms that embed 127.0.0.1
/// passed the loopback exemption. The host below listens on 127.0.0.1;
/// nothing may be fetched from it through those forms.
#[tokio::test]
async fn ipv6_forms_embedding_loopback_stay_refused() {
    let key = TestKey::generate("k1");
    let (addr, hits) = json_host(key.jwks()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[fetch]\nallow_http_loopback = true\ntimeout_ms = 800\nconnect_timeout_ms = 500\n",
    );
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let port = addr.port();
    for (i, host) in [
        "[::ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::1]",
    ]
    .into_iter()
    .enumerate()
    {
        let mut document = cimd_document(None);
        document["jwks_uri"] = json!(format!("http://{host}:{port}/jwks.json"));
        let body = cimd_request(
            &["files:read"],
            document,
            Some(key.sign(&assertion_claims(&format!("jti-v6-{i}")))),
        );
        let out = post_decision(&server, &body).await;
        assert_refused(&out, "is loopback");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was fetched");

    // The exemption itself still works for 127.0.0.1 as written; the log
    // records the URL as parsed and fetched, not the text sent.
    let mut document = cimd_document(None);
    document["jwks_uri"] = json!(format!("HTTP://127.0.0.1:{port}/keys/../jwks.json"));
    let body = cimd_request(
        &["files:read"],
        document,
        Some(key.sign(&assertion_claims("jti-v4"))),
    );
    let out = post_decision(&server, &body).await;
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        out["authentication"]["keys"]["fetch"]["url"],
        format!("http://127.0.0.1:{port}/jwks.json")
    );
}

// ------------------------------------------------------------ scopes, grants, tool calls

/// Defect 7: a scope holding spaces became several scopes in the grant.
/// Every scope must be an RFC 6749 scope-token; no scope, no grant.
#[tokio::test]
async fn scope_with_whitespace_is_refused_and_no_scope_gets_no_grant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let request = |scopes: Value, jti: &str| {
        let mut body = cimd_request(
            &[],
            cimd_document(Some(key.jwks())),
            Some(key.sign(&assertion_claims(jti))),
        );
        body["scopes"] = scopes;
        body
    };
    for (i, bad) in [
        "tickets:read files:read files:write",
        "files:read\tfiles:write",
        "files:read\n",
        "",
        "quote\"d",
        "back\\slash",
        "caf\u{e9}",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = post_json(
            &server,
            "/v1/decisions",
            &request(json!(["files:read", bad]), &format!("j{i}")),
        )
        .await;
        assert_eq!(status, 400, "{bad:?} accepted: {body:#}");
        assert_eq!(body["field"], "scopes[1]", "{body:#}");
        assert!(body["message"].as_str().unwrap().contains("scope-token"));
    }

    // A delegation's approved scopes are held to the same rule.
    let mut body = request(json!(["files:read"]), "jd");
    body["delegation"] = json!({"approval_id": "a", "approved_by": "alice",
        "approved_at": "2026-11-24T08:00:00Z", "scopes": ["files:read files:write"]});
    let (status, out) = post_json(&server, "/v1/decisions", &body).await;
    assert_eq!(status, 400);
    assert_eq!(out["field"], "delegation.scopes[0]", "{out:#}");

    let out = post_decision(&server, &request(json!([]), "j-empty")).await;
    assert_eq!(out["decision"]["allow"], false, "{out:#}");
    assert!(out["grant"].is_null());
    assert!(out["decision"]["reasons"]
        .to_string()
        .contains("no scope was requested"));
}

/// Defect 7, the policy side: a policy result whose scopes are not
/// scope-tokens is malformed, and a malformed result denies.
#[tokio::test]
async fn policy_scope_that_is_not_a_scope_token_denies() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.rego"),
        "package trustpath.connection\n\n\
         decision := {\"allow\": true, \"scopes\": [\"files:read\", \"files:read files:write\"]}\n",
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), &policies, None);
    let mut document = cimd_document(None);
    document["token_endpoint_auth_method"] = json!("none");
    let out = post_decision(&server, &cimd_request(&["files:read"], document, None)).await;
    assert_eq!(out["decision"]["allow"], false, "{out:#}");
    assert!(out["grant"].is_null());
    let reasons = out["decision"]["reasons"].to_string();
    assert!(
        reasons.contains("malformed") && reasons.contains("scope-token"),
        "{reasons}"
    );
}

/// How many tool calls the log holds.
async fn tool_calls_logged(server: &Server) -> usize {
    let found = get_json(server, "/v1/decisions?kind=tool_call").await;
    found["entries"].as_array().unwrap().len()
}

/// Defect 8: a token re-signed under a logged jti (here with the grant key
/// itself, as a stolen key would) passed with wider scope and tools.
#[tokio::test]
async fn resigned_grant_under_a_logged_jti_is_invalid() {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "sess-r", &["files:read"]).await;
    let token = grant_token(&decision);

    let pem = std::fs::read_to_string(dir.path().join("grant-signing-key.pem")).unwrap();
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let mut claims = payload(&token);
    claims["scope"] = json!("files:read files:write");
    claims["tools"] = json!(["read_file", "write_file"]);
    claims["exp"] = json!(now() + 86_400);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut forged = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    use ed25519_dalek::Signer as _;
    let signature = signing.sign(forged.as_bytes());
    forged = format!("{forged}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));

    let body = json!({"grant": forged, "tool": "write_file", "method": "tools/call",
                      "arguments": {"path": "/a", "content": "x"}});
    let out = tool_call(&server, &body).await;
    assert_eq!(out["allow"], false, "{out:#}");
    assert_eq!(out["grant_status"], "invalid");
    assert!(out["reasons"].to_string().contains("SHA-256 differs"));

    // Introspection agrees; the real token is still active.
    let resp = http()
        .post(server.url("/v1/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["active"], false);
    let body = json!({"grant": token, "tool": "read_file", "method": "tools/call",
                      "arguments": {"path": "/a"}});
    assert_eq!(tool_call(&server, &body).await["allow"], true);
}

/// Defect 9: with a grant token, the `grant_id` sent beside it was ignored
/// (and logged as if checked). A mismatch is a 400 naming `grant_id`.
#[tokio::test]
async fn tool_call_grant_id_must_be_the_grant_tokens_jti() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let good = connect(&server, &key, "sess-g", &["files:read"]).await;
    let revoked = connect(&server, &key, "sess-v", &["files:read"]).await;
    let revoked_jti = revoked["grant"]["jti"].as_str().unwrap();
    let (status, _) = post_json(
        &server,
        &format!("/v1/grants/{revoked_jti}/revoke"),
        &json!({"reason": "test"}),
    )
    .await;
    assert_eq!(status, 200);

    let body = json!({"grant": grant_token(&good), "grant_id": revoked_jti,
                      "tool": "read_file", "method": "tools/call", "arguments": {"path": "/a"}});
    let (status, out) = post_json(&server, "/v1/tool-calls", &body).await;
    assert_eq!(status, 400, "{out:#}");
    assert_eq!(out["field"], "grant_id");
    assert_eq!(
        tool_calls_logged(&server).await,
        0,
        "a refused request logs nothing"
    );

    // The same id as the token's is fine.
    let mut same = body.clone();
    same["grant_id"] = good["grant"]["jti"].clone();
    assert_eq!(tool_call(&server, &same).await["allow"], true);
}

/// A policy directory: a connection policy allowing files:read, and a
/// tool-call policy whose deny rule errors (`to_number` of a tool name).
fn erroring_deny_policies(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("connection.rego"),
        "package trustpath.connection\n\n\
         decision := {\"allow\": true, \"scopes\": [\"files:read\"], \"tools\": [\"read_file\", \"write_file\"]}\n",
    )
    .unwrap();
    std::fs::write(
        policies.join("tool_call.rego"),
        "package trustpath.tool_call\n\n\
         deny_reasons contains msg if {\n\
         \tinput.tool == \"write_file\"\n\
         \tmsg := sprintf(\"write_file takes no %v\", [to_number(input.tool)])\n\
         }\n\n\
         decision := {\"allow\": count(deny_reasons) == 0, \"reasons\": [r | some r in deny_reasons]}\n",
    )
    .unwrap();
    std::fs::write(
        policies.join("tool_call_test.rego"),
        "package trustpath.tool_call_test\n\n\
         import data.trustpath.tool_call\n\n\
         test_write_file_denied if {\n\
         \tnot tool_call.decision.allow with input as {\"tool\": \"write_file\", \"arguments\": {\"names\": [\"a\"]}}\n\
         }\n",
    )
    .unwrap();
    policies
}

/// Defect 10: a builtin error inside a deny rule made the rule undefined,
/// the denial vanished and the call was allowed. Now the error denies,
/// names itself, and is logged; `trustpath test` does not pass it either.
#[tokio::test]
async fn policy_error_in_a_deny_rule_denies() {
    let dir = tempfile::tempdir().unwrap();
    let policies = erroring_deny_policies(dir.path());
    let server = Server::start(&dir.path().join("data"), &policies, None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "sess-e", &["files:read"]).await;
    let body = json!({"grant": grant_token(&decision), "tool": "write_file",
                      "method": "tools/call", "arguments": {"path": "/a"}});
    let out = tool_call(&server, &body).await;
    assert_eq!(out["allow"], false, "{out:#}");
    let reasons = out["reasons"].to_string();
    assert!(
        reasons.contains("to_number"),
        "the reason names the error: {reasons}"
    );
    assert!(
        reasons.contains("data.trustpath.tool_call.decision"),
        "{reasons}"
    );
    assert!(
        reasons.contains("tool_call.rego"),
        "and its file: {reasons}"
    );
    let entry = get_json(
        &server,
        &format!("/v1/log/entries/{}", out["log_entry"]["seq"]),
    )
    .await;
    assert_eq!(entry["decision"]["allow"], false, "the denial is logged");

    // The same call without the erroring branch is allowed: the policy works.
    let mut read = body.clone();
    read["tool"] = json!("read_file");
    assert_eq!(tool_call(&server, &read).await["allow"], true);

    // `trustpath test` reports the erroring evaluation, never a pass.
    let (ok, stdout, stderr) = trustpath(&["test", policies.to_str().unwrap()]);
    assert!(
        !ok,
        "trustpath test passed an erroring policy: {stdout}{stderr}"
    );
    assert!(
        format!("{stdout}{stderr}").contains("ERROR"),
        "{stdout}{stderr}"
    );
}

/// Defect 11: a string `actor` made the shipped policy read `act.sub` as
/// undefined and let any actor through. One shape is accepted.
#[tokio::test]
async fn string_actor_is_refused_and_unknown_actors_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let delegated = |actor: Value, approved_at: &str| {
        let mut body = cimd_request(
            &["files:read"],
            cimd_document(Some(key.jwks())),
            Some(key.sign(&assertion_claims(&uuid::Uuid::new_v4().to_string()))),
        );
        body["delegation"] = json!({"approval_id": "a-1", "approved_by": "alice@example.com",
                                    "approved_at": approved_at, "actor": actor});
        body
    };
    let when = "2026-11-24T08:00:00Z";
    for (actor, field) in [
        (json!("agent-1"), "delegation.actor"),
        (json!({"sub": 5}), "delegation.actor.sub"),
        (json!({"sub": ""}), "delegation.actor.sub"),
        (json!({"sub": "a", "act": "b"}), "delegation.actor.act"),
        (
            json!({"sub": "a", "role": "admin"}),
            "delegation.actor.role",
        ),
    ] {
        let (status, out) =
            post_json(&server, "/v1/decisions", &delegated(actor.clone(), when)).await;
        assert_eq!(status, 400, "{actor} accepted: {out:#}");
        assert_eq!(out["field"], field, "{actor}: {out:#}");
    }
    let (status, out) = post_json(
        &server,
        "/v1/decisions",
        &delegated(json!({"sub": "a"}), "yesterday"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(out["field"], "delegation.approved_at");

    // The accepted shape: only the named agent acts under the grant.
    let actor = json!({"sub": "agent-7", "act": {"sub": "orchestrator"}});
    let out = post_decision(&server, &delegated(actor, when)).await;
    let token = grant_token(&out);
    let call = |who: Option<&str>| {
        let mut body = json!({"grant": token, "tool": "read_file", "method": "tools/call",
                              "arguments": {"path": "/a"}});
        if let Some(who) = who {
            body["actor"] = json!(who);
        }
        body
    };
    assert_eq!(
        tool_call(&server, &call(Some("agent-7"))).await["allow"],
        true
    );
    for who in [Some("agent-1"), Some("orchestrator"), None] {
        let out = tool_call(&server, &call(who)).await;
        assert_eq!(out["allow"], false, "{who:?}: {out:#}");
    }
}
