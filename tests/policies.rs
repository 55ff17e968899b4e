//! The shipped policies' own `test_*` rules pass, and a broken policy
//! never replaces the running one.

mod common;

use std::path::Path;

use serde_json::json;
use trustpath::policy::{PolicyBundle, PolicyStore, CONNECTION_ENTRY_POINT};

/// `(package, rule)` for every `test_*` rule defined in the `.rego` files under `dir`.
fn test_rules(dir: &Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            test_rules(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rego") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let package = text
            .lines()
            .find_map(|l| l.strip_prefix("package "))
            .unwrap()
            .trim()
            .to_string();
        for line in text.lines().filter(|l| l.starts_with("test_")) {
            let name: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push((package.clone(), name));
        }
    }
}

#[test]
fn shipped_policy_tests_pass() {
    let dir = common::repo_policies();
    let bundle = PolicyBundle::load(&dir).expect("shipped policies load");
    let mut rules = Vec::new();
    test_rules(&dir, &mut rules);
    assert!(
        rules.len() >= 8,
        "expected the shipped test_ rules, found {rules:?}"
    );
    let failed: Vec<_> = rules
        .iter()
        .filter(|(package, rule)| {
            let result = bundle.evaluate_path(&format!("data.{package}.{rule}"));
            !matches!(result, Ok(Some(serde_json::Value::Bool(true))))
        })
        .collect();
    assert!(failed.is_empty(), "failing policy tests: {failed:?}");
}

#[test]
fn broken_policy_never_replaces_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let rego = dir.path().join("p.rego");
    std::fs::write(
        &rego,
        "package trustpath.connection\n\ndecision := {\"allow\": true}\n",
    )
    .unwrap();
    let store = PolicyStore::load(dir.path()).unwrap();
    let revision = store.current().revision().clone();

    std::fs::write(
        &rego,
        "package trustpath.connection\n\ndecision := {\"allow\": \n",
    )
    .unwrap();
    let err = match store.reload() {
        Ok(_) => panic!("a broken policy loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("p.rego"), "error should name the file: {err}");
    assert_eq!(store.current().revision(), &revision);
    let still = store
        .current()
        .evaluate(CONNECTION_ENTRY_POINT, &json!({}))
        .unwrap();
    assert_eq!(still, Some(json!({"allow": true})));

    std::fs::write(
        &rego,
        "package trustpath.connection\n\ndecision := {\"allow\": false}\n",
    )
    .unwrap();
    store.reload().unwrap();
    assert_ne!(store.current().revision(), &revision);
}
