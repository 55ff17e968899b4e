//! Builtins whose regorus version answers differently from OPA, replaced
//! by ones with OPA's semantics. regorus looks up an engine extension
//! before its own builtin of the same name, so registering these on every
//! engine (`read_policies`) makes `serve`, `eval`, `test` and `replay` all
//! answer as OPA does. Each follows OPA's Go implementation, which is the
//! reference; the unit tests pin the answers OPA gives.

use anyhow::{bail, Result};
use regorus::Value;

use super::PolicyError;

/// Registers the OPA-faithful builtins on `engine`.
pub(super) fn register(engine: &mut regorus::Engine) -> Result<(), PolicyError> {
    let extensions: [(&str, u8, Box<dyn regorus::Extension>); 15] = [
        ("sprintf", 2, Box::new(super::sprintf::sprintf)),
        ("time.add_date", 4, Box::new(time_add_date)),
        ("strings.count", 2, Box::new(strings_count)),
        ("upper", 1, Box::new(upper)),
        ("lower", 1, Box::new(lower)),
        ("json.marshal", 1, Box::new(json_marshal)),
        ("strings.replace_n", 2, Box::new(strings_replace_n)),
        ("json.is_valid", 1, Box::new(json_is_valid)),
        // Missing from regorus; policies for this domain use them.
        ("crypto.sha256", 1, Box::new(crypto_sha256)),
        ("crypto.hmac.sha256", 2, Box::new(hmac_sha256)),
        ("crypto.hmac.sha512", 2, Box::new(hmac_sha512)),
        ("crypto.hmac.equal", 2, Box::new(hmac_equal)),
        ("array.flatten", 1, Box::new(array_flatten)),
        ("io.jwt.decode", 1, Box::new(jwt_decode)),
        ("net.cidr_intersects", 2, Box::new(cidr_intersects)),
    ];
    for (name, args, extension) in extensions {
        engine
            .add_extension(name.to_string(), args, extension)
            .map_err(|e| PolicyError::Compile(format!("registering {name}: {e}")))?;
    }
    Ok(())
}

