//! The storage contract (`log::storage`, `identity::replay::JtiStore`), as a
//! suite any engine runs: written against the traits. Each engine (sled,
//! fjall; PostgreSQL for a fleet next) has one `#[test]` that opens it and
//! calls `log_contract` and `jti_contract`.

mod common;

use trustpath::identity::replay::JtiStore;
use trustpath::log::hot_index::Keep;
use trustpath::log::index::{Field, IndexRecord};
use trustpath::log::storage::{Posting, Retained, StoredEntry};
use trustpath::log::LogStore;

fn posting(field: Field, value: &str) -> Posting {
    Posting {
        field,
        value: value.to_string(),
        data: Vec::new(),
    }
}

/// Appends entry `seq` with a session posting and a time.
fn append(store: &LogStore, seq: u64, session: &str, decision: Option<&str>) {
    let bytes = format!("{{\"seq\":{seq}}}");
    let hashes = [(0u8, seq, [seq as u8; 32])];
    let postings = [
        posting(Field::Session, session),
        Posting {
            field: Field::ClientDocument,
            value: "client".into(),
            data: format!("doc-{seq}").into_bytes(),
        },
    ];
    let entry = StoredEntry {
        seq,
        bytes: bytes.as_bytes(),
        decision_id: decision,
        hashes: &hashes,
        postings: &postings,
        time_micros: Some(1_000 * seq as i64),
    };
    store.append(&[entry]).unwrap();
}

/// A PostgreSQL pool of `size` connections that waits 5 s at most.
fn pool(size: u32) -> trustpath::store::postgres::PoolOptions {
    trustpath::store::postgres::PoolOptions {
        size,
        timeout: std::time::Duration::from_secs(5),
    }
}

