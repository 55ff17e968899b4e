//! One-time use of client assertion `jti`s (RFC 7523 §3, item 7).
//!
//! The server keeps used `jti`s in a [`JtiStore`] of its storage engine
//! (the sled engine keeps them in the log's database, so the group-commit
//! flush that makes a decision durable also makes its `jti` durable, and a
//! restart does not reopen a replay window).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::sync::Mutex;

use crate::log::storage::BoxFuture;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("jti store failed: {0}")]
    Store(String),
}

/// Where used `jti`s are kept, by an engine.
///
/// Contract: `first_use` is atomic across every process sharing the store
/// (two concurrent calls with one key: exactly one returns true), and its
/// record is durable no later than the next log flush.
pub trait JtiStore: Send + Sync {
    /// Records `key` until `until` (Unix seconds) unless already recorded;
    /// true when it was not.
    fn first_use(&self, key: &[u8], until: i64) -> Result<bool, String>;
    /// [`JtiStore::first_use`] for a caller on an async worker (the
    /// decision path): a store that waits on a network (a fleet's
    /// database) claims without holding the worker's thread. By default
    /// it claims at once, with `first_use`.
    fn first_use_async<'a>(
        &'a self,
        key: &'a [u8],
        until: i64,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(std::future::ready(self.first_use(key, until)))
    }
    /// Forgets keys recorded until before `now`; returns how many.
    fn prune(&self, now: i64) -> Result<usize, String>;
}

pub enum ReplayGuard {
    /// Kept by the storage engine: the server.
    Persistent(Box<dyn JtiStore>),
    /// Kept in memory: dry runs (`trustpath eval`) that must not consume a jti.
    Ephemeral(Mutex<HashMap<Vec<u8>, i64>>),
}

impl ReplayGuard {
    pub fn ephemeral() -> Self {
        Self::Ephemeral(Mutex::new(HashMap::new()))
    }

    /// Records `jti` for `issuer` until `until` (Unix seconds): no earlier
    /// than the last moment the assertion is accepted, `exp` plus leeway.
    /// Returns false when it was already used: the caller must treat the
    /// assertion as replayed.
    pub async fn first_use(
        &self,
        issuer: &str,
        jti: &str,
        until: i64,
    ) -> Result<bool, ReplayError> {
        let key = replay_key(issuer, jti);
        match self {
            Self::Persistent(store) => store
                .first_use_async(&key, until)
                .await
                .map_err(ReplayError::Store),
            Self::Ephemeral(seen) => {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                Ok(seen.insert(key, until).is_none())
            }
        }
    }

    /// Forgets `jti`s remembered until before `now`: their assertions fail
    /// on `exp` by then anyway.
    pub fn prune(&self, now: i64) -> Result<usize, ReplayError> {
        match self {
            Self::Persistent(store) => store.prune(now).map_err(ReplayError::Store),
            Self::Ephemeral(_) => Ok(0),
        }
    }
}

/// Length-prefixed so that no (issuer, jti) pair can collide with another.
fn replay_key(issuer: &str, jti: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(issuer.len().saturating_add(jti.len()).saturating_add(4));
    // A request body is far below 4 GiB, so the length always fits.
    let length = u32::try_from(issuer.len()).unwrap_or(u32::MAX);
    key.extend_from_slice(&length.to_be_bytes());
    key.extend_from_slice(issuer.as_bytes());
    key.extend_from_slice(jti.as_bytes());
    key
}
