//! The postings the decision path reads on every request, kept in memory:
//! revoked sessions and grants (their oldest revocation) and each client's
//! newest identity document hash.
//!
//! Why: on the embedded engines a read waits behind the writer's batch
//! (sled takes a process-wide lock for `apply_batch`), so a decision's two
//! look-ups could stall for milliseconds on an async worker. With this
//! index the store is written, not read, on a decision.
//!
//! It is only correct while this process is the log's one writer: it is
//! built from the store at open, then every batch committed and every
//! retention change through the same [`super::LogStore`] updates it (after
//! the engine stored them, before their callers are answered). A recovery
//! rebuilds it, since a failed flush may have lost entries it saw. A fleet
//! engine, which other replicas write too, never gets one.
//!
//! Memory is bounded: a field holds at most [`MAX_VALUES`] values. Beyond
//! that it stops learning new values and a value it does not know is read
//! from the store; values it knows are always up to date.

use std::collections::HashMap;
use std::sync::RwLock;

use super::index::{Field, IndexRecord};
use super::storage::LogStorage;
use super::LogError;

/// Values a field remembers at most (about 200 bytes each).
pub const MAX_VALUES: usize = 250_000;

/// Which posting of a value a field keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first: when a session or grant was first revoked.
    Oldest,
    /// The last: a client's newest document.
    Newest,
}

/// The fields kept, and which of their postings.
const FIELDS: [(Field, Keep); 3] = [
    (Field::RevokedSession, Keep::Oldest),
    (Field::RevokedGrant, Keep::Oldest),
    (Field::ClientDocument, Keep::Newest),
];

fn keep_of(field: Field) -> Option<Keep> {
    FIELDS.iter().find(|(f, _)| *f == field).map(|(_, k)| *k)
}

/// One field's postings: value → (seq, data).
#[derive(Default)]
struct Postings {
    values: HashMap<String, (u64, Vec<u8>)>,
    /// Every value the store has is here (none was left out for space).
    complete: bool,
}

impl Postings {
    /// Nothing yet, and nothing left out.
    fn empty() -> Self {
        Self {
            values: HashMap::new(),
            complete: true,
        }
    }

    fn learn(&mut self, keep: Keep, value: &str, seq: u64, data: &[u8]) {
        let full = self.values.len() >= MAX_VALUES;
        match self.values.get_mut(value) {
            Some(known) => {
                let later = match keep {
                    Keep::Oldest => seq < known.0,
                    Keep::Newest => seq > known.0,
                };
                if later {
                    *known = (seq, data.to_vec());
                }
            }
            None if full => self.complete = false,
            None => {
                self.values.insert(value.to_string(), (seq, data.to_vec()));
            }
        }
    }

    /// `Some(answer)` when memory knows it; `None` when the store must say.
    fn answer(&self, value: &str) -> Option<Option<(u64, Vec<u8>)>> {
        match self.values.get(value) {
            Some(found) => Some(Some(found.clone())),
            None if self.complete => Some(None),
            None => None,
        }
    }
}

/// The decision path's postings in memory; see the module docs.
pub struct HotIndex {
    fields: [RwLock<Postings>; 3],
}

impl HotIndex {
    /// Reads every kept field's postings from `engine`.
    pub fn build(engine: &dyn LogStorage) -> Result<Self, LogError> {
        let index = Self {
            fields: Default::default(),
        };
        index.rebuild(engine)?;
        Ok(index)
    }

    /// Forgets everything and reads it again from `engine`.
    pub fn rebuild(&self, engine: &dyn LogStorage) -> Result<(), LogError> {
        for (slot, (field, keep)) in self.fields.iter().zip(FIELDS) {
            // Held while reading, as in `forget`.
            let mut held = write(slot);
            let mut fresh = Postings::empty();
            for record in engine.field_ends(field, keep == Keep::Newest) {
                if let IndexRecord::Posting {
                    value, seq, data, ..
                } = record?
                {
                    fresh.learn(keep, &value, seq, &data);
                }
            }
            *held = fresh;
        }
        Ok(())
    }

