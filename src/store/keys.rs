//! The key layout both embedded engines share: one ordered key space with
//! a one-byte prefix per kind of record. Each engine stores these keys and
//! values as they are, so a layout question has one answer.

use super::entry_file::Location;
use crate::log::index::{Field, IndexRecord};
use crate::log::LogError;

pub(super) const ENTRY: u8 = b'e';
pub(super) const DECISION: u8 = b'd';
/// Stored Merkle subtree hashes: level, index. A leaf's (level 0) value
/// is its hash followed by the entry's event time (µs since the epoch,
/// 8 bytes big endian) when the entry has one: the time needs no key of
/// its own, one key fewer for every entry the writer stores.
pub(super) const HASH: u8 = b'h';
/// Signed checkpoints, by tree size.
pub(super) const CHECKPOINT: u8 = b'c';
/// Postings: `i` ‖ field tag ‖ u32 length ‖ value ‖ u64 seq (big endian).
/// The length prefix means no value can be mistaken for another that
/// shares a prefix or contains separator bytes.
pub(super) const INDEX: u8 = b'i';
/// seq → event time (µs since the epoch), as logs written before the
/// time moved into the leaf hash's value hold it: an entry's time is in
/// one place or the other, never both.
pub(super) const TIME: u8 = b't';
/// Entry-file frames retention has replaced and not yet zeroed:
/// `x` ‖ offset (u64) → seq (u64) ‖ length (u32), all big endian (see
/// `ordered.rs`, `retain` and `settle`).
pub(super) const PENDING_ERASE: u8 = b'x';

pub(super) fn pending_erase_key(offset: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(PENDING_ERASE);
    key.extend_from_slice(&offset.to_be_bytes());
    key
}

/// The pending-erase record of entry `seq`'s old frame at `at`.
pub(super) fn pending_erase(seq: u64, at: Location) -> (Vec<u8>, Vec<u8>) {
    let mut value = Vec::with_capacity(12);
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(&at.len.to_be_bytes());
    (pending_erase_key(at.offset), value)
}

/// A pending-erase record read back: the entry's seq and its old frame.
pub(super) fn parse_pending_erase(key: &[u8], value: &[u8]) -> Result<(u64, Location), LogError> {
    if key.len() != 9 || value.len() != 12 {
        return Err(malformed(
            key,
            format!(
                "a pending erasure is a 9-byte key and a 12-byte value; this value is {} bytes",
                value.len()
            ),
        ));
    }
    let offset = u64_at(key, &key[1..], "the offset")?;
    let seq = u64_at(key, &value[..8], "the seq")?;
    let len = u32::from_be_bytes(value[8..].try_into().unwrap_or([0; 4]));
    Ok((seq, Location { offset, len }))
}

pub(super) fn hash_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = HASH;
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

/// A leaf hash's stored value: the hash, then the event time if any.
pub(super) fn leaf_value(hash: &[u8; 32], micros: Option<i64>) -> Vec<u8> {
    let mut value = Vec::with_capacity(40);
    value.extend_from_slice(hash);
    if let Some(micros) = micros {
        value.extend_from_slice(&micros.to_be_bytes());
    }
    value
}

/// A stored hash, and the event time it carries if it is a leaf's.
pub(super) type Leaf = ([u8; 32], Option<i64>);

/// A stored hash's value read back: the hash, and the event time a leaf
/// carries.
pub(super) fn split_hash_value(key: &[u8], value: &[u8]) -> Result<Leaf, LogError> {
    let leaf = key.get(1) == Some(&0);
    match (value.len(), leaf) {
        (32, _) => Ok((value.try_into().unwrap_or([0; 32]), None)),
        (40, true) => Ok((
            value[..32].try_into().unwrap_or([0; 32]),
            Some(u64_at(key, &value[32..], "its time")? as i64),
        )),
        (n, true) => Err(malformed(
            key,
            format!("a leaf hash is 32 bytes, or 40 with its time; this one {n}"),
        )),
        (n, false) => Err(malformed(key, format!("a hash is 32 bytes, this one {n}"))),
    }
}

