//! The fleet's store: one decision log in PostgreSQL, shared by every
//! replica. The log's head (its size) is one row; an append takes that
//! row's lock, so seqs are assigned by the database, in batches, without a
//! gap, a duplicate or a fork, whichever replica writes. A commit is
//! durable (PostgreSQL's synchronous commit), so `flush` has nothing left
//! to do. Used `jti`s are rows under a unique key: a claim on one replica
//! is seen by all of them.
//!
//! The storage traits are synchronous; the database client is too, and a
//! call made on an async worker thread moves off it first ([`blocking`]).
//! No statement is built from request data: every value is a parameter.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use r2d2_postgres::postgres::types::Type;
use r2d2_postgres::postgres::{self, Client, NoTls};
use r2d2_postgres::{r2d2, PostgresConnectionManager};

use super::keys::{field_of_tag, field_tag};
use crate::identity::replay::JtiStore;
use crate::log::hot_index::Keep;
use crate::log::index::{Field, IndexRecord};
use crate::log::merkle::Hash;
use crate::log::storage::{
    check_follows, AppendBatch, BoxFuture, LogAppend, LogIndex, LogRead, LogRetain, LogStore,
    PostingEnd, Retained, Scan, StoredEntry,
};
use crate::log::LogError;

mod pipelined;

/// The migrations, in order: version n is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_log.sql")];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Rows a scan fetches per query.
const PAGE: i64 = 1000;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// How long calls fail at once after the database could not be reached,
/// before one tries again: an outage costs one connect timeout, not one
/// per call.
const OUTAGE_RETRY: Duration = Duration::from_secs(1);

/// Until when calls fail at once after a connect failed, and why.
#[derive(Default)]
struct Outage(std::sync::Mutex<Option<(std::time::Instant, String)>>);

impl Outage {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(std::time::Instant, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An error while a failed connect is recent.
    fn check(&self) -> Result<(), LogError> {
        match self.lock().as_ref() {
            Some((until, why)) if std::time::Instant::now() < *until => Err(LogError::Storage(
                format!("no PostgreSQL connection: {why}"),
            )),
            _ => Ok(()),
        }
    }

    /// Notes how a connect went: a failure starts an outage.
    fn connected<T, E: std::fmt::Display>(&self, result: Result<T, E>) -> Result<T, LogError> {
        let mut outage = self.lock();
        match result {
            Ok(connection) => {
                *outage = None;
                Ok(connection)
            }
            Err(e) => {
                *outage = Some((std::time::Instant::now() + OUTAGE_RETRY, e.to_string()));
                Err(LogError::Storage(format!("no PostgreSQL connection: {e}")))
            }
        }
    }
}

/// The pool, and what the last attempt to reach the database said.
struct Shared {
    pool: Option<Pool>,
    /// The decision path's queries, which do not block a worker thread.
    pipelined: pipelined::Pipelined,
    outage: Outage,
    /// The log's size after this handle's last commit ([`UNKNOWN`] when
    /// there is none, or it may be stale): where its next batch guesses
    /// the head is.
    head: AtomicU64,
    /// Batches left that take the head's lock whatever the guess: after
    /// another replica moved the head under a guess, guessing again at
    /// once would mostly fail again while the replicas are all busy.
    locked_batches: AtomicU32,
}

/// Batches that take the head's lock after a guess failed.
const LOCKED_AFTER_A_MISS: u32 = 32;

/// No guess of the head: the next batch takes the head's lock.
const UNKNOWN: u64 = u64::MAX;

impl Shared {
    fn new(pool: Pool, pipelined: pipelined::Pipelined) -> Self {
        Self {
            pool: Some(pool),
            pipelined,
            outage: Outage::default(),
            head: AtomicU64::new(UNKNOWN),
            locked_batches: AtomicU32::new(0),
        }
    }

    /// A pooled connection; an error at once while an outage is fresh.
    fn get(&self) -> Result<Connection, LogError> {
        self.outage.check()?;
        let pool = self
            .pool
            .as_ref()
            .expect("the pool lives as long as its holder");
        self.outage.connected(pool.get())
    }
}

// A closing client blocks on a runtime of its own: the pool is closed off
// the async workers when the last handle goes.
impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

type Connection = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// How a replica connects.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Connections kept at most.
    pub size: u32,
    /// How long a query waits for a connection, or to connect.
    pub timeout: Duration,
}

/// The log of a fleet, in one PostgreSQL database.
#[derive(Clone)]
pub struct PgLog {
    pool: std::sync::Arc<Shared>,
    /// Recorded with each entry this replica writes.
    node: Option<String>,
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("PostgreSQL: {e}"))
}

/// Every connection's settings, unless the URL sets its own.
const SESSION_OPTIONS: &str = "-c statement_timeout=10000 -c lock_timeout=5000";

