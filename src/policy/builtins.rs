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
    let extensions: [(&str, u8, Box<dyn regorus::Extension>); 3] = [
        ("strings.count", 2, Box::new(strings_count)),
        ("strings.replace_n", 2, Box::new(strings_replace_n)),
        ("json.is_valid", 1, Box::new(json_is_valid)),
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
        ] {
            assert!(eval(query).is_err(), "{query}");
        }
    }
}