/// The index of a 10-byte hash key.
fn index_of_hash_key(key: &[u8]) -> Result<u64, LogError> {
    if key.len() != 10 {
        return Err(malformed(key, "a hash key is 10 bytes"));
    }
    u64_at(key, &key[2..], "the index")
}

pub(super) fn checkpoint_key(size: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = CHECKPOINT;
    key[1..].copy_from_slice(&size.to_be_bytes());
    key
}

pub(super) fn entry_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = ENTRY;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn decision_key(decision_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + decision_id.len());
    key.push(DECISION);
    key.extend_from_slice(decision_id.as_bytes());
    key
}

pub(super) fn time_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = TIME;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn field_tag(field: Field) -> u8 {
    match field {
        Field::Session => b's',
        Field::Client => b'c',
        Field::Subject => b'u',
        Field::Issuer => b'i',
        Field::RequestedScope => b'r',
        Field::ApprovedScope => b'a',
        Field::DeniedScope => b'x',
        Field::Outcome => b'o',
        Field::Kind => b'k',
        Field::Grant => b'g',
        Field::Tool => b'T',
        Field::SessionGrant => b'S',
        Field::RevokedGrant => b'R',
        Field::RevokedSession => b'V',
        Field::ClientDocument => b'D',
        Field::SigningKey => b'K',
    }
}

/// The key prefix of every entry posted under `field = value`.
pub(super) fn posting_prefix(field: Field, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(6 + value.len() + 8);
    key.push(INDEX);
    key.push(field_tag(field));
    // Values come from bounded requests, far below 4 GiB.
    let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
    key.extend_from_slice(&length.to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key
}

pub(super) fn posting_key(field: Field, value: &str, seq: u64) -> Vec<u8> {
    let mut key = posting_prefix(field, value);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(super) const TAGS: [Field; 16] = [
    Field::Session,
    Field::Client,
    Field::Subject,
    Field::Issuer,
    Field::RequestedScope,
    Field::ApprovedScope,
    Field::DeniedScope,
    Field::Outcome,
    Field::Kind,
    Field::Grant,
    Field::Tool,
    Field::SessionGrant,
    Field::RevokedGrant,
    Field::RevokedSession,
    Field::ClientDocument,
    Field::SigningKey,
];

/// The field a tag names, if any.
pub(super) fn field_of_tag(tag: u8) -> Option<Field> {
    TAGS.iter().copied().find(|f| field_tag(*f) == tag)
}

/// A key shown in a report: its length and its first bytes in hex.
pub(super) fn show_key(key: &[u8]) -> String {
    let shown: Vec<String> = key.iter().take(24).map(|b| format!("{b:02x}")).collect();
    let more = if key.len() > 24 { " …" } else { "" };
    format!("key [{}{more}] ({} bytes)", shown.join(" "), key.len())
}

pub(super) fn malformed(key: &[u8], why: impl std::fmt::Display) -> LogError {
    LogError::Malformed(format!("{}: {why}", show_key(key)))
}

/// An 8-byte big-endian number, or what is wrong with it.
pub(super) fn u64_at(key: &[u8], bytes: &[u8], what: &str) -> Result<u64, LogError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| malformed(key, format!("{what} is {} bytes, not 8", bytes.len())))?;
    Ok(u64::from_be_bytes(array))
}

/// The seq of a 9-byte entry, time or checkpoint key.
pub(super) fn seq_of_key(key: &[u8]) -> Result<u64, LogError> {
    if key.len() != 9 {
        return Err(malformed(key, "a seq key is 9 bytes"));
    }
    u64_at(key, &key[1..], "the seq")
}

/// The seq of a posting key.
pub(super) fn seq_of_posting(key: &[u8]) -> Result<u64, LogError> {
    parse_posting_key(key).map(|(_, _, seq)| seq)
}

