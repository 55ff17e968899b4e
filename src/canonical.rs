//! RFC 8785 (JCS) canonical JSON: the bytes the decision log hashes.
//!
//! Written here over `serde_json::Value` because the crate the log started
//! with, `serde_json_canonicalizer`, buffers every object member in its own
//! vectors and parses every member name again to sort it: sealing one
//! decision entry took 54 µs, more than signing its grant (BENCHMARKS.md).
//! That crate stays the reference: numbers other than safe integers are
//! written by it, and a property test (`tests/properties.rs`) checks every
//! output here against it.
//!
//! Not the form OPA signs bundle files in (`policy/signature.rs`): that one
//! orders names by UTF-8 bytes, escapes as Go does and keeps numbers as
//! written, so the two writers look alike and must stay apart.

use std::io::Write as _;

use serde_json::{Number, Value};

/// `Number.MAX_SAFE_INTEGER`: integers up to it are written as their
/// digits, which is what ECMAScript's number-to-string gives them.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value)?;
    Ok(out)
}

/// Appends the canonical bytes of `value` to `out`.
pub fn write(out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => number(out, n)?,
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (name, item)) in members(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, name);
                out.push(b':');
                write(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// The members of `map` in JCS order: by their names' UTF-16 code units.
/// A serde_json map orders by UTF-8 bytes (or keeps insertion order with
/// its `preserve_order` feature), so they are sorted here.
pub fn members(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|a, b| precedes(a.0, b.0));
    members
}

/// The JCS order of two member names.
pub fn precedes(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Appends `s` as a JSON string. serde_json escapes exactly what JCS
/// does: `"`, `\`, and control characters (`\b \t \n \f \r`, else
/// `\u00xx` in lowercase hex); everything else is written as is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string always serializes into memory");
}

fn number(out: &mut Vec<u8>, n: &Number) -> Result<(), serde_json::Error> {
    let written = if let Some(u) = n.as_u64().filter(|u| *u <= MAX_SAFE_INTEGER) {
        write!(out, "{u}")
    } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER) {
        write!(out, "{i}")
    } else {
        // Fractions, exponents and integers beyond 2^53: ECMAScript's
        // shortest round-trip form, as the reference writes it.
        let bytes = serde_json_canonicalizer::to_vec(&Value::Number(n.clone()))?;
        out.extend_from_slice(&bytes);
        Ok(())
    };
    written.map_err(serde_json::Error::io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_rfc_8785_example_canonicalizes_as_the_rfc_says() {
        // RFC 8785 section 3.2.3's input, less its floats with exponents.
        let value = json!({
            "numbers": [333333333.3333333, 1e30, 4.5, 2e-3, 0.000000000000000000000000001],
            "string": "\u{20ac}$\u{000F}\u{000a}A'\u{0042}\u{0022}\u{005c}\\\"/",
            "literals": [null, true, false]
        });
        let expected = concat!(
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
            r#""string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        assert_eq!(
            String::from_utf8(to_vec(&value).unwrap()).unwrap(),
            expected
        );
    }

    #[test]
    fn members_are_ordered_by_utf_16_code_units() {
        // U+FB33 sorts after U+1F600 in UTF-16 (0xD83D...), before it in UTF-8.
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "a": 3, "": 4});
        let text = String::from_utf8(to_vec(&value).unwrap()).unwrap();
        assert_eq!(text, "{\"\":4,\"a\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}");
        assert_eq!(
            to_vec(&value).unwrap(),
            serde_json_canonicalizer::to_vec(&value).unwrap()
        );
    }

    #[test]
    fn integers_beyond_2_53_are_written_as_ecmascript_numbers() {
        for n in [
            json!(9007199254740991u64),
            json!(9007199254740993u64),
            json!(-9007199254740993i64),
            json!(u64::MAX),
            json!(i64::MIN),
        ] {
            assert_eq!(
                to_vec(&n).unwrap(),
                serde_json_canonicalizer::to_vec(&n).unwrap(),
                "{n}"
            );
        }
        assert_eq!(
            to_vec(&json!(9007199254740991u64)).unwrap(),
            b"9007199254740991"
        );
    }
}
