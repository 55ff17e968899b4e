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
        let calls = get_json(
            &server,
            &format!("/v1/decisions?grant={jti}&kind=tool_call"),
        )
        .await;
        for entry in calls["entries"].as_array().unwrap() {
            if entry["seq"].as_u64().unwrap() > revocation_seq {
                assert_eq!(entry["decision"]["allow"], false, "{entry:#}");
            }
        }
    }
    assert_eq!(
        late_allows, 0,
        "tool calls allowed after the grant's revoke"
    );
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends raw bytes on a fresh loopback connection and reads the answer
/// until the server closes or answers in full.
async fn raw_request(server: &Server, bytes: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON body of a raw HTTP answer.
fn raw_json(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[limits]\nheader_read_timeout_ms = 1500\nmax_connections = 200\n\
         max_connections_per_peer = 64\n",
    );
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    // 256 descriptors, as in the review: 300 held connections exhausted them.
    let server = Server::start_with(
        &dir.path().join("data"),
        &repo_policies(),
        Some(&config),
        |cmd| {
            cmd.env("TRUSTPATH_LOG", "warn").stderr(stderr);
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: 256,
                        rlim_max: 256,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    // One client (127.0.0.2) opens 300 connections and sends half a request
    // on each.
    let mut held = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let Ok(mut stream) = socket.connect(server.addr()).await else {
            continue;
        };
        let _ = stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
            .await;
        held.push(stream);
    }
    // Everyone else is still served, at once.
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .get(server.url("/health"))
        .send()
        .await
        .expect("health answered while a slowloris holds connections");
    assert_eq!(health.status(), 200);
    // And the half-sent requests are cut off by the header-read timeout.
    let mut closed = 0;
    for stream in held.iter_mut().take(20) {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(6), stream.read(&mut buf)).await;
        if matches!(read, Ok(Ok(_)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 20, "held connections were not closed");
    // Hundreds of refused connections are a line or two in the log.
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    let lines = log.matches("connections refused").count();
    assert!((1..=2).contains(&lines), "{lines} refusal lines:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_sheds_with_a_fast_503_instead_of_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let policies = slow_policies(dir.path());
    let config = write_config(dir.path(), "[limits]\nmax_in_flight_decisions = 2\n");
    let server = Server::start(&dir.path().join("data"), &policies, Some(&config));
    let key = TestKey::generate("k1");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = server.url("/v1/decisions");
        let body = signed_request(&key, &format!("sess-load-{i}"));
        tasks.push(tokio::spawn(async move {
            let resp = http().post(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for task in tasks {
        let (status, out) = task.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert_eq!(out["error"], "overloaded", "{out:#}");
                shed += 1;
            }
            other => panic!("unexpected {other}: {out:#}"),
        }
    }
    assert!(ok > 0 && shed > 0, "ok {ok}, shed {shed}");
}

#[tokio::test]
async fn open_mode_refuses_cross_site_requests_and_foreign_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let key = TestKey::generate("k1");
    connect(&server, &key, "sess-csrf", &["files:read"]).await;
    let revoke = server.url("/v1/sessions/sess-csrf/revoke");
    let reason = r#"{"reason":"csrf"}"#;

    let post = |headers: &'static [(&'static str, &'static str)]| {
        let mut req = http().post(&revoke).body(reason);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // A web page's simple cross-site POST: text/plain, foreign Origin.
    let (status, out) = post(&[
        ("content-type", "text/plain"),
        ("origin", "https://evil.example"),
    ])
    .await;
    assert_eq!(
        (status, out["field"].as_str()),
        (403, Some("origin")),
        "{out:#}"
    );
    // Without an Origin, a body that is not JSON is still refused.
    let (status, out) = post(&[("content-type", "text/plain")]).await;
    assert_eq!(
        (status, out["field"].as_str()),
        (415, Some("content-type")),
        "{out:#}"
    );
    // The browser's own marker is honoured too.
    let (status, out) = post(&[
        ("content-type", "application/json"),
        ("sec-fetch-site", "cross-site"),
    ])
    .await;
    assert_eq!(
        (status, out["field"].as_str()),
        (403, Some("sec-fetch-site")),
        "{out:#}"
    );
    let revoked = get_json(&server, "/v1/decisions?kind=session_revoked").await;
    assert_eq!(revoked["entries"].as_array().unwrap().len(), 0);

    // DNS rebinding: a foreign Host reads nothing.
    let answer = raw_request(
        &server,
        "GET /v1/decisions HTTP/1.1\r\nHost: rebind.evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(raw_json(&answer)["field"], "host");
    let answer = raw_request(
        &server,
        "GET /health HTTP/1.1\r\nHost: rebind.evil.example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // Loopback names and a same-host Origin are served.
    for host in ["localhost", "127.0.0.1:9", "[::1]:9"] {
        let answer = raw_request(
            &server,
            &format!("GET /v1/decisions?limit=1 HTTP/1.1\r\nHost: {host}\r\nOrigin: http://localhost:3000\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    let (status, out) = post_json(
        &server,
        "/v1/sessions/sess-csrf/revoke",
        &json!({"reason": "ok"}),
    )
    .await;
    assert_eq!(status, 200, "{out:#}");
}

const AUDIT_TOKEN: &str = "audit-token-0123456789";

fn callers_config(dir: &Path) -> PathBuf {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(AUDIT_TOKEN.as_bytes()));
    write_config(
        dir,
        &format!("[[callers]]\nname = \"reviewer\"\nrole = \"audit\"\ntoken_sha256 = \"{hash}\"\n"),
    )
}

#[tokio::test]
async fn every_error_is_json_and_nothing_is_parsed_before_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let config = callers_config(dir.path());
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let send = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut req = http().request(method, server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
            let body: Value = resp.json().await.expect("a JSON body");
            assert_eq!(content_type, "application/json");
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "{body:#}"
            );
            (status, body)
        }
    };
    use reqwest::Method;
    // Without a token: 401, whatever the path, its encoding or the method.
    for (method, path) in [
        (Method::GET, "/v1/sessions/%FF"),
        (Method::GET, "/v1/log/entries/%FF%FE"),
        (Method::GET, "/no/such/route"),
        (Method::DELETE, "/v1/decisions"),
        (Method::POST, "/v1/grants/%FF/revoke"),
    ] {
        let (status, _) = send(method.clone(), path, None).await;
        assert_eq!(status, 401, "{method} {path}");
        let (status, _) = send(method.clone(), path, Some("wrong-token")).await;
        assert_eq!(status, 401, "{method} {path}");
    }
    // With one: the path's own errors, as JSON naming what is wrong.
    let (status, body) = send(Method::GET, "/v1/sessions/%FF", Some(AUDIT_TOKEN)).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("path")),
        "{body:#}"
    );
    let (status, _) = send(Method::GET, "/no/such/route", Some(AUDIT_TOKEN)).await;
    assert_eq!(status, 404);
    let (status, body) = send(Method::DELETE, "/v1/decisions", Some(AUDIT_TOKEN)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // A role the caller lacks is refused before the body is read.
    let (status, body) = send(Method::POST, "/v1/grants/%FF/revoke", Some(AUDIT_TOKEN)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
}

#[tokio::test]
async fn identifiers_are_bounded_and_free_of_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let key = TestKey::generate("k1");
    for (field, value) in [
        ("session_id", json!("sess\nFORGED level=ERROR")),
        ("session_id", json!("sess\u{1b}[2J")),
        ("session_id", json!("s".repeat(600))),
        ("session_id", json!("x\u{202e}txt")),
    ] {
        let mut body = signed_request(&key, "sess-ok");
        body[field] = value.clone();
        let (status, out) = post_json(&server, "/v1/decisions", &body).await;
        assert_eq!(status, 400, "{value}: {out:#}");
        assert_eq!(out["field"], field, "{out:#}");
    }
    let mut body = signed_request(&key, "sess-ok");
    body["client"]["client_id"] = json!("https://agents.example.com/\r\nclient.json");
    let (status, out) = post_json(&server, "/v1/decisions", &body).await;
    assert_eq!(
        (status, out["field"].as_str()),
        (400, Some("client.client_id")),
        "{out:#}"
    );
    let (status, out) = post_json(
        &server,
        "/v1/tool-calls",
        &json!({"session_id": "s", "tool": "read\u{1b}]0;pwned\u{7}", "method": "tools/call"}),
    )
    .await;
    assert_eq!(
        (status, out["field"].as_str()),
        (400, Some("tool")),
        "{out:#}"
    );
    connect(&server, &key, "sess-ok", &["files:read"]).await;
    let (status, out) = post_json(
        &server,
        "/v1/sessions/sess-ok/revoke",
        &json!({"reason": "ok\nFORGED"}),
    )
    .await;
    assert_eq!(
        (status, out["field"].as_str()),
        (400, Some("reason")),
        "{out:#}"
    );
}

#[tokio::test]
async fn stored_strings_are_escaped_in_cli_tables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), None);
    let key = TestKey::generate("k1");
    // The redirect URI is not an identifier: it is kept as sent, and a
    // denial reason quotes it.
    let mut body = signed_request(&key, "sess-esc");
    body["client"]["redirect_uri"] = json!("https://agents.example.com/cb\n\u{1b}[2JFORGED ROW");
    let out = post_decision(&server, &body).await;
    assert_eq!(out["decision"]["allow"], false, "{out:#}");
    server.stop();
    let data_arg = data.to_str().unwrap();
    for args in [
        vec!["log", "query", "--data-dir", data_arg],
        vec!["log", "session", "sess-esc", "--data-dir", data_arg],
    ] {
        let (ok, table, err) = trustpath(&args);
        assert!(ok, "{err}");
        assert!(!table.contains('\u{1b}'), "raw escape in {args:?}: {table}");
        assert!(
            table.lines().all(|l| !l.starts_with("FORGED")),
            "forged row: {table}"
        );
        // The row is read through the typed entry: its columns are there.
        let row = table
            .lines()
            .find(|l| l.contains("connection_decision"))
            .unwrap_or_else(|| panic!("no decision row in {table}"));
        for column in ["sess-esc", "denied", "auth=", "requested=[", "approved=[]"] {
            assert!(row.contains(column), "{column} missing from {row}");
        }
        assert!(!table.contains("unreadable entry"), "{table}");
    }
    // JSON output keeps the exact text.
    let (ok, json, _) = trustpath(&[
        "log",
        "session",
        "sess-esc",
        "--json",
        "--data-dir",
        data_arg,
    ]);
    assert!(ok);
    assert!(json.contains("\\u001b[2JFORGED ROW"), "{json}");
}