/// What every engine's log storage must do.
fn log_contract(store: &LogStore) {
    assert_eq!(store.next_seq().unwrap(), 0);
    assert!(store.entry(0).unwrap().is_none());
    assert!(store.latest_checkpoint().unwrap().is_none());

    // Visible as soon as appended, flushed or not.
    append(store, 0, "s-a", Some("d-0"));
    append(store, 1, "s-b", None);
    append(store, 2, "s-a", Some("d-2"));
    assert_eq!(store.next_seq().unwrap(), 3);
    assert_eq!(store.entry(1).unwrap().unwrap(), b"{\"seq\":1}");
    assert_eq!(store.seq_of_decision("d-2").unwrap(), Some(2));
    assert_eq!(store.decision("d-0").unwrap().unwrap(), b"{\"seq\":0}");
    assert!(store.seq_of_decision("d-9").unwrap().is_none());
    assert_eq!(store.stored_hash(0, 2).unwrap(), Some([2u8; 32]));
    assert!(store.stored_hash(1, 0).unwrap().is_none());
    // A missing low-level subtree hash is derived from its leaves; one
    // whose leaves are not all there, or a higher one, is corruption.
    use trustpath::log::merkle::node_hash;
    assert_eq!(
        store.subtree_hash(1, 0).unwrap(),
        node_hash(&[0u8; 32], &[1u8; 32])
    );
    assert!(store.subtree_hash(2, 0).is_err(), "leaf 3 is not there");
    assert!(
        store.subtree_hash(4, 0).is_err(),
        "level 4 is never derived"
    );
    assert_eq!(store.time_of(2).unwrap(), Some(2_000));

    // Scans, in the orders the contract names.
    let all: Vec<u64> = store.entries().map(|e| e.unwrap().0).collect();
    assert_eq!(all, [0, 1, 2]);
    let newest_first: Vec<u64> = store.seqs_descending(None).map(Result::unwrap).collect();
    assert_eq!(newest_first, [2, 1, 0]);
    let below: Vec<u64> = store.seqs_descending(Some(2)).map(Result::unwrap).collect();
    assert_eq!(below, [1, 0]);

    // Postings: exact values only, newest first, with their data.
    let a: Vec<u64> = store
        .postings_descending(Field::Session, "s-a", None)
        .map(Result::unwrap)
        .collect();
    assert_eq!(a, [2, 0]);
    let a_below: Vec<u64> = store
        .postings_descending(Field::Session, "s-a", Some(2))
        .map(Result::unwrap)
        .collect();
    assert_eq!(a_below, [0]);
    assert_eq!(
        store
            .postings_descending(Field::Session, "s-", None)
            .count(),
        0,
        "a prefix of a value is not the value"
    );
    assert_eq!(
        store.oldest_posting(Field::Session, "s-a").unwrap(),
        Some(0)
    );
    assert_eq!(
        store
            .newest_posting(Field::ClientDocument, "client")
            .unwrap(),
        Some((2, b"doc-2".to_vec()))
    );
    let many = store
        .oldest_postings(&[
            (Field::Session, "s-a"),
            (Field::Session, "s-b"),
            (Field::Client, "s-a"),
            (Field::Session, "s-none"),
        ])
        .unwrap();
    let expected: std::collections::HashMap<(Field, String), u64> = [
        ((Field::Session, "s-a".to_string()), 0),
        ((Field::Session, "s-b".to_string()), 1),
    ]
    .into();
    assert_eq!(many, expected, "many look-ups at once");
    // Either end of several values in one call, in the keys' order.
    let ends = store
        .posting_ends(&[
            (Field::ClientDocument, "client", Keep::Newest),
            (Field::Session, "s-a", Keep::Oldest),
            (Field::Session, "s-a", Keep::Newest),
            (Field::RevokedSession, "s-none", Keep::Oldest),
            (Field::ClientDocument, "nobody", Keep::Newest),
        ])
        .unwrap();
    assert_eq!(
        ends,
        vec![
            Some((2, b"doc-2".to_vec())),
            Some((0, Vec::new())),
            Some((2, Vec::new())),
            None,
            None,
        ]
    );
    let mut oldest: Vec<IndexRecord> = store
        .field_ends(Field::Session, false)
        .map(Result::unwrap)
        .collect();
    oldest.sort();
    let session = |value: &str, seq| IndexRecord::Posting {
        field: Field::Session,
        value: value.into(),
        seq,
        data: Vec::new(),
    };
    assert_eq!(oldest, [session("s-a", 0), session("s-b", 1)]);
    let newest: Vec<IndexRecord> = store
        .field_ends(Field::ClientDocument, true)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        newest,
        [IndexRecord::Posting {
            field: Field::ClientDocument,
            value: "client".into(),
            seq: 2,
            data: b"doc-2".to_vec(),
        }],
        "each value's end, with its data"
    );
    assert!(store.has_posting(Field::Session, "s-b", 1).unwrap());
    assert!(!store.has_posting(Field::Session, "s-b", 0).unwrap());
    assert!(
        !store.has_posting(Field::Client, "s-b", 1).unwrap(),
        "fields are apart"
    );

    // Checkpoints: the latest is the largest tree.
    store.put_checkpoint(1, "note-1").unwrap();
    store.put_checkpoint(3, "note-3").unwrap();
    assert_eq!(
        store.latest_checkpoint().unwrap().as_deref(),
        Some("note-3")
    );
    let checkpoints: Vec<(u64, String)> = store.checkpoints().map(Result::unwrap).collect();
    assert_eq!(
        checkpoints,
        [(1, "note-1".to_string()), (3, "note-3".to_string())]
    );

    // One append of several entries: all of them.
    let hashes = [[(0u8, 3u64, [3u8; 32])], [(0u8, 4u64, [4u8; 32])]];
    let postings = [posting(Field::Session, "s-c")];
    let batch: Vec<StoredEntry<'_>> = (3..5)
        .map(|seq| StoredEntry {
            seq,
            bytes: b"{}",
            decision_id: None,
            hashes: &hashes[seq as usize - 3],
            postings: &postings,
            time_micros: None,
        })
        .collect();
    store.append(&batch).unwrap();
    assert_eq!(store.next_seq().unwrap(), 5);
    assert!(store.time_of(4).unwrap().is_none());
    store.flush().unwrap();

    // Every index record, exactly as appended: what verification compares.
    let mut records: Vec<IndexRecord> = store.index_records().map(Result::unwrap).collect();
    records.sort();
    let mut expected = Vec::new();
    for (seq, session, decision) in [
        (0, "s-a", Some("d-0")),
        (1, "s-b", None),
        (2, "s-a", Some("d-2")),
    ] {
        expected.push(IndexRecord::Posting {
            field: Field::Session,
            value: session.into(),
            seq,
            data: Vec::new(),
        });
        expected.push(IndexRecord::Posting {
            field: Field::ClientDocument,
            value: "client".into(),
            seq,
            data: format!("doc-{seq}").into_bytes(),
        });
        if let Some(id) = decision {
            expected.push(IndexRecord::Decision { id: id.into(), seq });
        }
        expected.push(IndexRecord::Time {
            seq,
            micros: 1_000 * seq as i64,
        });
    }
    for seq in [3, 4] {
        expected.push(IndexRecord::Posting {
            field: Field::Session,
            value: "s-c".into(),
            seq,
            data: Vec::new(),
        });
    }
    expected.sort();
    assert_eq!(records, expected);
    for record in &expected {
        assert!(store.has_record(record).unwrap(), "{record}");
    }
    let wrong_data = IndexRecord::Posting {
        field: Field::ClientDocument,
        value: "client".into(),
        seq: 2,
        data: b"doc-0".to_vec(),
    };
    assert!(!store.has_record(&wrong_data).unwrap(), "data is compared");
    assert!(!store
        .has_record(&IndexRecord::Time { seq: 2, micros: 1 })
        .unwrap());
    retain_contract(store);
}

