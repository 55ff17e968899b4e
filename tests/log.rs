//! The tamper-evident log: checkpoints and proofs over HTTP, and
//! `trustpath log verify` naming the first tampered seq in a real sled
//! directory and in an export file.

mod common;

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use trustpath::log::checkpoint::{LogSigner, NoteVerifier};
use trustpath::log::index::Field;
use trustpath::log::merkle::{self, Hash};
use trustpath::store::sled::{
    raw_checkpoint_key, raw_entry_key, raw_hash_key, raw_posting_key, raw_time_key,
};

fn b64_hash(v: &Value) -> Hash {
    STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// The base64 hashes of a proof response's `proof` array.
fn proof_of(response: &Value) -> Vec<Hash> {
    response["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(b64_hash)
        .collect()
}

/// SHA-256(0x00 ‖ bytes), computed here rather than by trustpath.
fn independent_leaf_hash(bytes: &[u8]) -> Hash {
    let mut input = vec![0u8];
    input.extend_from_slice(bytes);
    Sha256::digest(&input).into()
}

fn config(dir: &Path, every: u64) -> std::path::PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(
        &path,
        format!("[log]\ncheckpoint_every_entries = {every}\n"),
    )
    .unwrap();
    path
}

async fn get(server: &Server, path: &str) -> reqwest::Response {
    let resp = http().get(server.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp
}

/// The latest checkpoint once it covers `size` entries: the writer signs
/// checkpoints just after answering the batch that made them due.
async fn checkpoint_at_least(server: &Server, size: u64) -> String {
    for _ in 0..100 {
        let resp = http()
            .get(server.url("/v1/log/checkpoint"))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            let note = resp.text().await.unwrap();
            let signed: u64 = note.lines().nth(1).unwrap().parse().unwrap();
            if signed >= size {
                return note;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no checkpoint of size {size} within 5 s");
}

/// Writes `n` decisions that are denied, so each is exactly one entry (an
/// approved decision is two: the decision and the grant's issuance).
async fn write_decisions(server: &Server, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut body = cimd_request(&["payroll"], cimd_document(None), None);
        body["session_id"] = serde_json::json!(format!("s-{i}"));
        out.push(post_decision(server, &body).await);
    }
    out
}

#[tokio::test]
async fn checkpoint_and_proofs_verify_from_http_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &repo_policies(),
        Some(&config(dir.path(), 4)),
    );
    // A fresh log starts with its keys and policy (START_ENTRIES).
    let first = write_decisions(&server, 1).await;
    assert_eq!(first[0]["log_entry"]["seq"], START_ENTRIES);
    let note_a = checkpoint_at_least(&server, 4).await;
    let more = write_decisions(&server, 4).await;
    assert_eq!(more[3]["log_entry"]["seq"], 7);
    assert_eq!(more[3]["log_entry"]["tree_size"], 8);

    let vkey = get(&server, "/v1/log/public-key")
        .await
        .text()
        .await
        .unwrap();
    let verifier = NoteVerifier::from_vkey(&vkey).unwrap();
    let note_b = checkpoint_at_least(&server, 8).await;
    let a = verifier
        .open(&note_a)
        .expect("checkpoint A signature verifies");
    let b = verifier
        .open(&note_b)
        .expect("checkpoint B signature verifies");
    assert_eq!(a.size, 4);
    assert_eq!(b.size, 8, "checkpoints every 4 entries: 8 entries -> 8");
    assert_eq!(a.origin, "trustpath.local/decision-log");

    // An entry's bytes, hashed here, are included in the signed tree.
    for seq in [0u64, 3, 7] {
        let entry: Value = get(&server, &format!("/v1/log/entries/{seq}"))
            .await
            .json()
            .await
            .unwrap();
        let commitment = entry["commitment"].as_str().expect("committed bytes");
        let leaf = independent_leaf_hash(commitment.as_bytes());
        // Every disclosure held is sealed by its SHA-256, in the commitment
        // or inside another disclosure (a field sealed within a field).
        let disclosures = entry["disclosures"].as_array().unwrap();
        for d in disclosures {
            let sha = hex::encode(Sha256::digest(d.as_str().unwrap().as_bytes()));
            let sealed_somewhere = commitment.contains(&sha)
                || disclosures
                    .iter()
                    .any(|o| o.as_str().unwrap().contains(&sha));
            assert!(sealed_somewhere, "seq {seq}: {d}");
        }
        let proof: Value = get(
            &server,
            &format!("/v1/log/proof/inclusion?seq={seq}&tree_size=8"),
        )
        .await
        .json()
        .await
        .unwrap();
        let path: Vec<Hash> = proof_of(&proof);
        assert!(
            merkle::verify_inclusion(seq, 8, &leaf, &path, &b.root),
            "seq {seq}"
        );
        let mut wrong = leaf;
        wrong[5] ^= 1;
        assert!(!merkle::verify_inclusion(seq, 8, &wrong, &path, &b.root));
    }
    // The receipt's leaf hash is the hash of the committed bytes.
    let entry: Value = get(&server, "/v1/log/entries/3")
        .await
        .json()
        .await
        .unwrap();
    let commitment = entry["commitment"].as_str().unwrap();
    assert_eq!(
        first[0]["log_entry"]["leaf_hash"],
        STANDARD.encode(independent_leaf_hash(commitment.as_bytes()))
    );
    assert_eq!(entry["leaf_hash"], first[0]["log_entry"]["leaf_hash"]);

    // The later checkpoint extends the earlier one.
    let consistency: Value = get(&server, "/v1/log/proof/consistency?from=4&to=8")
        .await
        .json()
        .await
        .unwrap();
    let path: Vec<Hash> = proof_of(&consistency);
    assert!(merkle::verify_consistency(4, 8, &path, &a.root, &b.root));

    // Bad parameters name the field.
    for (query, field) in [
        ("/v1/log/proof/inclusion?seq=9&tree_size=8", "seq"),
        ("/v1/log/proof/inclusion?seq=1&tree_size=99", "tree_size"),
        ("/v1/log/proof/consistency?from=0&to=8", "from"),
        ("/v1/log/proof/inclusion?seq=x", "query"),
    ] {
        let resp = http().get(server.url(query)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["field"],
            field,
            "{query}"
        );
    }
}

/// A stopped data directory with `n` entries (the start entries, then
/// denied decisions), checkpointed at shutdown.
async fn stopped_log(dir: &Path, n: u64) -> std::path::PathBuf {
    let data = dir.join("data");
    let server = Server::start(&data, &repo_policies(), Some(&config(dir, 3)));
    write_decisions(&server, (n - START_ENTRIES) as usize).await;
    server.stop();
    data
}

#[tokio::test]
async fn log_verify_names_the_tampered_seq_in_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = stopped_log(dir.path(), 10).await;
    let (ok, out) = verify_dir(&data);
    assert!(ok, "{out}");
    assert!(out.contains("OK: all 10 entries of tree size 10"), "{out}");
    // A log with an entry file leaves out the inner hashes of levels 1-3:
    // verification and proofs derive them from the leaves.
    {
        let raw = RawLog::open(&data);
        assert!(raw.get(raw_hash_key(0, 9)).unwrap().is_some());
        assert!(raw.get(raw_hash_key(1, 0)).unwrap().is_none());
        assert!(raw.get(raw_hash_key(3, 0)).unwrap().is_none());
    }

    let (ok, out) = tampered(&data, "changed", |t| {
        let key = raw_entry_key(3);
        let edited = String::from_utf8(t.entry(3))
            .unwrap()
            .replace("\"denied\"", "\"approved\"");
        t.insert(key, edited.as_bytes()).unwrap();
    });
    assert!(!ok && out.contains("entry 3 was changed"), "{out}");

    let (ok, out) = tampered(&data, "removed", |t| {
        t.remove(raw_entry_key(5)).unwrap();
    });
    assert!(!ok && out.contains("entry 5 was removed"), "{out}");

    let (ok, out) = tampered(&data, "swapped", |t| {
        let (a, b) = (t.entry(2), t.entry(6));
        t.insert(raw_entry_key(2), b).unwrap();
        t.insert(raw_entry_key(6), a).unwrap();
    });
    assert!(!ok && out.contains("entry 2 was reordered"), "{out}");

    let (ok, out) = tampered(&data, "appended", |t| {
        let forged = String::from_utf8(t.entry(9))
            .unwrap()
            .replace("\"seq\":9", "\"seq\":10");
        t.insert(raw_entry_key(10), forged.as_bytes()).unwrap();
    });
    assert!(!ok && out.contains("entry 10 was inserted"), "{out}");

    let (ok, out) = tampered(&data, "checkpoint", |t| {
        let other = LogSigner::new(
            ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
            "trustpath.local/decision-log",
        );
        t.insert(raw_checkpoint_key(10), other.sign(10, [9u8; 32]).as_bytes())
            .unwrap();
    });
    assert!(!ok && out.contains("checkpoint at tree size 10"), "{out}");

    // A byte of an entry changed in the entry file itself: the frame's
    // checksum names the entry, where it is, and how long.
    let copy = dir.path().join("entry-file-edited");
    copy_dir(&data, &copy);
    let path = copy.join("log.entries");
    let mut bytes = std::fs::read(&path).unwrap();
    // The middle of the first entry frame at least 100 bytes long (entries
    // are stored compressed: there is no text to look for). A frame is a
    // length whose top bit says compressed, a seq and a CRC (u32, u64,
    // u32, big endian), then the payload.
    let mut at = 8;
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) & !(1 << 31);
        let seq = u64::from_be_bytes(bytes[at + 4..at + 12].try_into().unwrap());
        if len >= 100 && seq < u64::MAX - 1 {
            at += 16 + len as usize / 2;
            break;
        }
        at += 16 + len as usize;
    }
    bytes[at] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let (ok, out) = verify_dir(&copy);
    assert!(!ok, "{out}");
    assert!(
        out.contains("of ") && out.contains("log.entries: they fail their checksum"),
        "{out}"
    );
    assert!(out.contains(" bytes at offset "), "{out}");

    // The entry file gone: every entry's location is named as missing.
    let copy = dir.path().join("entry-file-removed");
    copy_dir(&data, &copy);
    std::fs::remove_file(copy.join("log.entries")).unwrap();
    let (ok, out) = verify_dir(&copy);
    assert!(!ok, "{out}");
    assert!(
        out.contains("this data directory has no such file"),
        "{out}"
    );
}

