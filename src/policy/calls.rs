//! Every function a policy calls must exist when the policy loads. regorus
//! finds an unknown function only when a decision reaches the call, which
//! turns a typo or an unsupported builtin into a denial at some later
//! request instead of a load error the author sees at once. So at load
//! every call in the syntax tree is resolved: a function the policies
//! define, or a builtin (regorus' own or ours, `builtins.rs`), or the load
//! fails naming the file, line and column.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use super::syntax::{collect_calls, dotted};
use super::PolicyError;

/// Refuses the first call to a function that nothing defines.
pub(super) fn check(modules: &[Value]) -> Result<(), PolicyError> {
    let defined = defined_functions(modules);
    for module in modules {
        let file = module["source"]["file"].as_str().unwrap_or("?");
        let source = module["source"]["contents"].as_str().unwrap_or("");
        let ast = &module["ast"];
        let package = dotted(&ast["package"]["refr"]).unwrap_or_default();
        let aliases = import_aliases(ast, source);
        let mut calls = Vec::new();
        collect_calls(&ast["rules"], &mut calls);
        for call in calls {
            let Some(name) = dotted(&call["fcn"]) else {
                continue;
            };
            let args = call["params"].as_array().map_or(0, Vec::len);
            let known = match qualified(&name, &aliases) {
                Some(full) => defined.contains(&full),
                None => {
                    defined.contains(&format!("data.{package}.{name}")) || is_builtin(&name, args)
                }
            };
            if known {
                continue;
            }
            let span = name_start(&call["fcn"]);
            return Err(PolicyError::Load {
                path: PathBuf::from(file),
                message: format!(
                    "{}:{}: calls {name}, which is neither a builtin trustpath supports \
                     nor a function the policies define",
                    span["line"], span["col"]
                ),
            });
        }
    }
    Ok(())
}

/// `data.<package>.<path>` of every function rule.
fn defined_functions(modules: &[Value]) -> HashSet<String> {
    let mut out = HashSet::new();
    for module in modules {
        let ast = &module["ast"];
        let package = dotted(&ast["package"]["refr"]).unwrap_or_default();
        for rule in ast["rules"].as_array().into_iter().flatten() {
            if let Some(name) = dotted(&rule["Spec"]["head"]["Func"]["refr"]) {
                out.insert(format!("data.{package}.{name}"));
            }
        }
    }
    out
}

/// The full path of a call that can only be a function of the policies
/// (`data.…`, or through an import alias); `None` for a name that is a
/// function of the caller's own package or a builtin.
fn qualified(name: &str, aliases: &HashMap<String, String>) -> Option<String> {
    if name.starts_with("data.") {
        return Some(name.to_string());
    }
    let (first, rest) = name.split_once('.').unwrap_or((name, ""));
    let target = aliases.get(first)?;
    Some(match rest {
        "" => target.clone(),
        rest => format!("{target}.{rest}"),
    })
}

/// Import aliases of a module: `import data.lib as L` (L → data.lib) and
/// `import data.lib.x` (x → data.lib.x).
fn import_aliases(ast: &Value, source: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for import in ast["imports"].as_array().into_iter().flatten() {
        let Some(path) = dotted(&import["refr"]) else {
            continue;
        };
        if !path.starts_with("data.") {
            continue; // future.keywords, rego.v1, input
        }
        let alias = match import["as"].as_object() {
            Some(span) => {
                let at = |k: &str| span.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
                source.get(at("start")..at("end")).map(str::to_string)
            }
            None => path.rsplit('.').next().map(str::to_string),
        };
        if let Some(alias) = alias {
            out.insert(alias, path);
        }
    }
    out
}

/// Where a called name starts: the span of its first segment.
fn name_start(fcn: &Value) -> &Value {
    match fcn.get("RefDot") {
        Some(dot) => name_start(&dot["refr"]),
        None => &fcn["Var"]["span"],
    }
}

/// Whether regorus (with our builtins) knows `name` called with `args`
/// arguments: a probe policy calls it and looks for "could not find
/// function". Answers are kept for the process.
fn is_builtin(name: &str, args: usize) -> bool {
    static KNOWN: OnceLock<Mutex<HashMap<(String, usize), bool>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    let key = (name.to_string(), args);
    if let Some(answer) = known.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return *answer;
    }
    let answer = probe(name, args);
    known
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, answer);
    answer
}

fn probe(name: &str, args: usize) -> bool {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(true);
    if super::builtins::register(&mut engine).is_err() {
        return false;
    }
    let nulls = vec!["null"; args].join(", ");
    let policy = format!("package trustpath_probe\n\nx := {name}({nulls})\n");
    if engine.add_policy("probe.rego".into(), policy).is_err() {
        return false;
    }
    match engine.eval_rule("data.trustpath_probe.x".into()) {
        Ok(_) => true,
        Err(e) => !format!("{e:#}").contains("could not find function"),
    }
}