fn string<'a>(name: &str, position: usize, value: &'a Value) -> Result<&'a str> {
    match value {
        Value::String(s) => Ok(s.as_ref()),
        other => bail!(
            "{name}: operand {position} must be string but got {}",
            type_name(other)
        ),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

/// Go's `strings.Count`: non-overlapping occurrences, and for an empty
/// substring the number of characters plus one. (regorus counts
/// overlapping matches, and panics on an empty substring.)
fn strings_count(args: Vec<Value>) -> Result<Value> {
    let search = string("strings.count", 1, &args[0])?;
    let substring = string("strings.count", 2, &args[1])?;
    let count = if substring.is_empty() {
        search.chars().count() + 1
    } else {
        search.matches(substring).count()
    };
    Ok(Value::from(count))
}

/// OPA's `strings.replace_n`: one pass over the string (Go's
/// `strings.NewReplacer` over the pattern keys in sorted order), so a
/// replacement is never replaced again. (regorus applies the patterns one
/// after another: `{"a": "b", "b": "a"}` turned "abba" into "aaaa".)
fn strings_replace_n(args: Vec<Value>) -> Result<Value> {
    let Value::Object(patterns) = &args[0] else {
        bail!(
            "strings.replace_n: operand 1 must be object but got {}",
            type_name(&args[0])
        );
    };
    let text = string("strings.replace_n", 2, &args[1])?;
    let mut pairs = Vec::with_capacity(patterns.len());
    // A regorus object iterates in key order: OPA's sorted keys.
    for (old, new) in patterns.iter() {
        match (old, new) {
            (Value::String(old), Value::String(new)) => pairs.push((old.clone(), new.clone())),
            _ => bail!("strings.replace_n: operand 1 must be an object of strings"),
        }
    }
    // Go's replacer: the empty pattern (sorted first) matches before every
    // character and at the end, once per position; otherwise the first
    // pattern in key order that matches here wins.
    let empty = pairs
        .iter()
        .find(|(old, _)| old.is_empty())
        .map(|(_, new)| new);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut after_empty = false;
    loop {
        if let (Some(new), false) = (empty, after_empty) {
            out.push_str(new);
            after_empty = true;
            continue;
        }
        after_empty = false;
        let matched = pairs
            .iter()
            .find(|(old, _)| !old.is_empty() && rest.starts_with(old.as_ref()));
        if let Some((old, new)) = matched {
            out.push_str(new);
            rest = &rest[old.len()..];
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(Value::from(out))
}

/// OPA's `json.is_valid`: false for anything that is not a string of
/// valid JSON, never an error. (regorus raised a type error on a
/// non-string, which a strict engine turns into a failed evaluation.)
fn json_is_valid(args: Vec<Value>) -> Result<Value> {
    Ok(Value::Bool(match &args[0] {
        Value::String(s) => serde_json::from_str::<serde_json::Value>(s).is_ok(),
        _ => false,
    }))
}

/// Go's `strings.ToUpper`, which OPA uses: each character's simple
/// (one-to-one) mapping, so `ß` stays `ß` (Rust's full mapping makes `SS`).
fn upper(args: Vec<Value>) -> Result<Value> {
    let x = string("upper", 1, &args[0])?;
    Ok(Value::from(
        x.chars()
            .map(|c| single(c.to_uppercase()).unwrap_or(c))
            .collect::<String>(),
    ))
}

/// Go's `strings.ToLower`: each character's simple mapping, with no
/// context (a final `Σ` is `σ`, as in Go, not `ς`).
fn lower(args: Vec<Value>) -> Result<Value> {
    let x = string("lower", 1, &args[0])?;
    Ok(Value::from(
        x.chars()
            .map(|c| match c {
                // Its full mapping adds a combining dot; the simple one is `i`.
                '\u{130}' => 'i',
                c => single(c.to_lowercase()).unwrap_or(c),
            })
            .collect::<String>(),
    ))
}

/// The one character a case mapping gives, if it gives exactly one.
fn single(mut mapped: impl Iterator<Item = char>) -> Option<char> {
    let first = mapped.next()?;
    mapped.next().is_none().then_some(first)
}

/// Go's `json.Marshal`, which OPA uses: `<`, `>`, `&` and the JavaScript
/// line separators escaped, so marshalled text is safe inside HTML.
fn json_marshal(args: Vec<Value>) -> Result<Value> {
    let text = serde_json::to_string(&args[0])?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(Value::from(out))
}

/// An integer operand (OPA's builtins take whole numbers here).
fn integer(name: &str, position: usize, value: &Value) -> Result<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("{name}: operand {position} must be an integer")),
        other => bail!(
            "{name}: operand {position} must be number but got {}",
            type_name(other)
        ),
    }
}

/// Go's `time.AddDate` in UTC, which OPA uses: the year, month and day are
/// added and then normalised, so January 31 plus a month is March 3 (2 or
/// 3) and February 29 plus a year is March 1. (regorus clamps to the end
/// of the month, and has no answer for the leap day.)
fn time_add_date(args: Vec<Value>) -> Result<Value> {
    use chrono::{Datelike as _, Duration, NaiveDate};
    const NAME: &str = "time.add_date";
    let ns = integer(NAME, 1, &args[0])?;
    let years = integer(NAME, 2, &args[1])?;
    let months = integer(NAME, 3, &args[2])?;
    let days = integer(NAME, 4, &args[3])?;
    let time = chrono::DateTime::from_timestamp_nanos(ns);
    let month_index = i64::from(time.year())
        .checked_mul(12)
        .and_then(|m| m.checked_add(i64::from(time.month0())))
        .and_then(|m| m.checked_add(years.checked_mul(12)?))
        .and_then(|m| m.checked_add(months));
    let out_of_range = || anyhow::anyhow!("{NAME}: the result is out of range");
    let month_index = month_index.ok_or_else(out_of_range)?;
    let year = i32::try_from(month_index.div_euclid(12)).map_err(|_| out_of_range())?;
    let month = month_index.rem_euclid(12) as u32 + 1;
    let date = NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|first| {
            let day = i64::from(time.day0()).checked_add(days)?;
            first.checked_add_signed(Duration::try_days(day)?)
        })
        .ok_or_else(out_of_range)?;
    let nanos = date
        .and_time(time.time())
        .and_utc()
        .timestamp_nanos_opt()
        .ok_or_else(out_of_range)?;
    Ok(Value::from(nanos))
}

