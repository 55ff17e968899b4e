//! The service around the pipeline: caller roles, bad input, durability
//! across a crash, and gap-free sequencing under concurrent load.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};
use trustpath::digest::sha256_hex;

fn config_with_callers(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[callers]]
name = "as"
role = "decide"
token_sha256 = "{}"

[[callers]]
name = "reviewer"
role = "audit"
token_sha256 = "{}"
"#,
            sha256_hex(b"decide-token"),
            sha256_hex(b"audit-token")
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn callers_need_a_token_with_the_right_role() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_callers(dir.path());
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let body = cimd_request(&["files:read"], cimd_document(None), None);
    let post = |token: Option<&str>| {
        let mut req = http().post(server.url("/v1/decisions")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    let resp = post(None).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "unauthorized");
    assert_eq!(post(Some("wrong-token")).await.unwrap().status(), 401);
    let resp = post(Some("audit-token")).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("decide"));

    let resp = post(Some("decide-token")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    let path = format!("/v1/decisions/{}", out["decision_id"].as_str().unwrap());

    // Reading the log is for auditors, not for the AS.
    let read = |token: &str| http().get(server.url(&path)).bearer_auth(token).send();
    assert_eq!(read("decide-token").await.unwrap().status(), 403);
    assert_eq!(read("audit-token").await.unwrap().status(), 200);
    // Health and JWKS are public.
    assert_eq!(status_of(&server, "/health").await, 200);
    assert_eq!(status_of(&server, "/.well-known/jwks.json").await, 200);
}

#[test]
fn no_callers_means_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .arg("--policies")
        .arg(repo_policies())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only listens on loopback"), "{stderr}");
}

