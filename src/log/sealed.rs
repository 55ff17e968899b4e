//! Sealed entries: how a leaf commits to an entry so that personal fields
//! can be redacted, and whole bodies expired, while every proof still holds.
//!
//! The stored bytes of an entry are its *commitment*, optionally followed by
//! a tab and its *disclosures*: one line, with no raw tab anywhere else
//! (JSON escapes control characters), so an export stays one entry per
//! line. The commitment is the entry in canonical JSON (RFC 8785) with
//! each sealable field replaced by a seal, `{"_sealed": "<group>",
//! "sha256": "<hex>"}`. A disclosure is the JSON
//! text `[salt, group, value]`, carried as a JSON string; the seal's hash is
//! the SHA-256 of that text's UTF-8 bytes. The leaf hash covers the
//! commitment only, so dropping a disclosure (a redaction) changes no hash,
//! while a disclosure that was altered matches no seal. An expired entry is
//! stored as no bytes at all; its leaf hash stays in the tree.
//!
//! Entries written before sealing existed are a commitment with no seals:
//! they read the same way, and can be expired but not redacted.
//! LOG-FORMAT.md documents the format with a worked example.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::entry::LogEntry;
use super::merkle::{self, Hash};
use crate::canonical;
use crate::digest::sha256_hex;

/// Between the commitment and the disclosures.
pub const SEPARATOR: u8 = b'\t';

/// The member that marks a seal.
pub const SEAL: &str = "_sealed";

/// What a seal covers, and so which retention setting redacts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldGroup {
    /// Who the end user is: the subject (`iss`, `sub`) a decision was made
    /// for, the human approver and actor chain of a delegation, the actor
    /// of a tool call. Personal data.
    EndUser,
    /// The claims of the end user's subject token. Personal data.
    SubjectClaims,
    /// The client identity document as checked.
    ClientDocument,
    /// Tool-call argument values (names and hashes, and values where
    /// allow-listed). Personal data, as far as anyone knows.
    ToolArguments,
    /// The bulk an investigation reads but correlation does not need: the
    /// whole policy input and the client's proof (its JWT header and claims).
    Body,
}

impl FieldGroup {
    pub const ALL: [FieldGroup; 5] = [
        FieldGroup::EndUser,
        FieldGroup::SubjectClaims,
        FieldGroup::ClientDocument,
        FieldGroup::ToolArguments,
        FieldGroup::Body,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FieldGroup::EndUser => "end_user",
            FieldGroup::SubjectClaims => "subject_claims",
            FieldGroup::ClientDocument => "client_document",
            FieldGroup::ToolArguments => "tool_arguments",
            FieldGroup::Body => "body",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Whether the group holds personal data (the audit schema says so too).
    pub fn personal(self) -> bool {
        matches!(
            self,
            FieldGroup::EndUser | FieldGroup::SubjectClaims | FieldGroup::ToolArguments
        )
    }
}

/// A field sealed in entries of `kind`: `path` from the entry's root.
pub struct SealRule {
    pub kind: &'static str,
    pub path: &'static [&'static str],
    pub group: FieldGroup,
}

/// Every sealed field, deepest first within a kind: a field inside another
/// sealed field is sealed first, so the outer disclosure carries its seal
/// and the two can be redacted apart. What stays in the clear is what
/// correlation and review need and names no person: ids, kind, time,
/// policy revision, client, issuer, scopes, outcome and reasons, lifetime,
/// how the client's document and keys were obtained, the grant's claims
/// but its actor. Each seal costs ~150 bytes, so small impersonal fields
/// are not sealed one by one.
pub const RULES: &[SealRule] = &[
    rule(
        "connection_decision",
        &["input", "subject", "claims"],
        FieldGroup::SubjectClaims,
    ),
    rule(
        "connection_decision",
        &["input", "subject"],
        FieldGroup::EndUser,
    ),
    rule(
        "connection_decision",
        &["input", "delegation"],
        FieldGroup::EndUser,
    ),
    rule(
        "connection_decision",
        &["input", "client", "document"],
        FieldGroup::ClientDocument,
    ),
    rule("connection_decision", &["input"], FieldGroup::Body),
    rule(
        "connection_decision",
        &["authentication", "subject"],
        FieldGroup::EndUser,
    ),
    rule(
        "connection_decision",
        &["authentication", "proof"],
        FieldGroup::Body,
    ),
    rule("grant_issued", &["grant", "act"], FieldGroup::EndUser),
    rule(
        "tool_call",
        &["input", "arguments"],
        FieldGroup::ToolArguments,
    ),
    rule("tool_call", &["input", "actor"], FieldGroup::EndUser),
    rule("tool_call", &["input"], FieldGroup::Body),
];

