//! Policy results kept for inputs the policies cannot tell apart.
//!
//! A Rego evaluation is a function of its input and the bundle's data,
//! unless it calls a builtin that reads the world (the clock, randomness,
//! the network). When none is called, two inputs that agree on every part
//! of the input the policies mention get the same result, so the second
//! need not be evaluated. What the policies mention is read from their
//! syntax tree at load ([`InputReads::of`]): each reference rooted at
//! `input`, up to its first part that is not a literal name
//! (`input.scopes[i]` reads all of `input.scopes`). Anything else naming
//! `input` (a bare `input`, `walk(input)`, `import input`) reads all of it.
//! The target of `with input… as` replaces, it does not read; what it is
//! replaced with is read as usual.
//!
//! The key is the input cut down to those parts, serialised. A request
//! whose session id or time no policy reads finds the result of an earlier
//! request with the same client, scopes and authentication. Errors are
//! never kept: an evaluation that fails fails (and is logged) every time.
//! Each policy set has its own cache, so a reload starts empty.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::syntax::{collect_calls, dotted};
use super::PolicyError;

/// Bytes of keys and results kept per policy set.
const CAPACITY_BYTES: u64 = 32 << 20;

/// Builtins whose answer is not a function of their arguments (time,
/// randomness, the network, the runtime) or that exist for their side
/// effect: a policy calling one is evaluated every time. A name ending in
/// `.` stands for its whole family.
const READS_THE_WORLD: &[&str] = &[
    "time.now_ns",
    "rand.",
    "uuid.rfc4122",
    "http.",
    "net.lookup_ip_addr",
    "opa.",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify_certificates",
    "crypto.x509.parse_and_verify_certificates_with_options",
    "test.sleep",
    "trace",
    "print",
];

/// A path into the input, by object keys.
type InputPath = Vec<String>;

/// What decides a policy set's results, as read from its syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InputReads {
    /// Only these parts of the input (sorted; none inside another).
    Parts(Vec<InputPath>),
    /// The whole input: some rule reads it as one value.
    Whole,
    /// More than the input: the named builtin is called.
    World(String),
}

impl InputReads {
    /// Reads the syntax tree of every module (see [`super::syntax::modules`]).
    pub(super) fn of(modules: &[Value]) -> Self {
        let mut calls = Vec::new();
        for module in modules {
            collect_calls(&module["ast"]["rules"], &mut calls);
        }
        for call in calls {
            if let Some(name) = dotted(&call["fcn"]).filter(|name| reads_the_world(name)) {
                return Self::World(name);
            }
        }
        let mut paths = BTreeSet::new();
        for module in modules {
            walk(&module["ast"]["imports"], &mut paths);
            walk(&module["ast"]["rules"], &mut paths);
        }
        // Sorted, a path comes right after the shorter paths it extends.
        let mut kept: Vec<InputPath> = Vec::new();
        for path in paths {
            if !kept.last().is_some_and(|outer| path.starts_with(outer)) {
                kept.push(path);
            }
        }
        match kept.first() {
            Some(first) if first.is_empty() => Self::Whole,
            _ => Self::Parts(kept),
        }
    }

    /// How logs and `/ready` describe it.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Parts(paths) => {
                let shown: Vec<String> = paths
                    .iter()
                    .map(|p| format!("input.{}", p.join(".")))
                    .collect();
                format!("results kept per input reading {}", shown.join(", "))
            }
            Self::Whole => "results not kept: a rule reads the whole input".into(),
            Self::World(name) => format!("results not kept: the policies call {name}"),
        }
    }
}

fn reads_the_world(name: &str) -> bool {
    READS_THE_WORLD
        .iter()
        .any(|listed| match listed.strip_suffix('.') {
            Some(family) => name.starts_with(listed) || name == family,
            None => name == *listed,
        })
}

