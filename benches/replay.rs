//! Replay throughput: writes N real connection decisions through the
//! decision pipeline (shipped policies, a real sled directory), then replays
//! them against the shipped policies.
//!
//!     cargo bench --bench replay -- [--decisions N] [--keep DIR]
//!
//! `--keep DIR` writes the data directory there and leaves it, so the CLI
//! (`trustpath replay --data-dir DIR`) can be timed on it too.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use trustpath::config::Config;
use trustpath::log::query::Filter;
use trustpath::model::ConnectionRequest;
use trustpath::policy::PolicyBundle;
use trustpath::replay::{replay, ReplaySource};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A mix the shipped policy answers differently: reduced, approved,
/// denied (untrusted AS), delegated.
fn request(i: usize) -> ConnectionRequest {
    let id = "https://agents.example.com/client.json";
    let issuer = if i.is_multiple_of(7) {
        "https://partner-as.example.com"
    } else {
        "https://auth.example.com"
    };
    let scopes = match i % 3 {
        0 => json!(["files:read"]),
        1 => json!(["files:read", "files:write", "payroll"]),
        _ => json!(["tickets:read", "repo:admin"]),
    };
    let mut body = json!({
        "session_id": format!("s-{}", i % 5000),
        "resource": "https://mcp.example.com/mcp",
        "scopes": scopes,
        "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": issuer}},
        "client": {"client_id": id, "document": {
            "client_id": id, "redirect_uris": ["https://agents.example.com/cb"]}},
    });
    if i.is_multiple_of(5) {
        body["delegation"] = json!({"approval_id": format!("a-{i}"), "approved_by": "alice",
            "approved_at": "2026-11-24T08:00:00Z", "actor": {"sub": "agent-7"}});
    }
    serde_json::from_value(body).unwrap()
}

fn write_log(data_dir: &Path, decisions: usize) {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        policies: trustpath::config::PolicySource::Directory(policies()),
        ..Config::default()
    };
    // Only the replay is measured: writing need not wait for each flush.
    config.log.durable = false;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let opened = runtime.block_on(trustpath::app::open(&config)).unwrap();
    runtime.block_on(async {
        for i in 0..decisions {
            opened.decider.decide(request(i)).await.unwrap();
        }
    });
    opened.close();
}

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn main() {
    let decisions: usize =
        arg("--decisions").map_or(100_000, |n| n.parse().expect("--decisions N"));
    let temp = tempfile::tempdir().unwrap();
    let data_dir = arg("--keep").map_or_else(|| temp.path().join("data"), PathBuf::from);

    let started = Instant::now();
    write_log(&data_dir, decisions);
    println!(
        "wrote {decisions} decisions through the pipeline in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let candidate = PolicyBundle::from_path(&policies()).unwrap();
    for workers in [1, 2] {
        let store = trustpath::store::sled::open(&data_dir).unwrap();
        let started = Instant::now();
        let summary = replay(
            ReplaySource::Log(store),
            &candidate,
            &Filter::default(),
            workers,
            |_| {},
        )
        .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(summary.connection_decisions as usize, decisions);
        assert_eq!(summary.changed, 0, "the same policy changes nothing");
        println!(
            "replay of {} connection decisions ({} entries read), {workers} worker(s): {elapsed:.2}s = {:.0} decisions/s",
            summary.connection_decisions,
            summary.entries_read,
            summary.connection_decisions as f64 / elapsed
        );
    }
}
