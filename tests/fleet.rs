//! Fleet mode: several real `trustpath serve` processes on one PostgreSQL
//! database (a fresh one per test, dropped after), over real HTTP. One log,
//! one replay guard, one set of revocations, whichever replica is asked.

mod common;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::pg::TestDb;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A fleet's database and the configuration its replicas share (the same
/// key files), each replica with a data directory of its own.
struct Fleet {
    db: TestDb,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fleet {
    fn new(test: &str) -> Option<Fleet> {
        Some(Self::on(TestDb::create(test)?))
    }

    fn on(db: TestDb) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let config = dir.path().join("fleet.toml");
        std::fs::write(
            &config,
            format!(
                "[grants]\nsigning_key_file = {:?}\n\n[log]\nsigning_key_file = {:?}\n\
                 checkpoint_every_entries = 64\n",
                keys.join("grant.pem"),
                keys.join("log.pem"),
            ),
        )
        .unwrap();
        Fleet { db, dir, config }
    }

    fn replica(&self, node: &str) -> Server {
        let data = self.dir.path().join(node);
        Server::start_with(&data, &repo_policies(), Some(&self.config), |cmd| {
            cmd.args(["--store", &self.db.url, "--node", node]);
        })
    }

    /// `trustpath ARGS --config FLEET --store URL`.
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--config",
            self.config.to_str().unwrap(),
            "--store",
            &self.db.url,
        ]);
        trustpath(&all)
    }
}

fn in_ms(ms: u64) -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_millis(ms)
}

fn assert_replayed(out: &Value) {
    assert_eq!(out["authentication"]["result"], "failed", "{out:#}");
    assert_eq!(out["decision"]["allow"], false, "{out:#}");
    assert!(out["grant"].is_null(), "{out:#}");
    assert!(
        out["authentication"]["reasons"]
            .to_string()
            .contains("already used (replay)"),
        "{out:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_used_on_one_replica_is_refused_by_every_other() {
    let Some(fleet) = Fleet::new("replay") else {
        return;
    };
    // A claim whose assertion expired long ago, and one that has not.
    fleet
        .db
        .sql("INSERT INTO used_jtis (key, until) VALUES ('\\x01', 5), ('\\x02', 99999999999)");
    let (a, b, c) = (
        fleet.replica("pdp-a"),
        fleet.replica("pdp-b"),
        fleet.replica("pdp-c"),
    );
    let key = TestKey::generate("k1");
    let body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims("jti-once"))),
    );
    let first = post_decision(&a, &body).await;
    assert_eq!(first["authentication"]["result"], "verified", "{first:#}");
    assert!(first["grant"]["token"].is_string());
    for other in [&b, &c, &a] {
        assert_replayed(&post_decision(other, &body).await);
    }

    // Raced: the same fresh assertion to every replica at once is
    // verified by exactly one of them.
    let body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims("jti-raced"))),
    );
    let answers = futures_join(&[&a, &b, &c], &body).await;
    let verified = answers
        .iter()
        .filter(|o| o["authentication"]["result"] == "verified")
        .count();
    assert_eq!(verified, 1, "{answers:#?}");

    // Expired claims are purged (a replica prunes at start and every
    // minute); claims still in force stay.
    let remaining = || {
        fleet
            .db
            .value("SELECT string_agg(encode(key, 'hex'), ',') FROM used_jtis WHERE key IN ('\\x01', '\\x02')")
    };
    for _ in 0..50 {
        if remaining().as_deref() == Some("02") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(remaining().as_deref(), Some("02"));
}