/// Collects the input paths read under `node`.
fn walk(node: &Value, out: &mut BTreeSet<InputPath>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match key.as_str() {
                    "RefDot" | "RefBrack" => reference(node, true, out),
                    "Var" if value["value"] == "input" => {
                        out.insert(Vec::new());
                    }
                    "with_mods" => {
                        for with in value.as_array().into_iter().flatten() {
                            reference(&with["refr"], false, out);
                            walk(&with["as"], out);
                        }
                    }
                    _ => walk(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
        _ => {}
    }
}

/// A reference chain (`a.b[c]`): records its input path when rooted at
/// `input` and `reads` (a `with` target replaces instead), and walks its
/// root otherwise and every index, which are expressions of their own.
fn reference(node: &Value, reads: bool, out: &mut BTreeSet<InputPath>) {
    let mut steps: Vec<Option<String>> = Vec::new();
    let mut at = node;
    loop {
        if let Some(dot) = at.get("RefDot") {
            steps.push(
                dot["field"]
                    .get(1)
                    .and_then(Value::as_str)
                    .map(String::from),
            );
            at = &dot["refr"];
        } else if let Some(brack) = at.get("RefBrack") {
            let index = &brack["index"];
            steps.push(literal_string(index));
            walk(index, out);
            at = &brack["refr"];
        } else {
            break;
        }
    }
    let rooted_at_input = at.get("Var").is_some_and(|var| var["value"] == "input");
    if !rooted_at_input {
        walk(at, out);
    } else if reads {
        out.insert(steps.into_iter().rev().map_while(|step| step).collect());
    }
}

fn literal_string(index: &Value) -> Option<String> {
    let literal = index.get("String").or_else(|| index.get("RawString"))?;
    literal["value"].as_str().map(String::from)
}

/// What the input holds at one path, as the key records it.
#[derive(Serialize)]
enum Part<'a> {
    /// Nothing: a key on the way is missing.
    Absent,
    /// The value at the path.
    At(&'a Value),
    /// A value on the way that is not an object (kept whole).
    Above(&'a Value),
}

impl<'a> Part<'a> {
    fn of(input: &'a Value, path: &[String]) -> Self {
        let mut value = input;
        for key in path {
            match value {
                Value::Object(map) => match map.get(key) {
                    Some(next) => value = next,
                    None => return Self::Absent,
                },
                other => return Self::Above(other),
            }
        }
        Self::At(value)
    }
}

/// One kept result, with its size for the cache's byte bound.
struct Kept {
    result: Option<Value>,
    bytes: u64,
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<Vec<u8>, Arc<Kept>> for ByBytes {
    fn weight(&self, key: &Vec<u8>, kept: &Arc<Kept>) -> u64 {
        key.len() as u64 + kept.bytes + 64
    }
}

/// Results of one policy set, keyed by entry point and the parts of the
/// input its policies read.
pub(super) struct ResultCache {
    paths: Vec<InputPath>,
    entries: quick_cache::sync::Cache<Vec<u8>, Arc<Kept>, ByBytes>,
}

impl ResultCache {
    /// A cache when `reads` allows one.
    pub(super) fn new(reads: &InputReads) -> Option<Self> {
        let InputReads::Parts(paths) = reads else {
            return None;
        };
        Some(Self {
            paths: paths.clone(),
            entries: quick_cache::sync::Cache::with_weighter(16_384, CAPACITY_BYTES, ByBytes),
        })
    }

    /// The kept result of `rule` for `input`, or `evaluate`'s, kept when
    /// it is not an error.
    pub(super) fn get_or_evaluate(
        &self,
        rule: &str,
        input: &Value,
        evaluate: impl FnOnce() -> Result<Option<Value>, PolicyError>,
    ) -> Result<Option<Value>, PolicyError> {
        let key = self.key(rule, input);
        if let Some(kept) = self.entries.get(&key) {
            return Ok(kept.result.clone());
        }
        let result = evaluate()?;
        let bytes = result
            .as_ref()
            .and_then(|value| serde_json::to_vec(value).ok())
            .map_or(0, |text| text.len() as u64);
        self.entries.insert(
            key,
            Arc::new(Kept {
                result: result.clone(),
                bytes,
            }),
        );
        Ok(result)
    }

    /// The entry point, then what the input holds at each read path, in
    /// the paths' fixed order.
    fn key(&self, rule: &str, input: &Value) -> Vec<u8> {
        let mut key = Vec::with_capacity(256);
        key.extend_from_slice(rule.as_bytes());
        for path in &self.paths {
            key.push(b'\n');
            // Writing JSON into a Vec fails only for a map with non-string
            // keys, which a serde_json::Value cannot hold.
            serde_json::to_writer(&mut key, &Part::of(input, path))
                .expect("a JSON value serialises");
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reads(policy: &str) -> InputReads {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("p.rego".into(), policy.into())
            .expect("policy parses");
        InputReads::of(&super::super::syntax::modules(&engine).expect("syntax tree"))
    }

    fn parts(paths: &[&str]) -> InputReads {
        InputReads::Parts(
            paths
                .iter()
                .map(|p| p.split('.').map(String::from).collect())
                .collect(),
        )
    }

    #[test]
    fn references_are_read_up_to_their_first_non_literal_part() {
        let policy = r#"package p
x := input.a.b[0] if { some y in input.c[z]; input["d"].e == 1 }
y if input.a.b.c
z := object.get(input.f, "g", 1)
"#;
        assert_eq!(reads(policy), parts(&["a.b", "c", "d.e", "f"]));
    }

    #[test]
    fn a_bare_input_or_an_import_of_it_reads_the_whole_input() {
        assert_eq!(reads("package p\nx := walk(input)\n"), InputReads::Whole);
        assert_eq!(reads("package p\nx := count(input)\n"), InputReads::Whole);
        assert_eq!(
            reads("package p\nimport input\nx := input.a\n"),
            InputReads::Whole
        );
        assert_eq!(
            reads("package p\nimport input.a.b as q\nx := q.c\n"),
            parts(&["a.b"])
        );
    }

    #[test]
    fn an_input_read_inside_an_index_counts() {
        assert_eq!(reads("package p\nx := data.t[input.k]\n"), parts(&["k"]));
        assert_eq!(
            reads("package p\nx := input.m[input.k]\n"),
            parts(&["k", "m"])
        );
    }

    #[test]
    fn a_with_target_is_not_a_read_but_its_value_is() {
        let policy = r#"package p
x := input.a
t if { x with input as {"a": 1} }
u if { x with input.a as input.b }
"#;
        assert_eq!(reads(policy), parts(&["a", "b"]));
    }

    #[test]
    fn a_builtin_that_reads_the_world_turns_keeping_off() {
        for (call, name) in [
            ("time.now_ns()", "time.now_ns"),
            ("rand.intn(\"x\", 10)", "rand.intn"),
            ("uuid.rfc4122(\"x\")", "uuid.rfc4122"),
            ("opa.runtime()", "opa.runtime"),
            ("http.send({})", "http.send"),
        ] {
            let policy = format!("package p\nf(x) := {call} if x\ny := f(input.a)\n");
            assert_eq!(reads(&policy), InputReads::World(name.into()), "{call}");
        }
        assert!(!reads_the_world("time.now"));
        assert!(!reads_the_world("uuid.parse"));
    }

    #[test]
    fn the_key_tells_apart_what_the_policies_read_and_nothing_else() {
        let cache = ResultCache::new(&parts(&["a.b", "c"])).expect("a cache");
        let key = |input: Value| cache.key("data.p.x", &input);
        let base = key(json!({"a": {"b": 1}, "c": [1], "session": "s1"}));
        assert_eq!(
            base,
            key(json!({"a": {"b": 1, "z": 2}, "c": [1], "session": "s2"}))
        );
        assert_ne!(base, key(json!({"a": {"b": 2}, "c": [1]})));
        assert_ne!(base, key(json!({"a": {"b": 1}, "c": [2]})));
        // Missing, null and a non-object on the way all differ.
        let missing = key(json!({"a": {}, "c": [1]}));
        assert_ne!(missing, key(json!({"a": {"b": null}, "c": [1]})));
        assert_ne!(missing, key(json!({"a": "b", "c": [1]})));
        assert_ne!(
            base,
            cache.key("data.p.y", &json!({"a": {"b": 1}, "c": [1]}))
        );
    }

    #[test]
    fn an_error_is_never_kept() {
        let cache = ResultCache::new(&parts(&["a"])).expect("a cache");
        let input = json!({"a": 1});
        let failed =
            cache.get_or_evaluate("r", &input, || Err(PolicyError::Evaluate("boom".into())));
        assert!(failed.is_err());
        let mut evaluated = false;
        let result = cache.get_or_evaluate("r", &input, || {
            evaluated = true;
            Ok(Some(json!(true)))
        });
        assert!(evaluated, "the failed evaluation was not kept");
        assert_eq!(result.unwrap(), Some(json!(true)));
        let kept = cache.get_or_evaluate("r", &input, || unreachable!("kept"));
        assert_eq!(kept.unwrap(), Some(json!(true)));
    }
}
