//! A self-contained inclusion proof: what a third party needs to check one
//! entry against a signed checkpoint, with nothing else from trustpath.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use super::checkpoint::NoteVerifier;
use super::merkle;
use super::storage::LogStore;
use super::LogError;

#[derive(Debug, Serialize)]
pub struct InclusionBundle {
    pub seq: u64,
    pub tree_size: u64,
    /// The entry, exactly as stored (hash it: SHA-256(0x00 ‖ entry)).
    pub entry: String,
    pub leaf_hash: String,
    /// RFC 9162 audit path, base64, leaf to root.
    pub proof: Vec<String>,
    /// The signed note whose root the path leads to.
    pub checkpoint: String,
    /// The key that signed it (signed-note vkey).
    pub public_key: String,
}

pub fn inclusion_bundle(
    store: &LogStore,
    verifier: &NoteVerifier,
    seq: u64,
) -> Result<InclusionBundle, LogError> {
    let note = store
        .latest_checkpoint()?
        .ok_or_else(|| LogError::Checkpoint("no checkpoint has been signed yet".into()))?;
    let cp = verifier
        .open(&note)
        .map_err(|e| LogError::Checkpoint(e.to_string()))?;
    if seq >= cp.size {
        return Err(LogError::Checkpoint(format!(
            "entry {seq} is not covered by the latest checkpoint (size {})",
            cp.size
        )));
    }
    let entry = store.entry(seq)?.ok_or(LogError::Corrupt)?;
    let proof = merkle::inclusion_proof(store, seq, cp.size)?;
    Ok(InclusionBundle {
        seq,
        tree_size: cp.size,
        entry: String::from_utf8_lossy(&entry).into_owned(),
        leaf_hash: STANDARD.encode(merkle::leaf_hash(&entry)),
        proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
        checkpoint: note,
        public_key: verifier.vkey(),
    })
}
