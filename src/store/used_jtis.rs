//! Used `jti`s of an embedded engine, claimed in memory and written by the
//! log writer's next commit: into the entry file, which that commit syncs,
//! and the engine's `jti` tree (`ordered.rs`); a log without an entry file
//! writes them to the tree by its next flush.
//!
//! Why: a claim is on every `private_key_jwt` decision, and a write to the
//! engine from a request worker waits behind the log writer's batch (sled
//! takes a process-wide lock for it). In memory the claim is one short
//! mutex; the writer's commit, which every decision waits for anyway,
//! writes the claims made since the last one before it syncs. So a claim
//! is durable no later than the decision that made it (the `JtiStore`
//! contract), and a restart reads every unexpired claim back (those the
//! engine had not flushed from the entry file).
//!
//! Memory holds each unexpired claim once (about 150 bytes): at most the
//! claim rate times the longest assertion lifetime accepted, and `prune`
//! drops expired ones from memory and from the engine.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::identity::replay::JtiStore;
use crate::log::LogError;

/// A claim: the replay key and the Unix second it is kept until.
pub(super) type Claim = (Vec<u8>, i64);

#[derive(Default)]
struct State {
    used: HashMap<Vec<u8>, i64>,
    /// Claimed since the last flush: not yet in the engine.
    unwritten: Vec<Claim>,
}

/// The used `jti`s: see the module docs.
#[derive(Default)]
pub(super) struct UsedJtis(Mutex<State>);

impl UsedJtis {
    /// Memory holding `claims`, read from the engine's tree.
    pub fn with(claims: impl IntoIterator<Item = Claim>) -> Self {
        Self(Mutex::new(State {
            used: claims.into_iter().collect(),
            unwritten: Vec::new(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `key` until `until`; false when it was claimed already.
    pub fn first_use(&self, key: &[u8], until: i64) -> bool {
        let mut state = self.state();
        if state.used.contains_key(key) {
            return false;
        }
        state.used.insert(key.to_vec(), until);
        state.unwritten.push((key.to_vec(), until));
        true
    }

    /// Hands the claims not yet written to `write` (the engine's batch,
    /// before its sync); on failure they stay for the next flush.
    pub fn write_unwritten(
        &self,
        write: impl FnOnce(&[Claim]) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        if self.state().unwritten.is_empty() {
            return Ok(());
        }
        self.with_unwritten(write)
    }

    /// [`UsedJtis::write_unwritten`], calling `write` even with no claims
    /// (a log commit that carries them when there are some).
    pub fn with_unwritten<T>(
        &self,
        write: impl FnOnce(&[Claim]) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let unwritten = std::mem::take(&mut self.state().unwritten);
        write(&unwritten).inspect_err(|_| {
            let mut state = self.state();
            let newer = std::mem::replace(&mut state.unwritten, unwritten);
            state.unwritten.extend(newer);
        })
    }

    /// After the engine was reopened (a failed write or sync): claims it
    /// wrote but did not sync may be gone, so every claim is written again
    /// with the next flush.
    pub fn rewrite_all(&self) {
        let mut state = self.state();
        let all: Vec<Claim> = state.used.iter().map(|(k, v)| (k.clone(), *v)).collect();
        state.unwritten = all;
    }

    /// Forgets claims kept until before `now`; returns their keys, for
    /// the engine to remove.
    pub fn prune(&self, now: i64) -> Vec<Vec<u8>> {
        let mut state = self.state();
        let expired: Vec<Vec<u8>> = state
            .used
            .iter()
            .filter(|(_, until)| **until < now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            state.used.remove(key);
        }
        state.unwritten.retain(|(_, until)| *until >= now);
        expired
    }
}

/// An engine whose `jti` tree keeps the claims of a [`UsedJtis`].
pub(super) trait ClaimTree: Send + Sync {
    /// The claims in memory, once a server asked for them.
    fn used_jtis(&self) -> Option<&UsedJtis>;
    /// Writes `claims` and removes `removals` in one batch (not synced).
    fn write_claims(&self, claims: &[Claim], removals: &[Vec<u8>]) -> Result<(), LogError>;
}

/// Reads an engine's `jti` tree, (key, until as big-endian i64) pairs.
pub(super) fn read_claims<K, V, E>(
    items: impl Iterator<Item = Result<(K, V), E>>,
) -> Result<UsedJtis, LogError>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let mut claims = Vec::new();
    for item in items {
        let (key, value) = item.map_err(|e| LogError::Storage(e.to_string()))?;
        let until = <[u8; 8]>::try_from(value.as_ref()).map_or(i64::MIN, i64::from_be_bytes);
        claims.push((key.as_ref().to_vec(), until));
    }
    Ok(UsedJtis::with(claims))
}

/// The used-`jti` store of an embedded engine (`SledLog`, `FjallLog`).
pub struct Jtis<E>(pub(super) E);

fn memory<E: ClaimTree>(engine: &E) -> Result<&UsedJtis, String> {
    engine
        .used_jtis()
        .ok_or_else(|| "used jtis were not read".to_string())
}

impl<E: ClaimTree> JtiStore for Jtis<E> {
    fn first_use(&self, key: &[u8], until: i64) -> Result<bool, String> {
        Ok(memory(&self.0)?.first_use(key, until))
    }

    fn prune(&self, now: i64) -> Result<usize, String> {
        let expired = memory(&self.0)?.prune(now);
        if !expired.is_empty() {
            self.0
                .write_claims(&[], &expired)
                .map_err(|e| e.to_string())?;
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_written_once_and_kept_after_a_failed_write() {
        let jtis = UsedJtis::with([(b"old".to_vec(), 50)]);
        assert!(!jtis.first_use(b"old", 100), "read back from the engine");
        assert!(jtis.first_use(b"a", 100));
        assert!(!jtis.first_use(b"a", 100));
        let failed = jtis.write_unwritten(|_| Err(LogError::Storage("disk full".into())));
        assert!(failed.is_err());
        assert!(jtis.first_use(b"b", 100));
        let mut written = Vec::new();
        jtis.write_unwritten(|claims| {
            written.extend_from_slice(claims);
            Ok(())
        })
        .unwrap();
        written.sort();
        assert_eq!(written, [(b"a".to_vec(), 100), (b"b".to_vec(), 100)]);
        jtis.write_unwritten(|_| panic!("nothing left to write"))
            .unwrap();
        assert_eq!(jtis.prune(60), [b"old".to_vec()]);
        assert!(jtis.first_use(b"old", 200), "an expired claim is forgotten");
    }
}