const fn rule(kind: &'static str, path: &'static [&'static str], group: FieldGroup) -> SealRule {
    SealRule { kind, path, group }
}

/// The member that marks a copy: `{"_copy_of": "<top-level member>"}`.
pub const COPY_OF: &str = "_copy_of";

/// A field of entries of `kind` that holds the same value as the entry's
/// top-level member `source`, and is stored as a copy marker instead.
pub struct CopyRule {
    pub kind: &'static str,
    pub path: &'static [&'static str],
    pub source: &'static str,
}

/// Every field stored as a copy. A connection decision's policy input
/// carries the authentication result the entry records beside it: stored
/// once, it costs ~800 bytes less per decision, and the input's copy is
/// redacted with the original (an erasure that seals `authentication.subject`
/// seals the input's too; a second copy in the clear inside the body would
/// have kept it).
pub const COPIES: &[CopyRule] = &[CopyRule {
    kind: "connection_decision",
    path: &["input", "authentication"],
    source: "authentication",
}];

/// The kinds retention applies to: the ones with sealed fields. The rest
/// (revocations, policy bundles, keys, retention's own records) are the
/// evidence of what operators did and are kept whole.
pub fn retained_kind(kind: &str) -> bool {
    RULES.iter().any(|r| r.kind == kind)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the commitment is not a JSON object: {0}")]
    Commitment(String),
    #[error("the disclosures are not a JSON array of strings: {0}")]
    Disclosures(String),
    #[error("disclosure {index} is not [salt, group, value]: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("a seal at {path} names an unknown group {group:?}")]
    UnknownGroup { path: String, group: String },
    #[error("disclosure {index} ({group}) matches no seal of the entry")]
    Unmatched { index: usize, group: String },
    #[error("disclosure {index} says {claims} where its seal at {path} says {sealed}")]
    GroupMismatch {
        index: usize,
        path: String,
        claims: String,
        sealed: String,
    },
}

/// The bytes to store for `entry`: its commitment and disclosures, each
/// disclosure with 16 fresh random bytes of salt (so a sealed value cannot
/// be guessed from its hash).
pub fn seal(entry: &LogEntry) -> Result<Vec<u8>, serde_json::Error> {
    seal_salted(entry, &mut rand::random::<[u8; 16]>)
}

/// [`seal`] with the salts `salt` gives (fixed ones for known answers).
pub fn seal_salted(
    entry: &LogEntry,
    salt: &mut dyn FnMut() -> [u8; 16],
) -> Result<Vec<u8>, serde_json::Error> {
    let (value, disclosures) = commitment_value(entry, salt)?;
    let mut bytes = canonical::to_vec(&value)?;
    append_disclosures(&mut bytes, &disclosures);
    Ok(bytes)
}

/// The entry as its commitment holds it (each sealed field replaced by its
/// seal), and the disclosures of the sealed fields.
fn commitment_value(
    entry: &LogEntry,
    salt: &mut dyn FnMut() -> [u8; 16],
) -> Result<(Value, Vec<String>), serde_json::Error> {
    let mut value = serde_json::to_value(entry)?;
    let kind = entry.record.kind();
    mark_copies(&mut value, kind);
    let mut disclosures: Vec<String> = Vec::new();
    for rule in RULES.iter().filter(|r| r.kind == kind) {
        let Some(field) = field_mut(&mut value, rule.path) else {
            continue;
        };
        if field.is_null() {
            continue;
        }
        let salt = URL_SAFE_NO_PAD.encode(salt());
        let disclosure = Value::Array(vec![
            Value::String(salt),
            Value::String(rule.group.name().to_string()),
            field.take(),
        ]);
        let text = String::from_utf8(canonical::to_vec(&disclosure)?)
            .expect("canonical JSON of UTF-8 strings is UTF-8");
        *field = seal_of(rule.group, &sha256_hex(text.as_bytes()));
        disclosures.push(text);
    }
    Ok((value, disclosures))
}