/// Parses a store URL. The message never repeats the URL: it may hold a
/// password.
fn parse_url(url: &str, timeout: Duration) -> Result<postgres::Config, LogError> {
    let mut config: postgres::Config = url.parse().map_err(|e| LogError::Open {
        path: "the store URL".into(),
        message: format!("not a PostgreSQL URL: {e}"),
    })?;
    config.connect_timeout(timeout);
    // A statement that waits on a lock or a dead server fails, and the
    // writer reports it and retries, rather than hanging every decision.
    if config.get_options().is_none() {
        config.options(SESSION_OPTIONS);
    }
    Ok(config)
}

/// Where the database is, without credentials, for messages.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let db = config.get_dbname().unwrap_or("(default)");
    format!("PostgreSQL database {db} on {host}")
}

/// Runs `f`, which blocks on the database, off the async workers when
/// called from one (the client runs a runtime of its own inside).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    thread_local!(static MOVED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if MOVED.get() {
        return f();
    }
    let moved = || {
        // Cleared however `f` ends, a panic included.
        struct Moved;
        impl Drop for Moved {
            fn drop(&mut self) {
                MOVED.set(false);
            }
        }
        MOVED.set(true);
        let _moved = Moved;
        f()
    };
    match Handle::try_current() {
        Err(_) => moved(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(moved)
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(moved)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
    }
}

fn to_i64(value: u64, what: &str) -> Result<i64, LogError> {
    i64::try_from(value).map_err(|_| LogError::Storage(format!("{what} {value} is out of range")))
}

fn to_u64(value: i64, what: &str) -> Result<u64, LogError> {
    u64::try_from(value).map_err(|_| LogError::Malformed(format!("{what} {value} is negative")))
}

/// Applies the migrations the database lacks; returns (version before,
/// version after). Safe to run while replicas serve, and by two at once
/// (the second waits, then finds nothing to do).
pub fn migrate(url: &str) -> Result<(i32, i32), LogError> {
    let config = parse_url(url, Duration::from_secs(10))?;
    blocking(|| {
        let mut client = config.connect(NoTls).map_err(|e| LogError::Open {
            path: describe(&config).into(),
            message: e.to_string(),
        })?;
        let mut tx = client.transaction().map_err(storage)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS trustpath_schema (version integer NOT NULL);
             LOCK TABLE trustpath_schema IN EXCLUSIVE MODE;",
        )
        .map_err(storage)?;
        let before: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM trustpath_schema",
                &[],
            )
            .map_err(storage)?
            .get(0);
        if before > SCHEMA_VERSION {
            return Err(newer_schema(before));
        }
        for (version, sql) in (1..).zip(MIGRATIONS).skip(before as usize) {
            tx.batch_execute(sql)
                .map_err(|e| storage(format!("migration {version}: {e}")))?;
            tx.execute(
                "INSERT INTO trustpath_schema (version) VALUES ($1)",
                &[&version],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok((before, SCHEMA_VERSION))
    })
}

fn newer_schema(version: i32) -> LogError {
    LogError::Storage(format!(
        "the database's trustpath schema is version {version}, newer than this build \
         knows ({SCHEMA_VERSION}); run a trustpath release that knows schema version {version}"
    ))
}