/// Retention's role: new bytes for old entries, and the records they no
/// longer carry gone, hashes and the head untouched; all or nothing.
fn retain_contract(store: &LogStore) {
    let size = store.next_seq().unwrap();
    let session_of_2 = IndexRecord::Posting {
        field: Field::Session,
        value: "s-a".into(),
        seq: 2,
        data: Vec::new(),
    };
    assert!(store.has_record(&session_of_2).unwrap());
    store
        .retain(&[
            Retained {
                seq: 2,
                bytes: b"{\"seq\":2,\"less\":true}".to_vec(),
                dropped: vec![
                    session_of_2.clone(),
                    IndexRecord::Decision {
                        id: "d-2".into(),
                        seq: 2,
                    },
                ],
            },
            Retained {
                seq: 1,
                bytes: Vec::new(),
                dropped: vec![IndexRecord::Time {
                    seq: 1,
                    micros: 1_000,
                }],
            },
        ])
        .unwrap();
    assert_eq!(
        store.entry(2).unwrap().unwrap(),
        b"{\"seq\":2,\"less\":true}"
    );
    assert_eq!(
        store.entry(1).unwrap().unwrap(),
        b"",
        "an expired entry keeps its seq"
    );
    assert!(!store.has_record(&session_of_2).unwrap());
    assert!(store.seq_of_decision("d-2").unwrap().is_none());
    assert!(
        store.seq_of_decision("d-0").unwrap().is_some(),
        "others stay"
    );
    assert!(!store
        .has_record(&IndexRecord::Time {
            seq: 1,
            micros: 1_000
        })
        .unwrap());
    assert_eq!(
        store.stored_hash(0, 2).unwrap(),
        Some([2u8; 32]),
        "hashes stay"
    );
    assert_eq!(store.next_seq().unwrap(), size, "the head stays");
    let seqs: Vec<u64> = store.entries().map(|e| e.unwrap().0).collect();
    assert_eq!(seqs, (0..size).collect::<Vec<_>>(), "no gap");
}

/// What every engine's used-`jti` store must do.
fn jti_contract(jtis: &dyn JtiStore) {
    assert!(jtis.first_use(b"k1", 100).unwrap());
    assert!(
        !jtis.first_use(b"k1", 100).unwrap(),
        "a second use is refused"
    );
    assert!(jtis.first_use(b"k2", 300).unwrap());
    assert_eq!(jtis.prune(200).unwrap(), 1, "k1 expired");
    assert!(
        jtis.first_use(b"k1", 400).unwrap(),
        "pruned keys are forgotten"
    );
    assert!(
        !jtis.first_use(b"k2", 400).unwrap(),
        "unexpired keys are kept"
    );
    // The decision path claims from an async worker: the same claims.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let claim = |key: &'static [u8]| runtime.block_on(jtis.first_use_async(key, 500)).unwrap();
    assert!(claim(b"k3"), "a new key, claimed async");
    assert!(!claim(b"k3"), "a second async use is refused");
    assert!(!jtis.first_use(b"k3", 500).unwrap(), "and a blocking one");
    assert!(!claim(b"k2"), "a key claimed blocking is refused async");
}

#[test]
fn sled_engine_keeps_the_storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trustpath::store::sled::SledLog::open(dir.path()).unwrap();
    log_contract(&engine.log_store());
    jti_contract(&engine.jti_store().unwrap());
    // Durable after flush: a reopened engine reads the same log.
    drop(engine);
    let store = trustpath::store::sled::open_for_scan(dir.path()).unwrap();
    assert_eq!(store.next_seq().unwrap(), 5);
    assert_eq!(store.decision("d-0").unwrap().unwrap(), b"{\"seq\":0}");
}

#[test]
fn fjall_engine_keeps_the_storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    let engine = trustpath::store::fjall::FjallLog::open(dir.path()).unwrap();
    log_contract(&engine.log_store());
    jti_contract(&engine.jti_store().unwrap());
    // Durable after flush: a reopened engine reads the same log.
    drop(engine);
    let store = trustpath::store::open_for_scan(dir.path()).unwrap();
    assert_eq!(store.next_seq().unwrap(), 5);
    assert_eq!(store.decision("d-0").unwrap().unwrap(), b"{\"seq\":0}");
}

