//! Load generator against the real server: starts `trustpath serve` on a
//! loopback port with a fresh sled directory and the shipped policies, and
//! drives `POST /v1/decisions` from this process, or with `--tool-calls`
//! `POST /v1/tool-calls` under one grant (distinct arguments each).
//!
//!     cargo bench --bench load -- [--seconds N] [--concurrency N] [--rate N] [--proof jwt|none] [--tool-calls]
//!
//! Without `--rate`, a closed loop: `concurrency` callers send as fast as
//! answers come (throughput). With `--rate`, requests are started on a fixed
//! schedule and latency is measured from the scheduled time (no coordinated
//! omission). Every run is bounded by `--seconds`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

// The generator shares the two cores with the server: keep its own cost low.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENT_ID: &str = "https://agents.example.com/client.json";
const AS_ISSUER: &str = "https://auth.example.com";

struct Options {
    seconds: u64,
    concurrency: usize,
    rate: Option<u64>,
    jwt: bool,
    tool_calls: bool,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 10,
        concurrency: 32,
        rate: None,
        jwt: true,
        tool_calls: false,
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
            "--tool-calls" => {
                o.tool_calls = true;
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
fn bodies(count: usize, jwt: bool) -> Vec<String> {
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
                    "iat": now, "exp": now + 290, "jti": format!("bench-{i}")});
                client["assertion"] =
                    json!(jsonwebtoken::encode(&header, &claims, &encoding).unwrap());
            }
            json!({
                "session_id": format!("bench-session-{i}"),
                "resource": "https://mcp.example.com/mcp",
                "scopes": ["files:read", "files:write", "payroll"],
                "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": AS_ISSUER}},
                "client": client,
            })
            .to_string()
        })
        .collect()
}

fn main() {
    let o = options();
    let dir = tempfile::tempdir().unwrap();
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    // TRUSTPATH_URL points the load at a server started elsewhere (for
    // profiling); TRUSTPATH_BIN runs another build of trustpath (A/B runs
    // against an earlier commit).
    let (base, mut child) = match std::env::var("TRUSTPATH_URL") {
        Ok(base) => (base, None),
        Err(_) => {
            let bin = std::env::var("TRUSTPATH_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_trustpath").to_string());
            let mut child = Command::new(bin)
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--policies",
                    policies,
                    "--data-dir",
                ])
                .arg(dir.path())
                .env("TRUSTPATH_LOG", "error")
                .stdout(Stdio::piped())
                .spawn()
                .expect("start trustpath");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let base = line
                .trim()
                .strip_prefix("trustpath listening on ")
                .unwrap()
                .to_string();
            (base, Some(child))
        }
    };

    // Enough distinct bodies (distinct jtis) for the run; a rate run needs rate*seconds.
    let count = o.rate.map_or(12_000 * o.seconds as usize, |r| {
        (r * o.seconds) as usize + 1
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let decisions = bodies(count, o.jwt);
    let (url, bodies) = if o.tool_calls {
        let grant = runtime.block_on(grant_for(&base, &decisions[0]));
        let calls = (0..count)
            .map(|i| {
                json!({"grant": grant, "tool": "read_file", "method": "tools/call",
                       "arguments": {"path": format!("/reports/{i}.txt")}, "actor": "bench"})
                .to_string()
            })
            .collect();
        (format!("{base}/v1/tool-calls"), calls)
    } else {
        (format!("{base}/v1/decisions"), decisions)
    };
    let bodies = Arc::new(bodies);
    let (latencies, elapsed, errors) = runtime.block_on(run(&o, &url, bodies));
    if let Some(child) = child.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    report(&o, latencies, elapsed, errors);
}

/// A grant token, from one decision made before the clock starts.
async fn grant_for(base: &str, decision: &str) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/decisions"))
        .header("content-type", "application/json")
        .body(decision.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["grant"]["token"]
        .as_str()
        .expect("a grant")
        .to_string()
}

async fn run(o: &Options, url: &str, bodies: Arc<Vec<String>>) -> (Vec<Duration>, Duration, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let deadline = Duration::from_secs(o.seconds);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    match o.rate {
        None => {
            for _ in 0..o.concurrency {
                let (client, url, bodies, next) = (
                    client.clone(),
                    url.to_string(),
                    bodies.clone(),
                    next.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0;
                    while start.elapsed() < deadline {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { break };
                        let t = Instant::now();
                        match send(&client, &url, body).await {
                            true => lat.push(t.elapsed()),
                            false => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
        }
        Some(rate) => {
            // tokio's timer wheel ticks in milliseconds, which would add up to
            // 1 ms of false latency; a plain thread keeps the schedule instead.
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            let total = (rate * o.seconds) as usize;
            let handle = tokio::runtime::Handle::current();
            let url = url.to_string();
            let scheduler = std::thread::spawn(move || {
                let mut tasks = Vec::with_capacity(total);
                for i in 0..total {
                    let scheduled = start + interval * i as u32;
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
                    tasks.push(handle.spawn(async move {
                        let ok = send(&client, &url, &bodies[i]).await;
                        if ok {
                            (vec![scheduled.elapsed()], 0)
                        } else {
                            (vec![], 1)
                        }
                    }));
                }
                tasks
            });
            tasks = tokio::task::spawn_blocking(move || scheduler.join().unwrap())
                .await
                .unwrap();
        }
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    (all, start.elapsed(), errors)
}

async fn send(client: &reqwest::Client, url: &str, body: &str) -> bool {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    match resp {
        // A full parse would cost the generator more than the check is worth:
        // a 200 carrying a log entry is a decision that was made and logged.
        Ok(r) if r.status() == 200 => r
            .bytes()
            .await
            .is_ok_and(|b| b.windows(13).any(|w| w == b"\"log_entry\":{")),
        _ => false,
    }
}

fn report(o: &Options, mut lat: Vec<Duration>, elapsed: Duration, errors: usize) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mode = match o.rate {
        Some(r) => format!("open loop at {r}/s"),
        None => format!("closed loop, concurrency {}", o.concurrency),
    };
    println!(
        "{} {mode}: {} ok, {errors} errors in {:.2}s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        match (o.tool_calls, o.jwt) {
            (true, _) => "tool calls",
            (false, true) => "decisions, proof=private_key_jwt",
            (false, false) => "decisions, proof=none",
        },
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}