impl PgLog {
    /// Connects to a migrated database. `node` names this replica in the
    /// entries it writes (readers pass none).
    pub fn open(url: &str, node: Option<&str>, options: PoolOptions) -> Result<Self, LogError> {
        let config = parse_url(url, options.timeout)?;
        let place = describe(&config);
        let pool = r2d2::Pool::builder()
            .max_size(options.size.max(2))
            .connection_timeout(options.timeout)
            // A check on every checkout is a round trip on every call; a
            // broken connection fails its call instead (the decision fails
            // closed) and the pool drops it.
            .test_on_check_out(false)
            // Failures reach the log writer, which reports them at a
            // bounded rate; the pool's own line per attempt would not be.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(PostgresConnectionManager::new(config, NoTls));
        let log = Self {
            pool: std::sync::Arc::new(Shared::new(
                pool,
                pipelined::Pipelined::new(url, options.timeout)?,
            )),
            node: node.map(str::to_string),
        };
        let version = log
            .with(|c| {
                let exists: bool = c
                    .query_one("SELECT to_regclass('trustpath_schema') IS NOT NULL", &[])?
                    .get(0);
                if !exists {
                    return Ok(0);
                }
                Ok(c.query_one(
                    "SELECT coalesce(max(version), 0) FROM trustpath_schema",
                    &[],
                )?
                .get(0))
            })
            .map_err(|e| LogError::Open {
                path: place.clone().into(),
                message: e.to_string(),
            })?;
        match version {
            v if v > SCHEMA_VERSION => Err(newer_schema(v)),
            v if v < SCHEMA_VERSION => Err(LogError::Open {
                path: place.into(),
                message: format!(
                    "the trustpath schema is at version {v}, this build needs {SCHEMA_VERSION}; \
                     run `trustpath store migrate --store URL` first"
                ),
            }),
            _ => Ok(log),
        }
    }

    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.clone())
    }

    pub fn jti_store(&self) -> PgJtis {
        PgJtis(self.pool.clone())
    }

    /// Records this replica's signing keys for the fleet, or refuses them
    /// when the fleet already uses others: `(purpose, key id)` pairs.
    pub fn claim_keys(&self, keys: &[(&str, &str)]) -> Result<(), LogError> {
        let node = self.node.clone().unwrap_or_default();
        let recorded: Vec<(String, String, String)> = self.with(|c| {
            let mut out = Vec::new();
            for (purpose, key_id) in keys {
                c.execute(
                    "INSERT INTO fleet_keys (purpose, key_id, node) VALUES ($1, $2, $3)
                     ON CONFLICT (purpose) DO NOTHING",
                    &[purpose, key_id, &node],
                )?;
                let row = c.query_one(
                    "SELECT key_id, node FROM fleet_keys WHERE purpose = $1",
                    &[purpose],
                )?;
                out.push((purpose.to_string(), row.get(0), row.get(1)));
            }
            Ok(out)
        })?;
        for ((purpose, mine), (_, theirs, first)) in keys.iter().zip(&recorded) {
            if mine != theirs {
                return Err(LogError::Open {
                    path: "the fleet's database".into(),
                    message: format!(
                        "this replica's {purpose} signing key ({mine}) is not the fleet's \
                         ({theirs}, first recorded by node {first}); give every replica the \
                         same key files ([grants] signing_key_file, [log] signing_key_file)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs `f` on a pooled connection, off the async workers.
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, LogError> {
        blocking(|| {
            let mut conn = self.pool.get()?;
            f(&mut conn).map_err(storage)
        })
    }

    /// Whether `query` finds a row.
    fn exists(
        &self,
        query: &str,
        params: &[(&(dyn postgres::types::ToSql + Sync), Type)],
    ) -> Result<bool, LogError> {
        self.with(|c| Ok(c.query_typed_opt(query, params)?.is_some()))
    }

    /// A scan, a page of rows per query: `fetch(after)` returns the rows
    /// after the key `after` (from the start when `None`) with their keys.
    fn paged<'a, K, T>(
        &'a self,
        mut fetch: impl FnMut(&mut Client, Option<&K>) -> Result<Vec<(K, T)>, postgres::Error>
            + Send
            + 'a,
    ) -> Scan<'a, T>
    where
        K: Clone + Send + Sync + 'a,
        T: Send + 'a,
    {
        let mut after: Option<K> = None;
        let mut buffer: VecDeque<T> = VecDeque::new();
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            if buffer.is_empty() && !done {
                let page = self.with(|c| fetch(c, after.as_ref()));
                match page {
                    Ok(rows) => {
                        done = (rows.len() as i64) < PAGE;
                        if let Some((k, _)) = rows.last() {
                            after = Some(k.clone());
                        }
                        buffer.extend(rows.into_iter().map(|(_, t)| t));
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                }
            }
            buffer.pop_front().map(Ok)
        }))
    }

    /// Rows of `query`, which takes the last key seen and a page size and
    /// orders by its first column (a bigint): that key, and `read` of the row.
    fn paged_by_key<'a, T: Send + 'a>(
        &'a self,
        query: &'static str,
        read: fn(&postgres::Row) -> T,
    ) -> Scan<'a, (u64, T)> {
        let rows = self.paged(move |c, after: Option<&i64>| {
            let rows = c.query(query, &[&after.copied().unwrap_or(-1), &PAGE])?;
            Ok(rows
                .iter()
                .map(|r| {
                    let key: i64 = r.get(0);
                    (key, (key, read(r)))
                })
                .collect())
        });
        Box::new(rows.map(|row| row.and_then(|(key, t)| Ok((to_u64(key, "key")?, t)))))
    }

    /// Seqs from `query` (which takes the bound and a page size and
    /// orders by seq descending), newest first, strictly below `below`.
    fn seqs_below<'a>(
        &'a self,
        query: &'static str,
        key: Option<(i16, Vec<u8>)>,
        below: Option<u64>,
    ) -> Scan<'a, u64> {
        let first = match below.map(|b| to_i64(b, "seq")).transpose() {
            Ok(b) => b.unwrap_or(i64::MAX),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let seqs = self.paged(move |c, after: Option<&i64>| {
            let bound = after.copied().unwrap_or(first);
            let rows = match &key {
                Some((field, value)) => c.query(query, &[field, value, &bound, &PAGE])?,
                None => c.query(query, &[&bound, &PAGE])?,
            };
            Ok(rows
                .iter()
                .map(|r| {
                    let seq: i64 = r.get(0);
                    (seq, seq)
                })
                .collect())
        });
        Box::new(seqs.map(|s| s.and_then(|s| to_u64(s, "seq"))))
    }
}

fn tag(field: Field) -> i16 {
    i16::from(field_tag(field))
}

