//! POST /v1/decisions over real HTTP, with a real sled directory and real JWTs.

mod common;

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use sha2::Digest as _;

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn verified_client_is_approved_and_grant_verifies_against_served_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let assertion = key.sign(&assertion_claims("jti-approved"));
    let body = cimd_request(
        &["files:read", "files:write"],
        cimd_document(Some(key.jwks())),
        Some(assertion.clone()),
    );
    let out = post_decision(&server, &body).await;

    assert_eq!(out["session_id"], "sess-1");
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
    assert_eq!(out["authentication"]["method"], "private_key_jwt");
    assert_eq!(out["authentication"]["issuer"], CLIENT_ID);
    assert_eq!(out["authentication"]["key_id"], "k1");
    let decision = &out["decision"];
    assert_eq!(decision["outcome"], "approved");
    assert_eq!(decision["allow"], true);
    assert_eq!(
        strs(&decision["approved_scopes"]),
        ["files:read", "files:write"]
    );
    assert_eq!(decision["denied_scopes"], json!([]));
    assert_eq!(
        strs(&decision["tools"]),
        ["list_files", "read_file", "write_file"]
    );
    assert_eq!(decision["ttl_seconds"], 600);
    assert!(out["log_entry"]["seq"].is_u64());
    assert_eq!(out["log_entry"]["leaf_hash"].as_str().unwrap().len(), 44);

    // The grant verifies with the key the server publishes, and says what was decided.
    let jwks: JwkSet =
        serde_json::from_value(get_json(&server, "/.well-known/jwks.json").await).unwrap();
    let grant = &out["grant"];
    let token = grant["token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("grant kid in JWKS");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["https://mcp.example.com/mcp"]);
    validation.set_issuer(&["https://trustpath.local"]);
    let claims =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("grant verifies against the served JWKS")
            .claims;
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["scope"], "files:read files:write");
    assert_eq!(claims["sid"], "sess-1");
    assert_eq!(claims["jti"], grant["jti"]);
    assert_eq!(claims["decision_id"], out["decision_id"]);
    assert_eq!(
        strs(&claims["tools"]),
        ["list_files", "read_file", "write_file"]
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(claims.get("act").is_none());
    assert_eq!(grant["scope"], "files:read files:write");

    // A token signed by another key does not verify against the JWKS.
    let forged = TestKey::generate(header.kid.as_deref().unwrap()).sign(&claims);
    assert!(jsonwebtoken::decode::<Value>(
        &forged,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation
    )
    .is_err());

    // The stored entry keeps claims and a hash, never the raw assertion or grant token.
    let stored = stored_entry(&server, &out).await;
    assert!(
        !stored.contains(&assertion),
        "raw assertion leaked into the log"
    );
    assert!(!stored.contains(token), "grant token leaked into the log");
    let entry: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(entry["kind"], "connection_decision");
    assert_eq!(
        entry["authentication"]["proof"]["claims"]["jti"],
        "jti-approved"
    );
    assert_eq!(
        entry["authentication"]["proof"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(entry["grant_jti"], grant["jti"]);
    assert_eq!(entry["input"]["authentication"]["result"], "verified");
    assert!(entry["input"]["now"].is_string());
    assert_eq!(entry["policy_revision"].as_str().unwrap().len(), 64);

    // The grant's issuance is its own entry, right after the decision's, with
    // the claims and the token's SHA-256 but never the token.
    let next = entry["seq"].as_u64().unwrap() + 1;
    let issued_bytes = get_ok(&server, &format!("/v1/log/entries/{next}")).await;
    assert!(!String::from_utf8_lossy(&issued_bytes).contains(token));
    let issued: Value = serde_json::from_slice(&issued_bytes).unwrap();
    assert_eq!(issued["kind"], "grant_issued");
    assert_eq!(issued["decision_id"], out["decision_id"]);
    assert_eq!(issued["grant"]["jti"], grant["jti"]);
    assert_eq!(issued["grant"]["scope"], "files:read files:write");
    assert_eq!(
        issued["token_sha256"],
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    );
    assert_eq!(grant["token_sha256"], issued["token_sha256"]);
}

#[tokio::test]
async fn document_only_client_is_reduced_with_per_scope_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let body = cimd_request(
        &["files:read", "files:write", "payroll"],
        cimd_document(None),
        None,
    );
    let out = post_decision(&server, &body).await;
    assert_eq!(out["authentication"]["result"], "document_only");
    let d = &out["decision"];
    assert_eq!(d["outcome"], "reduced");
    assert_eq!(d["allow"], true);
    assert_eq!(
        strs(&d["requested_scopes"]),
        ["files:read", "files:write", "payroll"]
    );
    assert_eq!(strs(&d["approved_scopes"]), ["files:read"]);
    assert_eq!(
        d["denied_scopes"],
        json!([
            {"scope": "files:write", "reason": "requires verified authentication"},
            {"scope": "payroll", "reason": "unknown scope"},
        ])
    );
    assert_eq!(d["ttl_seconds"], 300);
    assert_eq!(out["grant"]["scope"], "files:read");
}

#[tokio::test]
async fn untrusted_authorization_server_is_denied_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let mut body = cimd_request(&["files:read"], cimd_document(None), None);
    body["metadata_source"]["authorization_server"]["issuer"] = json!("https://rogue.example");
    let out = post_decision(&server, &body).await;
    let d = &out["decision"];
    assert_eq!(d["outcome"], "denied");
    assert_eq!(d["allow"], false);
    assert_eq!(d["approved_scopes"], json!([]));
    assert_eq!(
        strs(&d["reasons"]),
        ["authorization server \"https://rogue.example\" is not trusted"]
    );
    assert!(out["grant"].is_null());
    let entry: Value = serde_json::from_str(&stored_entry(&server, &out).await).unwrap();
    assert_eq!(entry["decision"]["outcome"], "denied");
    assert!(entry["grant"].is_null());
}

