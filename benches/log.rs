//! Decision log costs: appends through the group-commit writer (Merkle
//! hashes included) and `log verify` over the result.
//!
//!     cargo bench --bench log -- [--entries N] [--engine sled|fjall]

use std::time::Instant;

use serde_json::json;
use trustpath::log::checkpoint::LogSigner;
use trustpath::log::verify::verify_store;
use trustpath::log::{CheckpointPolicy, LogWriter, Record};

fn record(i: usize) -> Record {
    let client = "https://agents.example.com/client.json";
    serde_json::from_value(json!({
        "kind": "connection_decision",
        "decision_id": format!("01a20ab3-f658-7109-8958-{i:012}"),
        // Ten entries a session, like a connection and its later tool calls.
        "session_id": format!("session-{}", i / 10),
        "client_id": client,
        "input": {
            "now": "2026-11-23T23:18:15.896193Z", "now_unix": 1795475895,
            "scopes": ["files:read", "files:write", "payroll"],
            "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": "https://auth.example.com"}},
            "client": {"client_id": client, "document": {"client_id": client, "redirect_uris": ["https://agents.example.com/callback"]}},
        },
        "authentication": {"result": "document_only", "method": "none", "issuer": null,
            "subject": client, "key_id": null, "reasons": [],
            "document": {"source": "inline", "sha256": "3888d2a5a47042ad98d6290ee69e1362ca7f9a2926f3c543bc36b032437fe48a"}},
        "decision": {"outcome": "reduced", "allow": true,
            "requested_scopes": ["files:read", "files:write", "payroll"], "approved_scopes": ["files:read"],
            "denied_scopes": [{"scope": "files:write", "reason": "requires verified authentication"},
                              {"scope": "payroll", "reason": "unknown scope"}],
            "tools": ["list_files", "read_file"], "ttl_seconds": 300, "reasons": []},
        "grant": null,
    }))
    .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries: usize = args
        .iter()
        .position(|a| a == "--entries")
        .and_then(|i| args.get(i + 1))
        .map_or(100_000, |n| n.parse().expect("--entries N"));
    let engine = match args
        .iter()
        .position(|a| a == "--engine")
        .and_then(|i| args.get(i + 1))
    {
        Some(name) if name == "fjall" => trustpath::config::Engine::Fjall,
        _ => trustpath::config::Engine::Sled,
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, _jtis) = trustpath::store::open(dir.path(), engine, 256 << 20).unwrap();
    let signer = LogSigner::load_or_create(&dir.path().join("log.pem"), "bench/log").unwrap();
    let verifier = signer.verifier().clone();
    let policy = CheckpointPolicy {
        every_entries: 1000,
        every: std::time::Duration::from_secs(10),
    };
    let (writer, thread) = LogWriter::start(
        store.clone(),
        signer,
        trustpath::log::WriterOptions {
            checkpoints: policy,
            durable: true,
            max_queue: 4096,
            node: None,
            observer: Default::default(),
        },
    )
    .unwrap();
    let records: Vec<Record> = (0..entries).map(record).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        // 64 appenders at a time, as concurrent decisions would be.
        let mut records = records.into_iter();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let chunk: Vec<Record> = records.by_ref().take(entries / 64 + 1).collect();
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                for r in chunk {
                    writer
                        .append("2026-11-23T23:18:15.896193Z".into(), "rev".into(), r)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let append_time = started.elapsed();
    drop(writer);
    thread.join();
    println!("engine {engine:?}");
    println!(
        "append {entries} entries (durable, group commit, 64 concurrent): {:.2}s = {:.1} µs per entry ({:.0}/s)",
        append_time.as_secs_f64(),
        append_time.as_secs_f64() * 1e6 / entries as f64,
        entries as f64 / append_time.as_secs_f64()
    );

    let started = Instant::now();
    let verified = verify_store(&store, &verifier).unwrap();
    let verify_time = started.elapsed();
    println!(
        "log verify over {} entries, {} checkpoints: {:.2}s = {:.0} entries/s",
        verified.tree_size,
        verified.checkpoints,
        verify_time.as_secs_f64(),
        verified.tree_size as f64 / verify_time.as_secs_f64()
    );

    let size: u64 = walk_size(dir.path());
    println!(
        "data directory: {:.1} MB, {:.0} bytes per entry",
        size as f64 / 1e6,
        size as f64 / entries as f64
    );

    // Queries through the secondary indexes.
    use trustpath::log::query::{query, Filter};
    let session = format!("session-{}", entries / 20);
    let by_session = Filter {
        session: Some(session.clone()),
        ..Filter::default()
    };
    let runs = 1000;
    let started = Instant::now();
    for _ in 0..runs {
        let page = query(&store, &by_session, 100, None).unwrap();
        assert_eq!(page.seqs.len(), 10);
    }
    println!(
        "query by session ({session}: 10 of {entries} entries): {:.1} µs per query",
        started.elapsed().as_secs_f64() * 1e6 / runs as f64
    );
    let by_client_scope = Filter {
        client: Some("https://agents.example.com/client.json".into()),
        scope: Some((
            "files:read".into(),
            trustpath::log::query::ScopeState::Approved,
        )),
        ..Filter::default()
    };
    let started = Instant::now();
    for _ in 0..runs {
        let page = query(&store, &by_client_scope, 100, None).unwrap();
        assert_eq!(page.seqs.len(), 100);
    }
    println!(
        "query by client and approved scope, first page of 100: {:.1} µs per query",
        started.elapsed().as_secs_f64() * 1e6 / runs as f64
    );

    // The Merkle share of an append: hashing a leaf and completing its subtrees.
    let mut range = trustpath::log::verify::CompactRange::default();
    let bytes = serde_json::to_vec(&record(0)).unwrap();
    let started = Instant::now();
    for _ in 0..entries {
        range.push(trustpath::log::merkle::leaf_hash(&bytes));
    }
    println!(
        "Merkle work per append (leaf hash of a {} byte entry + subtree hashes): {:.2} µs",
        bytes.len(),
        started.elapsed().as_secs_f64() * 1e6 / entries as f64
    );
}

/// Bytes of the files under `dir`.
fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
