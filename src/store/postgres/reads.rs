//! The decision path's reads from the fleet's database, made on the
//! caller's own runtime: a few connections shared by every request, each
//! carrying many queries at once (tokio-postgres pipelines them), so a
//! decision waits on its query without handing its worker thread to a
//! blocking pool connection.
//!
//! A connection that broke is opened again by the next read that picks it;
//! while the database cannot be reached, reads fail at once (the decision
//! denies) until [`OUTAGE_RETRY`] has passed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

use crate::log::LogError;

/// Connections shared by the reads; each pipelines any number of them.
const CONNECTIONS: usize = 2;

/// How long reads fail at once after a connection could not be opened.
const OUTAGE_RETRY: Duration = Duration::from_secs(1);

/// A connection, opened on first use.
type Slot = tokio::sync::Mutex<Option<Arc<Client>>>;

pub(super) struct Reads {
    config: tokio_postgres::Config,
    timeout: Duration,
    slots: Vec<Slot>,
    turn: AtomicUsize,
    /// Until when reads fail at once, and why.
    outage: std::sync::Mutex<Option<(Instant, String)>>,
}

impl Reads {
    /// `url` was already parsed once for the blocking pool, so it parses.
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, LogError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| LogError::Storage(format!("not a PostgreSQL URL: {e}")))?;
        config.connect_timeout(timeout);
        if config.get_options().is_none() {
            config.options(super::SESSION_OPTIONS);
        }
        Ok(Self {
            config,
            timeout,
            slots: (0..CONNECTIONS).map(|_| Slot::default()).collect(),
            turn: AtomicUsize::new(0),
            outage: std::sync::Mutex::new(None),
        })
    }

    /// The rows of `query`, within the pool's timeout.
    pub(super) async fn query(
        &self,
        query: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, LogError> {
        let client = self.client().await?;
        match tokio::time::timeout(self.timeout, client.query_typed(query, params)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(super::storage(e)),
            Err(_) => Err(LogError::Storage(format!(
                "PostgreSQL did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The next connection in turn, opened again if it broke.
    async fn client(&self) -> Result<Arc<Client>, LogError> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[turn].lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        *slot = None;
        self.fresh_outage()?;
        match self.config.connect(NoTls).await {
            Ok((client, connection)) => {
                // Ends when the connection breaks or the client is dropped;
                // a broken one is opened again by the next read.
                tokio::spawn(connection);
                let client = Arc::new(client);
                *slot = Some(client.clone());
                Ok(client)
            }
            Err(e) => {
                let why = e.to_string();
                *self.outage.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now() + OUTAGE_RETRY, why.clone()));
                Err(LogError::Storage(format!(
                    "no PostgreSQL connection: {why}"
                )))
            }
        }
    }

    /// An error while a failed connect is recent.
    fn fresh_outage(&self) -> Result<(), LogError> {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match outage.as_ref() {
            Some((until, why)) if Instant::now() < *until => Err(LogError::Storage(format!(
                "no PostgreSQL connection: {why}"
            ))),
            _ => Ok(()),
        }
    }
}