/// Posts a CIMD request with `assertion` and returns the response.
async fn decide_with_assertion(server: &Server, key: &TestKey, assertion: String) -> Value {
    let body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(assertion),
    );
    post_decision(server, &body).await
}

fn assert_failed(out: &Value, reason_part: &str) {
    assert_eq!(out["authentication"]["result"], "failed", "{out:#}");
    let reasons = out["authentication"]["reasons"].to_string();
    assert!(
        reasons.contains(reason_part),
        "{reasons} lacks {reason_part:?}"
    );
    assert_eq!(out["decision"]["outcome"], "denied");
    assert!(out["grant"].is_null());
    assert!(
        out["log_entry"]["seq"].is_u64(),
        "a failed authentication is still logged"
    );
}

#[tokio::test]
async fn bad_assertions_fail_authentication_and_deny() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");

    // Signed by a key the document does not list (same kid).
    let wrong = TestKey::generate("k1").sign(&assertion_claims("jti-wrong-key"));
    assert_failed(
        &decide_with_assertion(&server, &key, wrong).await,
        "signature",
    );

    // Expired well beyond the leeway.
    let mut claims = assertion_claims("jti-expired");
    claims["iat"] = json!(now() - 600);
    claims["exp"] = json!(now() - 300);
    let expired = key.sign(&claims);
    assert_failed(
        &decide_with_assertion(&server, &key, expired).await,
        "expired",
    );

    // Replayed jti: first use passes, second fails.
    let once = key.sign(&assertion_claims("jti-once"));
    let first = decide_with_assertion(&server, &key, once.clone()).await;
    assert_eq!(first["authentication"]["result"], "verified");
    assert_failed(&decide_with_assertion(&server, &key, once).await, "replay");

    // alg none, unsigned.
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(assertion_claims("jti-none"))
    );
    assert_failed(
        &decide_with_assertion(&server, &key, none).await,
        "not allowed",
    );

    // Audience naming another server.
    let mut claims = assertion_claims("jti-aud");
    claims["aud"] = json!("https://other-as.example");
    assert_failed(
        &decide_with_assertion(&server, &key, key.sign(&claims)).await,
        "aud",
    );

    // Too long-lived.
    let mut claims = assertion_claims("jti-long");
    claims["exp"] = json!(now() + 3600);
    assert_failed(
        &decide_with_assertion(&server, &key, key.sign(&claims)).await,
        "lifetime",
    );

    // No jti.
    let mut claims = assertion_claims("x");
    claims.as_object_mut().unwrap().remove("jti");
    assert_failed(
        &decide_with_assertion(&server, &key, key.sign(&claims)).await,
        "jti",
    );
}