/// A `log_postings` row's field, value and seq, read back; a row no
/// trustpath wrote is reported with where it is.
fn posting_row(field: i16, value: Vec<u8>, seq: i64) -> Result<(Field, String, u64), LogError> {
    let at = || format!("log_postings row (field {field}, seq {seq})");
    let known = u8::try_from(field)
        .ok()
        .and_then(field_of_tag)
        .ok_or_else(|| LogError::Malformed(format!("{}: not a known index field", at())))?;
    let value = String::from_utf8(value).map_err(|e| {
        LogError::Malformed(format!(
            "{}: value is not UTF-8 at offset {}",
            at(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((known, value, to_u64(seq, "seq")?))
}

impl LogAppend for PgLog {
    fn durable_on_commit(&self) -> bool {
        true
    }

    fn shared(&self) -> bool {
        true
    }

    fn begin(&self) -> Result<Box<dyn AppendBatch + '_>, LogError> {
        blocking(|| -> Result<PgBatch, LogError> {
            let conn = self.pool.get()?;
            let locked = self
                .pool
                .locked_batches
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            let guess = match locked {
                true => UNKNOWN,
                false => self.pool.head.load(Ordering::Acquire),
            };
            let mut batch = PgBatch {
                conn,
                shared: &self.pool,
                node: self.node.clone(),
                held: false,
                committed: false,
                start: guess,
                next: guess,
                entries: Vec::new(),
                checkpoints: Vec::new(),
            };
            if guess != UNKNOWN {
                // Where this replica left the head: the commit checks it
                // is still there, so nothing is read or locked now.
                return Ok(batch);
            }
            // The head's lock is held until commit or rollback: the one
            // place where a fleet's appends are ordered. One round trip.
            batch.held = true;
            let size = batch
                .conn
                .simple_query("BEGIN; SELECT size FROM log_head FOR UPDATE")
                .map_err(storage)?
                .into_iter()
                .find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => {
                        row.get(0).and_then(|v| v.parse::<i64>().ok())
                    }
                    _ => None,
                })
                .ok_or_else(|| LogError::Malformed("the log's head row is missing".into()))?;
            batch.start = to_u64(size, "log size")?;
            batch.next = batch.start;
            Ok(batch)
        })
        .map(|batch| Box::new(batch) as Box<dyn AppendBatch>)
    }

    fn flush(&self) -> Result<(), LogError> {
        // Every commit is already durable.
        Ok(())
    }

    fn recover(&self) -> Result<(), LogError> {
        self.pool.head.store(UNKNOWN, Ordering::Release);
        // The pool reconnects by itself; recovered once the database answers.
        self.with(|c| c.simple_query("SELECT 1").map(|_| ()))
    }
}

/// Rows of one entry, owned until commit.
struct PendingEntry {
    seq: i64,
    bytes: Vec<u8>,
    decision_id: Option<String>,
    time_micros: Option<i64>,
    hashes: Vec<(i16, i64, Vec<u8>)>,
    postings: Vec<(i16, Vec<u8>, Vec<u8>)>,
}

/// A batch at the log's head: either a transaction holding the head's
/// lock, or (when this replica knows where it left the head) rows that one
/// statement stores only if the head is still there.
struct PgBatch<'a> {
    conn: Connection,
    shared: &'a Shared,
    node: Option<String>,
    /// In a transaction holding the head (rolled back on drop).
    held: bool,
    /// Stored: the head is where this batch left it.
    committed: bool,
    /// The head the batch starts at.
    start: u64,
    next: u64,
    entries: Vec<PendingEntry>,
    checkpoints: Vec<(i64, String)>,
}

impl AppendBatch for PgBatch<'_> {
    fn next_seq(&self) -> u64 {
        self.next
    }

    fn append(&mut self, entries: &[StoredEntry<'_>]) -> Result<(), LogError> {
        check_follows(self.next, entries)?;
        for e in entries {
            let mut hashes = Vec::with_capacity(e.hashes.len());
            for (level, index, hash) in e.hashes {
                hashes.push((
                    i16::from(*level),
                    to_i64(*index, "hash index")?,
                    hash.to_vec(),
                ));
            }
            self.entries.push(PendingEntry {
                seq: to_i64(e.seq, "seq")?,
                bytes: e.bytes.to_vec(),
                decision_id: e.decision_id.map(str::to_string),
                time_micros: e.time_micros,
                hashes,
                postings: e
                    .postings
                    .iter()
                    .map(|p| (tag(p.field), p.value.as_bytes().to_vec(), p.data.clone()))
                    .collect(),
            });
        }
        self.next += entries.len() as u64;
        Ok(())
    }

    fn put_checkpoint(&mut self, size: u64, note: &str) -> Result<(), LogError> {
        self.checkpoints
            .push((to_i64(size, "checkpoint size")?, note.to_string()));
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), LogError> {
        let (start, next) = (
            to_i64(self.start, "log size")?,
            to_i64(self.next, "log size")?,
        );
        let this = &mut *self;
        let stored = blocking(|| this.write(start, next))?;
        self.held = false;
        if !stored {
            self.shared
                .locked_batches
                .store(LOCKED_AFTER_A_MISS, Ordering::Release);
            return Err(LogError::HeadMoved {
                expected: self.start,
            });
        }
        self.committed = true;
        self.shared.head.store(self.next, Ordering::Release);
        Ok(())
    }
}

impl PgBatch<'_> {
    /// Stores the batch's rows and checkpoints and moves the head from
    /// `start` to `next`, in one statement (one round trip) that stores
    /// nothing unless the head is at `start`; then commits. Whether it
    /// stored the batch.
    fn write(&mut self, start: i64, next: i64) -> Result<bool, LogError> {
        let c = &mut self.conn;
        let seqs: Vec<i64> = self.entries.iter().map(|e| e.seq).collect();
        let bytes: Vec<&[u8]> = self.entries.iter().map(|e| e.bytes.as_slice()).collect();
        let nodes: Vec<Option<&str>> = self.entries.iter().map(|_| self.node.as_deref()).collect();
        let times: Vec<Option<i64>> = self.entries.iter().map(|e| e.time_micros).collect();
        let ids: Vec<Option<&str>> = self
            .entries
            .iter()
            .map(|e| e.decision_id.as_deref())
            .collect();
        let (mut levels, mut indexes, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut fields, mut values, mut posted, mut data) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in &self.entries {
            for (level, index, hash) in &e.hashes {
                levels.push(*level);
                indexes.push(*index);
                hashes.push(hash.as_slice());
            }
            for (field, value, d) in &e.postings {
                fields.push(*field);
                values.push(value.as_slice());
                posted.push(e.seq);
                data.push(d.as_slice());
            }
        }
        let sizes: Vec<i64> = self.checkpoints.iter().map(|(size, _)| *size).collect();
        let notes: Vec<&str> = self.checkpoints.iter().map(|(_, n)| n.as_str()).collect();
        // One statement, one round trip, typed (no prepare). `head`
        // moves the head only from `start`; every insert is made only
        // if it did. The row lock `head` takes orders two replicas'
        // statements, and the second one finds the head moved. Two
        // replicas' checkpoints of one tree are the same note (Ed25519
        // is deterministic), so a second copy is skipped.
        let moved = c.query_typed_one(
                "WITH head AS (
                    UPDATE log_head SET size = $13 WHERE size = $14 RETURNING size
                 ), entries AS (
                    INSERT INTO log_entries (seq, bytes, node, time_micros, decision_id)
                    SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::bigint[], $5::text[])
                    WHERE EXISTS (SELECT FROM head)
                 ), hashes AS (
                    INSERT INTO log_hashes (level, idx, hash)
                    SELECT * FROM unnest($6::smallint[], $7::bigint[], $8::bytea[])
                    WHERE EXISTS (SELECT FROM head)
                 ), postings AS (
                    INSERT INTO log_postings (field, value, seq, data)
                    SELECT * FROM unnest($9::smallint[], $10::bytea[], $11::bigint[], $12::bytea[])
                    WHERE EXISTS (SELECT FROM head)
                 ), checkpoints AS (
                    INSERT INTO log_checkpoints (size, note)
                    SELECT * FROM unnest($15::bigint[], $16::text[])
                    WHERE EXISTS (SELECT FROM head)
                    ON CONFLICT (size) DO NOTHING
                 )
                 SELECT count(*) FROM head",
                &[
                    (&seqs, Type::INT8_ARRAY),
                    (&bytes, Type::BYTEA_ARRAY),
                    (&nodes, Type::TEXT_ARRAY),
                    (&times, Type::INT8_ARRAY),
                    (&ids, Type::TEXT_ARRAY),
                    (&levels, Type::INT2_ARRAY),
                    (&indexes, Type::INT8_ARRAY),
                    (&hashes, Type::BYTEA_ARRAY),
                    (&fields, Type::INT2_ARRAY),
                    (&values, Type::BYTEA_ARRAY),
                    (&posted, Type::INT8_ARRAY),
                    (&data, Type::BYTEA_ARRAY),
                    (&next, Type::INT8),
                    (&start, Type::INT8),
                    (&sizes, Type::INT8_ARRAY),
                    (&notes, Type::TEXT_ARRAY),
                ],
            )
            .map_err(storage)?;
        let stored = moved.get::<_, i64>(0) == 1;
        if self.held {
            c.batch_execute("COMMIT").map_err(storage)?;
        }
        Ok(stored)
    }
}

