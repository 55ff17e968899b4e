//! Load generator against the real server: starts `trustpath serve` on a
//! loopback port with a fresh sled directory and the shipped policies, and
//! drives `POST /v1/decisions` from this process, or with `--tool-calls`
//! `POST /v1/tool-calls` under one grant (distinct arguments each).
//!
//!     cargo bench --bench load -- [--seconds N] [--concurrency N] [--rate N]
//!         [--proof jwt|none] [--tool-calls] [--rounds N] [--no-floor]
//!         [--retention-ab]
//!
//! Without `--rate`, a closed loop: `concurrency` connections send as fast
//! as answers come (throughput). With `--rate`, requests are started on a
//! fixed schedule and latency is measured from the scheduled time (no
//! coordinated omission). Every run is bounded by `--seconds`.
//!
//! Each round first loads the floor: this same binary re-run as a bare axum
//! server that parses the same request body into the same type and answers
//! a small JSON, nothing else. Then trustpath. The report gives both and
//! trustpath's share of the floor, since only a ratio measured in the same
//! run compares across hours on a shared machine. The generator is a plain
//! hyper client, one keep-alive connection per caller, so its own cost is
//! small next to either server's.
//!
//! `--retention-ab` instead runs, in each round, trustpath without and with
//! a `[retention]` that keeps the background pass busy during the run
//! (subjects redacted after 1 s, bodies after 2 s, entries expired after
//! 4 s), in alternating order, and prints the p99 difference: what
//! retention costs a decision.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

// The generator shares the two cores with the server: keep its own cost low.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENT_ID: &str = "https://agents.example.com/client.json";
const AS_ISSUER: &str = "https://auth.example.com";
/// What a good answer carries: a decision that was made and logged (the
/// floor answers with the same marker).
const MARKER: &[u8] = b"\"log_entry\":{";

struct Options {
    seconds: u64,
    concurrency: usize,
    rate: Option<u64>,
    jwt: bool,
    tool_calls: bool,
    rounds: usize,
    floor: bool,
    retention_ab: bool,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 10,
        concurrency: 32,
        rate: None,
        jwt: true,
        tool_calls: false,
        rounds: 1,
        floor: true,
        retention_ab: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => o.seconds = value.parse().expect("--seconds N"),
            "--concurrency" => o.concurrency = value.parse().expect("--concurrency N"),
            "--rate" => o.rate = Some(value.parse().expect("--rate N")),
            "--proof" => o.jwt = value == "jwt",
            "--rounds" => o.rounds = value.parse().expect("--rounds N"),
            flag @ ("--tool-calls" | "--no-floor" | "--retention-ab") => {
                match flag {
                    "--tool-calls" => o.tool_calls = true,
                    "--retention-ab" => o.retention_ab = true,
                    _ => o.floor = false,
                }
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// Request bodies, made before the clock starts so the generator spends
/// its CPU on sending, not on signing.
fn bodies(count: usize, jwt: bool, run: usize, subject: bool) -> Vec<String> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let der = key.to_pkcs8_der().unwrap();
    let encoding = EncodingKey::from_ed_der(der.as_bytes());
    let jwks = json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
    }]});
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    (0..count)
        .map(|i| {
            let mut client = json!({
                "client_id": CLIENT_ID,
                "redirect_uri": "https://agents.example.com/callback",
                "document": {
                    "client_id": CLIENT_ID,
                    "redirect_uris": ["https://agents.example.com/callback"],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": jwks,
                },
            });
            if jwt {
                let claims = json!({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": AS_ISSUER,
                    "iat": now, "exp": now + 290, "jti": format!("bench-{run}-{i}")});
                client["assertion"] =
                    json!(jsonwebtoken::encode(&header, &claims, &encoding).unwrap());
            }
            let mut body = json!({
                "session_id": format!("bench-session-{run}-{i}"),
                "resource": "https://mcp.example.com/mcp",
                "scopes": ["files:read", "files:write", "payroll"],
                "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": AS_ISSUER}},
                "client": client,
            });
            if subject {
                let sub = format!("user-{i}@example.com");
                body["subject"] = json!({"iss": AS_ISSUER, "sub": sub, "claims": {"email": sub}});
            }
            body.to_string()
        })
        .collect()
}