async fn post_raw(server: &Server, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = http()
        .post(server.url("/v1/decisions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field_and_logs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let good = cimd_request(&["files:read"], cimd_document(None), None);
    let first = post_decision(&server, &good).await;
    assert_eq!(first["log_entry"]["seq"], START_ENTRIES);

    let (status, body) = post_raw(&server, "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");

    let mut missing = good.clone();
    missing["client"]
        .as_object_mut()
        .unwrap()
        .remove("client_id");
    let (status, body) = post_raw(&server, missing.to_string()).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("client.client_id")),
        "{body}"
    );

    let mut wrong_type = good.clone();
    wrong_type["scopes"] = json!("files:read");
    let (status, body) = post_raw(&server, wrong_type.to_string()).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("scopes")),
        "{body}"
    );

    let mut bad_kind = good.clone();
    bad_kind["metadata_source"]["kind"] = json!("magic");
    let (status, body) = post_raw(&server, bad_kind.to_string()).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("metadata_source.kind")),
        "{body}"
    );

    let mut typo = good.clone();
    typo["scope"] = json!(["files:read"]);
    let (status, body) = post_raw(&server, typo.to_string()).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("scope")),
        "{body}"
    );

    let mut huge = good.clone();
    huge["client"]["document"]["padding"] = json!("x".repeat(100 * 1024));
    let (status, body) = post_raw(&server, huge.to_string()).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "body_too_large");

    // None of that was logged, and the earlier entry is intact.
    let next = post_decision(&server, &good).await;
    // The seq after the first decision is its grant's issuance.
    assert_eq!(next["log_entry"]["seq"], START_ENTRIES + 2);
    let stored: Value = get_json(
        &server,
        &format!("/v1/decisions/{}", first["decision_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(stored["seq"], START_ENTRIES);
}

#[tokio::test]
async fn entry_and_signing_key_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let out = post_decision(
        &server,
        &cimd_request(&["files:read"], cimd_document(None), None),
    )
    .await;
    let id = out["decision_id"].as_str().unwrap().to_string();
    let jwks_before: Value = get_json(&server, "/.well-known/jwks.json").await;
    let before = get_ok(&server, &format!("/v1/decisions/{id}")).await;
    // SIGKILL: no graceful shutdown, so only what was flushed survives.
    server.kill();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("grant-signing-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let server = Server::start(dir.path(), &repo_policies(), None);
    let after = http()
        .get(server.url(&format!("/v1/decisions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(
        after.bytes().await.unwrap(),
        before,
        "stored bytes changed across restart"
    );
    let entry: Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(entry["decision_id"], id);
    assert_eq!(entry["decision"]["outcome"], "approved");
    let jwks_after: Value = get_json(&server, "/.well-known/jwks.json").await;
    assert_eq!(jwks_before, jwks_after, "grant key changed across restart");
    // The entry the crash left without a checkpoint is covered at start.
    let note = http()
        .get(server.url("/v1/log/checkpoint"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // (The start entries, the decision and its grant's issuance.)
    let size = (START_ENTRIES + 2).to_string();
    assert_eq!(note.lines().nth(1), Some(size.as_str()), "{note}");
    // The sequence continues where it stopped: the same keys and policy
    // are not logged again.
    let next = post_decision(
        &server,
        &cimd_request(&["files:read"], cimd_document(None), None),
    )
    .await;
    assert_eq!(next["log_entry"]["seq"], START_ENTRIES + 2);
    let missing = http()
        .get(server.url("/v1/decisions/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn concurrent_decisions_get_gap_free_distinct_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let client = http();
    let url = server.url("/v1/decisions");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (client, url) = (client.clone(), url.clone());
        let mut body = cimd_request(&["files:read"], cimd_document(None), None);
        body["session_id"] = json!(format!("s-{i}"));
        tasks.push(tokio::spawn(async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()["log_entry"]["seq"]
                .as_u64()
                .unwrap()
        }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        assert!(seqs.insert(t.await.unwrap()), "a seq was handed out twice");
    }
    // Each decision is written with its grant's issuance at the next seq,
    // atomically: after the start entries, decisions hold every other seq,
    // and nothing else does.
    let expected = (0..400).step_by(2).map(|s| s + START_ENTRIES);
    assert_eq!(seqs, expected.collect::<BTreeSet<u64>>());
}

#[test]
fn eval_prints_a_decision_without_logging() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("request.json");
    std::fs::write(
        &input,
        cimd_request(&["files:read"], cimd_document(None), None).to_string(),
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["eval", "--input"])
        .arg(&input)
        .arg("--policies")
        .arg(repo_policies())
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["decision"]["outcome"], "approved");
    assert!(printed["grant"].is_null());
    assert!(printed["log_entry"].is_null());
    assert!(
        !data.exists(),
        "a dry run must not touch the data directory"
    );

    // A malformed request names the file and the field.
    std::fs::write(&input, r#"{"scopes": ["a"], "client": {}}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["eval", "--input"])
        .arg(&input)
        .arg("--policies")
        .arg(repo_policies())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("request.json"), "{stderr}");
    assert!(
        stderr.contains("client.client_id") || stderr.contains("metadata_source"),
        "{stderr}"
    );
    assert!(stderr.contains("line 1"), "{stderr}");
}

/// `examples/decide.rs`, the minimal Rust client for AS authors, against
/// the real server: approval, denial and an all-scopes-refused request map
/// to a token, `access_denied` and `invalid_scope`.
#[tokio::test]
async fn example_decide_client_maps_answers_to_oauth() {
    // cargo test builds the examples next to the test binaries' directory.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/decide");
    assert!(example.exists(), "{} not built", example.display());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &repo_policies(), None);
    let requests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/requests");
    let mut unknown = cimd_request(&["payroll"], cimd_document(None), None);
    unknown["session_id"] = json!("s-unknown");
    let unknown_path = dir.path().join("unknown-scope.json");
    std::fs::write(&unknown_path, unknown.to_string()).unwrap();

    let run = |request: &std::path::Path| {
        let out = std::process::Command::new(&example)
            .arg(request)
            .env("TRUSTPATH_URL", &server.base)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let approved = run(&requests.join("document-only.json"));
    assert_eq!(
        approved["issue_token"]["scope"], "files:read",
        "{approved:#}"
    );
    assert_eq!(approved["issue_token"]["expires_in"], 300);
    assert_eq!(
        approved["issue_token"]["trustpath_session_id"],
        "demo-session-1"
    );
    assert!(approved["issue_token"]["trustpath_grant_jti"].is_string());
    let denied = run(&requests.join("untrusted-as.json"));
    assert_eq!(denied["error"], "access_denied", "{denied:#}");
    assert!(denied["error_description"]
        .as_str()
        .unwrap()
        .contains("not trusted"));
    let no_scope = run(&unknown_path);
    assert_eq!(no_scope["error"], "invalid_scope", "{no_scope:#}");
}

/// Shell completions and the man page come from the CLI's own definition.
#[test]
fn completions_and_man_page_cover_every_command() {
    let (ok, script, err) = trustpath(&["completions", "bash"]);
    assert!(ok, "{err}");
    for word in ["serve", "replay", "redact", "stats", "--log-format"] {
        assert!(
            script.contains(word),
            "{word} missing from the bash completions"
        );
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &script).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(file.path())
        .status()
        .unwrap();
    assert!(syntax.success(), "bash rejects the completion script");
    let (ok, page, err) = trustpath(&["man"]);
    assert!(ok, "{err}");
    assert!(page.contains(".TH trustpath 1"), "{page}");
    assert!(page.contains("Policy decision point for MCP authorization"));
    let (ok, _, err) = trustpath(&["completions", "nosh"]);
    assert!(!ok);
    assert!(err.contains("possible values"), "{err}");
}

/// The shipped systemd unit passes `systemd-analyze verify` without a
/// warning (where systemd-analyze is installed).
#[test]
fn the_systemd_unit_verifies() {
    let Ok(found) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed: the unit is not checked here");
        return;
    };
    assert!(found.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/systemd/trustpath.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/trustpath serve"));
    // The binary under test stands in for the installed one.
    let unit = unit.replace("/usr/local/bin/trustpath", env!("CARGO_BIN_EXE_trustpath"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trustpath.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warns: {stderr}");
}

#[tokio::test]
async fn health_command_probes_liveness_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let base = server.url("");
    let base = base.trim_end_matches('/').to_string();
    let probe = move |extra: &[&str]| {
        let mut args = vec!["health", "--url", base.as_str()];
        args.extend_from_slice(extra);
        let (ok, out, err) = trustpath(&args);
        (ok, format!("{out}{err}"))
    };
    let (ok, out) = tokio::task::spawn_blocking({
        let probe = probe.clone();
        move || probe(&[])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("/health: 200"), "{out}");
    let (ok, out) = tokio::task::spawn_blocking(move || probe(&["--ready"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("/ready: 200"), "{out}");
    let addr = server.addr();
    server.kill();
    let (ok, _, err) = trustpath(&["health", "--url", &format!("http://{addr}")]);
    assert!(!ok, "a stopped server is not healthy");
    assert!(err.contains("/health"), "{err}");
}

/// The image is built where a Docker daemon runs (not on every CI
/// machine); here its promises are checked against the repository: two
/// stages, a non-root user, a data volume, a health check that is a real
/// trustpath command, and sources that exist.
#[test]
fn the_dockerfile_keeps_its_promises() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.starts_with(' '))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let of = |word: &str| {
        instructions
            .iter()
            .filter(|l| l.starts_with(word))
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(of("FROM ").len(), 2, "multi-stage: {instructions:?}");
    let user = of("USER ");
    assert_eq!(user.len(), 1);
    let uid = user[0]["USER ".len()..].split(':').next().unwrap();
    assert!(uid.parse::<u32>().unwrap() >= 1000, "non-root: {uid}");
    assert!(of("VOLUME ")[0].contains("/var/lib/trustpath"));
    assert!(text.contains("TRUSTPATH_DATA_DIR=/var/lib/trustpath"));
    let check = of("HEALTHCHECK ");
    assert_eq!(check.len(), 1);
    assert!(text.contains(r#"CMD ["trustpath", "health", "--url", "http://127.0.0.1:8080"]"#));
    let (ok, _, err) = trustpath(&["health", "--help"]);
    assert!(ok, "{err}");
    for copy in of("COPY ") {
        if copy.contains("--from=") {
            continue;
        }
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(root.join(source).exists(), "COPY of a missing {source}");
        }
    }
    assert!(text.contains("--profile dist --locked"));
}

/// The exit codes of README's table, one meaning each.
#[test]
fn exit_codes_mean_one_thing_each() {
    let code = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
            .args(args)
            .env("TRUSTPATH_LOG", "error")
            .output()
            .unwrap()
            .status
            .code()
    };
    let dir = tempfile::tempdir().unwrap();
    let policies = repo_policies();
    // 0: the shipped policies' tests pass.
    assert_eq!(code(&["test", policies.to_str().unwrap()]), Some(0));
    // 1: a test that fails.
    let failing = dir.path().join("failing");
    std::fs::create_dir_all(&failing).unwrap();
    std::fs::write(
        failing.join("p.rego"),
        "package p\n\nallow if false\n\ntest_allow if allow\n",
    )
    .unwrap();
    assert_eq!(code(&["test", failing.to_str().unwrap()]), Some(1));
    // 2: a flag clap does not know, a bad filter value, a bad config.
    assert_eq!(code(&["test", "--no-such-flag"]), Some(2));
    let data = dir.path().join("data");
    assert_eq!(
        code(&[
            "log",
            "query",
            "--data-dir",
            data.to_str().unwrap(),
            "--since",
            "yesterday-ish"
        ]),
        Some(2)
    );
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "[grants]\nmax_ttl_seconds = 0\n").unwrap();
    assert_eq!(
        code(&[
            "serve",
            "--config",
            bad_config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap()
        ]),
        Some(2)
    );
    // 3: the work cannot be done (no log in this data directory).
    assert_eq!(
        code(&["log", "verify", "--data-dir", data.to_str().unwrap()]),
        Some(3)
    );
    // 1: nothing answers the health probe.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        code(&["health", "--url", &format!("http://{port}")]),
        Some(1)
    );
}

/// A reader that stops early closes the pipe: the command ends without a
/// panic or an error message. The pipe is made small (4 KiB), so the
/// command is still writing when it closes.
#[cfg(target_os = "linux")]
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Command, Stdio};
    let mut fds = [0; 2];
    // SAFETY: pipe fills two fds we then own; F_SETPIPE_SZ only sizes it.
    let (read_end, write_end) = unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert!(libc::fcntl(fds[0], libc::F_SETPIPE_SZ, 4096) >= 4096);
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_trustpath"));
    command
        .args(["completions", "bash"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    // Our copy of the write end goes with the command.
    drop(command);
    let mut reader = read_end;
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).unwrap();
    drop(reader);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(err.is_empty(), "{err}");
    // Ended by the pipe, not run to the end of its 50 KB.
    assert!(!status.success(), "{status}");
}

/// Every section key can come from `TRUSTPATH_SECTION__KEY`; `config check`
/// prints the effective configuration with secrets hidden, or names the
/// key at fault and where its value came from.
#[tokio::test]
async fn config_from_the_environment_and_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_callers(dir.path());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"));
        command.args(args).env("TRUSTPATH_LOG", "error");
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let config_arg = config.to_str().unwrap();
    let (code, toml_text, err) = run(
        &["config", "check", "--config", config_arg],
        &[
            ("TRUSTPATH_LIMITS__MAX_BODY_BYTES", "2048"),
            ("TRUSTPATH_RETENTION__BODY", "30d"),
            (
                "TRUSTPATH_STORE__URL",
                "postgres://app:s3cret@db.internal/trustpath",
            ),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let effective: toml::Value = toml::from_str(&toml_text).unwrap();
    assert_eq!(
        effective["limits"]["max_body_bytes"].as_integer(),
        Some(2048)
    );
    assert_eq!(effective["retention"]["body"].as_str(), Some("30d"));
    assert!(!toml_text.contains("s3cret"), "{toml_text}");
    for caller in effective["callers"].as_array().unwrap() {
        assert_eq!(caller["token_sha256"].as_str(), Some("<hidden>"));
    }

    // A bad value: the key and its source, exit 2.
    let (code, _, err) = run(
        &["config", "check", "--config", config_arg],
        &[("TRUSTPATH_GRANTS__MAX_TTL_SECONDS", "0")],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("grants.max_ttl_seconds"), "{err}");
    assert!(err.contains("from the TRUSTPATH_ environment"), "{err}");
    let (code, _, err) = run(
        &["config", "check", "--config", config_arg],
        &[("TRUSTPATH_LIMITS__MAX_BODY_BYTES", "lots")],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("MAX_BODY_BYTES") && err.contains("TRUSTPATH_"),
        "{err}"
    );
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "[log]\ncheckpoint_every_entries = 0\n").unwrap();
    let (code, _, err) = run(
        &["config", "check", "--config", bad_file.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("from {}", bad_file.display())),
        "{err}"
    );
    std::fs::write(&bad_file, "[log]\ncache_mb = 1\n").unwrap();
    let (code, _, err) = run(
        &["config", "check", "--config", bad_file.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("log.cache_mb"), "{err}");

    // The server takes the variable too: a body over 2,048 bytes is refused.
    let server = Server::start_with(dir.path(), &repo_policies(), None, |cmd| {
        cmd.env("TRUSTPATH_LIMITS__MAX_BODY_BYTES", "2048");
    });
    let big = json!({"padding": "x".repeat(4096)});
    let resp = http()
        .post(server.url("/v1/decisions"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

/// `eval --tool-call`: a tool-call request checked against a stopped
/// server's keys and log, the policy's answer printed, nothing logged.
#[tokio::test]
async fn eval_checks_a_tool_call_without_logging_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "s-eval", &["files:read"]).await;
    server.stop();
    let data_arg = data.to_str().unwrap();
    let exported = || {
        let (ok, _, err) = trustpath(&["log", "export", "--data-dir", data_arg]);
        assert!(ok, "{err}");
        err
    };
    let before = exported();
    let eval = |tool: &str| {
        let file = dir.path().join(format!("{tool}.json"));
        std::fs::write(
            &file,
            json!({"grant": grant_token(&decision), "tool": tool, "method": "tools/call"})
                .to_string(),
        )
        .unwrap();
        let (ok, out, err) = trustpath(&[
            "eval",
            "--tool-call",
            "--input",
            file.to_str().unwrap(),
            "--data-dir",
            data_arg,
            "--policies",
            repo_policies().to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let read = eval("read_file");
    assert_eq!(read["allow"], true, "{read:#}");
    assert_eq!(read["grant_status"], "active");
    assert_eq!(read["input"]["tool"], "read_file");
    let write = eval("write_file");
    assert_eq!(write["allow"], false, "{write:#}");
    assert!(
        write["reasons"].to_string().contains("write_file"),
        "{write:#}"
    );
    assert_eq!(exported(), before, "nothing was logged");

    // A request that names no grant is a usage error naming the field.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"tool": "read_file", "method": "tools/call"}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args([
            "eval",
            "--tool-call",
            "--input",
            bad.to_str().unwrap(),
            "--data-dir",
            data_arg,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grant"));
}

/// Progress bars: drawn on a terminal (a pty from `script`), never into a
/// pipe, and not with `--quiet`.
#[tokio::test]
async fn progress_bars_only_on_a_terminal_and_not_when_quiet() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no `script` (util-linux) to give the command a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), None);
    let key = TestKey::generate("k1");
    for i in 0..5 {
        connect(&server, &key, &format!("s-bar-{i}"), &["files:read"]).await;
    }
    server.stop();
    let bin = env!("CARGO_BIN_EXE_trustpath");
    let verify = format!("'{bin}' log verify --data-dir '{}'", data.display());
    let on_terminal = |command: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = on_terminal(&verify);
    assert!(
        shown.contains("verifying") && shown.contains("entries"),
        "{shown}"
    );
    assert!(shown.contains("OK: all"), "{shown}");
    let quiet = on_terminal(&format!("{verify} --quiet"));
    assert!(!quiet.contains("verifying"), "{quiet}");
    assert!(quiet.contains("OK: all"), "{quiet}");
    let (ok, out, err) = trustpath(&["log", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(ok);
    assert!(
        !err.contains("verifying") && !out.contains("verifying"),
        "{err}"
    );
    // --quiet drops the informational line too.
    let (ok, _, err) = trustpath(&["log", "export", "--data-dir", data.to_str().unwrap(), "-q"]);
    assert!(ok && err.is_empty(), "{err}");
}

/// `--help` says each shared flag's default, where the config can supply it.
#[test]
fn help_shows_the_defaults() {
    let (ok, out, _) = trustpath(&["serve", "--help"]);
    assert!(ok);
    for flag in [
        "--config",
        "--listen",
        "--data-dir",
        "--store",
        "--node",
        "--policies",
        "--issuer",
        "--log-format",
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} not in {out}"));
        assert!(
            line.contains("[default:"),
            "{flag} has no default shown: {line}"
        );
    }
    let (ok, out, _) = trustpath(&["test", "--help"]);
    assert!(ok);
    assert!(
        out.contains("[default: pretty]") && out.contains("[default: policies]"),
        "{out}"
    );
}
