//! The incident-response console in a real headless Chromium (Debian's
//! `chromium`, driven by playwright-core from `tests/console/browser.mjs`):
//! real servers on loopback ports, real sled directories, real signed JWTs.
//!
//! This file makes the log the browser looks at: an approved session with
//! a tool call, a reduced one that is then revoked, a denied one, a
//! delegated one, and one whose id carries `<script>`. It stops the server,
//! copies the data directory and alters one entry of the copy on disk, then
//! serves both and hands the browser script a plan of what to check.
//! Screenshots go to `target/console-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use trustpath::store::sled::raw_entry_key;

const ADMIN: &str = "console-test-admin-token";
const AUDIT: &str = "console-test-audit-token";
const DECIDE: &str = "console-test-decide-token";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("trustpath.toml");
    let callers: String = [
        ("ops", "admin", ADMIN),
        ("auditor", "audit", AUDIT),
        ("as", "decide", DECIDE),
    ]
    .iter()
    .map(|(name, role, token)| {
        format!(
            "[[callers]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n\n",
            sha256_hex(token)
        )
    })
    .collect();
    std::fs::write(
        &path,
        format!("[log]\ncheckpoint_every_seconds = 1\n\n{callers}"),
    )
    .unwrap();
    path
}

async fn post(server: &Server, path: &str, body: &Value) -> Value {
    let resp = http()
        .post(server.url(path))
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let out: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{path}: {out:#}");
    out
}

/// The browser tools, or why they are missing: under CI a missing one
/// fails the test, elsewhere it is skipped with a note.
fn browser() -> Option<PathBuf> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let modules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/node_modules/playwright-core");
    if !modules.exists() {
        // The registry is reachable on every machine here: a fresh checkout
        // installs the pinned packages from the lockfile.
        let _ = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console"))
            .status();
    }
    let missing = match (&chromium, modules.exists()) {
        (None, _) => "Debian's chromium (apt-get install chromium)",
        (_, false) => "tests/console/node_modules (npm ci in tests/console)",
        _ => return chromium,
    };
    if std::env::var_os("CI").is_some() {
        panic!("the console's browser test needs {missing}; .ci/run installs it");
    }
    eprintln!("skipped: the console's browser test needs {missing}");
    None
}