#[tokio::test]
async fn cimd_document_with_other_client_id_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let mut doc = cimd_document(None);
    doc["client_id"] = json!("https://agents.example.com/other.json");
    let out = post_decision(&server, &cimd_request(&["files:read"], doc, None)).await;
    assert_failed(&out, "does not equal the client_id URL");

    let mut doc = cimd_document(None);
    doc["client_secret"] = json!("s3cret-value");
    let out = post_decision(&server, &cimd_request(&["files:read"], doc, None)).await;
    assert_failed(&out, "client_secret");
    let entry = stored_entry(&server, &out).await;
    assert!(
        !entry.contains("s3cret-value"),
        "client_secret leaked into the log"
    );
}

#[tokio::test]
async fn policy_returning_garbage_denies_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("garbage.rego"),
        "package trustpath.connection\n\ndecision := {\"allow\": \"yes\", \"scopes\": 7}\n",
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), &policies, None);
    let out = post_decision(
        &server,
        &cimd_request(&["files:read"], cimd_document(None), None),
    )
    .await;
    assert_eq!(out["decision"]["outcome"], "denied");
    assert!(out["grant"].is_null());
    let reasons = out["decision"]["reasons"].to_string();
    assert!(reasons.contains("policy result is malformed"), "{reasons}");
    assert!(out["log_entry"]["seq"].is_u64());

    // An undefined decision denies too.
    std::fs::write(
        policies.join("garbage.rego"),
        "package trustpath.connection\n\ndecision := {\"allow\": true} if input.never\n",
    )
    .unwrap();
    drop(server);
    let server = Server::start(&dir.path().join("data"), &policies, None);
    let out = post_decision(
        &server,
        &cimd_request(&["files:read"], cimd_document(None), None),
    )
    .await;
    assert_eq!(out["decision"]["outcome"], "denied");
    assert!(out["decision"]["reasons"].to_string().contains("undefined"));
}

#[tokio::test]
async fn workload_jwt_from_trusted_issuer_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let issuer_key = TestKey::generate("spire-1");
    let jwks_file = dir.path().join("spire.json");
    std::fs::write(&jwks_file, issuer_key.jwks().to_string()).unwrap();
    let config = dir.path().join("trustpath.toml");
    std::fs::write(
        &config,
        format!(
            "[[trusted_issuers]]\nissuer = \"https://spire.example.com\"\n\
             audience = \"trustpath\"\njwks_file = '{}'\n",
            jwks_file.display()
        ),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));

    let svid = |aud: &str| {
        issuer_key.sign(&json!({
            "iss": "https://spire.example.com", "sub": "spiffe://example.com/agent/builder",
            "aud": aud, "exp": now() + 300, "iat": now(),
        }))
    };
    let request = |token: String| {
        json!({
            "scopes": ["files:read", "files:write"],
            "metadata_source": { "kind": "wif", "authorization_server": { "issuer": AS_ISSUER } },
            "client": { "client_id": "spiffe://example.com/agent/builder", "assertion": token },
        })
    };
    let out = post_decision(&server, &request(svid("trustpath"))).await;
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
    assert_eq!(out["authentication"]["method"], "workload_jwt");
    assert_eq!(
        out["authentication"]["subject"],
        "spiffe://example.com/agent/builder"
    );
    assert_eq!(out["decision"]["outcome"], "approved");

    let out = post_decision(&server, &request(svid("someone-else"))).await;
    assert_failed(&out, "aud");
}