#[test]
fn postgres_engine_keeps_the_storage_contract() {
    let Some(db) = common::pg::TestDb::create("storage_contract") else {
        return;
    };
    let options = pool(4);
    let engine = trustpath::store::postgres::PgLog::open(&db.url, Some("node-a"), options).unwrap();
    log_contract(&engine.log_store());
    jti_contract(&engine.jti_store());
    // Another connection (another replica) reads the same log.
    drop(engine);
    let store = trustpath::store::postgres::PgLog::open(&db.url, None, options)
        .unwrap()
        .log_store();
    assert_eq!(store.next_seq().unwrap(), 5);
    assert_eq!(store.decision("d-0").unwrap().unwrap(), b"{\"seq\":0}");
    assert_eq!(
        db.value("SELECT node FROM log_entries WHERE seq = 2")
            .as_deref(),
        Some("node-a"),
        "each entry records the replica that wrote it"
    );
}

/// Appends must follow the head: a batch that does not start at the log's
/// size, or leaves a gap, is refused and stores nothing.
fn head_contract(store: &LogStore) {
    let entry = |seq: u64| StoredEntry {
        seq,
        bytes: b"{}",
        decision_id: None,
        hashes: &[],
        postings: &[],
        time_micros: None,
    };
    assert!(store.append(&[entry(1)]).is_err(), "starts past the head");
    assert!(store.append(&[entry(0), entry(2)]).is_err(), "a gap");
    assert_eq!(store.next_seq().unwrap(), 0, "nothing of a refused batch");
    store.append(&[entry(0)]).unwrap();
    assert!(store.append(&[entry(0)]).is_err(), "a seq taken");
    assert_eq!(store.next_seq().unwrap(), 1);
}

#[test]
fn every_engine_refuses_appends_off_the_head() {
    let dir = tempfile::tempdir().unwrap();
    head_contract(
        &trustpath::store::sled::SledLog::open(dir.path())
            .unwrap()
            .log_store(),
    );
    let dir = tempfile::tempdir().unwrap();
    head_contract(
        &trustpath::store::fjall::FjallLog::open(dir.path())
            .unwrap()
            .log_store(),
    );
    if let Some(db) = common::pg::TestDb::create("head_contract") {
        let options = pool(2);
        head_contract(
            &trustpath::store::postgres::PgLog::open(&db.url, Some("n"), options)
                .unwrap()
                .log_store(),
        );
    }
}

/// Two replicas' handles on one database: each starts a batch where its
/// own last commit left the head, and a batch started at a head another
/// replica has moved since stores nothing and says so; the next one holds
/// the head and lands after the other replica's entries.
#[test]
fn a_batch_at_a_head_another_replica_moved_stores_nothing() {
    let Some(db) = common::pg::TestDb::create("head_moved") else {
        return;
    };
    let options = pool(2);
    let open = |node| {
        trustpath::store::postgres::PgLog::open(&db.url, Some(node), options)
            .unwrap()
            .log_store()
    };
    let (a, b) = (open("a"), open("b"));
    let session = posting(Field::Session, "s-a");
    let entry = |seq: u64, postings| StoredEntry {
        seq,
        bytes: b"{}",
        decision_id: None,
        hashes: &[],
        postings,
        time_micros: None,
    };
    a.append(&[entry(0, std::slice::from_ref(&session))])
        .unwrap();
    b.append(&[entry(1, &[])]).unwrap();
    b.append(&[entry(2, &[])]).unwrap();

    // `a` left the head at 1; `b` has moved it to 3.
    let mut stale = a.begin().unwrap();
    assert_eq!(stale.next_seq(), 1, "a guesses where it left the head");
    stale
        .append(&[entry(1, std::slice::from_ref(&session))])
        .unwrap();
    stale.put_checkpoint(2, "not stored").unwrap();
    match stale.commit() {
        Err(trustpath::log::LogError::HeadMoved { expected: 1 }) => {}
        other => panic!("a stale head must be refused, got {other:?}"),
    }
    assert_eq!(a.next_seq().unwrap(), 3, "nothing of the stale batch");
    assert_eq!(
        a.entry(1).unwrap().as_deref(),
        Some(&b"{}"[..]),
        "b's entry kept"
    );
    assert_eq!(
        a.oldest_postings(&[(Field::Session, "s-a")]).unwrap().len(),
        1,
        "no posting of the stale batch"
    );
    assert!(
        a.checkpoints().next().is_none(),
        "no checkpoint of the stale batch"
    );

    // The next batch holds the head and starts where b left it.
    let mut fresh = a.begin().unwrap();
    assert_eq!(fresh.next_seq(), 3);
    fresh.append(&[entry(3, &[])]).unwrap();
    fresh.commit().unwrap();
    assert_eq!(b.next_seq().unwrap(), 4);
}