/// Waits until a signed checkpoint covers every entry the log has.
async fn checkpointed(server: &Server) {
    for _ in 0..100 {
        let size = newest_seq(server, "limit=1").await + 1;
        let note = http()
            .get(server.url("/v1/log/checkpoint"))
            .bearer_auth(AUDIT)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let signed: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if signed >= size {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("no checkpoint covered the log");
}

/// The seq of the newest entry a search finds.
async fn newest_seq(server: &Server, search: &str) -> u64 {
    let page: Value = http()
        .get(server.url(&format!("/v1/decisions?{search}")))
        .bearer_auth(AUDIT)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["entries"][0]["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn console_pages_in_a_real_browser() {
    let Some(chromium) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), Some(&config));
    let key = TestKey::generate("k1");

    // Approved, with a tool call.
    let approved = post(
        &server,
        "/v1/decisions",
        &verified_request(&key, "sess-approved", &["files:read"]),
    )
    .await;
    assert_eq!(approved["decision"]["outcome"], "approved", "{approved:#}");
    let call = json!({
        "grant": grant_token(&approved), "tool": "read_file", "method": "tools/call",
        "arguments": {"path": "/reports/q3.txt"}, "actor": "agent-1",
    });
    post(&server, "/v1/tool-calls", &call).await;

    // Reduced (a document-only client), then revoked.
    let mut reduced = cimd_request(&["files:read", "files:write"], cimd_document(None), None);
    reduced["session_id"] = json!("sess-reduced");
    let out = post(&server, "/v1/decisions", &reduced).await;
    assert_eq!(out["decision"]["outcome"], "reduced", "{out:#}");
    post(
        &server,
        "/v1/sessions/sess-reduced/revoke",
        &json!({"reason": "agent misbehaved"}),
    )
    .await;

    // Denied: the assertion is signed by a key the document does not hold.
    let other = TestKey::generate("k1");
    let mut denied = verified_request(&other, "sess-denied", &["files:read"]);
    denied["client"]["document"] = cimd_document(Some(key.jwks()));
    let out = post(&server, "/v1/decisions", &denied).await;
    assert_eq!(out["decision"]["outcome"], "denied", "{out:#}");

    // Delegated: a human's approval and an actor chain.
    let mut delegated = verified_request(&key, "sess-delegated", &["files:read", "repo:admin"]);
    delegated["delegation"] = json!({
        "approval_id": "appr-42", "approved_by": "alice@example.com",
        "approved_at": "2026-11-23T09:00:00Z",
        "actor": {"sub": "agent:builder", "act": {"sub": "agent:orchestrator"}},
    });
    let out = post(&server, "/v1/decisions", &delegated).await;
    assert_eq!(out["decision"]["outcome"], "reduced", "{out:#}");

    // A session id a page must show as text.
    let hostile = "<script>window.__pwned=1</script>";
    let out = post(
        &server,
        "/v1/decisions",
        &verified_request(&key, hostile, &["files:read"]),
    )
    .await;
    assert_eq!(out["decision"]["outcome"], "approved", "{out:#}");

    checkpointed(&server).await;
    // The denied decision's seq: the entry the copy alters.
    let denied_seq = newest_seq(&server, "session_id=sess-denied&kind=connection_decision").await;
    server.stop();

    // The copy: the denied decision's committed outcome turned into an
    // approval on disk (its disclosures untouched, so the entry still reads).
    let altered = dir.path().join("altered");
    copy_dir(&data, &altered);
    {
        let raw = RawLog::open(&altered);
        let key = raw_entry_key(denied_seq);
        let text = String::from_utf8(raw.entry(denied_seq)).unwrap();
        let (commitment, rest) = text.split_once('\t').unwrap_or((&text, ""));
        assert!(
            commitment.contains("\"outcome\":\"denied\""),
            "{commitment}"
        );
        let forged = commitment.replace("\"outcome\":\"denied\"", "\"outcome\":\"approved\"");
        let stored = if rest.is_empty() {
            forged
        } else {
            format!("{forged}\t{rest}")
        };
        raw.insert(key, stored.as_bytes()).unwrap();
        raw.flush();
    }

    let honest = Server::start(&data, &repo_policies(), Some(&config));
    let tampered = Server::start(&altered, &repo_policies(), Some(&config));
    // A request the browser sends while following: a new decision.
    let live = {
        let mut body = verified_request(&key, "sess-live", &["files:read"]);
        body["client"]["assertion"] = json!(key.sign(&assertion_claims("live-jti")));
        body
    };
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let plan = json!({
        "chromium": chromium,
        "screenshots": target.join("console-screenshots"),
        "honest": honest.base,
        "tampered": tampered.base,
        "tokens": {"audit": AUDIT, "decide": DECIDE, "admin": ADMIN},
        "sessions": {
            "approved": "sess-approved", "reduced": "sess-reduced", "denied": "sess-denied",
            "delegated": "sess-delegated", "hostile": hostile,
        },
        "client_id": CLIENT_ID,
        "altered_seq": denied_seq,
        "live_request": live,
    });
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let status = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser.mjs"))
        .arg(&plan_file)
        .status()
        .expect("run node");
    assert!(status.success(), "the browser checks failed (output above)");
}

/// The same pages over plain HTTP, no browser needed: who is let in, what
/// the headers promise, escaping, errors naming the filter, and the switch.
#[tokio::test]
async fn console_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let key = TestKey::generate("k1");
    let hostile = "<img src=x onerror=alert(1)>";
    post(
        &server,
        "/v1/decisions",
        &verified_request(&key, hostile, &["files:read"]),
    )
    .await;
    let page = |path: &str, token: Option<&str>| {
        let mut request = http().get(server.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let resp = page("/console/", None).await.unwrap();
    assert_eq!(resp.status(), 401);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("id=\"token-form\"") && !body.contains("onerror"),
        "{body}"
    );

    assert_eq!(page("/console/", Some(DECIDE)).await.unwrap().status(), 403);
    assert_eq!(
        page("/console/", Some("wrong")).await.unwrap().status(),
        401
    );

    let resp = page("/console/", Some(AUDIT)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("Decision log"), "{body}");
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;") && !body.contains("<img"),
        "{body}"
    );

    // The token in a posted form (the page without JavaScript).
    let path = format!(
        "/console/sessions/{}",
        url::form_urlencoded::byte_serialize(hostile.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    );
    let resp = http()
        .post(server.url(&path))
        .form(&[("token", AUDIT)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("id=\"timeline\"") && !body.contains("<img"),
        "{body}"
    );

    // Pages follow the API's cursor: two entries a page, then the next two.
    let body = page("/console/?limit=2", Some(AUDIT))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let seqs = |body: &str| -> Vec<u64> {
        body.split("data-seq=\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
            .collect()
    };
    let first = seqs(&body);
    let next = body
        .split("id=\"older\" href=\"")
        .nth(1)
        .map(|rest| rest[..rest.find('"').unwrap()].replace("&amp;", "&"))
        .expect("an older-entries link");
    assert!(
        next.contains("limit=2") && next.contains("cursor="),
        "{next}"
    );
    let second = seqs(
        &page(&next, Some(AUDIT))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(first.len(), 2, "{body}");
    assert_eq!(second, vec![first[1] - 1, first[1] - 2]);

    let resp = page("/console/?since=yesterday", Some(AUDIT))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("<code>since</code>") && body.contains("RFC 3339"),
        "{body}"
    );
    let resp = page("/console/sessions/nobody", Some(AUDIT)).await.unwrap();
    assert_eq!(resp.status(), 404);

    let resp = page("/console/assets/console.js", None).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let live = page("/console/live?outcome=nope", Some(AUDIT))
        .await
        .unwrap();
    assert_eq!(live.status(), 400);
    assert_eq!(live.json::<Value>().await.unwrap()["field"], "outcome");
    server.stop();

    // Disabled by config: no page at all.
    let off = dir.path().join("off.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&off, format!("[console]\nenabled = false\n\n{text}")).unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&off));
    assert_eq!(page_status(&server, "/console/").await, 404);
    assert_eq!(page_status(&server, "/console/live").await, 404);
}

async fn page_status(server: &Server, path: &str) -> u16 {
    http()
        .get(server.url(path))
        .bearer_auth(AUDIT)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