#[tokio::test]
async fn delegated_agent_gets_narrower_shorter_grant_with_act() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let mut body = cimd_request(
        &["files:read", "repo:admin"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims("jti-delegated"))),
    );
    let actor = json!({"sub": "agent:builder", "act": {"sub": "agent:orchestrator"}});
    body["delegation"] = json!({
        "approval_id": "appr-42", "approved_by": "alice@example.com",
        "approved_at": "2026-11-23T09:00:00Z", "actor": actor,
    });
    let out = post_decision(&server, &body).await;
    let d = &out["decision"];
    assert_eq!(d["outcome"], "reduced", "{out:#}");
    assert_eq!(strs(&d["approved_scopes"]), ["files:read"]);
    assert_eq!(
        d["denied_scopes"][0]["reason"],
        "not available to delegated agents"
    );
    assert_eq!(d["ttl_seconds"], 120);
    let token = out["grant"]["token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["act"], actor);
}

/// W3C Trace Context: the caller's trace is continued, its id recorded in
/// the entries the request writes, and `traceparent` comes back with
/// trustpath's own span; without one (or with a malformed one) a new trace
/// starts.
#[tokio::test]
async fn trace_context_is_continued_recorded_and_returned() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let key = TestKey::generate("k1");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims("trace-1"))),
    );
    body["session_id"] = json!("s-trace");
    let resp = http()
        .post(server.url("/v1/decisions"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.headers()["traceparent"].to_str().unwrap().to_string();
    let parts: Vec<&str> = back.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace, "01"),
        "{back}"
    );
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "trustpath answers with its own span"
    );
    let out: Value = resp.json().await.unwrap();
    let entry = get_json(
        &server,
        &format!("/v1/log/entries/{}", out["log_entry"]["seq"]),
    )
    .await;
    assert_eq!(entry["trace_id"], trace);
    // The grant's issuance came from the same request.
    let grant = get_json(
        &server,
        &format!(
            "/v1/log/entries/{}",
            out["log_entry"]["seq"].as_u64().unwrap() + 1
        ),
    )
    .await;
    assert_eq!(
        (grant["kind"].as_str(), grant["trace_id"].as_str()),
        (Some("grant_issued"), Some(trace))
    );

    // A tool call in another trace of the same session.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let resp = http()
        .post(server.url("/v1/tool-calls"))
        .header("traceparent", format!("00-{other}-b7ad6b7169203331-00"))
        .json(&json!({"grant": grant_token(&out), "tool": "read_file", "method": "tools/call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let call: Value = resp.json().await.unwrap();
    let entry = get_json(
        &server,
        &format!("/v1/log/entries/{}", call["log_entry"]["seq"]),
    )
    .await;
    assert_eq!(entry["trace_id"], other);

    // None sent, or a malformed one: a fresh trace, on every route.
    for sent in [None, Some("00-not-a-trace-01")] {
        let mut request = http().get(server.url("/health"));
        if let Some(sent) = sent {
            request = request.header("traceparent", sent);
        }
        let resp = request.send().await.unwrap();
        let back = resp.headers()["traceparent"].to_str().unwrap().to_string();
        let parts: Vec<&str> = back.split('-').collect();
        assert_eq!(parts.len(), 4, "{back}");
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{back}");
        assert_ne!(parts[1], "0".repeat(32));
    }
}

/// `--log-format json`: every line a JSON object, and a request's lines
/// carry its trace id.
#[tokio::test]
async fn json_log_lines_carry_the_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let server = Server::start_with(&dir.path().join("data"), &repo_policies(), None, |cmd| {
        cmd.args(["--log-format", "json"])
            .env("TRUSTPATH_LOG", "info")
            .stderr(file);
    });
    let key = TestKey::generate("k1");
    connect(&server, &key, "s-json", &["files:read"]).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let resp = http()
        .post(server.url("/v1/sessions/s-json/revoke"))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({"reason": "log format check"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    let revoked = lines
        .iter()
        .find(|l| l["fields"]["message"] == "revoked")
        .unwrap_or_else(|| panic!("no revocation line: {text}"));
    assert_eq!(revoked["span"]["trace_id"], trace, "{revoked}");
    assert!(!text.contains('\u{1b}'), "no terminal escapes in a file");
}

/// `log_format = "json"` in the config file does what the flag does.
#[test]
fn log_format_can_be_set_in_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trustpath.toml");
    std::fs::write(&config, "log_format = \"json\"\n").unwrap();
    let log = dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &repo_policies(),
        Some(&config),
        |cmd| {
            cmd.env("TRUSTPATH_LOG", "info").stderr(file);
        },
    );
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() >= 2, "{text}");
    for line in text.lines() {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["fields"]["message"].is_string(), "{line}");
    }
}