/// Replaces each field [`COPIES`] names by a copy marker where it holds
/// exactly its source's value (before anything is sealed).
fn mark_copies(value: &mut Value, kind: &str) {
    for copy in COPIES.iter().filter(|c| c.kind == kind) {
        let Some(field) = field_mut(value, copy.path) else {
            continue;
        };
        let held = field.take();
        let same = value.get(copy.source) == Some(&held);
        if let Some(field) = field_mut(value, copy.path) {
            *field = if same { copy_marker(copy.source) } else { held };
        }
    }
}

/// Puts each copy's source back where a copy marker stands (after the
/// disclosures are in place), and reports a field withheld in the source
/// as withheld in the copy too.
fn resolve_copies(value: &mut Value, withheld: &mut Vec<Withheld>) {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let copies: Vec<&CopyRule> = COPIES.iter().filter(|c| c.kind == kind).collect();
    for copy in copies {
        let marked = field_mut(value, copy.path).is_some_and(|f| is_copy_of(f, copy.source));
        let Some(source) = value.get(copy.source).filter(|_| marked).cloned() else {
            continue;
        };
        if let Some(field) = field_mut(value, copy.path) {
            *field = source;
        }
        let at = copy.path.join(".");
        let inherited: Vec<Withheld> = withheld
            .iter()
            .filter_map(|w| {
                let rest = w.path.strip_prefix(copy.source)?;
                (rest.is_empty() || rest.starts_with('.')).then(|| Withheld {
                    group: w.group,
                    path: format!("{at}{rest}"),
                })
            })
            .collect();
        withheld.extend(inherited);
    }
}

fn field_mut<'v>(value: &'v mut Value, path: &[&str]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, name| v.get_mut(*name))
}

fn copy_marker(source: &str) -> Value {
    let mut map = Map::new();
    map.insert(COPY_OF.to_string(), Value::String(source.to_string()));
    Value::Object(map)
}

fn is_copy_of(value: &Value, source: &str) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.len() == 1 && m.get(COPY_OF).and_then(Value::as_str) == Some(source))
}

/// The separator and the disclosure texts as a canonical JSON array, after
/// the commitment; nothing when there are none.
fn append_disclosures(bytes: &mut Vec<u8>, disclosures: &[String]) {
    if disclosures.is_empty() {
        return;
    }
    bytes.push(SEPARATOR);
    bytes.push(b'[');
    for (i, text) in disclosures.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        canonical::string(bytes, text);
    }
    bytes.push(b']');
}

/// An entry sealed before the writer gives it a seq: its stored bytes but
/// for the value of the top-level `seq` member. Request workers make these,
/// so the log writer, which every entry passes through one at a time, only
/// puts the number in ([`Unnumbered::number`]).
#[derive(Debug)]
pub struct Unnumbered {
    /// Up to and including `"seq":`.
    before: Vec<u8>,
    /// From just after the number to the end (disclosures included).
    after: Vec<u8>,
}

impl Unnumbered {
    /// The stored bytes of the entry at `seq`: exactly what [`seal`] gives
    /// for it with the same salts.
    pub fn number(&self, seq: u64) -> Vec<u8> {
        let mut digits = canonical::to_vec(&Value::from(seq)).expect("JCS writes any number");
        let mut bytes = Vec::with_capacity(self.before.len() + digits.len() + self.after.len());
        bytes.extend_from_slice(&self.before);
        bytes.append(&mut digits);
        bytes.extend_from_slice(&self.after);
        bytes
    }
}

/// [`seal`], but for the seq (see [`Unnumbered`]).
pub fn seal_unnumbered(entry: &LogEntry) -> Result<Unnumbered, serde_json::Error> {
    seal_unnumbered_salted(entry, &mut rand::random::<[u8; 16]>)
}

