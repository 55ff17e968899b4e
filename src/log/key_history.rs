//! The log's checkpoint keys over time, as the log itself records them.
//!
//! Each `signing_key` entry of purpose `log` names a key; a later one names
//! the key before it (`previous_key_id`). A rotation (`trustpath keys
//! rotate --log`) appends the new key's entry at seq `s` and has the old
//! key sign the checkpoint of size `s + 1`, which covers it: the old key
//! hands over to the new one in a statement it signs. So the key in force
//! for a checkpoint of size `n` is the newest key introduced at a seq `s`
//! with `s + 1 < n` (the first key: every size). Whoever pins any key of
//! the chain can check every checkpoint: later keys are vouched for by the
//! tree their predecessor signed, earlier ones by the tree their successor
//! signed over the entries that name them.

use super::checkpoint::{Checkpoint, NoteVerifier};
use super::entry::{KeyPurpose, Record};
use super::index::Field;
use super::{query, LogError, LogStore};

/// One key and the seq of the entry that handed over to it (`None`: the
/// log's first key, in force from the start).
struct Era {
    verifier: NoteVerifier,
    introduced_at: Option<u64>,
}

pub struct KeyHistory {
    eras: Vec<Era>,
}

impl KeyHistory {
    /// The history the log records, which must hold `pinned` (when it
    /// records any). A log without key entries has only `pinned`.
    pub fn load(store: &LogStore, pinned: &NoteVerifier) -> Result<Self, LogError> {
        let mut seqs: Vec<u64> = store
            .postings_descending(Field::SigningKey, KeyPurpose::Log.as_str(), None)
            .collect::<Result<_, _>>()?;
        seqs.reverse();
        let mut eras: Vec<Era> = Vec::new();
        for seq in seqs {
            let Record::SigningKey(record) = query::entry(store, seq)?.record else {
                return Err(LogError::Corrupt);
            };
            let current = eras.last().map(|e| e.verifier.vkey());
            if current.as_deref() == Some(record.key_id.as_str()) {
                continue;
            }
            let verifier = NoteVerifier::from_vkey(&record.key_id)
                .map_err(|e| LogError::Checkpoint(format!("log key at entry {seq}: {e}")))?;
            if let Some(current) = current {
                if record.previous_key_id.as_deref() != Some(current.as_str()) {
                    return Err(LogError::Checkpoint(format!(
                        "log key at entry {seq} does not name the key in force before it \
                         ({current}) as its predecessor"
                    )));
                }
            }
            let introduced_at = (!eras.is_empty()).then_some(seq);
            eras.push(Era {
                verifier,
                introduced_at,
            });
        }
        if eras.is_empty() {
            eras.push(Era {
                verifier: pinned.clone(),
                introduced_at: None,
            });
        }
        let pinned_key = pinned.vkey();
        if !eras.iter().any(|e| e.verifier.vkey() == pinned_key) {
            return Err(LogError::Checkpoint(format!(
                "the log key {pinned_key} is not one the log records"
            )));
        }
        Ok(Self { eras })
    }

    /// The key that signs checkpoints of `size` entries.
    pub fn verifier_for(&self, size: u64) -> &NoteVerifier {
        let era = self
            .eras
            .iter()
            .rev()
            .find(|e| e.introduced_at.is_none_or(|s| s.saturating_add(1) < size))
            .unwrap_or(&self.eras[0]);
        &era.verifier
    }

    /// The key in force now.
    pub fn newest(&self) -> &NoteVerifier {
        &self.eras[self.eras.len() - 1].verifier
    }

    /// The seqs of the entries that handed over to a new key: each needs
    /// its predecessor's checkpoint of size `seq + 1`.
    pub fn handovers(&self) -> impl Iterator<Item = u64> + '_ {
        self.eras.iter().filter_map(|e| e.introduced_at)
    }

    /// Opens `note` with the key in force for the size it claims (and then
    /// proves it has).
    pub fn open(&self, note: &str) -> Result<Checkpoint, LogError> {
        let claimed = note
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .ok_or_else(|| LogError::Checkpoint("a checkpoint without a tree size".into()))?;
        let cp = self
            .verifier_for(claimed)
            .open(note)
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        Ok(cp)
    }
}

/// The latest stored checkpoint, opened with the key in force for it.
pub fn open_latest(
    store: &LogStore,
    pinned: &NoteVerifier,
) -> Result<Option<(String, Checkpoint)>, LogError> {
    let Some(note) = store.latest_checkpoint()? else {
        return Ok(None);
    };
    let cp = KeyHistory::load(store, pinned)?.open(&note)?;
    Ok(Some((note, cp)))
}
