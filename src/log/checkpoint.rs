//! Signed checkpoints: the C2SP tlog-checkpoint body in a C2SP signed note,
//! signed with the log's own Ed25519 key (never the grant key).
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//!
//! — <key name> <base64(key hash ‖ signature)>
//! ```

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::merkle::Hash;
use crate::digest::sha256;

/// Signature type byte for Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("checkpoint is not signed by {0}")]
    NotSigned(String),
    #[error("checkpoint signature does not verify")]
    BadSignature,
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
}

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }
}

/// Key hash of a signed-note key: SHA-256(name ‖ "\n" ‖ alg ‖ public key)[..4].
fn key_hash(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut buf = Vec::with_capacity(name.len() + 34);
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(ALG_ED25519);
    buf.extend_from_slice(public.as_bytes());
    sha256(&buf)[..4].try_into().expect("4 bytes")
}

/// The log's signing key; its name is the log origin.
pub struct LogSigner {
    key: SigningKey,
    verifier: NoteVerifier,
}

impl LogSigner {
    pub fn new(key: SigningKey, origin: &str) -> Self {
        let verifier = NoteVerifier::new(origin, key.verifying_key());
        Self { key, verifier }
    }

    pub fn load_or_create(path: &Path, origin: &str) -> Result<Self, String> {
        Ok(Self::new(crate::secret_file::ed25519_key(path)?, origin))
    }

    pub fn origin(&self) -> &str {
        &self.verifier.name
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The signed note for a checkpoint of `size` leaves with `root`.
    pub fn sign(&self, size: u64, root: Hash) -> String {
        let checkpoint = Checkpoint {
            origin: self.verifier.name.clone(),
            size,
            root,
        };
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = self.verifier.key_hash.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{body}\n\u{2014} {} {}\n",
            self.verifier.name,
            STANDARD.encode(blob)
        )
    }
}

/// Verifies notes signed by one key, given in the signed-note vkey form
/// `<name>+<hex key hash>+<base64(0x01 ‖ public key)>`.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    key_hash: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    fn new(name: &str, key: VerifyingKey) -> Self {
        Self {
            name: name.to_string(),
            key_hash: key_hash(name, &key),
            key,
        }
    }

    pub fn from_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(CheckpointError::BadKey("expected name+hash+key"));
        };
        let raw = STANDARD
            .decode(key_b64)
            .map_err(|_| CheckpointError::BadKey("key is not base64"))?;
        let (&[alg], public) = raw.split_at(1.min(raw.len())) else {
            return Err(CheckpointError::BadKey("empty key"));
        };
        if alg != ALG_ED25519 {
            return Err(CheckpointError::BadKey("not an Ed25519 key"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| CheckpointError::BadKey("Ed25519 key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| CheckpointError::BadKey("not a valid Ed25519 point"))?;
        let verifier = Self::new(name, key);
        if hex::encode(verifier.key_hash) != hash_hex {
            return Err(CheckpointError::BadKey(
                "key hash does not match name and key",
            ));
        }
        Ok(verifier)
    }

    /// The key's name: the log's origin, the first line of its checkpoints.
    pub fn origin(&self) -> &str {
        &self.name
    }

    pub fn vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_hash),
            STANDARD.encode(raw)
        )
    }

    /// Checks the note's signature by this key and parses the checkpoint.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, signatures) = note
            .split_once("\n\n")
            .map(|(b, s)| (format!("{b}\n"), s))
            .ok_or(CheckpointError::Malformed(
                "no blank line before the signatures",
            ))?;
        let mut signed = false;
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(CheckpointError::Malformed(
                    "signature line must start with an em dash",
                ));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(CheckpointError::Malformed(
                    "signature line has no signature",
                ));
            };
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| CheckpointError::Malformed("signature is not base64"))?;
            if name != self.name || blob.len() != 68 || blob[..4] != self.key_hash {
                continue; // another key's signature
            }
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| CheckpointError::BadSignature)?;
            self.key
                .verify(body.as_bytes(), &signature)
                .map_err(|_| CheckpointError::BadSignature)?;
            signed = true;
        }
        if !signed {
            return Err(CheckpointError::NotSigned(self.name.clone()));
        }
        parse_body(&body)
    }
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let mut lines = body.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(CheckpointError::Malformed("no origin line"))?;
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or(CheckpointError::Malformed("tree size is not a number"))?;
    let root: Hash = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(CheckpointError::Malformed(
            "root hash is not 32 bytes of base64",
        ))?;
    Ok(Checkpoint {
        origin: origin.to_string(),
        size,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_note_round_trip_and_tamper() {
        let signer = LogSigner::new(
            SigningKey::generate(&mut rand::rngs::OsRng),
            "trustpath.example/log",
        );
        let note = signer.sign(42, [7u8; 32]);
        assert!(note.starts_with("trustpath.example/log\n42\n"));
        let verifier = NoteVerifier::from_vkey(&signer.verifier().vkey()).unwrap();
        let cp = verifier.open(&note).unwrap();
        assert_eq!((cp.size, cp.root), (42, [7u8; 32]));

        let forged = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(verifier.open(&forged), Err(CheckpointError::BadSignature));
        let other = LogSigner::new(
            SigningKey::generate(&mut rand::rngs::OsRng),
            "trustpath.example/log",
        );
        assert!(verifier.open(&other.sign(42, [7u8; 32])).is_err());
        let mut vkey = signer.verifier().vkey();
        vkey.replace_range(0..1, "x");
        assert!(NoteVerifier::from_vkey(&vkey).is_err());
    }
}
