//! Decision-log sinks over real processes: an HTTP sink to a receiver on
//! loopback that fails for a while, a crash mid-delivery, a rotated OCSF
//! file, and NDJSON on stdout.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::Value;

/// A SIEM stand-in: answers 503 while `failing` (or for the first
/// `fail_first` requests), else takes the gzip NDJSON body.
#[derive(Default)]
struct Receiver {
    failing: AtomicBool,
    fail_first: AtomicUsize,
    refused: AtomicUsize,
    /// Every entry taken, in arrival order.
    taken: Mutex<Vec<Value>>,
    bad_requests: Mutex<Vec<String>>,
}

async fn ingest(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let fail_first = rx.fail_first.load(Ordering::SeqCst);
    if rx.failing.load(Ordering::SeqCst) || fail_first > 0 {
        if fail_first > 0 {
            rx.fail_first.store(fail_first - 1, Ordering::SeqCst);
        }
        rx.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut problems = Vec::new();
    if header("authorization") != Some("Bearer sink-token-1") {
        problems.push(format!("authorization {:?}", header("authorization")));
    }
    if header("content-encoding") != Some("gzip") {
        problems.push(format!("content-encoding {:?}", header("content-encoding")));
    }
    if header("content-type") != Some("application/x-ndjson") {
        problems.push(format!("content-type {:?}", header("content-type")));
    }
    let mut text = String::new();
    if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text) {
        problems.push(format!("gzip: {e}"));
    }
    if !problems.is_empty() {
        rx.bad_requests.lock().unwrap().extend(problems);
        return StatusCode::BAD_REQUEST;
    }
    let mut taken = rx.taken.lock().unwrap();
    for line in text.lines() {
        taken.push(serde_json::from_str(line).expect("each line is JSON"));
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let rx = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(ingest))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rx, url)
}

fn seqs(taken: &[Value]) -> Vec<u64> {
    taken.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// Waits until the receiver holds every seq below `size`.
async fn delivered_all(rx: &Receiver, size: u64) -> Vec<u64> {
    for _ in 0..300 {
        let got = seqs(&rx.taken.lock().unwrap());
        if (0..size).all(|s| got.contains(&s)) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = seqs(&rx.taken.lock().unwrap());
    panic!("not every entry below {size} delivered: {got:?}");
}

/// At least once, in order: each delivery restarts at or before where the
/// last one ended, and nothing is skipped.
fn assert_in_order_without_gaps(got: &[u64]) {
    let mut high = None::<u64>;
    for &seq in got {
        match high {
            None => assert_eq!(seq, 0, "delivery must start at seq 0: {got:?}"),
            Some(h) => assert!(seq <= h + 1, "gap after seq {h}: got {seq} in {got:?}"),
        }
        high = Some(high.map_or(seq, |h| h.max(seq)));
    }
}

async fn log_size(server: &Server) -> u64 {
    let page = get_json(server, "/v1/log/entries?from_seq=0&limit=1000").await;
    page["entries"].as_array().unwrap().len() as u64
}

fn write_config(dir: &Path, url: &str, ocsf_file: &Path) -> std::path::PathBuf {
    let token = dir.join("sink-token");
    std::fs::write(&token, "sink-token-1\n").unwrap();
    let config = dir.join("trustpath.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[log.sinks]]
name = "siem"
kind = "http"
url = "{url}"
token_file = "{token}"
batch_size = 4

[[log.sinks]]
name = "archive"
kind = "file"
format = "ocsf"
path = "{ocsf}"
max_bytes = 8192
keep = 2
"#,
            token = token.display(),
            ocsf = ocsf_file.display(),
        ),
    )
    .unwrap();
    config
}

fn metric(text: &str, name: &str, sink: &str) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("sink") == Some(sink))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("{name}{{sink={sink}}} not in {text}"))
}