/// A posting key, read back: field, value and seq.
pub(super) fn parse_posting_key(key: &[u8]) -> Result<(Field, String, u64), LogError> {
    let field = key
        .get(1)
        .and_then(|tag| field_of_tag(*tag))
        .ok_or_else(|| malformed(key, "not a known index field"))?;
    let length = key
        .get(2..6)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap_or_default()) as usize)
        .ok_or_else(|| malformed(key, "shorter than a posting key's header"))?;
    let expected = length.saturating_add(14);
    if key.len() != expected {
        return Err(malformed(
            key,
            format!("a posting with a {length}-byte value is {expected} bytes"),
        ));
    }
    let value = std::str::from_utf8(&key[6..6 + length]).map_err(|e| {
        malformed(
            key,
            format!("value is not UTF-8 at offset {}", 6 + e.valid_up_to()),
        )
    })?;
    Ok((
        field,
        value.to_string(),
        u64_at(key, &key[6 + length..], "the seq")?,
    ))
}

/// One stored key and value of the log tree as an index record; `None`
/// for the keys that are not index records (entries, checkpoints, hashes
/// but for a leaf's time).
pub(super) fn index_record(key: &[u8], value: &[u8]) -> Option<Result<IndexRecord, LogError>> {
    let record = match key.first() {
        Some(&(ENTRY | CHECKPOINT)) => return None,
        Some(&HASH) => {
            let time = split_hash_value(key, value).and_then(|(_, micros)| match micros {
                Some(micros) => index_of_hash_key(key).map(|seq| Some((seq, micros))),
                None => Ok(None),
            });
            return match time {
                Ok(Some((seq, micros))) => Some(Ok(IndexRecord::Time { seq, micros })),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            };
        }
        Some(&INDEX) => {
            parse_posting_key(key).map(|(field, value_text, seq)| IndexRecord::Posting {
                field,
                value: value_text,
                seq,
                data: value.to_vec(),
            })
        }
        Some(&DECISION) => match std::str::from_utf8(&key[1..]) {
            Ok(id) => u64_at(key, value, "its seq").map(|seq| IndexRecord::Decision {
                id: id.to_string(),
                seq,
            }),
            Err(_) => Err(malformed(key, "decision id is not UTF-8")),
        },
        Some(&TIME) => seq_of_key(key).and_then(|seq| {
            Ok(IndexRecord::Time {
                seq,
                micros: u64_at(key, value, "its time")? as i64,
            })
        }),
        _ => Err(malformed(key, "no trustpath key starts so")),
    };
    Some(record)
}

/// The key and value `record` is stored under.
pub(super) fn record_key_value(record: &IndexRecord) -> (Vec<u8>, Vec<u8>) {
    match record {
        IndexRecord::Posting {
            field,
            value,
            seq,
            data,
        } => (posting_key(*field, value, *seq), data.clone()),
        IndexRecord::Decision { id, seq } => (decision_key(id), seq.to_be_bytes().to_vec()),
        IndexRecord::Time { seq, micros } => {
            (time_key(*seq).to_vec(), micros.to_be_bytes().to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posting_keys_cannot_collide_across_values() {
        // Values that share prefixes, or hold the bytes a naive separator would use.
        let values = ["a", "ab", "a\u{0}b", "a\u{0}", "", "\u{0}\u{0}\u{0}\u{1}a"];
        let mut keys = std::collections::BTreeSet::new();
        for v in values {
            for seq in [0u64, 1, 256] {
                assert!(
                    keys.insert(posting_key(Field::Session, v, seq)),
                    "{v:?}/{seq}"
                );
                // A prefix scan for one value never yields another value's key.
                for other in values.iter().filter(|o| **o != v) {
                    assert!(!posting_key(Field::Session, other, seq)
                        .starts_with(&posting_prefix(Field::Session, v)));
                }
            }
        }
        assert_ne!(
            posting_key(Field::Session, "x", 1),
            posting_key(Field::Client, "x", 1)
        );
    }
}