/// `/ready` lists each check; a data directory's disk below the configured
/// reserve makes it 503 with that reason, while `/health` stays up.
#[tokio::test]
async fn readiness_lists_its_checks_and_fails_on_the_disk_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let resp = http().get(server.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ready: Value = resp.json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready:#}");
    for check in ["log_writer", "store", "policies", "signing_keys"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{check}: {ready:#}");
    }
    assert!(ready["checks"]["policies"]["revision"].is_string());
    assert!(
        ready["checks"].get("disk").is_none(),
        "no reserve configured"
    );
    server.stop();

    // A reserve no disk here has (a petabyte).
    let config = dir.path().join("reserve.toml");
    std::fs::write(&config, "[limits]\nmin_free_disk_mb = 1000000000\n").unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let resp = http().get(server.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let ready: Value = resp.json().await.unwrap();
    assert_eq!(ready["status"], "not_ready");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .contains("below the reserve of 1000000000 MB"),
        "{ready:#}"
    );
    assert_eq!(ready["checks"]["disk"]["ok"], false);
    assert!(ready["checks"]["disk"]["free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(ready["checks"]["store"]["ok"], true);
    assert_eq!(status_of(&server, "/health").await, 200);
}

/// `GET /metrics` parses as Prometheus text, its counters move with
/// traffic, and no label carries what a request sent.
#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let scrape = || async {
        let resp = http().get(server.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        (prometheus_parse::Scrape::parse(lines).unwrap(), text)
    };
    let value = |scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                _ => 0.0,
            })
            .sum::<f64>()
    };
    let (before, _) = scrape().await;
    let size_before = value(&before, "trustpath_log_tree_size", &[]);
    let key = TestKey::generate("k1");
    let out = connect(&server, &key, "s-metrics-1", &["files:read"]).await;
    connect(&server, &key, "s-metrics-2", &["files:read"]).await;
    tool_call(
        &server,
        &json!({"grant": grant_token(&out), "tool": "read_file", "method": "tools/call"}),
    )
    .await;
    let (after, text) = scrape().await;
    let approved = [("outcome", "approved"), ("authentication", "verified")];
    assert_eq!(
        value(&after, "trustpath_decisions_total", &approved)
            - value(&before, "trustpath_decisions_total", &approved),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(
            &after,
            "trustpath_tool_calls_total",
            &[("result", "allowed")]
        ),
        1.0
    );
    assert!(
        value(&after, "trustpath_log_tree_size", &[]) >= size_before + 5.0,
        "{text}"
    );
    assert_eq!(value(&after, "trustpath_log_ready", &[]), 1.0);
    let route = [
        ("route", "/v1/decisions"),
        ("method", "POST"),
        ("status", "200"),
    ];
    // A histogram's largest (cumulative) bucket is its count.
    assert!(
        value(&after, "trustpath_request_duration_seconds", &route) >= 2.0,
        "{text}"
    );
    for sent in ["s-metrics-1", "read_file", "files:read"] {
        assert!(!text.contains(sent), "{sent} reached a label: {text}");
    }
    assert_eq!(value(&after, "trustpath_grants_issued_total", &[]), 2.0);
    assert_eq!(value(&after, "trustpath_grants_active", &[]), 2.0);
    assert!(
        value(&after, "trustpath_log_batch_entries", &[]) >= 2.0,
        "{text}"
    );
    assert!(
        value(&after, "trustpath_log_flush_seconds", &[]) >= 2.0,
        "{text}"
    );
    assert_eq!(
        value(&after, "trustpath_log_storage_errors_total", &[]),
        0.0
    );
    let inline = [("kind", "client_document"), ("result", "miss")];
    assert_eq!(
        value(&after, "trustpath_fetches_total", &inline),
        0.0,
        "{text}"
    );

    // A proof signed by a key the document does not list: a denial whose
    // cause is counted, its free-text reasons never.
    let stranger = TestKey::generate("k1");
    let body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(stranger.sign(&assertion_claims("jti-metrics-denied"))),
    );
    let denied = post_decision(&server, &body).await;
    assert_eq!(denied["authentication"]["result"], "failed", "{denied:#}");
    let (last, text) = scrape().await;
    let cause = [("cause", "authentication_failed")];
    assert_eq!(
        value(&last, "trustpath_denials_total", &cause),
        1.0,
        "{text}"
    );
    assert_eq!(value(&last, "trustpath_grants_issued_total", &[]), 2.0);
}

