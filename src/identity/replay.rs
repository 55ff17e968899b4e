//! One-time use of client assertion `jti`s (RFC 7523 §3, item 7).
//!
//! Seen `jti`s live in the same sled database as the decision log, so the
//! group-commit flush that makes a decision durable also makes its `jti`
//! durable, and a restart does not reopen a replay window.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("jti store failed: {0}")]
    Store(#[from] sled::Error),
}

pub enum ReplayGuard {
    /// Kept on disk: the server.
    Persistent(sled::Tree),
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
    pub fn first_use(&self, issuer: &str, jti: &str, until: i64) -> Result<bool, ReplayError> {
        let key = replay_key(issuer, jti);
        match self {
            Self::Persistent(tree) => {
                let swapped =
                    tree.compare_and_swap(&key, None::<&[u8]>, Some(&until.to_be_bytes()[..]))?;
                Ok(swapped.is_ok())
            }
            Self::Ephemeral(seen) => {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                Ok(seen.insert(key, until).is_none())
            }
        }
    }

    /// Forgets `jti`s remembered until before `now`: their assertions fail
    /// on `exp` by then anyway.
    pub fn prune(&self, now: i64) -> Result<usize, ReplayError> {
        let Self::Persistent(tree) = self else {
            return Ok(0);
        };
        let mut removed: usize = 0;
        for item in tree.iter() {
            let (key, value) = item?;
            let exp = <[u8; 8]>::try_from(value.as_ref()).map_or(i64::MIN, i64::from_be_bytes);
            if exp < now {
                tree.remove(key)?;
                removed = removed.saturating_add(1);
            }
        }
        Ok(removed)
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
