//! Proofs over the log: inclusion and consistency at a tree size, and the
//! self-contained inclusion bundle a third party checks with nothing else
//! from trustpath. The HTTP API and the CLI both answer from here, so a
//! proof is built and bounds-checked in one place.
#![deny(clippy::arithmetic_side_effects)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Serialize, Serializer};

use super::checkpoint::NoteVerifier;
use super::merkle::{self, Hash};
use super::sealed;
use super::storage::LogStore;
use super::LogError;

/// Why a proof cannot be given: a bound the caller chose (`field` names it),
/// or the log itself.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("{message}")]
    OutOfRange {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

fn out_of_range(field: &'static str, message: String) -> ProofError {
    ProofError::OutOfRange { field, message }
}

fn base64<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(hash))
}

fn base64_path<S: Serializer>(path: &[Hash], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(path.iter().map(|h| STANDARD.encode(h)))
}

/// RFC 9162 inclusion of the entry `seq` in the tree of `tree_size`.
#[derive(Debug, Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    #[serde(serialize_with = "base64")]
    pub leaf_hash: Hash,
    #[serde(serialize_with = "base64")]
    pub root_hash: Hash,
    /// Audit path, leaf to root.
    #[serde(rename = "proof", serialize_with = "base64_path")]
    pub path: Vec<Hash>,
}

/// RFC 9162 consistency of the tree of `from` with the tree of `to`.
#[derive(Debug, Serialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    #[serde(serialize_with = "base64")]
    pub from_root: Hash,
    #[serde(serialize_with = "base64")]
    pub to_root: Hash,
    #[serde(rename = "proof", serialize_with = "base64_path")]
    pub path: Vec<Hash>,
}

/// The size of the latest signed checkpoint (0 before the first one).
pub fn checkpoint_size(store: &LogStore, verifier: &NoteVerifier) -> Result<u64, LogError> {
    Ok(super::key_history::open_latest(store, verifier)?.map_or(0, |(_, cp)| cp.size))
}

/// The tree size a proof is for: the one asked for in `field`, else the
/// latest checkpoint's; never beyond the entries the log holds.
pub fn tree_size(
    store: &LogStore,
    verifier: &NoteVerifier,
    field: &'static str,
    asked: Option<u64>,
) -> Result<u64, ProofError> {
    let size = match asked {
        Some(size) => size,
        None => checkpoint_size(store, verifier)?,
    };
    within_log(store, field, size)
}

/// `size` (named `field`), if the log holds that many entries.
fn within_log(store: &LogStore, field: &'static str, size: u64) -> Result<u64, ProofError> {
    let entries = store.next_seq()?;
    if size > entries {
        return Err(out_of_range(
            field,
            format!("{field} {size} is beyond the log's {entries} entries"),
        ));
    }
    Ok(size)
}

/// Inclusion of `seq` in the tree of `tree_size`, which must hold it and
/// be no larger than the log.
pub fn inclusion(store: &LogStore, seq: u64, tree_size: u64) -> Result<InclusionProof, ProofError> {
    within_log(store, "tree_size", tree_size)?;
    if seq >= tree_size {
        return Err(out_of_range(
            "seq",
            format!("seq {seq} is not in a tree of size {tree_size}"),
        ));
    }
    Ok(InclusionProof {
        seq,
        tree_size,
        leaf_hash: store.subtree_hash(0, seq)?,
        root_hash: merkle::root(store, tree_size)?,
        path: merkle::inclusion_proof(store, seq, tree_size)?,
    })
}

/// Consistency of the tree of `from` with the tree of `to`: `1 <= from <=
/// to`, and `to` no larger than the log.
pub fn consistency(store: &LogStore, from: u64, to: u64) -> Result<ConsistencyProof, ProofError> {
    within_log(store, "to", to)?;
    if from == 0 || from > to {
        return Err(out_of_range(
            "from",
            format!("from must be between 1 and to ({to})"),
        ));
    }
    Ok(ConsistencyProof {
        from,
        to,
        from_root: merkle::root(store, from)?,
        to_root: merkle::root(store, to)?,
        path: merkle::consistency_proof(store, from, to)?,
    })
}

/// Everything needed to check one entry offline: the entry's bytes, its
/// inclusion proof at the latest checkpoint, that checkpoint and its key.
#[derive(Debug, Serialize)]
pub struct InclusionBundle {
    pub seq: u64,
    pub tree_size: u64,
    /// The entry's commitment, exactly as stored (hash it: SHA-256(0x00 ‖
    /// entry)); absent when retention expired the entry.
    pub entry: Option<String>,
    /// The disclosures still held (see LOG-FORMAT.md): each one's SHA-256
    /// is in a seal of `entry`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disclosures: Vec<String>,
    #[serde(serialize_with = "base64")]
    pub leaf_hash: Hash,
    /// RFC 9162 audit path, base64, leaf to root.
    #[serde(rename = "proof", serialize_with = "base64_path")]
    pub path: Vec<Hash>,
    /// The signed note whose root the path leads to.
    pub checkpoint: String,
    /// The key that signed it (signed-note vkey).
    pub public_key: String,
}

pub fn inclusion_bundle(
    store: &LogStore,
    verifier: &NoteVerifier,
    seq: u64,
) -> Result<InclusionBundle, ProofError> {
    let (note, cp) = super::key_history::open_latest(store, verifier)?
        .ok_or_else(|| LogError::Checkpoint("no checkpoint has been signed yet".into()))?;
    let size = cp.size;
    let history = super::key_history::KeyHistory::load(store, verifier)?;
    let signer_key = history.verifier_for(size).vkey();
    if seq >= size {
        return Err(out_of_range(
            "seq",
            format!("entry {seq} is not covered by the latest checkpoint (size {size})"),
        ));
    }
    let stored = store.entry(seq)?.ok_or(LogError::Corrupt)?;
    let proof = inclusion(store, seq, size)?;
    let (entry, disclosures, leaf_hash) = if sealed::is_expired(&stored) {
        (None, Vec::new(), store.subtree_hash(0, seq)?)
    } else {
        let commitment = sealed::commitment(&stored);
        (
            Some(String::from_utf8_lossy(commitment).into_owned()),
            sealed::disclosures(&stored).map_err(|e| LogError::Malformed(e.to_string()))?,
            merkle::leaf_hash(commitment),
        )
    };
    Ok(InclusionBundle {
        seq,
        tree_size: size,
        entry,
        disclosures,
        leaf_hash,
        path: proof.path,
        checkpoint: note,
        public_key: signer_key,
    })
}