#[tokio::test]
async fn log_verify_checks_the_index_against_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let data = stopped_log(dir.path(), 10).await;
    // Entry 5 is the decision of session s-2.
    let (ok, out) = tampered(&data, "session-posting-deleted", |t| {
        t.remove(raw_posting_key(Field::Session, "s-2", 5)).unwrap();
    });
    assert!(
        !ok && (out.contains("holds a session posting \"s-2\" of entry 6")
            || out.contains("lacks the session posting \"s-2\" of entry 5")),
        "{out}"
    );
    let (ok, out) = tampered(&data, "posting-forged", |t| {
        t.insert(raw_posting_key(Field::Session, "s-forged", 5), &[])
            .unwrap();
    });
    assert!(
        !ok && out.contains("holds a session posting \"s-forged\" of entry 5"),
        "{out}"
    );
    // A posting moved to another entry (which may carry it already, as a
    // grant's issuance does its session's): either side is named.
    let (ok, out) = tampered(&data, "posting-moved", |t| {
        t.remove(raw_posting_key(Field::Session, "s-2", 5)).unwrap();
        t.insert(raw_posting_key(Field::Session, "s-2", 6), &[])
            .unwrap();
    });
    assert!(
        !ok && (out.contains("holds a session posting \"s-2\" of entry 6")
            || out.contains("lacks the session posting \"s-2\" of entry 5")),
        "{out}"
    );
    // A posting's data changed (the client document hash a decision saw).
    let (ok, out) = tampered(&data, "posting-data-changed", |t| {
        let key = t
            .scan_prefix(b"iD")
            .keys()
            .next()
            .expect("a client document posting")
            .unwrap();
        t.insert(key, b"0000".as_slice()).unwrap();
    });
    assert!(
        !ok && out.contains("holds a client_document posting"),
        "{out}"
    );
}