/// Appends entry `seq` posting only `postings`.
fn append_postings(store: &LogStore, seq: u64, postings: &[Posting]) {
    let hashes = [(0u8, seq, [seq as u8; 32])];
    let entry = StoredEntry {
        seq,
        bytes: b"{}",
        decision_id: None,
        hashes: &hashes,
        postings,
        time_micros: None,
    };
    store.append(&[entry]).unwrap();
}

fn document(client: &str, sha: &str) -> Posting {
    Posting {
        field: Field::ClientDocument,
        value: client.into(),
        data: sha.as_bytes().to_vec(),
    }
}

/// The decision path's look-ups, answered from memory on a log this
/// process alone writes, must say what the engine says: after appends,
/// after retention drops a posting, and after a recovery.
fn hot_index_contract(engine: LogStore) {
    let store = engine.clone().remembering().unwrap();
    assert!(store.hot_index().is_some());
    let agree = |field: Field, value: &str| {
        assert_eq!(
            store.oldest_posting(field, value).unwrap(),
            engine.oldest_posting(field, value).unwrap(),
            "oldest {value}"
        );
        assert_eq!(
            store.newest_posting(field, value).unwrap(),
            engine.newest_posting(field, value).unwrap(),
            "newest {value}"
        );
        let both = [(field, value, Keep::Oldest), (field, value, Keep::Newest)];
        assert_eq!(
            store.posting_ends(&both).unwrap(),
            engine.posting_ends(&both).unwrap(),
            "ends {value}"
        );
    };
    append_postings(&store, 0, &[document("c1", "aa")]);
    append_postings(&store, 1, &[posting(Field::RevokedSession, "s1")]);
    append_postings(&store, 2, &[document("c1", "bb"), document("c2", "cc")]);
    append_postings(&store, 3, &[posting(Field::RevokedSession, "s1")]);
    append_postings(&store, 4, &[posting(Field::RevokedGrant, "g1")]);
    assert_eq!(
        store.newest_posting(Field::ClientDocument, "c1").unwrap(),
        Some((2, b"bb".to_vec()))
    );
    assert_eq!(
        store.oldest_posting(Field::RevokedSession, "s1").unwrap(),
        Some(1),
        "a session is revoked from its first revocation"
    );
    assert_eq!(
        store.oldest_posting(Field::RevokedGrant, "g9").unwrap(),
        None
    );
    for (field, value) in [
        (Field::ClientDocument, "c1"),
        (Field::ClientDocument, "c2"),
        (Field::ClientDocument, "c9"),
        (Field::RevokedSession, "s1"),
        (Field::RevokedGrant, "g1"),
        (Field::RevokedGrant, "g9"),
    ] {
        agree(field, value);
    }
    let revoked = store
        .oldest_postings(&[(Field::RevokedSession, "s1"), (Field::RevokedGrant, "g9")])
        .unwrap();
    assert_eq!(revoked.len(), 1);

    // Retention drops c1's newest document posting and s1's first
    // revocation: memory falls back to what the store still holds.
    store
        .retain(&[
            Retained {
                seq: 2,
                bytes: Vec::new(),
                dropped: vec![IndexRecord::Posting {
                    field: Field::ClientDocument,
                    value: "c1".into(),
                    seq: 2,
                    data: b"bb".to_vec(),
                }],
            },
            Retained {
                seq: 1,
                bytes: Vec::new(),
                dropped: vec![IndexRecord::Posting {
                    field: Field::RevokedSession,
                    value: "s1".into(),
                    seq: 1,
                    data: Vec::new(),
                }],
            },
        ])
        .unwrap();
    assert_eq!(
        store.newest_posting(Field::ClientDocument, "c1").unwrap(),
        Some((0, b"aa".to_vec()))
    );
    assert_eq!(
        store.oldest_posting(Field::RevokedSession, "s1").unwrap(),
        Some(3)
    );
    agree(Field::ClientDocument, "c1");
    agree(Field::ClientDocument, "c2");
    agree(Field::RevokedSession, "s1");

    // A fresh handle reads the same from the store; a recovery rebuilds.
    let again = engine.clone().remembering().unwrap();
    assert_eq!(
        again.newest_posting(Field::ClientDocument, "c1").unwrap(),
        Some((0, b"aa".to_vec()))
    );
    store.flush().unwrap();
    store.recover().unwrap();
    assert_eq!(
        store.oldest_posting(Field::RevokedGrant, "g1").unwrap(),
        Some(4)
    );
    let sizes = store.hot_index().unwrap().sizes();
    assert!(sizes.iter().all(|(_, _, complete)| *complete), "{sizes:?}");
    assert_eq!(
        sizes.iter().map(|(_, n, _)| n).sum::<usize>(),
        4,
        "s1, g1, c1, c2"
    );
}

