//! The decision path's queries to the fleet's database (its look-up of
//! the client and session, its assertion's `jti` claim), made on the
//! caller's own runtime: a few connections shared by every request, each
//! carrying many queries at once (tokio-postgres pipelines them), so a
//! decision waits on its query without handing its worker thread to a
//! blocking pool connection.
//!
//! A connection that broke is opened again by the next query that picks
//! it; while the database cannot be reached, queries fail at once (the
//! decision denies) until [`super::OUTAGE_RETRY`] has passed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

use crate::log::LogError;

/// Connections shared by the queries; each pipelines any number of them.
const CONNECTIONS: usize = 2;

/// A connection, opened on first use.
type Slot = tokio::sync::Mutex<Option<Arc<Client>>>;

pub(super) struct Pipelined {
    config: tokio_postgres::Config,
    timeout: Duration,
    slots: Vec<Slot>,
    turn: AtomicUsize,
    outage: super::Outage,
}

impl Pipelined {
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
            outage: super::Outage::default(),
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
        self.outage.check()?;
        let (client, connection) = self.outage.connected(self.config.connect(NoTls).await)?;
        // Ends when the connection breaks or the client is dropped; a
        // broken one is opened again by the next query.
        tokio::spawn(connection);
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }
}