/// [`seal_unnumbered`] with the salts `salt` gives.
pub fn seal_unnumbered_salted(
    entry: &LogEntry,
    salt: &mut dyn FnMut() -> [u8; 16],
) -> Result<Unnumbered, serde_json::Error> {
    let (value, disclosures) = commitment_value(entry, salt)?;
    let Value::Object(map) = value else {
        return Err(serde::ser::Error::custom("an entry is a JSON object"));
    };
    // JCS writes an object as its members, each `"key":value`, in
    // `canonical::members` order between braces: so the members are
    // written one by one and the seq's place is left open.
    let members = canonical::members(&map);
    let split = members.partition_point(|(key, _)| canonical::precedes(key, "seq").is_lt());
    let member = |out: &mut Vec<u8>, key: &str, value: &Value| -> Result<(), serde_json::Error> {
        canonical::string(out, key);
        out.push(b':');
        canonical::write(out, value)
    };
    let mut before = vec![b'{'];
    for (key, value) in &members[..split] {
        member(&mut before, key, value)?;
        before.push(b',');
    }
    before.extend_from_slice(b"\"seq\":");
    let mut after = Vec::new();
    for (key, value) in members[split..].iter().filter(|(k, _)| *k != "seq") {
        after.push(b',');
        member(&mut after, key, value)?;
    }
    after.push(b'}');
    append_disclosures(&mut after, &disclosures);
    Ok(Unnumbered { before, after })
}

fn seal_of(group: FieldGroup, sha256: &str) -> Value {
    let mut map = Map::new();
    map.insert(SEAL.to_string(), Value::String(group.name().to_string()));
    map.insert("sha256".to_string(), Value::String(sha256.to_string()));
    Value::Object(map)
}

/// The part of the stored bytes the leaf hash covers.
pub fn commitment(stored: &[u8]) -> &[u8] {
    match stored.iter().position(|b| *b == SEPARATOR) {
        Some(end) => &stored[..end],
        None => stored,
    }
}

/// The RFC 9162 leaf hash of an entry's stored bytes: its commitment's.
pub fn leaf_hash(stored: &[u8]) -> Hash {
    merkle::leaf_hash(commitment(stored))
}

/// What an export writes for an expired entry (it has no bytes left).
pub fn expired_line(seq: u64) -> Vec<u8> {
    format!("{EXPIRED_LINE}{seq}}}").into_bytes()
}

const EXPIRED_LINE: &str = r#"{"expired":true,"seq":"#;

/// Whether stored bytes (or an export line) are an expired entry's.
pub fn is_expired(stored: &[u8]) -> bool {
    stored.is_empty() || stored.starts_with(EXPIRED_LINE.as_bytes())
}

/// The `seq` an entry's commitment (or an expired entry's export line)
/// claims.
pub fn claimed_seq(stored: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_slice::<Seq>(commitment(stored))
        .ok()
        .map(|s| s.seq)
}

/// A seal whose disclosure is gone: the field was redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub group: FieldGroup,
    /// Where the seal sits, as `input.subject`.
    pub path: String,
}

/// An entry read back: the commitment with every disclosed field in place,
/// and the seals that are left (redacted fields).
#[derive(Debug, Clone)]
pub struct Opened {
    /// The entry as JSON; a redacted field still shows its seal.
    pub value: Value,
    pub withheld: Vec<Withheld>,
    /// Retention expired the entry: only its seq is known here (and its
    /// leaf hash in the tree).
    pub expired: bool,
}

impl Opened {
    /// The entry, typed. A redacted field reads as absent.
    pub fn entry(&self) -> Result<LogEntry, serde_json::Error> {
        self.clone().into_entry()
    }

    /// [`Opened::entry`] without a copy, for readers done with the JSON.
    pub fn into_entry(mut self) -> Result<LogEntry, serde_json::Error> {
        remove_seals(&mut self.value);
        LogEntry::from_value(self.value)
    }

    /// The groups redacted from this entry.
    pub fn redacted(&self) -> BTreeSet<FieldGroup> {
        self.withheld.iter().map(|w| w.group).collect()
    }
}