#[test]
fn embedded_engines_answer_the_decision_path_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sled = trustpath::store::sled::SledLog::open(dir.path()).unwrap();
    hot_index_contract(sled.log_store());
    let dir = tempfile::tempdir().unwrap();
    let fjall = trustpath::store::fjall::FjallLog::open(dir.path()).unwrap();
    hot_index_contract(fjall.log_store());
    // The whole contract holds through a remembering handle too.
    let dir = tempfile::tempdir().unwrap();
    let sled = trustpath::store::sled::SledLog::open(dir.path()).unwrap();
    log_contract(&sled.log_store().remembering().unwrap());
}

#[test]
fn a_fleet_store_is_never_remembered() {
    let Some(db) = common::pg::TestDb::create("hot_index") else {
        return;
    };
    let options = pool(2);
    let engine = trustpath::store::postgres::PgLog::open(&db.url, Some("node-a"), options).unwrap();
    let store = engine.log_store().remembering().unwrap();
    assert!(
        store.hot_index().is_none(),
        "other replicas write a fleet's log"
    );
}

/// A used `jti` is claimed in memory and written by the log's next flush:
/// after it, a reopened engine still refuses the claim.
#[test]
fn a_used_jti_survives_a_restart_once_the_log_is_flushed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = trustpath::store::sled::SledLog::open(dir.path()).unwrap();
        let jtis = engine.jti_store().unwrap();
        assert!(jtis.first_use(b"flushed", i64::MAX).unwrap());
        engine.log_store().flush().unwrap();
        assert!(jtis.first_use(b"expired", 10).unwrap());
        engine.log_store().flush().unwrap();
    }
    let engine = trustpath::store::sled::SledLog::open(dir.path()).unwrap();
    let jtis = engine.jti_store().unwrap();
    assert!(!jtis.first_use(b"flushed", i64::MAX).unwrap());
    assert_eq!(
        jtis.prune(1_000).unwrap(),
        1,
        "the expired claim, read back"
    );
    assert!(jtis.first_use(b"expired", i64::MAX).unwrap());

    let dir = tempfile::tempdir().unwrap();
    {
        let engine = trustpath::store::fjall::FjallLog::open(dir.path()).unwrap();
        let jtis = engine.jti_store().unwrap();
        assert!(jtis.first_use(b"flushed", i64::MAX).unwrap());
        engine.log_store().flush().unwrap();
    }
    let engine = trustpath::store::fjall::FjallLog::open(dir.path()).unwrap();
    let jtis = engine.jti_store().unwrap();
    assert!(!jtis.first_use(b"flushed", i64::MAX).unwrap());
}

/// Appends entry `seq` whose bytes carry `marker`.
fn append_marked(store: &LogStore, seq: u64, marker: &str) {
    let bytes = format!("{{\"seq\":{seq},\"who\":\"{marker}\"}}");
    let hashes = [(0u8, seq, [seq as u8; 32])];
    let postings = [posting(Field::Session, "s")];
    let entry = StoredEntry {
        seq,
        bytes: bytes.as_bytes(),
        decision_id: None,
        hashes: &hashes,
        postings: &postings,
        time_micros: Some(seq as i64),
    };
    store.append(&[entry]).unwrap();
}