/// `crypto.sha256(x)`: the lowercase hex SHA-256 of the string.
fn crypto_sha256(args: Vec<Value>) -> Result<Value> {
    let x = string("crypto.sha256", 1, &args[0])?;
    Ok(Value::from(crate::digest::sha256_hex(x.as_bytes())))
}

fn hmac_hex<M: hmac::Mac + hmac::digest::KeyInit>(name: &str, args: &[Value]) -> Result<Value> {
    let x = string(name, 1, &args[0])?;
    let key = string(name, 2, &args[1])?;
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key.as_bytes())
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    mac.update(x.as_bytes());
    Ok(Value::from(hex::encode(mac.finalize().into_bytes())))
}

/// `crypto.hmac.sha256(x, key)`: the lowercase hex HMAC-SHA-256.
fn hmac_sha256(args: Vec<Value>) -> Result<Value> {
    hmac_hex::<hmac::Hmac<sha2::Sha256>>("crypto.hmac.sha256", &args)
}

/// `crypto.hmac.sha512(x, key)`: the lowercase hex HMAC-SHA-512.
fn hmac_sha512(args: Vec<Value>) -> Result<Value> {
    hmac_hex::<hmac::Hmac<sha2::Sha512>>("crypto.hmac.sha512", &args)
}

/// `crypto.hmac.equal(mac1, mac2)`: compares in constant time, as OPA's
/// `hmac.Equal` does, so a policy comparing MACs leaks no timing.
fn hmac_equal(args: Vec<Value>) -> Result<Value> {
    let a = string("crypto.hmac.equal", 1, &args[0])?.as_bytes();
    let b = string("crypto.hmac.equal", 2, &args[1])?.as_bytes();
    let same_length = a.len() == b.len();
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    Ok(Value::Bool(same_length && difference == 0))
}

/// `array.flatten(arr)`: nested arrays flattened, at every depth.
fn array_flatten(args: Vec<Value>) -> Result<Value> {
    fn flatten(items: &[Value], out: &mut Vec<Value>) {
        for item in items {
            match item {
                Value::Array(inner) => flatten(inner.as_slice(), out),
                other => out.push(other.clone()),
            }
        }
    }
    let Value::Array(items) = &args[0] else {
        bail!(
            "array.flatten: operand 1 must be array but got {}",
            type_name(&args[0])
        );
    };
    let mut out = Vec::new();
    flatten(items.as_slice(), &mut out);
    Ok(Value::from(out))
}

/// `io.jwt.decode(jwt)`: `[header, payload, signature as hex]`, without
/// checking the signature (OPA's meaning: decoding is not verifying).
fn jwt_decode(args: Vec<Value>) -> Result<Value> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let token = string("io.jwt.decode", 1, &args[0])?;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        bail!("io.jwt.decode: encoded JWT had no period separators");
    };
    let json = |part: &str, what: &str| -> Result<Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|e| anyhow::anyhow!("io.jwt.decode: JWT {what} had invalid encoding: {e}"))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("io.jwt.decode: JWT {what} is not UTF-8"))?;
        Value::from_json_str(text)
            .map_err(|e| anyhow::anyhow!("io.jwt.decode: JWT {what} is not JSON: {e}"))
    };
    let header = json(header, "header")?;
    if header["enc"] != Value::Undefined {
        bail!("io.jwt.decode: JWT is a JWE object, which is not supported");
    }
    let payload = json(payload, "payload")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .map_err(|e| anyhow::anyhow!("io.jwt.decode: JWT signature had invalid encoding: {e}"))?;
    Ok(Value::from(vec![
        header,
        payload,
        Value::from(hex::encode(signature)),
    ]))
}

