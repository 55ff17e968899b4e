//! The crate's layers point down only (ARCHITECTURE.md). Read from the
//! source as text: a new upward import, a module cycle, or an HTTP or sled
//! type outside its adapter fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: a module may import its own layer
/// or lower ones, never higher.
const LAYERS: &[(&str, u8)] = &[
    // Basics: no domain knowledge.
    ("canonical", 0),
    ("digest", 0),
    ("text", 0),
    ("time", 0),
    ("disk", 0),
    ("trace_context", 0),
    ("progress", 0),
    ("secret_file", 0),
    ("input", 0),
    // Domain types and settings: no I/O.
    ("model", 1),
    ("config", 1),
    // Domain services.
    ("identity", 2),
    ("policy", 2),
    ("grant", 2),
    ("log", 2),
    ("telemetry", 2),
    // The pipelines, and what reads the log back out (sinks).
    ("decide", 3),
    ("tool_call", 3),
    ("replay", 3),
    ("revocation", 3),
    ("retention", 3),
    ("lifecycle", 3),
    ("sinks", 3),
    // Adapters and wiring.
    ("server", 4),
    ("store", 4),
    ("app", 4),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's source files by top-level module (the binary's `main.rs`
/// and `commands/` are the CLI adapter, above everything).
fn modules() -> BTreeMap<String, Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut by_module: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    for path in files {
        let relative = path.strip_prefix(src()).unwrap().to_path_buf();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        if ["lib", "main", "commands"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests may reach for anything.
        let text = match text.find("#[cfg(test)]") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        // Comments may name any module.
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        by_module.entry(module).or_default().push((relative, text));
    }
    by_module
}

/// `crate::name` references in `text`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[i + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        refs.insert(name);
    }
    refs
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/architecture.rs"))
}

#[test]
fn layers_point_down() {
    let mut upward = Vec::new();
    for (module, files) in modules() {
        for (path, text) in files {
            for target in crate_refs(&text) {
                if target != module && layer(&target) > layer(&module) {
                    upward.push(format!(
                        "{} ({module}, layer {}) imports {target} (layer {})",
                        path.display(),
                        layer(&module),
                        layer(&target)
                    ));
                }
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn no_module_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = modules()
        .into_iter()
        .map(|(module, files)| {
            let deps = files
                .iter()
                .flat_map(|(_, text)| crate_refs(text))
                .filter(|d| *d != module)
                .collect();
            (module, deps)
        })
        .collect();
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(i) = path.iter().position(|n| n == node) {
            panic!("module cycle: {} -> {node}", path[i..].join(" -> "));
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node.to_string());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn storage_engines_stay_in_their_modules() {
    for (crate_name, home) in [
        ("sled", "store/sled.rs"),
        ("fjall", "store/fjall.rs"),
        ("postgres", "store/postgres.rs"),
        ("r2d2_postgres", "store/postgres.rs"),
    ] {
        for (module, files) in modules() {
            for (path, text) in &files {
                let needle = format!("{crate_name}::");
                // The crate, not a path such as `store::sled::...`.
                let names_crate = text.match_indices(&needle).any(|(i, _)| {
                    !text[..i].ends_with("::")
                        && !text[..i]
                            .chars()
                            .last()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                assert!(
                    path.starts_with(home) || !names_crate,
                    "{} ({module}) names {crate_name} outside {home}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn http_server_types_stay_in_the_server_adapter() {
    for (module, files) in modules() {
        if module == "server" {
            continue;
        }
        for (path, text) in files {
            for needle in ["axum::", "hyper::", "hyper_util::", "tower_http::"] {
                assert!(
                    !text.contains(needle),
                    "{} uses {needle} outside server/",
                    path.display()
                );
            }
        }
    }
}