    fn slot(&self, field: Field) -> Option<(&RwLock<Postings>, Keep)> {
        let at = FIELDS.iter().position(|(f, _)| *f == field)?;
        Some((&self.fields[at], FIELDS[at].1))
    }

    /// Whether `field` is kept here.
    pub fn keeps(field: Field) -> bool {
        keep_of(field).is_some()
    }

    /// The `which` posting of `field = value`: `Some(answer)` from
    /// memory, `None` when the store must say (memory does not keep that
    /// field, or not that end of it, or not that value).
    pub fn lookup(&self, field: Field, value: &str, which: Keep) -> Option<Option<(u64, Vec<u8>)>> {
        let (slot, keep) = self.slot(field)?;
        if keep != which {
            return None;
        }
        let postings = slot.read().unwrap_or_else(|p| p.into_inner());
        postings.answer(value)
    }

    /// Learns a posting just committed.
    pub fn learn(&self, field: Field, value: &str, seq: u64, data: &[u8]) {
        if let Some((slot, keep)) = self.slot(field) {
            write(slot).learn(keep, value, seq, data);
        }
    }

    /// After retention dropped `record` from the store: what the store
    /// keeps for its value now replaces what memory had.
    pub fn forget(&self, engine: &dyn LogStorage, record: &IndexRecord) -> Result<(), LogError> {
        let IndexRecord::Posting { field, value, .. } = record else {
            return Ok(());
        };
        let Some((slot, keep)) = self.slot(*field) else {
            return Ok(());
        };
        // Read the store with the lock held: a posting the writer commits
        // meanwhile is either read here or learnt after the lock is let go,
        // never overwritten by an older answer.
        let mut postings = write(slot);
        let now = match keep {
            Keep::Oldest => engine
                .oldest_posting(*field, value)?
                .map(|seq| (seq, Vec::new())),
            Keep::Newest => engine.newest_posting(*field, value)?,
        };
        postings.values.remove(value.as_str());
        if let Some((seq, data)) = now {
            postings.learn(keep, value, seq, &data);
        }
        Ok(())
    }

    /// Values held, per kept field (for memory reports and tests).
    pub fn sizes(&self) -> Vec<(Field, usize, bool)> {
        self.fields
            .iter()
            .zip(FIELDS)
            .map(|(slot, (field, _))| {
                let p = slot.read().unwrap_or_else(|p| p.into_inner());
                (field, p.values.len(), p.complete)
            })
            .collect()
    }
}

fn write(slot: &RwLock<Postings>) -> std::sync::RwLockWriteGuard<'_, Postings> {
    slot.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_keeps_the_posting_it_is_for() {
        let mut oldest = Postings::empty();
        oldest.learn(Keep::Oldest, "s", 9, b"");
        oldest.learn(Keep::Oldest, "s", 4, b"");
        oldest.learn(Keep::Oldest, "s", 12, b"");
        assert_eq!(oldest.answer("s"), Some(Some((4, Vec::new()))));
        assert_eq!(oldest.answer("t"), Some(None));

        let mut newest = Postings::empty();
        newest.learn(Keep::Newest, "c", 3, b"a");
        newest.learn(Keep::Newest, "c", 7, b"b");
        newest.learn(Keep::Newest, "c", 5, b"x");
        assert_eq!(newest.answer("c"), Some(Some((7, b"b".to_vec()))));
    }

    #[test]
    fn a_full_field_sends_unknown_values_to_the_store() {
        let mut p = Postings::empty();
        for i in 0..MAX_VALUES {
            p.learn(Keep::Newest, &i.to_string(), i as u64, b"");
        }
        assert!(p.complete);
        p.learn(Keep::Newest, "one more", 1, b"");
        assert!(!p.complete);
        assert_eq!(p.answer("one more"), None, "the store must say");
        // A known value still answers, and still learns.
        p.learn(Keep::Newest, "7", 900_000, b"new");
        assert_eq!(p.answer("7"), Some(Some((900_000, b"new".to_vec()))));
    }
}