/// Reads entry `seq` back from its stored bytes; an expired entry reads
/// as `{"seq": seq, "expired": true}`.
pub fn open_at(seq: u64, stored: &[u8]) -> Result<Opened, SealError> {
    if is_expired(stored) {
        let mut value = Map::new();
        value.insert("seq".to_string(), Value::from(seq));
        value.insert("expired".to_string(), Value::Bool(true));
        return Ok(Opened {
            value: Value::Object(value),
            withheld: Vec::new(),
            expired: true,
        });
    }
    open(stored)
}

/// Reads stored bytes back, checking every disclosure against its seal.
pub fn open(stored: &[u8]) -> Result<Opened, SealError> {
    let (opened, used) = reveal(stored, &BTreeSet::new())?;
    if let Some(index) = used.iter().position(|u| !u) {
        let group = disclosure_group(stored, index);
        return Err(SealError::Unmatched { index, group });
    }
    Ok(opened)
}

/// The stored bytes with every disclosure of `groups` dropped (and those
/// only reachable through one), or `None` when there was nothing to drop.
pub fn redact(stored: &[u8], groups: &BTreeSet<FieldGroup>) -> Result<Option<Vec<u8>>, SealError> {
    open(stored)?;
    let (_, used) = reveal(stored, groups)?;
    if used.iter().all(|u| *u) {
        return Ok(None);
    }
    let texts = parse_disclosures(stored)?;
    let kept: Vec<String> = texts
        .into_iter()
        .zip(&used)
        .filter(|(_, used)| **used)
        .map(|(text, _)| text)
        .collect();
    let mut bytes = commitment(stored).to_vec();
    append_disclosures(&mut bytes, &kept);
    Ok(Some(bytes))
}

/// One disclosure, parsed.
struct Disclosure {
    sha256: String,
    group: String,
    value: Value,
}

/// The disclosure texts stored with an entry.
pub fn disclosures(stored: &[u8]) -> Result<Vec<String>, SealError> {
    parse_disclosures(stored)
}

fn parse_disclosures(stored: &[u8]) -> Result<Vec<String>, SealError> {
    match stored.iter().position(|b| *b == SEPARATOR) {
        None => Ok(Vec::new()),
        Some(end) => serde_json::from_slice(&stored[end + 1..])
            .map_err(|e| SealError::Disclosures(e.to_string())),
    }
}

fn disclosure_group(stored: &[u8], index: usize) -> String {
    parse_disclosures(stored)
        .ok()
        .and_then(|texts| {
            texts
                .get(index)
                .and_then(|t| parse_disclosure(index, t).ok())
        })
        .map_or_else(String::new, |d| d.group)
}

fn parse_disclosure(index: usize, text: &str) -> Result<Disclosure, SealError> {
    let malformed = |reason: String| SealError::Malformed { index, reason };
    let parts: (String, String, Value) =
        serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    Ok(Disclosure {
        sha256: sha256_hex(text.as_bytes()),
        group: parts.1,
        value: parts.2,
    })
}

/// Puts back every disclosure whose group is not in `dropped`; says which
/// disclosures were used.
fn reveal(stored: &[u8], dropped: &BTreeSet<FieldGroup>) -> Result<(Opened, Vec<bool>), SealError> {
    let mut value: Value = serde_json::from_slice(commitment(stored))
        .map_err(|e| SealError::Commitment(e.to_string()))?;
    if !value.is_object() {
        return Err(SealError::Commitment("not an object".to_string()));
    }
    let texts = parse_disclosures(stored)?;
    let disclosures: Vec<Disclosure> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| parse_disclosure(i, text))
        .collect::<Result<_, _>>()?;
    let mut walk = Walk {
        texts: &texts,
        used: vec![false; disclosures.len()],
        disclosures,
        dropped,
        withheld: Vec::new(),
    };
    walk.visit(&mut value, &mut String::new())?;
    let used = walk.used;
    let mut withheld = walk.withheld;
    resolve_copies(&mut value, &mut withheld);
    Ok((
        Opened {
            value,
            withheld,
            expired: false,
        },
        used,
    ))
}

struct Walk<'a> {
    texts: &'a [String],
    /// A disclosure's value is moved into the entry when first used.
    disclosures: Vec<Disclosure>,
    dropped: &'a BTreeSet<FieldGroup>,
    used: Vec<bool>,
    withheld: Vec<Withheld>,
}