/// `net.cidr_intersects(a, b)`: whether two CIDRs share an address (an
/// IPv4 and an IPv6 network never do).
fn cidr_intersects(args: Vec<Value>) -> Result<Value> {
    let net = |position: usize| -> Result<ipnet::IpNet> {
        let text = string("net.cidr_intersects", position, &args[position - 1])?;
        text.parse()
            .map_err(|e| anyhow::anyhow!("net.cidr_intersects: {text:?}: {e}"))
    };
    let (a, b) = (net(1)?, net(2)?);
    Ok(Value::Bool(
        a.contains(&b.network()) || b.contains(&a.network()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates `query` on an engine with the replacements registered.
    fn eval(query: &str) -> Result<Value, String> {
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(true);
        register(&mut engine).unwrap();
        engine
            .add_policy("t.rego".into(), format!("package t\nx := {query}\n"))
            .map_err(|e| e.to_string())?;
        engine
            .eval_rule("data.t.x".into())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn answers_are_opas() {
        // (query, OPA v1 answer as JSON)
        let cases = [
            (r#"strings.count("11111", "11")"#, "2"),
            (r#"strings.count("cheese", "e")"#, "3"),
            (r#"strings.count("five", "")"#, "5"),
            (r#"strings.count("héllo", "")"#, "6"),
            (r#"strings.count("", "")"#, "1"),
            (
                r#"strings.replace_n({"a": "b", "b": "a"}, "abba")"#,
                r#""baab""#,
            ),
            (
                r#"strings.replace_n({"cat": "dog"}, "my cat is a cat")"#,
                r#""my dog is a dog""#,
            ),
            (
                r#"strings.replace_n({"a": "1", "ab": "2"}, "ab")"#,
                r#""1b""#,
            ),
            (
                r#"strings.replace_n({"": "x", "a": "1"}, "ab")"#,
                r#""x1xbx""#,
            ),
            (r#"json.is_valid(1)"#, "false"),
            (r#"json.is_valid("{\"a\": 1}")"#, "true"),
            (r#"json.is_valid("{")"#, "false"),
            (
                r#"crypto.sha256("abc")"#,
                r#""ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad""#,
            ),
            // RFC 4231 test case 2.
            (
                r#"crypto.hmac.sha256("what do ya want for nothing?", "Jefe")"#,
                r#""5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843""#,
            ),
            (
                r#"crypto.hmac.sha512("what do ya want for nothing?", "Jefe")"#,
                r#""164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737""#,
            ),
            (r#"crypto.hmac.equal("abc", "abc")"#, "true"),
            (r#"crypto.hmac.equal("abc", "abd")"#, "false"),
            (r#"crypto.hmac.equal("abc", "abcd")"#, "false"),
            (
                r#"array.flatten([1, [2, [3, [4]]], [], "a"])"#,
                r#"[1, 2, 3, 4, "a"]"#,
            ),
            // The jwt.io example token (HS256, not verified by decode).
            (
                r#"io.jwt.decode("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")"#,
                r#"[{"alg": "HS256", "typ": "JWT"}, {"sub": "1234567890", "name": "John Doe", "iat": 1516239022}, "49f94ac7044948c78a285d904f87f0a4c7897f7e8f3a4eb2255fda750b2cc397"]"#,
            ),
        ];
        for (query, want) in cases {
            let got = eval(query).unwrap_or_else(|e| panic!("{query}: {e}"));
            let want = Value::from_json_str(want).unwrap();
            assert_eq!(got, want, "{query}");
        }
    }

    #[test]
    fn type_errors_are_errors() {
        for query in [
            r#"strings.count(1, "a")"#,
            r#"strings.replace_n(["a"], "a")"#,
            r#"strings.replace_n({"a": 1}, "a")"#,
            r#"crypto.sha256(1)"#,
            r#"array.flatten("a")"#,
            r#"net.cidr_intersects("10.0.0.0/33", "10.0.0.0/8")"#,
            r#"io.jwt.decode("not-a-jwt")"#,
            r#"io.jwt.decode("e30.bm90IGpzb24.AA")"#,
        ] {
            assert!(eval(query).is_err(), "{query}");
        }
    }
}