/// A server under load: the floor or trustpath, as a child process.
struct Target {
    name: &'static str,
    addr: std::net::SocketAddr,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    fn start(name: &'static str, mut command: Command, dir: Option<tempfile::TempDir>) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .rsplit_once(" listening on ")
            .map(|(_, url)| url.to_string())
            .unwrap_or_else(|| panic!("{name} said {line:?}"));
        Self {
            name,
            addr: address(&url),
            child: Some(child),
            _dir: dir,
        }
    }

    fn floor() -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg("--floor-server");
        Self::start("floor", command, None)
    }

    fn trustpath(retention: bool) -> Self {
        // TRUSTPATH_URL points the load at a server started elsewhere (for
        // profiling); TRUSTPATH_BIN runs another build (A/B runs against an
        // earlier commit).
        if let Ok(url) = std::env::var("TRUSTPATH_URL") {
            return Self {
                name: "trustpath",
                addr: address(&url),
                child: None,
                _dir: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var("TRUSTPATH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_trustpath").to_string());
        let mut command = Command::new(bin);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
            .arg("--data-dir")
            .arg(dir.path())
            .env("TRUSTPATH_LOG", "error");
        if retention {
            let config = dir.path().join("retention.toml");
            std::fs::write(
                &config,
                "[retention]\nend_user = \"1s\"\nsubject_claims = \"1s\"\n\
                 body = \"2s\"\nexpire = \"4s\"\ninterval = \"1s\"\n",
            )
            .unwrap();
            command.arg("--config").arg(&config);
            return Self::start("retention", command, Some(dir));
        }
        Self::start("trustpath", command, Some(dir))
    }

    /// The server's resident memory, in kB.
    fn rss_kb(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
    }

    /// Bytes this process has caused to be written to storage.
    fn write_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        io.lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn address(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("not a loopback address: {url}"))
}

/// The floor: the same request body parsed into the same type, a small JSON
/// answer, and nothing else, on the same runtime shape as trustpath.
fn floor_server() {
    use axum::routing::post;
    use axum::Json;
    async fn decide(
        Json(request): Json<trustpath::model::ConnectionRequest>,
    ) -> Json<serde_json::Value> {
        std::hint::black_box(&request);
        Json(json!({"decision": {"allow": true}, "log_entry": {"seq": 0}}))
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "floor listening on http://{}",
            listener.local_addr().unwrap()
        );
        let app = axum::Router::new().route("/v1/decisions", post(decide));
        axum::serve(listener, app).await.unwrap();
    });
}