#[test]
fn config_values_that_reach_signed_notes_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    for (key, text) in [
        ("log.origin", "[log]\norigin = \"trustpath.local/log\\u0007x\"\n"),
        ("log.origin", "[log]\norigin = \"trustpath local\"\n"),
        ("log.origin", "[log]\norigin = \"trustpath.local\\tx\"\n"),
        ("issuer", "issuer = \"https://pdp.example\\nforged\"\n"),
        ("callers", "[[callers]]\nname = \"ops\\u001b[2J\"\nrole = \"audit\"\ntoken_sha256 = \"00000000000000000000000000000000000000000000000000000000000000ff\"\n"),
    ] {
        let config = write_config(dir.path(), text);
        let data = dir.path().join("data");
        let (ok, _, err) = trustpath(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert!(!ok, "{text} was accepted");
        assert!(err.contains(key), "{key} not named: {err}");
        assert!(!data.exists(), "a refused config created the data directory");
    }
}

/// A stopped server's data directory with a few decisions, and its export.
async fn exported_log(dir: &Path) -> (PathBuf, String) {
    let data = dir.join("data");
    let server = Server::start(&data, &repo_policies(), None);
    let key = TestKey::generate("k1");
    for i in 0..3 {
        connect(&server, &key, &format!("sess-x{i}"), &["files:read"]).await;
    }
    server.stop();
    let (ok, export, err) = trustpath(&["log", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    (data, export)
}

#[tokio::test]
async fn a_crafted_export_header_does_not_panic_log_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (data, export) = exported_log(dir.path()).await;
    let vkey = dir.path().join("log.vkey");
    let (ok, key, _) = trustpath(&["log", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{key}");
    let signer = trustpath::log::checkpoint::LogSigner::load_or_create(
        &data.join("log-signing-key.pem"),
        "trustpath.local/decision-log",
    )
    .unwrap();
    std::fs::write(&vkey, signer.verifier().vkey()).unwrap();
    let lines: Vec<&str> = export.lines().collect();
    for (from, to) in [
        (u64::MAX, u64::MAX),
        (u64::MAX - 1, 3),
        (0, u64::MAX),
        (5, 2),
        (1 << 63, 1 << 63),
    ] {
        let mut header: Value = serde_json::from_str(lines[0]).unwrap();
        header["from"] = json!(from);
        header["to"] = json!(to);
        let mut crafted = vec![header.to_string()];
        crafted.extend(lines[1..].iter().map(|l| l.to_string()));
        let file = dir.path().join("crafted.ndjson");
        std::fs::write(&file, crafted.join("\n") + "\n").unwrap();
        let (ok, out) = verify_export_file(&file, &vkey, &[]);
        assert!(!ok, "{from}..{to} verified");
        assert!(out.starts_with("FAILED"), "{from}..{to}: {out}");
        assert!(!out.contains("panicked"), "{from}..{to}: {out}");
    }
}

#[tokio::test]
async fn replay_and_export_refuse_the_wrong_input() {
    let dir = tempfile::tempdir().unwrap();
    let (data, export) = exported_log(dir.path()).await;
    let data_arg = data.to_str().unwrap();
    let policies = repo_policies();
    let policies_arg = policies.to_str().unwrap();
    let replay = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--policies",
            policies_arg,
            "--export",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        trustpath(&args)
    };
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    // The real export replays.
    let (ok, out, err) = replay(&write("good.ndjson", &export), &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("replayed 3 entries"), "{out}");

    // `log query --json` output is not an export.
    let (ok, query, _) = trustpath(&["log", "query", "--json", "--data-dir", data_arg]);
    assert!(ok);
    let (ok, _, err) = replay(&write("query.ndjson", &query), &[]);
    assert!(!ok && err.contains("line 1"), "{err}");
    // An empty file is not an export of nothing.
    let (ok, _, err) = replay(&write("empty.ndjson", ""), &[]);
    assert!(!ok && err.contains("empty"), "{err}");
    // A truncated export (its trailer lost) is refused, not short by one.
    let lines: Vec<&str> = export.lines().collect();
    let truncated = lines[..lines.len() - 1].join("\n") + "\n";
    let (ok, _, err) = replay(&write("truncated.ndjson", &truncated), &[]);
    assert!(!ok && err.contains("trailer"), "{err}");
    // A gate that evaluated nothing fails unless told that is expected.
    let (ok, _, err) = replay(
        &write("good2.ndjson", &export),
        &["--session", "no-such-session"],
    );
    assert!(!ok && err.contains("--allow-empty"), "{err}");
    let (ok, _, err) = replay(
        &write("good3.ndjson", &export),
        &["--session", "no-such-session", "--allow-empty"],
    );
    assert!(ok, "{err}");

    // Reading commands never create a data directory.
    let missing = dir.path().join("missing");
    let missing_arg = missing.to_str().unwrap();
    for args in [
        vec![
            "replay",
            "--policies",
            policies_arg,
            "--data-dir",
            missing_arg,
        ],
        vec!["log", "export", "--data-dir", missing_arg],
        vec!["log", "verify", "--data-dir", missing_arg],
        vec!["log", "query", "--data-dir", missing_arg],
        vec!["log", "session", "s", "--data-dir", missing_arg],
        vec!["log", "proof", "--seq", "0", "--data-dir", missing_arg],
    ] {
        let (ok, _, err) = trustpath(&args);
        assert!(!ok, "{args:?} succeeded on a missing directory");
        assert!(err.contains("missing"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created the directory");
    }
}

#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), None);
    connect(&server, &TestKey::generate("k1"), "sess-p", &["files:read"]).await;
    server.stop();
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 3);
}

/// The connection layer was replaced (limits and timeouts): what held
/// before still holds. Pipelined requests are answered in order; ambiguous
/// framing and folded or oversized headers are refused; a body that never
/// arrives is cut off by the body timeout.
#[tokio::test]
async fn http_framing_still_holds_on_the_bounded_connection_layer() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[limits]\nbody_read_timeout_ms = 1000\n");
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let get = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let answer = raw_request(
        &server,
        &format!("{get}{get}GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 3, "{answer}");

    let body = r#"{"reason":"x"}"#;
    for (what, request) in [
        (
            "conflicting Content-Length",
            format!(
                "POST /v1/sessions/s/revoke HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Content-Length: 14\r\nContent-Length: 3\r\n\r\n{body}"
            ),
        ),
        (
            "folded header",
            format!(
                "POST /v1/sessions/s/revoke HTTP/1.1\r\nHost: localhost\r\nContent-Type:\r\n application/json\r\n\
                 Content-Length: 14\r\n\r\n{body}"
            ),
        ),
        (
            "oversized header",
            format!(
                "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
                "a".repeat(512 * 1024)
            ),
        ),
    ] {
        let answer = raw_request(&server, &request).await;
        let status: u16 = answer
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            status == 0 || (400..500).contains(&status),
            "{what} was accepted: {answer}"
        );
        assert!(!answer.contains("HTTP/1.1 200"), "{what}: {answer}");
    }

    // A body announced but never sent: the connection is answered or
    // closed once the body timeout passes, not held.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(
            b"POST /v1/sessions/s/revoke HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a stalled body held the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");
}