impl Walk<'_> {
    fn visit(&mut self, value: &mut Value, path: &mut String) -> Result<(), SealError> {
        if let Some((group, sha256)) = as_seal(value) {
            let group = FieldGroup::parse(group).ok_or_else(|| SealError::UnknownGroup {
                path: path.clone(),
                group: group.to_string(),
            })?;
            let found = self
                .disclosures
                .iter()
                .position(|d| d.sha256 == sha256 && !self.dropped.contains(&group));
            let Some(index) = found else {
                self.withheld.push(Withheld {
                    group,
                    path: path.clone(),
                });
                return Ok(());
            };
            let disclosure = &mut self.disclosures[index];
            if disclosure.group != group.name() {
                return Err(SealError::GroupMismatch {
                    index,
                    path: path.clone(),
                    claims: disclosure.group.clone(),
                    sealed: group.name().to_string(),
                });
            }
            *value = match std::mem::replace(&mut self.used[index], true) {
                false => std::mem::take(&mut disclosure.value),
                // A second seal of the same disclosure: its value again.
                true => parse_disclosure(index, &self.texts[index])?.value,
            };
            return self.visit(value, path);
        }
        match value {
            Value::Object(map) => {
                for (name, item) in map.iter_mut() {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(name);
                    self.visit(item, path)?;
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.visit(item, path)?;
                    path.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// (group, sha256) when `value` is a seal.
fn as_seal(value: &Value) -> Option<(&str, &str)> {
    let map = value.as_object()?;
    if map.len() != 2 {
        return None;
    }
    Some((map.get(SEAL)?.as_str()?, map.get("sha256")?.as_str()?))
}

/// Drops every seal left in `value` (a redacted field reads as absent).
fn remove_seals(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, item| as_seal(item).is_none());
            map.values_mut().for_each(remove_seals);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_seals),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::entry::Record;

    const EXAMPLE_STORED: &str = concat!(
        r#"{"client_id":"https://agent.example/c","decision":{"allow":true,"reasons":[],"required_scopes":[]},"decision_id":"d-1","grant_jti":"g-1","input":{"_sealed":"body","sha256":"7a053a4a43a25e52ef49abd3bfb08e2f9d78d21d5119187216c96a151c9a2699"},"kind":"tool_call","method":"tools/call","policy_revision":"sha256:ab","seq":7,"session_id":"s-1","time":"2026-11-28T10:00:00Z","tool":"read_file","tool_call_id":"tc-1"}"#,
        "\t",
        r#"["[\"AQEBAQEBAQEBAQEBAQEBAQ\",\"tool_arguments\",{\"names\":[\"path\"]}]","[\"AgICAgICAgICAgICAgICAg\",\"end_user\",\"alice\"]","[\"AwMDAwMDAwMDAwMDAwMDAw\",\"body\",{\"actor\":{\"_sealed\":\"end_user\",\"sha256\":\"be20a9ac888d67e31c48fc4b37f026d95d0b4497510bfe9c4aa294b602c0c1bc\"},\"arguments\":{\"_sealed\":\"tool_arguments\",\"sha256\":\"f4bd44c59dbb57c7e38598694fdc65a577582a0d5bf220e3ca93f8c7e38515d0\"},\"tool\":\"read_file\"}]"]"#
    );
    const EXAMPLE_LEAF: &str = "e8ec1abc30dc4c52f626442bfaee53532a200b1058708888beb3946d455a2b15";

    fn stored(commitment: &Value, disclosures: &[&str]) -> Vec<u8> {
        let mut bytes = canonical::to_vec(commitment).unwrap();
        if !disclosures.is_empty() {
            bytes.push(SEPARATOR);
            bytes.extend_from_slice(
                &canonical::to_vec(&Value::from(
                    disclosures
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>(),
                ))
                .unwrap(),
            );
        }
        bytes
    }

    fn sealed_entry() -> Vec<u8> {
        let inner = r#"["c2FsdC0y","end_user",{"sub":"alice"}]"#;
        let outer = format!(
            r#"["c2FsdC0x","body",{{"now":"t","subject":{{"_sealed":"end_user","sha256":"{}"}}}}]"#,
            sha256_hex(inner.as_bytes())
        );
        let commitment = serde_json::json!({
            "seq": 3, "kind": "tool_call",
            "input": {"_sealed": "body", "sha256": sha256_hex(outer.as_bytes())},
        });
        stored(&commitment, &[&outer, inner])
    }

    /// The worked example of LOG-FORMAT.md: fixed salts give fixed bytes.
    /// The expected values were checked with Python's json, hashlib and
    /// base64 alone (the script is in LOG-FORMAT.md).
    fn example_entry() -> LogEntry {
        serde_json::from_value(serde_json::json!({
            "seq": 7, "time": "2026-11-28T10:00:00Z", "policy_revision": "sha256:ab",
            "kind": "tool_call", "tool_call_id": "tc-1", "session_id": "s-1",
            "grant_jti": "g-1", "decision_id": "d-1", "client_id": "https://agent.example/c",
            "tool": "read_file", "method": "tools/call",
            "input": {"tool": "read_file", "actor": "alice", "arguments": {"names": ["path"]}},
            "decision": {"allow": true, "reasons": [], "required_scopes": []},
        }))
        .unwrap()
    }

    #[test]
    fn known_answer_vector() {
        let mut n = 0u8;
        let bytes = seal_salted(&example_entry(), &mut || {
            n += 1;
            [n; 16]
        })
        .unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text, EXAMPLE_STORED);
        assert_eq!(hex::encode(leaf_hash(&bytes)), EXAMPLE_LEAF);
        let opened = open(&bytes).unwrap();
        assert_eq!(opened.value["input"]["actor"], "alice");
    }

    /// An entry sealed before its seq is known, then numbered, is byte for
    /// byte the entry sealed with it: for the worked example, an entry
    /// with no sealed field, and a key that sorts before and after `seq`.
    #[test]
    fn numbering_an_unnumbered_entry_gives_the_sealed_bytes() {
        let plain: LogEntry = serde_json::from_value(serde_json::json!({
            "seq": 0, "time": "2026-11-28T10:00:00Z", "policy_revision": "sha256:ab",
            "kind": "session_revoked", "session_id": "s-\u{e9}\"\n", "reason": "r",
            "revocation_id": "rv-1", "grant_jtis": ["g-1"], "revoked_by": "ops",
        }))
        .unwrap();
        for mut entry in [example_entry(), plain] {
            for seq in [0, 7, 10, 123_456_789_012] {
                let salts = || {
                    let mut n = 0u8;
                    move || {
                        n += 1;
                        [n; 16]
                    }
                };
                let unnumbered = seal_unnumbered_salted(&entry, &mut salts()).unwrap();
                entry.seq = seq;
                let sealed = seal_salted(&entry, &mut salts()).unwrap();
                assert_eq!(
                    String::from_utf8(unnumbered.number(seq)).unwrap(),
                    String::from_utf8(sealed).unwrap()
                );
            }
        }
        let mut n = 0u8;
        let worked = seal_unnumbered_salted(&example_entry(), &mut || {
            n += 1;
            [n; 16]
        })
        .unwrap();
        assert_eq!(String::from_utf8(worked.number(7)).unwrap(), EXAMPLE_STORED);
    }

    /// A connection decision as the decider logs it: the input carries the
    /// same authentication result as the entry.
    fn connection_decision() -> LogEntry {
        let authentication = serde_json::json!({
            "result": "verified", "method": "private_key_jwt",
            "issuer": "https://agent.example/c", "subject": "agent-subject-7", "key_id": "k1",
            "reasons": [],
            "document": {"source": "inline", "sha256": "ea9b", "changed": false},
            "proof": {"header": {"alg": "EdDSA"}, "claims": {"jti": "proof-jti-1"}, "sha256": "9e25"},
        });
        serde_json::from_value(serde_json::json!({
            "seq": 3, "time": "2026-11-28T10:00:00Z", "policy_revision": "sha256:ab",
            "kind": "connection_decision", "decision_id": "d-1", "session_id": "s-1",
            "client_id": "https://agent.example/c", "grant_jti": "g-1",
            "authentication": authentication,
            "input": {
                "session_id": "s-1", "scopes": ["files:read"],
                "authentication": authentication,
                "subject": {"iss": "https://idp.example", "sub": "alice"},
            },
            "decision": {
                "outcome": "approved", "allow": true, "requested_scopes": ["files:read"],
                "approved_scopes": ["files:read"], "denied_scopes": [], "tools": [],
                "ttl_seconds": 600, "reasons": [],
            },
        }))
        .unwrap()
    }

    #[test]
    fn the_inputs_authentication_is_stored_once_and_read_back_whole() {
        let entry = connection_decision();
        let bytes = seal(&entry).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches("proof-jti-1").count(), 1, "{text}");
        assert_eq!(text.matches(COPY_OF).count(), 1, "{text}");
        let opened = open(&bytes).unwrap();
        assert!(opened.withheld.is_empty());
        assert_eq!(
            opened.value["input"]["authentication"],
            opened.value["authentication"]
        );
        assert_eq!(
            serde_json::to_value(opened.into_entry().unwrap()).unwrap(),
            serde_json::to_value(&entry).unwrap()
        );
    }

    #[test]
    fn redacting_the_subject_redacts_the_inputs_copy_of_it() {
        let bytes = seal(&connection_decision()).unwrap();
        let redacted = redact(&bytes, &BTreeSet::from([FieldGroup::EndUser]))
            .unwrap()
            .unwrap();
        let text = String::from_utf8(redacted.clone()).unwrap();
        assert!(!text.contains("agent-subject-7"), "{text}");
        assert!(!text.contains("alice"), "{text}");
        let opened = open(&redacted).unwrap();
        let paths: BTreeSet<&str> = opened.withheld.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            BTreeSet::from([
                "authentication.subject",
                "input.authentication.subject",
                "input.subject"
            ])
        );
        assert_eq!(opened.value["input"]["authentication"]["key_id"], "k1");
        let entry = opened.into_entry().unwrap();
        let Record::ConnectionDecision(decision) = entry.record else {
            panic!("a connection decision")
        };
        assert!(decision.input["authentication"].get("subject").is_none());
    }

    #[test]
    fn an_input_whose_authentication_differs_is_stored_as_it_is() {
        let mut entry = connection_decision();
        if let Record::ConnectionDecision(decision) = &mut entry.record {
            decision.input["authentication"]["result"] = "failed".into();
        }
        let bytes = seal(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(COPY_OF));
        let opened = open(&bytes).unwrap();
        assert_eq!(opened.value["input"]["authentication"]["result"], "failed");
        assert_eq!(opened.value["authentication"]["result"], "verified");
    }

    #[test]
    fn opens_nested_disclosures() {
        let opened = open(&sealed_entry()).unwrap();
        assert_eq!(opened.value["input"]["subject"]["sub"], "alice");
        assert!(opened.withheld.is_empty());
    }

    #[test]
    fn a_redacted_group_leaves_its_seal_and_keeps_the_commitment() {
        let bytes = sealed_entry();
        let groups = BTreeSet::from([FieldGroup::EndUser]);
        let redacted = redact(&bytes, &groups).unwrap().unwrap();
        assert_eq!(commitment(&redacted), commitment(&bytes));
        let opened = open(&redacted).unwrap();
        assert_eq!(opened.value["input"]["now"], "t");
        assert_eq!(opened.value["input"]["subject"][SEAL], "end_user");
        assert_eq!(opened.redacted(), groups);
        assert_eq!(redact(&redacted, &groups).unwrap(), None);
    }

    #[test]
    fn dropping_an_outer_group_drops_what_it_holds() {
        let redacted = redact(&sealed_entry(), &BTreeSet::from([FieldGroup::Body]))
            .unwrap()
            .unwrap();
        assert!(!redacted.contains(&SEPARATOR), "no disclosure is left");
        let opened = open(&redacted).unwrap();
        assert_eq!(opened.redacted(), BTreeSet::from([FieldGroup::Body]));
    }

    #[test]
    fn an_altered_disclosure_matches_no_seal() {
        let bytes = sealed_entry();
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("alice", "mallory");
        assert_eq!(
            open(text.as_bytes()).unwrap_err(),
            SealError::Unmatched {
                index: 1,
                group: "end_user".into()
            }
        );
    }
}
