//! What the console shows of a logged entry: the entry read back (or why
//! it cannot be), its stored line byte for byte, and the verdict a reader
//! scans for.

use std::collections::BTreeSet;

use crate::log::entry::{LogEntry, Record};
use crate::log::sealed::{self, FieldGroup};
use crate::log::{LogError, LogStore};
use crate::model::{ConnectionInput, Outcome, ToolCallInput};

/// One entry as the console shows it.
pub struct Shown {
    pub seq: u64,
    /// The stored line: what a reader copies and hashes.
    pub stored: String,
    pub content: Content,
}

pub enum Content {
    Read {
        entry: Box<LogEntry>,
        /// Field groups retention redacted: shown as such, not as absent.
        redacted: BTreeSet<FieldGroup>,
    },
    /// Retention removed the whole entry; its leaf hash still proves it.
    Expired,
    /// The stored bytes do not open (their disclosures do not match).
    Unreadable(String),
}

impl Shown {
    pub fn load(store: &LogStore, seq: u64) -> Result<Option<Shown>, LogError> {
        let Some(bytes) = store.entry(seq)? else {
            return Ok(None);
        };
        let stored = String::from_utf8_lossy(&bytes).into_owned();
        let content = match sealed::open_at(seq, &bytes) {
            Ok(opened) if opened.expired => Content::Expired,
            Ok(opened) => {
                let redacted = opened.redacted();
                match opened.into_entry() {
                    Ok(entry) => Content::Read {
                        entry: Box::new(entry),
                        redacted,
                    },
                    Err(e) => Content::Unreadable(e.to_string()),
                }
            }
            Err(e) => Content::Unreadable(e.to_string()),
        };
        Ok(Some(Shown {
            seq,
            stored,
            content,
        }))
    }

    pub fn entry(&self) -> Option<&LogEntry> {
        match &self.content {
            Content::Read { entry, .. } => Some(entry),
            _ => None,
        }
    }

    pub fn is_redacted(&self, group: FieldGroup) -> bool {
        matches!(&self.content, Content::Read { redacted, .. } if redacted.contains(&group))
    }
}

/// How an entry came out, in words and a symbol as well as a colour, so
/// it reads without colour too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approved,
    Reduced,
    Denied,
    Allowed,
    /// A grant was signed.
    Issued,
    Revoked,
    /// Bookkeeping: keys, policies, retention, grants issued.
    Noted,
    Failed,
}

impl Verdict {
    pub fn of(shown: &Shown) -> Verdict {
        match &shown.content {
            Content::Read { entry, .. } => Verdict::of_record(&entry.record),
            Content::Expired => Verdict::Noted,
            Content::Unreadable(_) => Verdict::Failed,
        }
    }

    pub fn of_record(record: &Record) -> Verdict {
        match record {
            Record::ConnectionDecision(r) => match r.decision.outcome {
                Outcome::Approved => Verdict::Approved,
                Outcome::Reduced => Verdict::Reduced,
                Outcome::Denied => Verdict::Denied,
            },
            Record::ToolCall(r) if r.decision.allow => Verdict::Allowed,
            Record::ToolCall(_) => Verdict::Denied,
            Record::GrantIssued(_) => Verdict::Issued,
            Record::GrantRevoked(_) | Record::SessionRevoked(_) => Verdict::Revoked,
            _ => Verdict::Noted,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Reduced => "reduced",
            Verdict::Denied => "denied",
            Verdict::Allowed => "allowed",
            Verdict::Issued => "issued",
            Verdict::Revoked => "revoked",
            Verdict::Noted => "logged",
            Verdict::Failed => "unreadable",
        }
    }

    /// A shape that carries the meaning without colour.
    pub fn symbol(self) -> &'static str {
        match self {
            Verdict::Approved | Verdict::Allowed | Verdict::Issued => "✓",
            Verdict::Reduced => "◐",
            Verdict::Denied | Verdict::Failed => "✕",
            Verdict::Revoked => "⊘",
            Verdict::Noted => "•",
        }
    }

    /// The CSS class: `bad` for what an investigator looks for first.
    pub fn class(self) -> &'static str {
        match self {
            Verdict::Approved | Verdict::Allowed => "good",
            Verdict::Reduced => "partial",
            Verdict::Denied | Verdict::Failed | Verdict::Revoked => "bad",
            Verdict::Issued | Verdict::Noted => "neutral",
        }
    }
}

/// What a reader calls each kind of entry.
pub fn kind_title(record: &Record) -> &'static str {
    match record {
        Record::ConnectionDecision(_) => "Connection decision",
        Record::GrantIssued(_) => "Grant issued",
        Record::ToolCall(_) => "Tool call",
        Record::GrantRevoked(_) => "Grant revoked",
        Record::SessionRevoked(_) => "Session revoked",
        Record::PolicyLoaded(_) => "Policy loaded",
        Record::PolicyRejected(_) => "Policy rejected",
        Record::SigningKey(_) => "Signing key",
        Record::Retention(_) => "Retention",
    }
}

/// The policy input a connection decision logged, typed; `None` when
/// retention redacted or expired it (or an older entry has another shape).
pub fn connection_input(record: &Record) -> Option<ConnectionInput> {
    match record {
        Record::ConnectionDecision(r) if !r.input.is_null() => {
            serde_json::from_value(r.input.clone()).ok()
        }
        _ => None,
    }
}

/// The policy input a tool call logged, typed; `None` when retention
/// redacted or expired it.
pub fn tool_call_input(record: &Record) -> Option<ToolCallInput> {
    match record {
        Record::ToolCall(r) if !r.input.is_null() => serde_json::from_value(r.input.clone()).ok(),
        _ => None,
    }
}

/// How a grant's expiry stands now.
pub fn expiry(exp: i64) -> String {
    let left = exp - chrono::Utc::now().timestamp();
    if left <= 0 {
        format!("{} (expired)", unix_time(exp))
    } else {
        format!("{} (valid for {left} s more)", unix_time(exp))
    }
}

/// An RFC 3339 time for a Unix time in seconds.
pub fn unix_time(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(crate::time::rfc3339)
        .unwrap_or_else(|| seconds.to_string())
}
