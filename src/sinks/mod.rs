//! Decision-log sinks: each `[[log.sinks]]` streams the durable log to
//! stdout, a file or an HTTP endpoint (a SIEM), entry by entry in seq
//! order, from a cursor of its own kept in the data directory.
//!
//! Delivery is at least once: a batch is delivered, then the cursor moves
//! past it. A crash between the two delivers the batch again; nothing is
//! ever skipped. Sinks read the store, never the decision path: a slow or
//! dead sink only grows its lag (a metric), it never holds a decision.
//! Only durable entries leave (what the writer has flushed, or a fleet's
//! committed rows), so a delivered entry is never taken back by a crash.

mod cursor;
pub mod ocsf;
mod target;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{SinkConfig, SinkFormat};
use crate::log::{LogError, LogStore};
pub use cursor::Cursor;
use target::Target;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink}: cursor file {path}: {source}")]
    Cursor {
        sink: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("sink {sink}: cursor file {path} does not hold a seq: {text:?}")]
    CursorText {
        sink: String,
        path: std::path::PathBuf,
        text: String,
    },
    #[error("sink {sink}: token file {path}: {source}")]
    Token {
        sink: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("sink {0}: {1}")]
    Setup(String, String),
    #[error("{0}")]
    Delivery(String),
    #[error("reading the log: {0}")]
    Log(#[from] LogError),
}

/// What one sink has done, for metrics. Counters since the server started;
/// `cursor` is the next seq to deliver.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    pub cursor: AtomicU64,
    pub durable: AtomicU64,
}

impl SinkStats {
    /// Durable entries not yet delivered.
    pub fn lag(&self) -> u64 {
        self.durable
            .load(Ordering::Relaxed)
            .saturating_sub(self.cursor.load(Ordering::Relaxed))
    }
}

/// A running sink's name and stats.
pub struct SinkHandle {
    pub name: String,
    pub stats: Arc<SinkStats>,
}

/// How far the log may be delivered: the writer's durable size, or, for a
/// fleet's database, every committed entry.
#[derive(Clone)]
pub struct DurableLog {
    pub store: LogStore,
    pub written: watch::Receiver<u64>,
}

impl DurableLog {
    pub async fn size(&self) -> Result<u64, LogError> {
        let flushed = *self.written.borrow();
        if !self.store.durable_on_commit() {
            return Ok(flushed);
        }
        let store = self.store.clone();
        let committed = tokio::task::spawn_blocking(move || store.next_seq())
            .await
            .map_err(|e| LogError::Storage(e.to_string()))??;
        Ok(committed.max(flushed))
    }

    /// Returns when the log may have grown: the writer flushed, or (a fleet,
    /// where other replicas write too) after a short poll.
    pub async fn grown(&mut self) {
        let poll = if self.store.durable_on_commit() {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let _ = tokio::time::timeout(poll, self.written.changed()).await;
    }
}

/// Sinks set up and not yet running: [`Prepared::spawn`] starts them.
pub struct Prepared(Vec<Sink>);

/// Sets up every configured sink: reads its cursor, its token file.
/// Fails before any runs when one cannot be set up.
pub fn prepare(
    configs: &[SinkConfig],
    data_dir: &std::path::Path,
    log: DurableLog,
) -> Result<(Vec<SinkHandle>, Prepared), SinkError> {
    let mut handles = Vec::new();
    let mut sinks = Vec::new();
    for config in configs {
        let cursor = Cursor::open(data_dir, &config.name)?;
        let target = Target::open(config)?;
        let stats = Arc::new(SinkStats::default());
        stats.cursor.store(cursor.next(), Ordering::Relaxed);
        handles.push(SinkHandle {
            name: config.name.clone(),
            stats: stats.clone(),
        });
        sinks.push(Sink {
            config: config.clone(),
            cursor,
            target,
            log: log.clone(),
            stats,
        });
    }
    Ok((handles, Prepared(sinks)))
}

impl Prepared {
    /// Starts each sink as a task; each runs until aborted.
    pub fn spawn(self) -> Vec<tokio::task::JoinHandle<()>> {
        self.0
            .into_iter()
            .map(|sink| tokio::spawn(sink.run()))
            .collect()
    }
}

struct Sink {
    config: SinkConfig,
    cursor: Cursor,
    target: Target,
    log: DurableLog,
    stats: Arc<SinkStats>,
}

/// The first retry waits this long, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a failing sink says it still fails.
const REPORT_EVERY: Duration = Duration::from_secs(30);

impl Sink {
    async fn run(mut self) {
        let name = self.config.name.clone();
        tracing::info!(sink = %name, kind = self.config.kind.as_str(), from_seq = self.cursor.next(), "decision log sink started");
        let mut backoff = FIRST_BACKOFF;
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut last_report = tokio::time::Instant::now();
        loop {
            match self.step().await {
                Ok(true) => {
                    if let Some(since) = failing_since.take() {
                        tracing::warn!(sink = %name, failing_for_s = since.elapsed().as_secs(), "decision log sink delivers again");
                    }
                    backoff = FIRST_BACKOFF;
                }
                Ok(false) => self.log.grown().await,
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let now = tokio::time::Instant::now();
                    if failing_since.is_none() || now - last_report >= REPORT_EVERY {
                        tracing::error!(sink = %name, error = %e, next_seq = self.cursor.next(), lag = self.stats.lag(), "decision log sink failed; retrying");
                        last_report = now;
                    }
                    failing_since.get_or_insert(now);
                    // Some jitter, so sinks that failed together do not retry together.
                    let jitter = rand::random::<f64>() * 0.25 + 1.0;
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Delivers the next batch, if there is one; `Ok(false)` when caught up.
    async fn step(&mut self) -> Result<bool, SinkError> {
        let durable = self.log.size().await?;
        self.stats.durable.store(durable, Ordering::Relaxed);
        let from = self.cursor.next();
        if from >= durable {
            return Ok(false);
        }
        let to = durable.min(from + self.config.batch_size as u64);
        let store = self.log.store.clone();
        let format = self.config.format;
        let body = tokio::task::spawn_blocking(move || lines(&store, from, to, format))
            .await
            .map_err(|e| SinkError::Delivery(e.to_string()))??;
        self.target.deliver(body).await?;
        self.cursor.advance(to).await?;
        self.stats.delivered.fetch_add(to - from, Ordering::Relaxed);
        self.stats.cursor.store(to, Ordering::Relaxed);
        Ok(true)
    }
}

/// Entries `from..to` as NDJSON in `format`.
fn lines(store: &LogStore, from: u64, to: u64, format: SinkFormat) -> Result<Vec<u8>, SinkError> {
    let mut body = Vec::new();
    for seq in from..to {
        let document = crate::log::query::entry_document(store, seq)?
            .ok_or_else(|| LogError::Malformed(format!("entry {seq} is missing")))?;
        match format {
            SinkFormat::Entry => push_line(&mut body, &document)?,
            SinkFormat::Ocsf => {
                for event in ocsf::events(seq, &document) {
                    push_line(&mut body, &event)?;
                }
            }
        }
    }
    Ok(body)
}

fn push_line(body: &mut Vec<u8>, value: &serde_json::Value) -> Result<(), SinkError> {
    serde_json::to_writer(&mut *body, value).map_err(|e| SinkError::Delivery(e.to_string()))?;
    body.push(b'\n');
    Ok(())
}