/// How often `needle` occurs in the file at `path`.
fn occurrences(path: &std::path::Path, needle: &str) -> usize {
    let haystack = std::fs::read(path).unwrap();
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

/// The embedded engines keep entries' bytes in the data directory's
/// `log.entries` (`store/entry_file.rs`): once each, gone from it when
/// retention takes them out, and a torn tail (a crash or a full disk in
/// the middle of an append) is cut at the next open.
fn entry_file_contract(dir: &std::path::Path, open: impl Fn(&std::path::Path) -> LogStore) {
    let file = dir.join("log.entries");
    {
        let store = open(dir);
        for seq in 0..4 {
            append_marked(&store, seq, &format!("person-{seq}"));
        }
        store.flush().unwrap();
        for seq in 0..4 {
            assert_eq!(occurrences(&file, &format!("person-{seq}")), 1);
        }
        store
            .retain(&[
                Retained {
                    seq: 1,
                    bytes: b"{\"seq\":1}".to_vec(),
                    dropped: Vec::new(),
                },
                Retained {
                    seq: 2,
                    bytes: Vec::new(),
                    dropped: Vec::new(),
                },
            ])
            .unwrap();
        assert_eq!(store.entry(1).unwrap().unwrap(), b"{\"seq\":1}");
        assert_eq!(store.entry(2).unwrap().unwrap(), b"");
        assert_eq!(occurrences(&file, "person-1"), 0, "redacted: off the disk");
        assert_eq!(occurrences(&file, "person-2"), 0, "expired: off the disk");
        assert_eq!(occurrences(&file, "person-3"), 1);
    }
    // Half a frame at the end, as a crash in the middle of an append
    // leaves it.
    let whole = std::fs::metadata(&file).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9, b'{'])
            .unwrap();
    }
    let store = open(dir);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        whole,
        "cut at open"
    );
    append_marked(&store, 4, "person-4");
    let seqs: Vec<(u64, Vec<u8>)> = store.entries().map(|e| e.unwrap()).collect();
    assert_eq!(seqs.len(), 5);
    assert_eq!(
        seqs[4].1,
        b"{\"seq\":4,\"who\":\"person-4\"}".to_vec(),
        "the next append reads back"
    );
}

#[test]
fn embedded_engines_keep_entries_in_the_entry_file() {
    let dir = tempfile::tempdir().unwrap();
    entry_file_contract(dir.path(), |d| {
        trustpath::store::sled::SledLog::open(d)
            .unwrap()
            .log_store()
    });
    let dir = tempfile::tempdir().unwrap();
    entry_file_contract(dir.path(), |d| {
        trustpath::store::fjall::FjallLog::open(d)
            .unwrap()
            .log_store()
    });
}

/// A log written before the entry file keeps its entries in the engine,
/// and a frame retention replaced but had not zeroed when it stopped is
/// zeroed at the next open, while a frame still in use never is.
#[test]
fn a_log_without_an_entry_file_keeps_its_entries_inline_and_pending_erasures_finish() {
    use trustpath::store::sled::{raw_entry_key, SledLog};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.entries");
    {
        let engine = SledLog::open(dir.path()).unwrap();
        let store = engine.log_store();
        for seq in 0..3 {
            append_marked(&store, seq, &format!("person-{seq}"));
        }
        store.flush().unwrap();
        let tree = engine.raw_tree();
        // Entry 0 stored inline again, its frame left behind with a
        // pending erasure; entry 1's frame listed as pending while in use.
        let location = |seq: u64| tree.get(raw_entry_key(seq)).unwrap().unwrap().to_vec();
        for (seq, inline) in [(0u64, true), (1, false)] {
            let at = location(seq);
            assert_eq!((at.len(), at[0]), (13, 0), "a location");
            let mut key = vec![b'x'];
            key.extend_from_slice(&at[1..9]);
            let mut value = seq.to_be_bytes().to_vec();
            value.extend_from_slice(&at[9..13]);
            tree.insert(key, value).unwrap();
            if inline {
                let bytes = store.entry(seq).unwrap().unwrap();
                tree.insert(raw_entry_key(seq), bytes).unwrap();
            }
        }
        store.flush().unwrap();
    }
    {
        let store = SledLog::open(dir.path()).unwrap().log_store();
        assert_eq!(
            occurrences(&file, "person-0"),
            0,
            "the pending erasure done"
        );
        assert_eq!(occurrences(&file, "person-1"), 1, "a frame in use kept");
        assert!(store.entry(0).unwrap().unwrap().ends_with(b"person-0\"}"));
    }
    // The same log as a release before the file wrote it: entries inline.
    {
        let engine = SledLog::open(dir.path()).unwrap();
        let store = engine.log_store();
        let tree = engine.raw_tree();
        for seq in 0..3 {
            let bytes = store.entry(seq).unwrap().unwrap();
            tree.insert(raw_entry_key(seq), bytes).unwrap();
        }
        store.flush().unwrap();
    }
    std::fs::remove_file(&file).unwrap();
    let engine = SledLog::open(dir.path()).unwrap();
    assert!(!file.exists(), "an inline log gets no entry file");
    let store = engine.log_store();
    append_marked(&store, 3, "person-3");
    let tree = engine.raw_tree();
    let stored = tree.get(raw_entry_key(3)).unwrap().unwrap();
    assert!(stored.starts_with(b"{\"seq\":3"), "appended inline too");
    assert_eq!(store.entries().count(), 4);
}