#[tokio::test]
async fn http_sink_delivers_every_entry_through_failures_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ocsf = dir.path().join("ocsf").join("decisions.ndjson");
    let (rx, url) = start_receiver().await;
    // The SIEM is down when the server starts.
    rx.fail_first.store(3, Ordering::SeqCst);
    let config = write_config(dir.path(), &url, &ocsf);
    let server = Server::start(&data, &repo_policies(), Some(&config));
    let key = TestKey::generate("k1");
    for i in 0..12 {
        connect(&server, &key, &format!("sess-{i}"), &["files:read"]).await;
    }
    let size = log_size(&server).await;
    assert!(size >= 3 + 24, "12 decisions and their grants: {size}");
    let got = delivered_all(&rx, size).await;
    assert_in_order_without_gaps(&got);
    assert!(rx.refused.load(Ordering::SeqCst) >= 3);
    assert!(rx.bad_requests.lock().unwrap().is_empty());
    // The entry as the API shows it, leaf hash included.
    let first_decision = rx
        .taken
        .lock()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "connection_decision")
        .cloned()
        .unwrap();
    assert_eq!(first_decision["leaf_hash"].as_str().unwrap().len(), 44);
    assert!(first_decision["decision"]["approved_scopes"].is_array());

    let metrics = String::from_utf8(get_ok(&server, "/metrics").await.to_vec()).unwrap();
    assert!(metric(&metrics, "trustpath_sink_failures_total", "siem") >= 3.0);
    assert!(metric(&metrics, "trustpath_sink_delivered_entries_total", "siem") >= size as f64);

    // The SIEM goes down again; more decisions; the server crashes.
    rx.failing.store(true, Ordering::SeqCst);
    for i in 12..20 {
        connect(&server, &key, &format!("sess-{i}"), &["files:read"]).await;
    }
    let size = log_size(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = String::from_utf8(get_ok(&server, "/metrics").await.to_vec()).unwrap();
    assert!(metric(&metrics, "trustpath_sink_lag_entries", "siem") >= 16.0);
    server.kill();

    // Back up, and the server restarted: delivery resumes from the cursor.
    rx.failing.store(false, Ordering::SeqCst);
    let before_restart = rx.taken.lock().unwrap().len();
    let server = Server::start(&data, &repo_policies(), Some(&config));
    let got = delivered_all(&rx, size).await;
    assert_in_order_without_gaps(&got);
    // Resumed, not restarted from the beginning.
    let resumed_at = got[before_restart];
    assert!(resumed_at > 0, "delivery restarted from seq 0");

    // The OCSF archive: every decision as an authentication and an
    // authorization event, rotated by size, two old files kept.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut events = Vec::new();
    for path in [
        ocsf.with_extension("ndjson.2"),
        ocsf.with_extension("ndjson.1"),
        ocsf.clone(),
    ] {
        if let Ok(text) = std::fs::read_to_string(&path) {
            assert!(
                text.len() <= 8192 + 8192,
                "{} is {} bytes",
                path.display(),
                text.len()
            );
            events.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    assert!(
        ocsf.with_extension("ndjson.1").exists(),
        "no rotation happened"
    );
    assert!(
        !ocsf.with_extension("ndjson.3").exists(),
        "keep = 2 kept more"
    );
    let of_class = |class: u64| events.iter().filter(|e| e["class_uid"] == class).count();
    assert!(
        of_class(3002) >= 1 && of_class(3002) == of_class(3003),
        "{events:#?}"
    );
    let authz = events.iter().find(|e| e["class_uid"] == 3003).unwrap();
    assert_eq!(authz["type_uid"], 300301);
    assert_eq!(authz["status_id"], 1);
    assert_eq!(authz["privileges"], serde_json::json!(["files:read"]));
    assert!(authz["session"]["uid"]
        .as_str()
        .unwrap()
        .starts_with("sess-"));
    for e in &events {
        for field in [
            "category_uid",
            "class_uid",
            "activity_id",
            "type_uid",
            "severity_id",
            "time",
        ] {
            assert!(e[field].is_i64(), "{field} missing in {e}");
        }
        assert_eq!(e["metadata"]["version"], "1.3.0");
        assert_eq!(e["metadata"]["product"]["name"], "trustpath");
    }
    server.stop();
}

#[test]
fn stdout_sink_writes_ndjson_after_the_listening_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trustpath.toml");
    std::fs::write(
        &config,
        "[[log.sinks]]\nname = \"out\"\nkind = \"stdout\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--policies")
        .arg(repo_policies())
        .arg("--config")
        .arg(&config)
        .env("TRUSTPATH_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("trustpath listening on "), "{first}");
    // The start entries: the two keys and the policy bundle.
    let kinds: Vec<String> = (0..START_ENTRIES)
        .map(|_| {
            let line = lines.next().unwrap().unwrap();
            let entry: Value = serde_json::from_str(&line).unwrap();
            entry["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds, ["signing_key", "signing_key", "policy_loaded"]);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_sink_config_mistake_names_the_sink_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trustpath.toml");
    std::fs::write(
        &config,
        "[[log.sinks]]\nname = \"siem\"\nkind = \"http\"\npath = \"/tmp/x\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (ok, _, err) = trustpath(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("log.sinks[0] (siem): url is required"),
        "{err}"
    );
}