/// A log an earlier build wrote also holds a `kind` and an outcome posting
/// per decision and its requested scopes. They verify, and search never
/// reads them (a requested scope is found as approved ∪ denied, a
/// decision's kind and an allowed outcome on the entry), so one forged
/// among them changes no answer.
#[tokio::test]
async fn postings_an_earlier_build_wrote_verify_and_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = stopped_log(dir.path(), 10).await;
    let (ok, out) = tampered(&data, "legacy", |t| {
        for seq in START_ENTRIES..10 {
            t.insert(
                raw_posting_key(Field::Kind, "connection_decision", seq),
                &[],
            )
            .unwrap();
            t.insert(raw_posting_key(Field::RequestedScope, "payroll", seq), &[])
                .unwrap();
        }
        // Forged: no decision requested this scope; entry 1 is no decision.
        t.insert(
            raw_posting_key(Field::RequestedScope, "files:delete", 5),
            &[],
        )
        .unwrap();
        t.insert(raw_posting_key(Field::Kind, "connection_decision", 1), &[])
            .unwrap();
        t.insert(raw_posting_key(Field::Outcome, "approved", 5), &[])
            .unwrap();
    });
    assert!(ok, "{out}");

    let legacy = dir.path().join("legacy");
    let server = Server::start(&legacy, &repo_policies(), Some(&config(dir.path(), 3)));
    let decisions: Vec<u64> = (START_ENTRIES..10).rev().collect();
    let requested = get_json(&server, "/v1/decisions?scope=payroll&limit=100").await;
    assert_eq!(page_seqs(&requested), decisions);
    let forged = get_json(&server, "/v1/decisions?scope=files:delete&limit=100").await;
    assert_eq!(page_seqs(&forged), Vec::<u64>::new());
    let kind = get_json(&server, "/v1/decisions?kind=connection_decision&limit=100").await;
    assert_eq!(page_seqs(&kind), decisions);
    let approved = get_json(&server, "/v1/decisions?outcome=approved&limit=100").await;
    assert_eq!(page_seqs(&approved), Vec::<u64>::new());
    let denied = get_json(&server, "/v1/decisions?outcome=denied&limit=100").await;
    assert_eq!(page_seqs(&denied), decisions);
    server.stop();
}

