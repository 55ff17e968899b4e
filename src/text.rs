//! Strings that come from outside: identifiers are checked at the API edge,
//! and anything stored is escaped before a person reads it.
//!
//! Request-controlled text ends up in operators' terminals and in the
//! process's own log lines. A newline there forges a log line, an ANSI
//! escape rewrites a terminal, a bidi override reorders what is shown. JSON
//! output keeps the exact text; only output for people is escaped.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// Longest identifier accepted (bytes): session ids, client ids, subjects,
/// tool names, grant ids. Long enough for any URL a client id needs.
pub const MAX_IDENTIFIER_BYTES: usize = 512;

/// Longest free-text field accepted (bytes), such as a revocation reason.
pub const MAX_TEXT_BYTES: usize = 2048;

/// Characters never accepted in an identifier and escaped on output: C0
/// and C1 controls, DEL, and the bidi embedding/override/isolate controls.
pub fn is_hazardous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Why `value` is not an acceptable identifier, if it is not.
pub fn check_identifier(value: &str) -> Result<(), String> {
    check(value, MAX_IDENTIFIER_BYTES)
}

/// Why `value` is not acceptable free text (a reason), if it is not.
pub fn check_text(value: &str) -> Result<(), String> {
    check(value, MAX_TEXT_BYTES)
}

fn check(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} bytes, got {}", value.len()));
    }
    if let Some(c) = value.chars().find(|c| is_hazardous(*c)) {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// serde: an identifier, refused (naming the field) unless it checks out.
pub fn identifier<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    check_identifier(&value).map_err(serde::de::Error::custom)?;
    Ok(value)
}

/// serde: an optional identifier (use with `#[serde(default)]`).
pub fn optional_identifier<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    if let Some(v) = &value {
        check_identifier(v).map_err(serde::de::Error::custom)?;
    }
    Ok(value)
}

/// serde: an optional list of identifiers (use with `#[serde(default)]`).
pub fn optional_identifiers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let values = Option::<Vec<String>>::deserialize(deserializer)?;
    for (i, v) in values.iter().flatten().enumerate() {
        check_identifier(v).map_err(|e| serde::de::Error::custom(format!("[{i}] {e}")))?;
    }
    Ok(values)
}

/// `text` with every hazardous character written as `\u{..}`: safe for a
/// terminal or a log line. (A literal `\u{a}` in the text reads the same;
/// that can mislead a reader but drives nothing.)
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazardous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().saturating_add(8));
    for c in text.chars() {
        if is_hazardous(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Displays a string escaped, for tracing fields and tables.
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

/// A writer for the process's log lines: each event arrives as one write
/// ending in a newline; everything hazardous inside it is escaped, so no field
/// of any event can start a line of its own or drive the terminal.
pub struct LineEscaping<W>(pub W);

impl<W: std::io::Write> std::io::Write for LineEscaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let escaped = escape(body);
        self.0.write_all(escaped.as_bytes())?;
        self.0.write_all(newline.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_acts_on() {
        assert_eq!(escape("a\nb"), "a\\u{a}b");
        assert_eq!(escape("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn identifiers_are_bounded_and_visible() {
        assert!(check_identifier("sess-1").is_ok());
        assert!(check_identifier("").is_err());
        assert!(check_identifier("a\rb").is_err());
        assert!(check_identifier(&"a".repeat(MAX_IDENTIFIER_BYTES + 1)).is_err());
    }
}