fn main() {
    if std::env::args().any(|a| a == "--floor-server") {
        return floor_server();
    }
    let o = options();
    // Enough distinct bodies (distinct jtis and sessions) for every run.
    let per_run = o.rate.map_or(20_000 * o.seconds as usize, |r| {
        (r * o.seconds) as usize + 1
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    if o.retention_ab {
        return retention_ab(&o, &runtime, per_run);
    }
    let mut ratios = Vec::new();
    for round in 0..o.rounds {
        let floor = o.floor.then(|| {
            let target = Target::floor();
            let bodies = Arc::new(bodies(per_run, o.jwt, round * 2, false));
            // The floor keeps nothing: it may see a body twice.
            let result = runtime.block_on(run(&o, target.addr, "/v1/decisions", bodies, true));
            report(&o, target.name, &result, None);
            result
        });
        let target = Target::trustpath(false);
        let decisions = bodies(per_run, o.jwt, round * 2 + 1, false);
        let (path, bodies) = if o.tool_calls {
            let grant = runtime.block_on(grant_for(target.addr, &decisions[0]));
            let calls = (0..per_run)
                .map(|i| {
                    json!({"grant": grant, "tool": "read_file", "method": "tools/call",
                           "arguments": {"path": format!("/reports/{i}.txt")}, "actor": "bench"})
                    .to_string()
                })
                .collect();
            ("/v1/tool-calls", calls)
        } else {
            ("/v1/decisions", decisions)
        };
        let written_before = target.write_bytes();
        let slow_before = runtime.block_on(server_slow(target.addr, path));
        let result = runtime.block_on(run(&o, target.addr, path, Arc::new(bodies), false));
        let written = target.write_bytes().zip(written_before).map(|(a, b)| a - b);
        report(&o, target.name, &result, written);
        if let Some((after, before)) = runtime
            .block_on(server_slow(target.addr, path))
            .zip(slow_before)
        {
            println!(
                "{:>9} timed by the server itself: {} over 128 ms",
                "",
                after - before
            );
        }
        if let Some(kb) = target.rss_kb() {
            println!(
                "{:>9} resident memory after the run: {:.0} MB",
                "",
                kb as f64 / 1024.0
            );
        }
        if let Some(floor) = floor {
            let ratio = result.rate() / floor.rate();
            println!("  trustpath / floor = {:.1}%", ratio * 100.0);
            ratios.push(ratio);
        }
    }
    if ratios.len() > 1 {
        ratios.sort_by(f64::total_cmp);
        println!(
            "median trustpath / floor over {} rounds = {:.1}%",
            ratios.len(),
            ratios[ratios.len() / 2] * 100.0
        );
    }
}

/// Rounds of trustpath without and with busy retention, alternating which
/// goes first; the p99 of each and their difference.
fn retention_ab(o: &Options, runtime: &tokio::runtime::Runtime, per_run: usize) {
    let mut differences = Vec::new();
    for round in 0..o.rounds {
        let mut p99 = [0f64; 2];
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for (k, retention) in order.into_iter().enumerate() {
            let target = Target::trustpath(retention);
            let decisions = bodies(per_run, o.jwt, round * 2 + k, true);
            let result = runtime.block_on(run(
                o,
                target.addr,
                "/v1/decisions",
                Arc::new(decisions),
                false,
            ));
            report(o, target.name, &result, None);
            if retention {
                let changed = runtime.block_on(retention_work(target.addr));
                println!(
                    "{:>9} retention redacted or expired {changed} entries meanwhile",
                    ""
                );
            }
            p99[usize::from(retention)] = result.percentile_ms(0.99);
        }
        println!(
            "  p99 with retention - without = {:+.2} ms",
            p99[1] - p99[0]
        );
        differences.push(p99[1] - p99[0]);
    }
    differences.sort_by(f64::total_cmp);
    println!(
        "median p99 difference over {} rounds = {:+.2} ms",
        differences.len(),
        differences[differences.len() / 2]
    );
}

/// A grant token, from one decision made before the clock starts.
async fn grant_for(addr: std::net::SocketAddr, decision: &str) -> String {
    let mut connection = Connection::open(addr).await;
    let (ok, body) = connection.post("/v1/decisions", decision.to_string()).await;
    assert!(ok, "decision for the tool-call grant failed");
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    answer["grant"]["token"]
        .as_str()
        .expect("a grant")
        .to_string()
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        Self {
            sender,
            host: addr.to_string(),
        }
    }

    /// Posts `body`; true for a 200 carrying [`MARKER`], with the body.
    async fn post(&mut self, path: &str, body: String) -> (bool, Bytes) {
        let request = hyper::Request::post(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let Ok(response) = self.sender.send_request(request).await else {
            return (false, Bytes::new());
        };
        let status = response.status();
        let Ok(body) = response.into_body().collect().await.map(|b| b.to_bytes()) else {
            return (false, Bytes::new());
        };
        // A full parse would cost the generator more than the check is worth.
        let ok = status == 200 && body.windows(MARKER.len()).any(|w| w == MARKER);
        (ok, body)
    }

    /// GETs `path`; the body of a 200.
    async fn get(&mut self, path: &str) -> Option<Bytes> {
        let request = hyper::Request::get(path)
            .header("host", &self.host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.sender.send_request(request).await.ok()?;
        if response.status() != 200 {
            return None;
        }
        response
            .into_body()
            .collect()
            .await
            .ok()
            .map(|b| b.to_bytes())
    }
}

/// Requests to `route` the server's own histogram timed at over 128 ms
/// (its bucket bound nearest 100 ms), so far: a stall in the server shows
/// here, one of the load generator or the machine only in its numbers.
async fn server_slow(addr: std::net::SocketAddr, route: &str) -> Option<u64> {
    let body = Connection::open(addr).await.get("/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).ok()?;
    let slow = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "trustpath_request_duration_seconds")
        .filter(|s| s.labels.get("route") == Some(route))
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let le = |bound: f64| {
                    buckets
                        .iter()
                        .find(|b| b.less_than == bound)
                        .map(|b| b.count as u64)
                };
                Some(le(f64::INFINITY)? - le(0.128)?)
            }
            _ => None,
        })
        .sum();
    Some(slow)
}