/// An entry's time rides in its leaf hash's value; a log written before
/// keeps it under a key of its own. Both verify and filter by time; a time
/// kept twice or changed is reported.
#[tokio::test]
async fn times_kept_under_their_own_keys_by_an_earlier_build_verify_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let data = stopped_log(dir.path(), 10).await;
    let legacy_time = |t: &sled::Tree, seq: u64| {
        let leaf = t.get(raw_hash_key(0, seq)).unwrap().unwrap();
        assert_eq!(leaf.len(), 40, "a leaf hash carries its entry's time");
        t.insert(raw_hash_key(0, seq), &leaf[..32]).unwrap();
        t.insert(raw_time_key(seq), &leaf[32..]).unwrap();
    };
    let (ok, out) = tampered(&data, "legacy-times", |t| {
        for seq in 5..10 {
            legacy_time(t, seq);
        }
    });
    assert!(ok, "{out}");
    let (ok, out) = tampered(&data, "time-twice", |t| {
        let leaf = t.get(raw_hash_key(0, 6)).unwrap().unwrap();
        t.insert(raw_time_key(6), &leaf[32..]).unwrap();
    });
    assert!(!ok && out.contains("index"), "{out}");
    let (ok, out) = tampered(&data, "time-changed", |t| {
        legacy_time(t, 7);
        t.insert(raw_time_key(7), &1u64.to_be_bytes()).unwrap();
    });
    assert!(!ok && out.contains("time"), "{out}");

    let legacy = dir.path().join("legacy-times");
    let server = Server::start(&legacy, &repo_policies(), Some(&config(dir.path(), 3)));
    let all = get_json(&server, "/v1/decisions?limit=100").await;
    let time_of = |seq: u64| {
        all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["seq"] == seq)
            .and_then(|e| e["time"].as_str())
            .unwrap()
            .to_string()
    };
    // Across both layouts: entries 3 and 4 keep the time in the leaf.
    for (since, until, expected) in [(4, 8, vec![7, 6, 5, 4]), (6, 9, vec![8, 7, 6])] {
        let page = get_json(
            &server,
            &format!(
                "/v1/decisions?since={}&until={}&limit=100",
                time_of(since),
                time_of(until)
            ),
        )
        .await;
        assert_eq!(page_seqs(&page), expected, "since {since} until {until}");
    }
    server.stop();
}