impl Drop for PgBatch<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // The writer found the head stale, or something failed: the
            // next batch takes the head's lock and reads it.
            self.shared.head.store(UNKNOWN, Ordering::Release);
        }
        if self.held {
            // Not committed: let go of the head. A connection that cannot
            // roll back is broken, and the pool drops it.
            let conn = &mut self.conn;
            let _ = blocking(|| conn.batch_execute("ROLLBACK"));
        }
    }
}

impl LogRead for PgLog {
    fn next_seq(&self) -> Result<u64, LogError> {
        let size =
            self.with(|c| Ok(c.query_typed_one("SELECT size FROM log_head", &[])?.get(0)))?;
        to_u64(size, "log size")
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, LogError> {
        let seq = to_i64(seq, "seq")?;
        self.with(|c| {
            Ok(c.query_typed_opt(
                "SELECT bytes FROM log_entries WHERE seq = $1",
                &[(&seq, Type::INT8)],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn seq_of_decision(&self, decision_id: &str) -> Result<Option<u64>, LogError> {
        let seq: Option<i64> = self.with(|c| {
            Ok(c.query_typed_opt(
                "SELECT seq FROM log_entries WHERE decision_id = $1",
                &[(&decision_id, Type::TEXT)],
            )?
            .map(|r| r.get(0)))
        })?;
        seq.map(|s| to_u64(s, "seq")).transpose()
    }

    fn stored_hash(&self, level: u8, index: u64) -> Result<Option<Hash>, LogError> {
        let (level, idx) = (i16::from(level), to_i64(index, "hash index")?);
        let hash: Option<Vec<u8>> = self.with(|c| {
            Ok(c.query_typed_opt(
                "SELECT hash FROM log_hashes WHERE level = $1 AND idx = $2",
                &[(&level, Type::INT2), (&idx, Type::INT8)],
            )?
            .map(|r| r.get(0)))
        })?;
        hash.map(|h| {
            h.as_slice().try_into().map_err(|_| {
                LogError::Malformed(format!(
                    "hash ({level}, {idx}) is {} bytes, not 32",
                    h.len()
                ))
            })
        })
        .transpose()
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, LogError> {
        self.with(|c| {
            Ok(c.query_typed_opt(
                "SELECT note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn checkpoints(&self) -> Scan<'_, (u64, String)> {
        self.paged_by_key(
            "SELECT size, note FROM log_checkpoints WHERE size > $1 ORDER BY size LIMIT $2",
            |r| r.get(1),
        )
    }

    fn entries(&self) -> Scan<'_, (u64, Vec<u8>)> {
        self.paged_by_key(
            "SELECT seq, bytes FROM log_entries WHERE seq > $1 ORDER BY seq LIMIT $2",
            |r| r.get(1),
        )
    }

    fn seqs_descending(&self, below: Option<u64>) -> Scan<'_, u64> {
        self.seqs_below(
            "SELECT seq FROM log_entries WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
            None,
            below,
        )
    }

    fn time_of(&self, seq: u64) -> Result<Option<i64>, LogError> {
        let seq = to_i64(seq, "seq")?;
        self.with(|c| {
            Ok(c.query_typed_opt(
                "SELECT time_micros FROM log_entries WHERE seq = $1",
                &[(&seq, Type::INT8)],
            )?
            .and_then(|r| r.get(0)))
        })
    }
}

/// Each look-up's oldest or newest posting, in one round trip: a row per
/// key with its ordinal; each end is one index seek (two laterals, so
/// neither sorts a value's whole posting list).
const POSTING_ENDS: &str = "SELECT k.i, coalesce(n.seq, o.seq), n.data
     FROM unnest($1::smallint[], $2::bytea[], $3::bool[])
          WITH ORDINALITY AS k (field, value, newest, i)
     LEFT JOIN LATERAL (
         SELECT seq, data FROM log_postings
         WHERE k.newest AND field = k.field AND value = k.value
         ORDER BY seq DESC LIMIT 1) n ON true
     LEFT JOIN LATERAL (
         SELECT seq FROM log_postings
         WHERE NOT k.newest AND field = k.field AND value = k.value
         ORDER BY seq LIMIT 1) o ON true";

/// [`POSTING_ENDS`]' parameters.
fn ends_params<'k>(keys: &[(Field, &'k str, Keep)]) -> (Vec<i16>, Vec<&'k [u8]>, Vec<bool>) {
    (
        keys.iter().map(|(f, _, _)| tag(*f)).collect(),
        keys.iter().map(|(_, v, _)| v.as_bytes()).collect(),
        keys.iter().map(|(_, _, k)| *k == Keep::Newest).collect(),
    )
}

/// [`POSTING_ENDS`]' rows, as the ends of `asked` look-ups in order.
fn ends_of(asked: usize, rows: &[postgres::Row]) -> Result<Vec<PostingEnd>, LogError> {
    let mut ends = vec![None; asked];
    for row in rows {
        let (i, seq, data): (i64, Option<i64>, Option<Vec<u8>>) =
            (row.get(0), row.get(1), row.get(2));
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| ends.get_mut(i))
            .ok_or_else(|| LogError::Storage(format!("look-up {i} was not asked")))?;
        if let Some(seq) = seq {
            *slot = Some((to_u64(seq, "seq")?, data.unwrap_or_default()));
        }
    }
    Ok(ends)
}

impl LogIndex for PgLog {
    fn postings_descending(&self, field: Field, value: &str, below: Option<u64>) -> Scan<'_, u64> {
        self.seqs_below(
            "SELECT seq FROM log_postings WHERE field = $1 AND value = $2 AND seq < $3
             ORDER BY seq DESC LIMIT $4",
            Some((tag(field), value.as_bytes().to_vec())),
            below,
        )
    }

    fn oldest_posting(&self, field: Field, value: &str) -> Result<Option<u64>, LogError> {
        let seq: Option<i64> = self.with(|c| {
            Ok(c.query_typed_opt(
                "SELECT seq FROM log_postings WHERE field = $1 AND value = $2
                 ORDER BY seq LIMIT 1",
                &[(&tag(field), Type::INT2), (&value.as_bytes(), Type::BYTEA)],
            )?
            .map(|r| r.get(0)))
        })?;
        seq.map(|s| to_u64(s, "seq")).transpose()
    }

    fn oldest_postings(
        &self,
        keys: &[(Field, &str)],
    ) -> Result<std::collections::HashMap<(Field, String), u64>, LogError> {
        let fields: Vec<i16> = keys.iter().map(|(f, _)| tag(*f)).collect();
        let values: Vec<&[u8]> = keys.iter().map(|(_, v)| v.as_bytes()).collect();
        let rows: Vec<(i16, Vec<u8>, i64)> = self.with(|c| {
            Ok(c.query_typed(
                "SELECT p.field, p.value, min(p.seq) FROM log_postings p
                 JOIN unnest($1::smallint[], $2::bytea[]) AS k (field, value)
                   ON p.field = k.field AND p.value = k.value
                 GROUP BY p.field, p.value",
                &[(&fields, Type::INT2_ARRAY), (&values, Type::BYTEA_ARRAY)],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
        })?;
        let mut found = std::collections::HashMap::new();
        for (field, value, seq) in rows {
            let (field, value, seq) = posting_row(field, value, seq)?;
            found.insert((field, value), seq);
        }
        Ok(found)
    }

    fn newest_posting(
        &self,
        field: Field,
        value: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        let row: Option<(i64, Vec<u8>)> = self.with(|c| {
            Ok(c.query_typed_opt(
                "SELECT seq, data FROM log_postings WHERE field = $1 AND value = $2
                 ORDER BY seq DESC LIMIT 1",
                &[(&tag(field), Type::INT2), (&value.as_bytes(), Type::BYTEA)],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })?;
        row.map(|(seq, data)| Ok((to_u64(seq, "seq")?, data)))
            .transpose()
    }

    fn posting_ends(&self, keys: &[(Field, &str, Keep)]) -> Result<Vec<PostingEnd>, LogError> {
        let (fields, values, newest) = ends_params(keys);
        let rows = self.with(|c| {
            c.query_typed(
                POSTING_ENDS,
                &[
                    (&fields, Type::INT2_ARRAY),
                    (&values, Type::BYTEA_ARRAY),
                    (&newest, Type::BOOL_ARRAY),
                ],
            )
        })?;
        ends_of(keys.len(), &rows)
    }

    fn posting_ends_async<'a>(
        &'a self,
        keys: &'a [(Field, &'a str, Keep)],
    ) -> BoxFuture<'a, Result<Vec<PostingEnd>, LogError>> {
        Box::pin(async move {
            let (fields, values, newest) = ends_params(keys);
            let rows = self
                .pool
                .pipelined
                .query(
                    POSTING_ENDS,
                    &[
                        (&fields, Type::INT2_ARRAY),
                        (&values, Type::BYTEA_ARRAY),
                        (&newest, Type::BOOL_ARRAY),
                    ],
                )
                .await?;
            ends_of(keys.len(), &rows)
        })
    }

    fn has_posting(&self, field: Field, value: &str, seq: u64) -> Result<bool, LogError> {
        self.exists(
            "SELECT 1 FROM log_postings WHERE field = $1 AND value = $2 AND seq = $3",
            &[
                (&tag(field), Type::INT2),
                (&value.as_bytes(), Type::BYTEA),
                (&to_i64(seq, "seq")?, Type::INT8),
            ],
        )
    }

    fn index_records(&self) -> Scan<'_, IndexRecord> {
        type PostingKey = (i16, Vec<u8>, i64);
        let postings = self.paged(|c, after: Option<&PostingKey>| {
            let (field, value, seq) = after.cloned().unwrap_or((i16::MIN, Vec::new(), -1));
            let rows = c.query(
                "SELECT field, value, seq, data FROM log_postings
                 WHERE (field, value, seq) > ($1, $2, $3)
                 ORDER BY field, value, seq LIMIT $4",
                &[&field, &value, &seq, &PAGE],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let key: PostingKey = (r.get(0), r.get(1), r.get(2));
                    (key.clone(), (key, r.get::<_, Vec<u8>>(3)))
                })
                .collect())
        });
        let postings = postings.map(|row| {
            let ((field, value, seq), data) = row?;
            let (field, value, seq) = posting_row(field, value, seq)?;
            Ok(IndexRecord::Posting {
                field,
                value,
                seq,
                data,
            })
        });
        let by_entry = self.paged_by_key(
            "SELECT seq, decision_id, time_micros FROM log_entries WHERE seq > $1
             ORDER BY seq LIMIT $2",
            |r| (r.get::<_, Option<String>>(1), r.get::<_, Option<i64>>(2)),
        );
        let by_entry = by_entry.flat_map(|row| {
            let records: Vec<Result<IndexRecord, LogError>> = match row {
                Err(e) => vec![Err(e)],
                Ok((seq, (id, time))) => id
                    .map(|id| IndexRecord::Decision { id, seq })
                    .into_iter()
                    .chain(time.map(|micros| IndexRecord::Time { seq, micros }))
                    .map(Ok)
                    .collect(),
            };
            records
        });
        Box::new(postings.chain(by_entry))
    }

    fn has_record(&self, record: &IndexRecord) -> Result<bool, LogError> {
        match record {
            IndexRecord::Posting {
                field,
                value,
                seq,
                data,
            } => self.exists(
                "SELECT 1 FROM log_postings
                 WHERE field = $1 AND value = $2 AND seq = $3 AND data = $4",
                &[
                    (&tag(*field), Type::INT2),
                    (&value.as_bytes(), Type::BYTEA),
                    (&to_i64(*seq, "seq")?, Type::INT8),
                    (&data.as_slice(), Type::BYTEA),
                ],
            ),
            IndexRecord::Decision { id, seq } => self.exists(
                "SELECT 1 FROM log_entries WHERE seq = $1 AND decision_id = $2",
                &[(&to_i64(*seq, "seq")?, Type::INT8), (id, Type::TEXT)],
            ),
            IndexRecord::Time { seq, micros } => self.exists(
                "SELECT 1 FROM log_entries WHERE seq = $1 AND time_micros = $2",
                &[(&to_i64(*seq, "seq")?, Type::INT8), (micros, Type::INT8)],
            ),
        }
    }
}

impl LogRetain for PgLog {
    fn retain(&self, changes: &[Retained]) -> Result<(), LogError> {
        let mut rows = Vec::with_capacity(changes.len());
        for change in changes {
            rows.push((to_i64(change.seq, "seq")?, change));
        }
        self.with(|c| {
            let mut tx = c.transaction()?;
            for (seq, change) in &rows {
                tx.execute(
                    "UPDATE log_entries SET bytes = $2 WHERE seq = $1",
                    &[seq, &change.bytes],
                )?;
                for record in &change.dropped {
                    match record {
                        IndexRecord::Posting { field, value, .. } => tx.execute(
                            "DELETE FROM log_postings WHERE field = $1 AND value = $2 AND seq = $3",
                            &[&tag(*field), &value.as_bytes(), seq],
                        )?,
                        IndexRecord::Decision { .. } => tx.execute(
                            "UPDATE log_entries SET decision_id = NULL WHERE seq = $1",
                            &[seq],
                        )?,
                        IndexRecord::Time { .. } => tx.execute(
                            "UPDATE log_entries SET time_micros = NULL WHERE seq = $1",
                            &[seq],
                        )?,
                    };
                }
            }
            tx.commit()
        })
    }
}

/// Used client assertion `jti`s, shared by the fleet.
pub struct PgJtis(std::sync::Arc<Shared>);

/// Claims a `jti` in one statement: the primary key decides, so of two
/// replicas claiming one jti at once exactly one inserts it (and gets its
/// row back).
const CLAIM_JTI: &str =
    "INSERT INTO used_jtis (key, until) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING 1";

impl JtiStore for PgJtis {
    fn first_use_async<'a>(
        &'a self,
        key: &'a [u8],
        until: i64,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let params: [(&(dyn postgres::types::ToSql + Sync), Type); 2] =
                [(&key, Type::BYTEA), (&until, Type::INT8)];
            self.0
                .pipelined
                .query(CLAIM_JTI, &params)
                .await
                .map(|rows| rows.len() == 1)
                .map_err(|e| e.to_string())
        })
    }

    fn first_use(&self, key: &[u8], until: i64) -> Result<bool, String> {
        blocking(|| {
            let mut c = self.0.get().map_err(|e| e.to_string())?;
            c.query_typed(CLAIM_JTI, &[(&key, Type::BYTEA), (&until, Type::INT8)])
                .map(|rows| rows.len() == 1)
                .map_err(|e| format!("PostgreSQL: {e}"))
        })
    }

    fn prune(&self, now: i64) -> Result<usize, String> {
        blocking(|| {
            let mut c = self.0.get().map_err(|e| e.to_string())?;
            c.execute("DELETE FROM used_jtis WHERE until < $1", &[&now])
                .map(|n| n as usize)
                .map_err(|e| format!("PostgreSQL: {e}"))
        })
    }
}