/// Entries retention changed while the server ran, from its own records.
async fn retention_work(addr: std::net::SocketAddr) -> u64 {
    let mut connection = Connection::open(addr).await;
    let body = connection
        .get("/v1/decisions?kind=retention&limit=1000")
        .await
        .unwrap_or_default();
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    page["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter_map(|r| r["entries"].as_u64()).sum())
}

struct RunResult {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut lat = self.latencies.clone();
        lat.sort();
        let at = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        lat.get(at).copied().unwrap_or_default().as_secs_f64() * 1e3
    }
}

async fn run(
    o: &Options,
    addr: std::net::SocketAddr,
    path: &'static str,
    bodies: Arc<Vec<String>>,
    cycle: bool,
) -> RunResult {
    let deadline = Duration::from_secs(o.seconds);
    let next = Arc::new(AtomicUsize::new(0));
    // Open loop: the schedule hands out (body index, scheduled time); the
    // connections take them in order. Closed loop: each takes the next body.
    let schedule = o.rate.map(|rate| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        (rate, tx, Arc::new(tokio::sync::Mutex::new(rx)))
    });
    let mut connections = Vec::new();
    for _ in 0..o.concurrency {
        connections.push(Connection::open(addr).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut connection in connections {
        let (bodies, next) = (bodies.clone(), next.clone());
        let jobs = schedule.as_ref().map(|(_, _, rx)| rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let (i, since) = match &jobs {
                    Some(rx) => match rx.lock().await.recv().await {
                        Some(job) => job,
                        None => break,
                    },
                    None if start.elapsed() < deadline => {
                        (next.fetch_add(1, Ordering::Relaxed), Instant::now())
                    }
                    None => break,
                };
                let i = if cycle { i % bodies.len() } else { i };
                let Some(body) = bodies.get(i) else { break };
                match connection.post(path, body.clone()).await {
                    (true, _) => latencies.push(since.elapsed()),
                    (false, _) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    if let Some((rate, tx, _)) = schedule {
        // tokio's timer wheel ticks in milliseconds, which would add up to
        // 1 ms of false latency; a plain thread keeps the schedule instead.
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let total = (rate * o.seconds) as usize;
        tokio::task::spawn_blocking(move || {
            for i in 0..total {
                let scheduled = start + interval * i as u32;
                if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let _ = tx.send((i, scheduled));
            }
        })
        .await
        .unwrap();
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        latencies.extend(lat);
        errors += e;
    }
    latencies.sort();
    RunResult {
        latencies,
        elapsed: start.elapsed(),
        errors,
    }
}

fn report(o: &Options, target: &str, r: &RunResult, written: Option<u64>) {
    let lat = &r.latencies;
    let ms = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    let mode = match o.rate {
        Some(rate) => format!("open loop at {rate}/s"),
        None => format!("closed loop, {} connections", o.concurrency),
    };
    let what = match (o.tool_calls, o.jwt) {
        (true, _) => "tool calls",
        (false, true) => "decisions, proof=private_key_jwt",
        (false, false) => "decisions, proof=none",
    };
    let over_100ms = lat.iter().filter(|l| l.as_millis() > 100).count();
    println!(
        "{target:>9} {what}, {mode}: {} ok, {} errors in {:.2}s = {:.0}/s; \
         p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, {over_100ms} over 100 ms",
        lat.len(),
        r.errors,
        r.elapsed.as_secs_f64(),
        r.rate(),
        ms(0.50),
        ms(0.99),
        ms(0.999),
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    if let Some(bytes) = written {
        println!(
            "{:>9} wrote {} bytes to storage, {:.0} per answer",
            "",
            bytes,
            bytes as f64 / lat.len().max(1) as f64
        );
    }
}