#[tokio::test]
async fn malformed_store_keys_are_reported_with_their_place_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = stopped_log(dir.path(), 6).await;
    // A 3-byte key where entries live.
    let (ok, out) = tampered(&data, "short-entry-key", |t| {
        t.insert([b'e', 1, 2], b"{}".as_slice()).unwrap();
    });
    assert!(
        !ok && out.contains("key [65 01 02] (3 bytes): a seq key is 9 bytes"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    // A posting key cut short, and a key no trustpath writes.
    for (name, key, says) in [
        (
            "short-posting-key",
            vec![b'i', b's', 0, 0, 0, 9, b'x'],
            "a posting with a 9-byte value is 23 bytes",
        ),
        ("unknown-key", b"zz".to_vec(), "no trustpath key starts so"),
    ] {
        let (ok, out) = tampered(&data, name, |t| {
            t.insert(key.clone(), b"".as_slice()).unwrap();
        });
        assert!(!ok && out.contains(says), "{name}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    // A server on the directory with the bad entry key refuses to start,
    // saying where, instead of panicking.
    let copy = dir.path().join("short-entry-key");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&copy)
        .arg("--policies")
        .arg(repo_policies())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running on a directory with a malformed entry key");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("key [65 01 02] (3 bytes)"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn export_verifies_offline_and_edits_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = stopped_log(dir.path(), 9).await;
    let data_arg = data.to_str().unwrap();
    let (ok, export, err) = trustpath(&["log", "export", "--data-dir", data_arg]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 9 + 2, "header, nine entries, trailer");
    // Entry lines are exactly the stored bytes.
    {
        let store = trustpath::store::sled::open(&data).unwrap();
        assert_eq!(lines[4].as_bytes(), &store.entry(3).unwrap().unwrap()[..]);
    }
    let vkey_file = dir.path().join("log.vkey");
    let signer_key = trustpath::log::checkpoint::LogSigner::load_or_create(
        &data.join("log-signing-key.pem"),
        "trustpath.local/decision-log",
    )
    .unwrap();
    std::fs::write(&vkey_file, signer_key.verifier().vkey()).unwrap();

    let check_with = |name: &str, lines: &[String], extra: &[&str]| {
        let file = dir.path().join(name);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        verify_export_file(&file, &vkey_file, extra)
    };
    let check = |name: &str, lines: &[String]| check_with(name, lines, &[]);
    let original: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    let (ok, out) = check("ok.ndjson", &original);
    assert!(
        ok && out.contains("OK: all 9 entries of tree size 9"),
        "{out}"
    );

    let mut changed = original.clone();
    changed[5] = changed[5].replace("payroll", "payrolL");
    let (ok, out) = check("changed.ndjson", &changed);
    assert!(!ok && out.contains("entry 4 was changed"), "{out}");

    let mut removed = original.clone();
    removed.remove(3);
    let (ok, out) = check("removed.ndjson", &removed);
    assert!(!ok && out.contains("entry 2 was removed"), "{out}");

    let mut swapped = original.clone();
    swapped.swap(2, 7);
    let (ok, out) = check("swapped.ndjson", &swapped);
    assert!(!ok && out.contains("entry 1 was reordered"), "{out}");

    let mut appended = original.clone();
    let forged = original[9].replace("\"seq\":8", "\"seq\":9");
    appended.insert(10, forged);
    let (ok, out) = check("appended.ndjson", &appended);
    assert!(!ok && out.contains("entry 9 was inserted"), "{out}");

    let mut resigned = original.clone();
    let other = LogSigner::new(
        ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
        "trustpath.local/decision-log",
    );
    let mut trailer: Value = serde_json::from_str(&original[10]).unwrap();
    trailer["checkpoint"] = Value::String(other.sign(9, [1u8; 32]));
    resigned[10] = trailer.to_string();
    let (ok, out) = check("resigned.ndjson", &resigned);
    assert!(!ok && out.contains("checkpoint"), "{out}");

    // A partial export verifies against the same checkpoint.
    let (ok, part, err) = trustpath(&[
        "log",
        "export",
        "--data-dir",
        data_arg,
        "--from",
        "3",
        "--to",
        "7",
    ]);
    assert!(ok, "{err}");
    let part: Vec<String> = part.lines().map(str::to_string).collect();
    assert_eq!(part.len(), 4 + 2);
    let (ok, out) = check("part.ndjson", &part);
    assert!(
        ok && out.contains("OK: entries 3..7 (a complete range) of tree size 9"),
        "{out}"
    );

    // A filtered export: only the matches, each proven on its own.
    let (ok, sel, err) = trustpath(&["log", "export", "--data-dir", data_arg, "--session", "s-4"]);
    assert!(ok, "{err}");
    let sel: Vec<String> = sel.lines().map(str::to_string).collect();
    assert_eq!(sel.len(), 1 + 2, "one entry for session s-4");
    assert!(sel[1].contains("\"session_id\":\"s-4\""));
    // A selection is never reported like a complete export: it fails
    // unless accepted, and then says what it does not show.
    let (ok, out) = check("selected.ndjson", &sel);
    assert!(
        !ok && out.contains("1 of the tree's 9 entries checked"),
        "{out}"
    );
    let (ok, out) = check_with("selected.ndjson", &sel, &["--selection"]);
    assert!(ok && out.contains("OK (selection)"), "{out}");
    assert!(out.contains("completeness is not shown"), "{out}");
    let mut edited = sel.clone();
    edited[1] = edited[1].replace("payroll", "payrolL");
    let (ok, out) = check_with("selected-edited.ndjson", &edited, &["--selection"]);
    assert!(!ok && out.contains("entry 7 was changed"), "{out}");

    // And `log proof` prints a bundle a third party can check.
    let (ok, proof, err) = trustpath(&["log", "proof", "--seq", "4", "--data-dir", data_arg]);
    assert!(ok, "{err}");
    let bundle: Value = serde_json::from_str(&proof).unwrap();
    let verifier = NoteVerifier::from_vkey(bundle["public_key"].as_str().unwrap()).unwrap();
    let cp = verifier
        .open(bundle["checkpoint"].as_str().unwrap())
        .unwrap();
    let leaf = merkle::leaf_hash(bundle["entry"].as_str().unwrap().as_bytes());
    let path: Vec<Hash> = proof_of(&bundle);
    assert!(merkle::verify_inclusion(4, cp.size, &leaf, &path, &cp.root));
}

/// The entries a log starts with say which keys sign and which policy
/// decides; a restart adds none; a replaced key is recorded as rotated.
#[tokio::test]
async fn keys_and_policy_in_force_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &repo_policies(), None);
    let start = get_json(&server, "/v1/decisions?limit=10").await["entries"]
        .as_array()
        .unwrap()
        .clone();
    let kinds: Vec<&str> = start
        .iter()
        .rev()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["signing_key", "signing_key", "policy_loaded"]);
    let (policy, grant_key, log_key) = (&start[0], &start[1], &start[2]);

    let vkey = get(&server, "/v1/log/public-key")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(log_key["purpose"], "log");
    assert_eq!(log_key["event"], "created");
    assert_eq!(log_key["key_id"], vkey.trim());
    assert!(log_key["previous_key_id"].is_null());
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    assert_eq!(grant_key["purpose"], "grant");
    assert_eq!(grant_key["event"], "created");
    assert_eq!(grant_key["key_id"], jwks["keys"][0]["kid"]);
    assert_eq!(grant_key["public_key"], jwks["keys"][0]);

    let health = get_json(&server, "/health").await;
    assert_eq!(policy["trigger"], "start");
    assert_eq!(policy["policy_revision"], health["policy_revision"]);
    assert!(policy["previous_revision"].is_null());
    let files = policy["files"].as_array().unwrap();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let path = repo_policies().join(file["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            file["sha256"],
            trustpath::digest::sha256_hex(&bytes),
            "{path:?}"
        );
    }
    // Only public material: no private key bytes anywhere in the log.
    server.stop();
    let (ok, export, err) = trustpath(&["log", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(!export.contains("PRIVATE KEY"));
    assert!(!export.contains("\"d\":"));

    // A restart with the same keys and policy adds nothing.
    let server = Server::start(&data, &repo_policies(), None);
    let out = post_decision(
        &server,
        &cimd_request(&["files:read"], cimd_document(None), None),
    )
    .await;
    assert_eq!(out["log_entry"]["seq"], START_ENTRIES);
    server.stop();

    // The grant key replaced on disk: recorded as rotated, with its predecessor.
    let new_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(
        &new_key,
        ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF,
    )
    .unwrap();
    std::fs::write(data.join("grant-signing-key.pem"), pem.as_bytes()).unwrap();
    let server = Server::start(&data, &repo_policies(), None);
    let keys = get_json(&server, "/v1/decisions?kind=signing_key").await["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(keys.len(), 3);
    let rotated = &keys[0];
    let jwks = get_json(&server, "/.well-known/jwks.json").await;
    assert_eq!(rotated["purpose"], "grant");
    assert_eq!(rotated["event"], "rotated");
    assert_eq!(rotated["key_id"], jwks["keys"][0]["kid"]);
    assert_eq!(rotated["previous_key_id"], grant_key["key_id"]);
    assert_eq!(rotated["seq"], START_ENTRIES + 2);
    server.stop();
    let (ok, out) = verify_dir(&data);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_running_server_pages_through_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    write_decisions(&server, 5).await;
    let mut seqs = Vec::new();
    let mut from = Some(0u64);
    while let Some(at) = from {
        let page: Value = get(&server, &format!("/v1/log/entries?from_seq={at}&limit=3"))
            .await
            .json()
            .await
            .unwrap();
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 3);
        for e in entries {
            let seq = e["seq"].as_u64().unwrap();
            let one: Value = get(&server, &format!("/v1/log/entries/{seq}"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(e["leaf_hash"], one["leaf_hash"]);
            seqs.push(seq);
        }
        from = page["next_from_seq"].as_u64();
    }
    // The start entries, then five decisions with their grants' issuance or not.
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() as u64 >= START_ENTRIES + 5, "{seqs:?}");
    for bad in ["limit=0", "limit=1001", "from_seq=x"] {
        let resp = http()
            .get(server.url(&format!("/v1/log/entries?{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let field = if bad.starts_with("limit=") {
            "limit"
        } else {
            "query"
        };
        assert_eq!(resp.json::<Value>().await.unwrap()["field"], field, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_tail_prints_a_running_servers_entries_and_follows_new_ones() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    write_decisions(&server, 3).await;
    let base = server.url("");
    let base = base.trim_end_matches('/');
    let (ok, out, err) = trustpath(&["log", "tail", "--url", base]);
    assert!(ok, "{err}");
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let size = seqs.len() as u64;

    // Following from the end: only what is written afterwards.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["log", "tail", "--follow", "--url", base, "--from-seq"])
        .arg(size.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            seqs.push(v["seq"].as_u64().unwrap());
            if seqs.len() == 2 {
                break;
            }
        }
        seqs
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let more = write_decisions(&server, 2).await;
    let first_new = more[0]["log_entry"]["seq"].as_u64().unwrap();
    assert_eq!(first_new, size);
    let joined = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tokio::task::spawn_blocking(move || reader.join().unwrap()),
    )
    .await;
    // Killing it closes its stdout, which ends the reader either way.
    child.kill().unwrap();
    let _ = child.wait();
    let followed = joined
        .expect("log tail --follow printed the new entries")
        .unwrap();
    assert_eq!(
        followed,
        vec![size, size + 1],
        "the decision and its grant's issuance"
    );
}

#[tokio::test]
async fn log_export_reads_a_running_servers_log_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trustpath.toml");
    // A checkpoint after every batch: the export covers the latest one.
    std::fs::write(&config, "[log]\ncheckpoint_every_entries = 1\n").unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    write_decisions(&server, 4).await;
    let vkey = String::from_utf8(get_ok(&server, "/v1/log/public-key").await.to_vec()).unwrap();
    let vkey_file = dir.path().join("log.vkey");
    std::fs::write(&vkey_file, vkey.trim()).unwrap();
    let base = server.url("");
    let base = base.trim_end_matches('/');

    let (ok, out, err) = trustpath(&["log", "export", "--url", base]);
    assert!(ok, "{err}");
    let entries = out.lines().count() - 2;
    assert_eq!(entries, 3 + 4, "{out}");
    assert!(
        err.contains(&format!("exported {entries} entries")),
        "{err}"
    );
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &out).unwrap();
    let (ok, report) = verify_export_file(&file, &vkey_file, &[]);
    assert!(ok, "{report}");

    // A range, exported while the server keeps deciding.
    write_decisions(&server, 1).await;
    let (ok, part, err) = trustpath(&["log", "export", "--url", base, "--from", "2", "--to", "6"]);
    assert!(ok, "{err}");
    assert!(err.contains("exported 4 entries"), "{err}");
    std::fs::write(&file, &part).unwrap();
    let (ok, report) = verify_export_file(&file, &vkey_file, &[]);
    assert!(ok, "{report}");

    // One entry changed in transit is caught.
    let tampered = out.replacen("\"session_id\":\"s-1\"", "\"session_id\":\"s-9\"", 1);
    assert_ne!(tampered, out);
    std::fs::write(&file, tampered).unwrap();
    let (ok, report) = verify_export_file(&file, &vkey_file, &[]);
    assert!(!ok, "{report}");

    let (ok, _, err) = trustpath(&["log", "export", "--url", base, "--client", "x"]);
    assert!(!ok);
    assert!(err.contains("filters do not combine with --url"), "{err}");
    server.stop();
}

/// The entry file is the log's durable record; the key-value store is an
/// index over it, flushed lazily and caught up at open. With the index
/// gone entirely, a start rebuilds it from `log.entries`: search finds the
/// same entries, and the log verifies under a checkpoint signed anew.
#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_entry_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = stopped_log(dir.path(), 10).await;
    let search = "/v1/decisions?session_id=s-2";
    let before = {
        let server = Server::start(&data, &repo_policies(), Some(&config(dir.path(), 3)));
        let found = get_json(&server, search).await;
        server.stop();
        found
    };
    assert_eq!(before["entries"].as_array().unwrap().len(), 1, "{before}");

    std::fs::remove_dir_all(data.join("log.sled")).unwrap();
    let server = Server::start(&data, &repo_policies(), Some(&config(dir.path(), 3)));
    let after = get_json(&server, search).await;
    assert_eq!(after["entries"], before["entries"]);
    let more = write_decisions(&server, 1).await;
    assert_eq!(
        more[0]["log_entry"]["seq"], 10,
        "appends go on after the rebuilt head"
    );
    server.stop();
    let (ok, out) = verify_dir(&data);
    assert!(ok, "{out}");
    assert!(out.contains("OK: all 11 entries"), "{out}");
}