/// OTLP/HTTP (JSON) spans to a collector the test runs on loopback: the
/// request's span is in the caller's trace, under the caller's span, with
/// the span id the response's `traceparent` names.
#[tokio::test]
async fn spans_reach_a_local_otlp_collector_in_the_callers_trace() {
    use std::sync::{Arc, Mutex};
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |axum::extract::State(received): axum::extract::State<Arc<Mutex<Vec<Value>>>>,
                 body: axum::body::Bytes| async move {
                    let parsed: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                    received.lock().unwrap().push(parsed);
                    "{}"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trustpath.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\notlp_endpoint = \"http://{collector}/v1/traces\"\nservice_name = \"pdp-test\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = cimd_request(&["files:read"], cimd_document(None), None);
    let resp = http()
        .post(server.url("/v1/decisions"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.headers()["traceparent"].to_str().unwrap().to_string();
    let our_span = back.split('-').nth(2).unwrap().to_string();
    assert_eq!(get_json(&server, "/health").await["status"], "ok");
    // A clean stop sends what is batched.
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();

    let exports = received.lock().unwrap().clone();
    let spans: Vec<(Value, Value)> = exports
        .iter()
        .flat_map(|e| e["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| {
            let resource = rs["resource"].clone();
            rs["scopeSpans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
                .map(move |span| (resource.clone(), span))
        })
        .collect();
    let (resource, decision) = spans
        .iter()
        .find(|(_, s)| s["name"] == "POST /v1/decisions")
        .unwrap_or_else(|| panic!("no decision span in {exports:#?}"));
    assert_eq!(decision["traceId"], trace);
    assert_eq!(decision["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(decision["spanId"], our_span.as_str());
    assert_eq!(decision["kind"], 2, "a server span");
    let service = resource["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "service.name")
        .unwrap();
    assert_eq!(service["value"]["stringValue"], "pdp-test");
    let attr = |key: &str| {
        decision["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
    };
    assert_eq!(attr("http.route").unwrap()["stringValue"], "/v1/decisions");
    // The health probe's span is a root span of its own trace.
    let health = spans
        .iter()
        .find(|(_, s)| s["name"] == "GET /health")
        .map(|(_, s)| s)
        .unwrap();
    assert_ne!(health["traceId"], trace);
}
