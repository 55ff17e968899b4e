//! The policies' syntax tree, as regorus serialises it, and the few ways
//! of reading it that load-time checks share.

use serde_json::Value;

use super::PolicyError;

/// Every module of `engine`: `{source: {file, contents}, ast: {package,
/// imports, rules}}` each.
pub(super) fn modules(engine: &regorus::Engine) -> Result<Vec<Value>, PolicyError> {
    let unreadable =
        |e: String| PolicyError::Compile(format!("reading the policies' syntax tree: {e}"));
    let text = engine
        .get_ast_as_json()
        .map_err(|e| unreadable(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))
}

/// Every `Call` node under `node`.
pub(super) fn collect_calls<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "Call" {
                    out.push(value);
                }
                collect_calls(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_calls(i, out)),
        _ => {}
    }
}

/// A reference made of names only (`a`, `a.b.c`), as text.
pub(super) fn dotted(node: &Value) -> Option<String> {
    if let Some(var) = node.get("Var") {
        return var["value"].as_str().map(str::to_string);
    }
    let dot = node.get("RefDot")?;
    let field = dot["field"].get(1)?.as_str()?;
    Some(format!("{}.{field}", dotted(&dot["refr"])?))
}