/// A session revocation's stored bytes, sealed as the writer seals them.
fn revocation(seq: u64) -> Vec<u8> {
    let entry = trustpath::log::LogEntry::from_value(serde_json::json!({
        "seq": seq, "time": "2026-11-29T12:00:00Z", "policy_revision": "r",
        "kind": "session_revoked", "revocation_id": "rv-1", "session_id": "s-gone",
        "grant_jtis": [], "reason": "test", "revoked_by": "tester"
    }))
    .unwrap();
    trustpath::log::sealed::seal(&entry).unwrap()
}

/// A used `jti` is written into the entry file by the next commit, with
/// the entries that commit writes: the engine's own flush may come later
/// (or never, in a crash), and opening the log claims it again.
#[test]
fn a_used_jti_is_durable_with_the_commit_that_follows_it() {
    type Open = fn(&std::path::Path) -> (LogStore, Box<dyn JtiStore>);
    let sled: Open = |d| {
        let engine = trustpath::store::sled::SledLog::open(d).unwrap();
        (engine.log_store(), Box::new(engine.jti_store().unwrap()))
    };
    let fjall: Open = |d| {
        let engine = trustpath::store::fjall::FjallLog::open(d).unwrap();
        (engine.log_store(), Box::new(engine.jti_store().unwrap()))
    };
    for (open, engine_dir) in [(sled, "log.sled"), (fjall, "log.fjall")] {
        let dir = tempfile::tempdir().unwrap();
        let bytes = revocation(0);
        {
            let (store, jtis) = open(dir.path());
            assert!(jtis.first_use(b"used", i64::MAX).unwrap());
            let derived = trustpath::log::index::derive_stored(&bytes).unwrap();
            let leaf = trustpath::log::sealed::leaf_hash(&bytes);
            store
                .append(&[StoredEntry {
                    seq: 0,
                    bytes: &bytes,
                    decision_id: None,
                    hashes: &[(0, 0, leaf)],
                    postings: &derived.postings,
                    time_micros: derived.time_micros,
                }])
                .unwrap();
            assert!(store.durable_on_commit());
        }
        // The engine's files gone, as if none of its writes had reached
        // the disk: the entry file alone brings the entry and the claim back.
        std::fs::remove_dir_all(dir.path().join(engine_dir)).unwrap();
        let (store, jtis) = open(dir.path());
        assert!(!jtis.first_use(b"used", i64::MAX).unwrap(), "{engine_dir}");
        assert!(jtis.first_use(b"new", i64::MAX).unwrap());
        assert_eq!(store.entry(0).unwrap().unwrap(), bytes);
        assert_eq!(store.next_seq().unwrap(), 1);
        assert_eq!(
            store
                .postings_descending(Field::RevokedSession, "s-gone", None)
                .count(),
            1,
            "its postings indexed again"
        );
    }
}

/// Appends sealed entry bytes with the hashes and postings the writer
/// would give them.
fn append_sealed(store: &LogStore, seq: u64, bytes: &[u8]) {
    let derived = trustpath::log::index::derive_stored(bytes).unwrap();
    let leaf = trustpath::log::sealed::leaf_hash(bytes);
    let mut hashes = trustpath::log::merkle::BatchHashes::default();
    let hashes = hashes.append(store, seq, leaf).unwrap();
    store
        .append(&[StoredEntry {
            seq,
            bytes,
            decision_id: None,
            hashes: &hashes,
            postings: &derived.postings,
            time_micros: derived.time_micros,
        }])
        .unwrap();
}

/// A commit cut short (its entry frames on disk, not the claims frame that
/// ends every commit) is not indexed again: a batch is in the log whole or
/// not at all.
#[test]
fn only_whole_commits_are_indexed_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.entries");
    {
        let engine = trustpath::store::sled::SledLog::open(dir.path()).unwrap();
        append_sealed(&engine.log_store(), 0, &revocation(0));
    }
    let whole = std::fs::metadata(&file).unwrap().len();
    // Entry 1's frame as a commit writes it, with nothing after it.
    let payload = revocation(1);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&1u64.to_be_bytes());
    crc.update(&payload);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&1u64.to_be_bytes());
    frame.extend_from_slice(&crc.finalize().to_be_bytes());
    frame.extend_from_slice(&payload);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(&frame).unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("log.sled")).unwrap();
    let store = trustpath::store::sled::SledLog::open(dir.path())
        .unwrap()
        .log_store();
    assert_eq!(store.next_seq().unwrap(), 1, "entry 0 indexed again, not 1");
    assert_eq!(store.entry(0).unwrap().unwrap(), revocation(0));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), whole, "cut");
}