/// `body` posted to every server at once.
async fn futures_join(servers: &[&Server], body: &Value) -> Vec<Value> {
    let tasks: Vec<_> = servers
        .iter()
        .map(|s| {
            let (url, body) = (s.url("/v1/decisions"), body.clone());
            tokio::spawn(async move {
                let resp = http().post(url).json(&body).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn read_call(grant: &str) -> Value {
    json!({
        "grant": grant, "tool": "read_file", "method": "tools/call",
        "arguments": {"path": "/a"}, "actor": "agent-1",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_holds_on_every_other() {
    let Some(fleet) = Fleet::new("revocation") else {
        return;
    };
    let (a, b) = (fleet.replica("pdp-a"), fleet.replica("pdp-b"));
    let key = TestKey::generate("k1");

    // A grant issued by A checks and introspects on B.
    let decision = connect(&a, &key, "sess-grant", &["files:read"]).await;
    let grant = grant_token(&decision);
    assert_eq!(introspect(&b, &grant).await["active"], true);
    assert_eq!(tool_call(&b, &read_call(&grant)).await["allow"], true);

    // Revoked on B: refused on A, and inactive everywhere.
    let jti = decision["grant"]["jti"].as_str().unwrap();
    let (status, out) = post_json(
        &b,
        &format!("/v1/grants/{jti}/revoke"),
        &json!({"reason": "laptop lost"}),
    )
    .await;
    assert_eq!(status, 200, "{out:#}");
    for server in [&a, &b] {
        let out = tool_call(server, &read_call(&grant)).await;
        assert_eq!(out["allow"], false, "{out:#}");
        assert_eq!(out["grant_status"], "revoked");
        assert_eq!(introspect(server, &grant).await, json!({"active": false}));
    }

    // A session revoked on A: B's next decision in it is a denial, and
    // B's earlier grant in it is refused.
    let earlier = connect(&b, &key, "sess-gone", &["files:read"]).await;
    let (status, out) = post_json(
        &a,
        "/v1/sessions/sess-gone/revoke",
        &json!({"reason": "incident 7"}),
    )
    .await;
    assert_eq!(status, 200, "{out:#}");
    let out = tool_call(&b, &read_call(&grant_token(&earlier))).await;
    assert_eq!(out["allow"], false, "{out:#}");
    let mut body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims("jti-after-revoke"))),
    );
    body["session_id"] = json!("sess-gone");
    let after = post_decision(&b, &body).await;
    assert_eq!(after["decision"]["allow"], false, "{after:#}");
    assert!(after["grant"].is_null(), "{after:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_the_same_from_every_replica() {
    let Some(fleet) = Fleet::new("trail") else {
        return;
    };
    let (a, b) = (fleet.replica("pdp-a"), fleet.replica("pdp-b"));
    let key = TestKey::generate("k1");
    let on_a = connect(&a, &key, "sess-shared", &["files:read"]).await;
    let on_b = connect(&b, &key, "sess-shared", &["files:read"]).await;

    let trail_a = get_json(&a, "/v1/sessions/sess-shared").await;
    let trail_b = get_json(&b, "/v1/sessions/sess-shared").await;
    assert_eq!(trail_a, trail_b);
    let found_a = get_json(&a, "/v1/decisions?session_id=sess-shared").await;
    let found_b = get_json(&b, "/v1/decisions?session_id=sess-shared").await;
    assert_eq!(found_a, found_b);
    assert!(
        found_a
            .to_string()
            .contains(on_a["decision_id"].as_str().unwrap())
            && found_a
                .to_string()
                .contains(on_b["decision_id"].as_str().unwrap()),
        "{found_a:#}"
    );
    // Each decision by id from either replica, naming the node that wrote it.
    for (decision, node) in [(&on_a, "pdp-a"), (&on_b, "pdp-b")] {
        let id = decision["decision_id"].as_str().unwrap();
        for server in [&a, &b] {
            let entry = get_json(server, &format!("/v1/decisions/{id}")).await;
            assert_eq!(entry["node"], node, "{entry:#}");
            assert_eq!(entry["session_id"], "sess-shared");
        }
    }
    // The same checkpoint and proofs from either.
    let checkpoint = |s: &Server| {
        let url = s.url("/v1/log/checkpoint");
        async move { http().get(url).send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(checkpoint(&a).await, checkpoint(&b).await);
    let proof_a = get_json(&a, "/v1/log/proof/inclusion?seq=1").await;
    let proof_b = get_json(&b, "/v1/log/proof/inclusion?seq=1").await;
    assert_eq!(proof_a, proof_b);
}

/// RFC 9162 §2.1.1 Merkle tree hash, computed here rather than by trustpath.
fn independent_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = (n.next_power_of_two()) / 2;
            let k = if k == n { n / 2 } else { k };
            let mut input = vec![1u8];
            input.extend_from_slice(&independent_root(&leaves[..k]));
            input.extend_from_slice(&independent_root(&leaves[k..]));
            Sha256::digest(&input).into()
        }
    }
}

/// Checks the fleet's log with `trustpath log verify`, then independently:
/// every entry's leaf hash, the root over all of them against the latest
/// signed checkpoint, seqs 0..n without a gap. Returns the entries.
fn verify_fleet_log(fleet: &Fleet) -> Vec<Value> {
    let (ok, out, err) = fleet.cli(&["log", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("OK: all "), "{out}");
    let (ok, export, err) = fleet.cli(&["log", "export"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = export.lines().collect();
    let entries = &lines[1..lines.len() - 1];
    let trailer: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    let note = trailer["checkpoint"].as_str().unwrap();
    let mut note_lines = note.lines().skip(1);
    let size: usize = note_lines.next().unwrap().parse().unwrap();
    let root = STANDARD.decode(note_lines.next().unwrap()).unwrap();
    assert_eq!(
        size,
        entries.len(),
        "the last checkpoint covers every entry"
    );
    let leaves: Vec<[u8; 32]> = entries
        .iter()
        .map(|e| {
            // The leaf covers the commitment: the line up to its first tab.
            let commitment = e.split('\t').next().unwrap();
            let mut input = vec![0u8];
            input.extend_from_slice(commitment.as_bytes());
            Sha256::digest(&input).into()
        })
        .collect();
    assert_eq!(independent_root(&leaves).as_slice(), root.as_slice());
    let parsed: Vec<Value> = entries
        .iter()
        .map(|e| trustpath::log::sealed::open(e.as_bytes()).unwrap().value)
        .collect();
    for (i, e) in parsed.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "no gap, no duplicate");
    }
    parsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_from_every_replica_make_one_verifiable_log() {
    let Some(fleet) = Fleet::new("concurrent") else {
        return;
    };
    let replicas = [
        fleet.replica("pdp-a"),
        fleet.replica("pdp-b"),
        fleet.replica("pdp-c"),
    ];
    let key = std::sync::Arc::new(TestKey::generate("k1"));
    let mut tasks = Vec::new();
    for (r, server) in replicas.iter().enumerate() {
        for w in 0..4 {
            let (url, key) = (server.url("/v1/decisions"), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..25 {
                    let mut body = cimd_request(
                        &["files:read"],
                        cimd_document(Some(key.jwks())),
                        Some(key.sign(&assertion_claims(&format!("j-{r}-{w}-{i}")))),
                    );
                    body["session_id"] = json!(format!("s-{r}-{w}-{i}"));
                    let resp = http().post(&url).json(&body).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let out: Value = resp.json().await.unwrap();
                    assert!(out["grant"]["token"].is_string(), "{out:#}");
                    acked.push(out["log_entry"]["seq"].as_u64().unwrap());
                }
                acked
            }));
        }
    }
    // Verified while all three append (up to the latest checkpoint).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (config, url) = (fleet.config.clone(), fleet.db.url.clone());
    let live = tokio::task::spawn_blocking(move || {
        trustpath(&[
            "log",
            "verify",
            "--live",
            "--config",
            config.to_str().unwrap(),
            "--store",
            &url,
        ])
    });
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let (ok, out, err) = live.await.unwrap();
    assert!(ok && out.starts_with("OK: "), "{out}{err}");
    for server in replicas {
        server.stop();
    }
    let mut unique = acked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 300, "every acknowledged seq is its own");

    let entries = verify_fleet_log(&fleet);
    let decisions: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "connection_decision")
        .collect();
    assert_eq!(decisions.len(), 300);
    for node in ["pdp-a", "pdp-b", "pdp-c"] {
        assert_eq!(
            decisions.iter().filter(|e| e["node"] == node).count(),
            100,
            "{node} wrote its decisions"
        );
    }
    for seq in acked {
        assert_eq!(entries[seq as usize]["kind"], "connection_decision");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_acknowledged_decision() {
    let Some(fleet) = Fleet::new("kill9") else {
        return;
    };
    let a = fleet.replica("pdp-a");
    let b = fleet.replica("pdp-b");
    let pid = b.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(400));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let (on_a, on_b) = tokio::join!(
        load_until(&a, "a", 8, Some(in_ms(900))),
        load_until(&b, "b", 8, Some(in_ms(10_000))),
    );
    killer.join().unwrap();
    assert!(!on_b.is_empty(), "B answered before it died");
    b.kill();
    // Everything either replica acknowledged is in the log, at its seq.
    for (id, seq) in on_a.iter().chain(&on_b) {
        let entry = get_json(&a, &format!("/v1/decisions/{id}")).await;
        assert_eq!(entry["seq"].as_u64(), Some(*seq), "decision {id}");
    }
    // A replica started again on the same database carries on.
    let b = fleet.replica("pdp-b");
    let after = load_until(&b, "b2", 8, Some(in_ms(200))).await;
    assert!(!after.is_empty());
    a.stop();
    b.stop();
    verify_fleet_log(&fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_other_keys_is_refused() {
    let Some(fleet) = Fleet::new("keys") else {
        return;
    };
    let a = fleet.replica("pdp-a");
    // Its own keys, made in its own data directory: not the fleet's.
    let data = fleet.dir.path().join("stranger");
    let (ok, _, err) = trustpath(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--policies",
        repo_policies().to_str().unwrap(),
        "--store",
        &fleet.db.url,
        "--node",
        "stranger",
    ]);
    assert!(!ok);
    assert!(
        err.contains("signing key") && err.contains("is not the fleet's"),
        "{err}"
    );
    a.stop();
}

#[test]
fn serve_refuses_a_schema_it_does_not_know() {
    let Some(db) = TestDb::create_empty("schema") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = |node: &str| {
        trustpath(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--policies",
            repo_policies().to_str().unwrap(),
            "--store",
            &db.url,
            "--node",
            node,
        ])
    };
    let (ok, _, err) = serve("n1");
    assert!(!ok);
    assert!(err.contains("trustpath store migrate"), "{err}");

    let (ok, _, err) = trustpath(&["store", "migrate", "--store", &db.url]);
    assert!(ok, "{err}");
    assert!(err.contains("to 1"), "{err}");
    let (ok, _, err) = trustpath(&["store", "migrate", "--store", &db.url]);
    assert!(ok && err.contains("nothing to do"), "{err}");

    db.sql("INSERT INTO trustpath_schema (version) VALUES (99)");
    let (ok, _, err) = serve("n1");
    assert!(!ok);
    assert!(err.contains("version 99"), "{err}");
    let (ok, _, err) = trustpath(&["store", "migrate", "--store", &db.url]);
    assert!(!ok && err.contains("version 99"), "{err}");

    // A node name is required, and checked.
    let (ok, _, err) = trustpath(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--store",
        &db.url,
    ]);
    assert!(!ok && err.contains("store.node"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_log_copied_to_postgres_keeps_its_proofs() {
    let Some(db) = TestDb::create("copy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), None);
    let key = TestKey::generate("k1");
    for i in 0..20 {
        connect(&server, &key, &format!("s-{i}"), &["files:read"]).await;
    }
    server.stop();
    let data_arg = data.to_str().unwrap();
    let (ok, _, err) = trustpath(&["store", "copy", "--from", data_arg, "--to", &db.url]);
    assert!(ok, "{err}");
    assert!(err.contains("copied 43 entries"), "{err}");

    // The same checkpoints, the same proofs, and the copy verifies.
    let on_disk = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", data_arg]);
        trustpath(&all)
    };
    let in_db = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", data_arg, "--store", &db.url]);
        trustpath(&all)
    };
    let (ok, out, err) = in_db(&["log", "verify"]);
    assert!(ok, "{out}{err}");
    for args in [
        &["log", "proof", "--seq", "7"][..],
        &["log", "export"][..],
        &["log", "session", "s-3", "--json"][..],
    ] {
        let (ok_a, a, _) = on_disk(args);
        let (ok_b, b, err) = in_db(args);
        assert!(ok_a && ok_b, "{args:?}: {err}");
        assert_eq!(a, b, "{args:?}");
    }
    // Replay reads the fleet's store as it reads a data directory.
    let policies = repo_policies();
    let replay = |source: &[&str]| {
        let mut args = vec![
            "replay",
            "--policies",
            policies.to_str().unwrap(),
            "--format",
            "json",
        ];
        args.extend(source);
        trustpath(&args)
    };
    let (ok_a, a, err_a) = replay(&["--data-dir", data_arg]);
    let (ok_b, b, err_b) = replay(&["--store", &db.url]);
    assert!(ok_a && ok_b, "{err_a}{err_b}");
    assert_eq!(a, b);
    assert!(b.contains("\"connection_decisions\":20"), "{b}");

    // A copy goes into an empty store only.
    let (ok, _, err) = trustpath(&["store", "copy", "--from", data_arg, "--to", &db.url]);
    assert!(!ok && err.contains("empty"), "{err}");

    // And a fleet replica on the copy carries on from it.
    let config = dir.path().join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "[grants]\nsigning_key_file = {:?}\n[log]\nsigning_key_file = {:?}\n",
            data.join("grant-signing-key.pem"),
            data.join("log-signing-key.pem")
        ),
    )
    .unwrap();
    let replica = Server::start_with(
        &dir.path().join("replica"),
        &repo_policies(),
        Some(&config),
        |cmd| {
            cmd.args(["--store", &db.url, "--node", "pdp-a"]);
        },
    );
    let next = connect(&replica, &key, "s-after", &["files:read"]).await;
    assert_eq!(next["log_entry"]["seq"], 43);
    replica.stop();
    let (ok, out, err) = in_db(&["log", "verify"]);
    assert!(ok, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_closed_and_the_replica_recovers_by_itself() {
    let Some(cluster) = common::pg::OwnCluster::start("outage") else {
        return;
    };
    let db = TestDb::create_migrated_on(&cluster.admin_url(), "outage")
        .expect("the test's own cluster is up");
    let fleet = Fleet::on(db);
    let a = fleet.replica("pdp-a");
    let key = TestKey::generate("k1");
    connect(&a, &key, "before", &["files:read"]).await;

    cluster.stop();
    // While the database is down: never an allow, never a grant; the
    // answer is a JSON 503 (or a logged denial, which cannot be logged).
    let mut took = Vec::new();
    for i in 0..20 {
        let started = std::time::Instant::now();
        let resp = post_verified(&a, &key, &format!("down-{i}")).await;
        let status = resp.status().as_u16();
        let out: Value = resp.json().await.unwrap();
        assert_ne!(status, 200, "answered while the database is down: {out:#}");
        assert_eq!(status, 503, "{out:#}");
        assert!(
            out["error"].is_string() && out["grant"].is_null(),
            "{out:#}"
        );
        took.push(started.elapsed());
    }
    // The first refusal waits for the pool to give up; the rest are fast.
    took.sort();
    assert!(
        took[17] < std::time::Duration::from_millis(500),
        "refusals are not fast: {took:?}"
    );
    let resp = http().get(a.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let ready: Value = resp.json().await.unwrap();
    assert_eq!(ready["status"], "not_ready", "{ready:#}");
    assert!(
        ready["reason"].as_str().unwrap().contains("PostgreSQL"),
        "{ready:#}"
    );

    cluster.start_again();
    // Back by itself, no restart of the replica.
    let mut recovered = None;
    for i in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let resp = post_verified(&a, &key, &format!("up-{i}")).await;
        if resp.status() == 200 {
            recovered = Some(resp.json::<Value>().await.unwrap());
            break;
        }
    }
    let recovered = recovered.expect("the replica recovered within 15 s");
    assert!(recovered["grant"]["token"].is_string(), "{recovered:#}");
    assert_eq!(common::status_of(&a, "/ready").await, 200);
    a.stop();
    verify_fleet_log(&fleet);
}

/// Posts a decision with a fresh assertion `jti` = `session`, whatever the answer.
async fn post_verified(server: &Server, key: &TestKey, session: &str) -> reqwest::Response {
    let mut body = cimd_request(
        &["files:read"],
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims(session))),
    );
    body["session_id"] = json!(session);
    http()
        .post(server.url("/v1/decisions"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_on_one_replica_redacts_the_fleet_log_and_it_still_verifies() {
    let Some(fleet) = Fleet::new("erasure") else {
        return;
    };
    let (a, b) = (fleet.replica("pdp-a"), fleet.replica("pdp-b"));
    let key = TestKey::generate("k1");
    let mut seqs = Vec::new();
    for (server, sub) in [(&a, "alice@example.com"), (&b, "bob@example.com")] {
        let mut body = cimd_request(
            &["files:read"],
            cimd_document(Some(key.jwks())),
            Some(key.sign(&assertion_claims(&uuid::Uuid::new_v4().to_string()))),
        );
        body["session_id"] = json!(format!("s-{}", seqs.len()));
        body["subject"] = json!({"iss": "https://auth.example.com", "sub": sub});
        let out = post_decision(server, &body).await;
        seqs.push(out["log_entry"]["seq"].as_u64().unwrap());
    }
    // Asked on replica b, about a decision replica a logged.
    let (status, out) = post_json(
        &b,
        "/v1/erasures",
        &json!({"iss": "https://auth.example.com", "sub": "alice@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["entries"], 1, "{out}");
    let alice = get_json(&a, &format!("/v1/log/entries/{}", seqs[0])).await;
    assert_eq!(
        alice["input"]["subject"]["_sealed"], "end_user",
        "{alice:#}"
    );
    assert!(!alice.to_string().contains("alice@example.com"));
    let bob = get_json(&a, &format!("/v1/log/entries/{}", seqs[1])).await;
    assert_eq!(bob["input"]["subject"]["sub"], "bob@example.com");
    // Verified while the replicas serve: the erasure's record may not be
    // under a checkpoint yet, and the redaction it covers is not tampering.
    let (ok, out, err) = fleet.cli(&["log", "verify", "--live"]);
    assert!(ok, "{out}{err}");
    a.stop();
    b.stop();

    let entries = verify_fleet_log(&fleet);
    assert_eq!(
        entries[seqs[0] as usize]["input"]["subject"]["_sealed"],
        "end_user"
    );
    let (ok, out, err) = fleet.cli(&["log", "verify"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("redacted by recorded retention: 1 entries"),
        "{out}"
    );
}
