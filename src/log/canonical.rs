//! The canonical JSON text of a log entry's commitment: the bytes its leaf
//! hash covers. Written here rather than by `serde_json::to_vec`, so the
//! bytes do not depend on which serde_json features some dependency turns
//! on (`preserve_order` changes key order).
//!
//! The encoding, as LOG-FORMAT.md documents it: no whitespace; object
//! members sorted by the UTF-8 bytes of their names; strings escaped only
//! where JSON requires (`"`, `\`, and control characters, as `\b \f \n \r
//! \t` or `\u00xx` with lower-case hex); integers in decimal; other numbers
//! in the shortest form that reads back to the same double.

use serde_json::Value;

/// The canonical text of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(name, out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in s.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(hex::encode([byte]).as_bytes());
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_sorted_by_bytes_and_strings_minimally_escaped() {
        let value = json!({"b": [1, -2, 1.5, true, null], "a": "q\"\\\n\u{1}é", "B": {}});
        assert_eq!(
            String::from_utf8(to_vec(&value)).unwrap(),
            r#"{"B":{},"a":"q\"\\\n\u0001é","b":[1,-2,1.5,true,null]}"#
        );
    }

    #[test]
    fn reads_back_to_the_same_value() {
        let value = json!({"z": {"y": ["\u{7f}", "\t", 18446744073709551615u64]}, "x": -0.25});
        let text = to_vec(&value);
        assert_eq!(serde_json::from_slice::<Value>(&text).unwrap(), value);
    }
}
