//! Copying a log from one store to another (a single node's data
//! directory into a fleet's database), keeping every entry's bytes and
//! seq, so every leaf hash, root, checkpoint and proof stays valid.

use super::index;
use super::merkle::BatchHashes;
use super::sealed;
use super::storage::{LogStore, StoredEntry};
use super::LogError;

/// Entries written per batch.
const BATCH: usize = 1000;

/// Copies every entry and checkpoint of `from` into the empty log `to`;
/// returns the number of entries. The hashes and postings are derived
/// again from the entries, as the writer derived them, and the checkpoints
/// are copied as signed (so they verify only if the copy is faithful).
pub fn copy(from: &LogStore, to: &LogStore) -> Result<u64, LogError> {
    copy_with(from, to, &crate::progress::Silent)
}

/// [`copy`], reporting each entry read to `progress`.
pub fn copy_with(
    from: &LogStore,
    to: &LogStore,
    progress: &dyn crate::progress::Progress,
) -> Result<u64, LogError> {
    progress.start(from.next_seq().ok());
    let held = to.next_seq()?;
    if held != 0 {
        return Err(LogError::Writer(format!(
            "the destination already holds {held} entries; copy into an empty store"
        )));
    }
    let mut hasher = BatchHashes::default();
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut copied = 0u64;
    for item in from.entries() {
        let (seq, bytes) = item?;
        progress.advance(1);
        if seq != copied + pending.len() as u64 {
            return Err(LogError::Malformed(format!(
                "the source log has a gap: entry {seq} follows entry {}",
                (copied + pending.len() as u64).wrapping_sub(1)
            )));
        }
        pending.push((seq, bytes));
        if pending.len() == BATCH {
            copied += write(from, to, &mut hasher, &mut pending)?;
        }
    }
    copied += write(from, to, &mut hasher, &mut pending)?;
    let mut batch = to.begin()?;
    for checkpoint in from.checkpoints() {
        let (size, note) = checkpoint?;
        batch.put_checkpoint(size, &note)?;
    }
    batch.commit()?;
    to.flush()?;
    Ok(copied)
}

fn write(
    from: &LogStore,
    to: &LogStore,
    hasher: &mut BatchHashes,
    pending: &mut Vec<(u64, Vec<u8>)>,
) -> Result<u64, LogError> {
    let mut derived = Vec::with_capacity(pending.len());
    for (seq, bytes) in pending.iter() {
        let index = index::derive_stored(bytes)
            .map_err(|e| LogError::Malformed(format!("entry {seq} is not a log entry: {e}")))?;
        // An expired entry's leaf is the one hash left of it.
        let leaf = if sealed::is_expired(bytes) {
            from.subtree_hash(0, *seq)?
        } else {
            sealed::leaf_hash(bytes)
        };
        let hashes = hasher.append(to, *seq, leaf)?;
        derived.push((hashes, index));
    }
    let stored: Vec<StoredEntry<'_>> = pending
        .iter()
        .zip(&derived)
        .map(|((seq, bytes), (hashes, d))| StoredEntry {
            seq: *seq,
            bytes,
            decision_id: d.decision_id.as_deref(),
            hashes,
            postings: &d.postings,
            time_micros: d.time_micros,
        })
        .collect();
    to.append(&stored)?;
    let count = pending.len() as u64;
    pending.clear();
    Ok(count)
}
