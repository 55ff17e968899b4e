//! Testing a policy change: `trustpath test` on a policy suite, and
//! `trustpath replay` of real decisions (written through the HTTP API)
//! against candidate policies.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

/// Runs the binary; returns (exit code, stdout, stderr).
fn trustpath_code(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(args)
        .env("TRUSTPATH_LOG", "error")
        .output()
        .expect("run trustpath");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SUITE: &str = r#"package demo

allow if input.user == "admin"

allow if data.demo.settings.open

conflict := 1 if true

conflict := 2 if input.clash
"#;

const SUITE_TESTS: &str = r#"package demo_test

import data.demo

test_admin_allowed if {
	demo.allow with input as {"user": "admin"}
}

test_open_mocked_with_data if {
	demo.allow with input as {"user": "bob"} with data.demo.settings.open as true
}

test_guest_allowed_fails if {
	demo.allow with input as {"user": "guest"}
}

test_false_fails if {
	false
}

test_conflict_errors if {
	demo.conflict == 1 with input as {"clash": true}
}

todo_test_later if {
	false
}
"#;

fn write_suite(dir: &Path) -> PathBuf {
    let policies = dir.join("suite");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("demo.rego"), SUITE).unwrap();
    std::fs::write(policies.join("demo_test.rego"), SUITE_TESTS).unwrap();
    std::fs::write(
        policies.join("data.json"),
        r#"{"demo": {"settings": {"open": false}}}"#,
    )
    .unwrap();
    policies
}

#[test]
fn policy_tests_count_pass_fail_error_and_todo() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path());
    let suite = suite.to_str().unwrap();

    let (code, out, err) = trustpath_code(&["test", suite]);
    assert_eq!(code, 1, "{out}{err}");
    let tail: Vec<&str> = out.lines().rev().take(4).collect();
    assert_eq!(
        tail,
        ["SKIP: 1/6", "ERROR: 1/6", "FAIL: 2/6", "PASS: 2/6"],
        "{out}"
    );
    assert!(
        out.contains("FAIL data.demo_test.test_false_fails (")
            && out.contains("demo_test.rego:17)"),
        "{out}"
    );
    assert!(
        out.contains("ERROR data.demo_test.test_conflict_errors"),
        "{out}"
    );
    assert!(
        !out.contains("PASS data.demo_test"),
        "passing tests are listed only with -v"
    );
    let (_, verbose, _) = trustpath_code(&["test", suite, "-v"]);
    assert!(verbose.contains("PASS data.demo_test.test_open_mocked_with_data"));

    let (code, out, _) = trustpath_code(&["test", suite, "--format", "json"]);
    assert_eq!(code, 1);
    let tests: Vec<Value> = serde_json::from_str(&out).unwrap();
    let outcome = |name: &str| {
        tests
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    assert_eq!(tests.len(), 6);
    for (name, expected) in [
        ("test_admin_allowed", "pass"),
        ("test_open_mocked_with_data", "pass"),
        ("test_guest_allowed_fails", "fail"),
        ("test_false_fails", "fail"),
        ("test_conflict_errors", "error"),
        ("todo_test_later", "skip"),
    ] {
        let t = outcome(name);
        assert_eq!(t["outcome"], expected, "{t}");
        assert_eq!(t["package"], "data.demo_test");
        assert!(t["duration"].is_u64());
        assert!(t["location"].as_str().unwrap().contains("demo_test.rego:"));
    }
    assert_eq!(
        outcome("test_admin_allowed")["location"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next(),
        Some("5")
    );
    assert!(outcome("test_conflict_errors")["error"]
        .as_str()
        .unwrap()
        .contains("conflict"));

    // --run selects by full path; all selected pass, so exit 0.
    let (code, out, _) = trustpath_code(&["test", suite, "--run", "allowed|mocked"]);
    assert_eq!(code, 1, "test_guest_allowed_fails matches too: {out}");
    let (code, out, _) = trustpath_code(&["test", suite, "--run", "admin|mocked"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("PASS: 2/2"), "{out}");

    // Coverage: lines evaluated and not, per file.
    let (_, out, _) = trustpath_code(&[
        "test",
        suite,
        "--run",
        "admin",
        "--coverage",
        "--format",
        "json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    // Only test_admin_allowed ran: its body is covered, the other tests' are not.
    let tests_file = report["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("/demo_test.rego"))
        .expect("demo_test.rego in the coverage report");
    assert_eq!(tests_file["covered"], json!([6]));
    assert!(tests_file["not_covered"]
        .as_array()
        .unwrap()
        .contains(&json!(10)));
    let (_, text, _) = trustpath_code(&["test", suite, "--run", "admin", "--coverage"]);
    assert!(
        text.contains("demo.rego: ") && text.contains("not covered: "),
        "{text}"
    );

    // A coverage threshold: passing tests alone, under it, fail the run.
    let (code, _, err) = trustpath_code(&["test", suite, "--run", "admin", "--threshold", "99"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is below the threshold of 99%"), "{err}");
    let (code, _, err) = trustpath_code(&["test", suite, "--run", "admin", "--threshold", "5"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = trustpath_code(&["test", suite, "--threshold", "150"]);
    assert_eq!(code, 2, "{err}");

    // JUnit XML for CI: a case per test, failures and errors with messages.
    let (code, xml, _) = trustpath_code(&["test", suite, "--format", "junit"]);
    assert_eq!(code, 1);
    assert!(xml.starts_with("<?xml"), "{xml}");
    let count = |needle: &str| xml.matches(needle).count();
    assert_eq!(count("<testcase "), 6, "{xml}");
    assert_eq!(count("<failure"), 2, "{xml}");
    assert_eq!(count("<error"), 1, "{xml}");
    assert_eq!(count("<skipped"), 1, "{xml}");
    assert!(xml.contains(r#"name="test_guest_allowed_fails""#), "{xml}");

    // A policy that does not parse: exit 1, naming file and line.
    std::fs::write(
        Path::new(suite).join("broken.rego"),
        "package broken\n\nx := )\n",
    )
    .unwrap();
    let (code, _, err) = trustpath_code(&["test", suite]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("broken.rego:3:"), "{err}");
}

/// Writes the decisions and tool calls the replay tests look at, through
/// the real server; returns the data directory and the decision ids.
async fn real_log(dir: &Path) -> (PathBuf, Vec<Value>) {
    let data = dir.join("data");
    let server = Server::start(&data, &repo_policies(), None);
    let key = TestKey::generate("k1");
    let verified = |scopes: &[&str], session: &str| verified_request(&key, session, scopes);
    let mut out = Vec::new();
    // d0: verified, both file scopes: approved.
    out.push(post_decision(&server, &verified(&["files:read", "files:write"], "s0")).await);
    // d1: document-only, files:read and an unknown scope: reduced.
    let mut d1 = cimd_request(&["files:read", "payroll"], cimd_document(None), None);
    d1["session_id"] = json!("s1");
    out.push(post_decision(&server, &d1).await);
    // d2: a verified client behind an AS the policy does not trust: denied.
    let partner = "https://partner-as.example.com";
    let mut d2 = verified(&["files:read"], "s2");
    d2["metadata_source"]["authorization_server"]["issuer"] = json!(partner);
    let mut claims = assertion_claims("partner-1");
    claims["aud"] = json!(partner);
    d2["client"]["assertion"] = json!(key.sign(&claims));
    out.push(post_decision(&server, &d2).await);
    assert_eq!(out[2]["authentication"]["result"], "verified");
    assert_eq!(out[2]["decision"]["outcome"], "denied");
    // d3: verified, files:write only: approved.
    out.push(post_decision(&server, &verified(&["files:write"], "s3")).await);
    // d4: an assertion signed by the wrong key: authentication failed.
    let mut d4 = verified(&["files:read"], "s4");
    d4["client"]["assertion"] = json!(TestKey::generate("k1").sign(&assertion_claims("forged")));
    out.push(post_decision(&server, &d4).await);
    assert_eq!(out[4]["authentication"]["result"], "failed");
    // Tool calls under d0's grant: write_file (t0) and read_file (t1), both allowed.
    let grant = out[0]["grant"]["token"].as_str().unwrap().to_string();
    for (tool, args) in [
        ("write_file", json!({"path": "/a", "content": "x"})),
        ("read_file", json!({"path": "/a"})),
    ] {
        let (status, answer) = post_json(
            &server,
            "/v1/tool-calls",
            &json!({"grant": grant, "tool": tool, "method": "tools/call", "arguments": args}),
        )
        .await;
        assert_eq!((status, &answer["allow"]), (200, &json!(true)), "{answer}");
        out.push(answer);
    }
    server.stop();
    (data, out)
}

/// A copy of the shipped policies with `edit` applied to its data.json.
fn candidate(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let target = dir.join(name);
    copy_dir(&repo_policies(), &target);
    let data_path = target.join("data.json");
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(&data_path).unwrap()).unwrap();
    edit(&mut data["trustpath"]["settings"]);
    std::fs::write(&data_path, data.to_string()).unwrap();
    target
}

/// `trustpath replay --format json`: (exit code, changes, summary).
fn replay(args: &[&str]) -> (i32, Vec<Value>, Value) {
    let mut all = vec!["replay", "--format", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = trustpath_code(&all);
    assert!(code == 0 || code == 1, "replay failed ({code}): {err}");
    let mut lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.pop().expect("summary line")["summary"].clone();
    (code, lines, summary)
}

fn changes_of(changes: &[Value]) -> Vec<(Value, Vec<String>)> {
    changes
        .iter()
        .map(|c| {
            let id = if c["kind"] == "tool_call" {
                c["tool_call_id"].clone()
            } else {
                c["decision_id"].clone()
            };
            let kinds = c["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            (id, kinds)
        })
        .collect()
}

#[tokio::test]
async fn replay_reports_exactly_what_a_candidate_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = real_log(dir.path()).await;
    let data_arg = data.to_str().unwrap();
    let id = |i: usize| {
        if log[i]["tool_call_id"].is_string() {
            log[i]["tool_call_id"].clone()
        } else {
            log[i]["decision_id"].clone()
        }
    };
    let kinds = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Identical to the running policy: nothing changes.
    let same = dir.path().join("same");
    copy_dir(&repo_policies(), &same);
    let (code, changes, summary) = replay(&[
        "--policies",
        same.to_str().unwrap(),
        "--data-dir",
        data_arg,
        "--fail-on-change",
    ]);
    assert_eq!(code, 0);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(summary["replayed"], 7);
    assert_eq!(summary["connection_decisions"], 5);
    assert_eq!(summary["tool_calls"], 2);
    assert_eq!(summary["unchanged"], 7);

    // Remove files:write (the scope and its tool).
    let removed = candidate(dir.path(), "no-write", |s| {
        s["scopes"].as_object_mut().unwrap().remove("files:write");
        s["tool_calls"]["tools"]
            .as_object_mut()
            .unwrap()
            .remove("write_file");
    });
    let removed = removed.to_str().unwrap();
    let (code, changes, summary) = replay(&["--policies", removed, "--data-dir", data_arg]);
    assert_eq!(code, 0, "no gate asked for");
    assert_eq!(
        changes_of(&changes),
        [
            (id(0), kinds(&["narrowed", "tools"])),
            (id(3), kinds(&["newly-denied"])),
            (id(5), kinds(&["newly-denied"])),
        ]
    );
    assert_eq!(
        changes[0]["before"]["approved_scopes"],
        json!(["files:read", "files:write"])
    );
    assert_eq!(
        changes[0]["after"]["approved_scopes"],
        json!(["files:read"])
    );
    assert_eq!(changes[0]["after"]["denied_scopes"], json!(["files:write"]));
    assert_eq!(changes[0]["session_id"], "s0");
    assert_eq!(changes[0]["client_id"], CLIENT_ID);
    assert!(changes[0]["seq"].is_u64());
    assert_eq!(changes[2]["kind"], "tool_call");
    assert_eq!(
        changes[2]["decision_id"], log[0]["decision_id"],
        "the tool call names the decision behind its grant"
    );
    assert_eq!(
        (summary["changed"].clone(), summary["unchanged"].clone()),
        (json!(3), json!(4))
    );
    assert_eq!(
        summary["by_kind"],
        json!({"newly-denied": 2, "narrowed": 1, "tools": 1})
    );
    let (code, ..) = replay(&[
        "--policies",
        removed,
        "--data-dir",
        data_arg,
        "--fail-on",
        "widened,newly-allowed",
    ]);
    assert_eq!(code, 0);
    let (code, ..) = replay(&[
        "--policies",
        removed,
        "--data-dir",
        data_arg,
        "--fail-on",
        "newly-denied",
    ]);
    assert_eq!(code, 1);
    // The same gate as JUnit XML: a case per changed entry, failed where
    // the change is one the gate names, and the summary.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["replay", "--policies", removed, "--data-dir", data_arg])
        .args(["--fail-on", "newly-denied", "--format", "junit"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let xml = String::from_utf8(out.stdout).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 3 + 1, "{xml}");
    assert_eq!(xml.matches("<failure").count(), 2, "{xml}");
    assert!(xml.contains("newly-denied (a --fail-on change)"), "{xml}");
    assert!(xml.contains(r#"name="replay summary""#), "{xml}");

    // Trust the partner AS: its denied decision is newly allowed.
    let trusted = candidate(dir.path(), "partner", |s| {
        s["trusted_authorization_servers"]
            .as_array_mut()
            .unwrap()
            .push(json!("https://partner-as.example.com"));
    });
    let trusted = trusted.to_str().unwrap();
    let (code, changes, _) = replay(&[
        "--policies",
        trusted,
        "--data-dir",
        data_arg,
        "--fail-on",
        "widened,newly-allowed",
    ]);
    assert_eq!(code, 1);
    assert_eq!(changes_of(&changes), [(id(2), kinds(&["newly-allowed"]))]);
    assert_eq!(changes[0]["before"]["outcome"], "denied");
    assert_eq!(changes[0]["after"]["outcome"], "approved");

    // A policy that allows everything still cannot lift a failed authentication.
    let open = dir.path().join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::write(
        open.join("open.rego"),
        "package trustpath.connection\n\ndecision := {\"allow\": true, \"scopes\": input.scopes, \"tools\": [], \"ttl_seconds\": 60}\n",
    )
    .unwrap();
    let (_, changes, _) = replay(&[
        "--policies",
        open.to_str().unwrap(),
        "--data-dir",
        data_arg,
        "--kind",
        "connection_decision",
    ]);
    let changed: Vec<Value> = changes_of(&changes).into_iter().map(|(id, _)| id).collect();
    assert!(
        !changed.contains(&id(4)),
        "failed authentication stayed denied"
    );
    assert!(changed.contains(&id(2)) && changed.contains(&id(1)));

    // Filters narrow the replay; --data-dir and --export agree.
    let (_, changes, summary) = replay(&[
        "--policies",
        removed,
        "--data-dir",
        data_arg,
        "--session",
        "s3",
    ]);
    assert_eq!(changes_of(&changes), [(id(3), kinds(&["newly-denied"]))]);
    assert_eq!(summary["replayed"], 1);
    let (ok, export, err) = trustpath(&["log", "export", "--data-dir", data_arg]);
    assert!(ok, "{err}");
    let export_file = dir.path().join("export.ndjson");
    std::fs::write(&export_file, export).unwrap();
    for candidate in [removed, trusted, open.to_str().unwrap()] {
        let from_dir = trustpath_code(&[
            "replay",
            "--format",
            "json",
            "--policies",
            candidate,
            "--data-dir",
            data_arg,
        ]);
        let from_export = trustpath_code(&[
            "replay",
            "--format",
            "json",
            "--policies",
            candidate,
            "--export",
            export_file.to_str().unwrap(),
        ]);
        assert_eq!(from_dir.1, from_export.1, "{candidate}");
        // One evaluator or many: the same report, in the same order.
        let single = trustpath_code(&[
            "replay",
            "--format",
            "json",
            "--workers",
            "1",
            "--policies",
            candidate,
            "--data-dir",
            data_arg,
        ]);
        assert_eq!(from_dir.1, single.1);
    }
    let (_, text, _) = trustpath_code(&[
        "replay",
        "--policies",
        removed,
        "--export",
        export_file.to_str().unwrap(),
    ]);
    assert!(
        text.contains("newly-denied: 2") && text.contains("changed: 3"),
        "{text}"
    );

    // A line that is not an entry is named.
    let mut broken = std::fs::read_to_string(&export_file).unwrap();
    broken = broken.replacen(",\"seq\":1,", ",\"seq\":\"x\",", 1);
    std::fs::write(&export_file, broken).unwrap();
    let (code, _, err) = trustpath_code(&[
        "replay",
        "--policies",
        removed,
        "--export",
        export_file.to_str().unwrap(),
    ]);
    assert_eq!(
        code, 3,
        "a malformed input file is work that cannot be done"
    );
    assert!(err.contains("line 3"), "{err}");
}

/// The example policy repository's CI script: passes on the shipped
/// policies, and stops a change that newly allows a logged decision.
#[test]
fn example_policy_repo_ci_gates_a_widening_change() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-repo");
    let run = |args: &[&str]| {
        std::process::Command::new("bash")
            .arg(example.join("ci.sh"))
            .args(args)
            .env("TRUSTPATH", env!("CARGO_BIN_EXE_trustpath"))
            .env("TRUSTPATH_LOG", "error")
            .output()
            .expect("run ci.sh")
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PASS: ") && stdout.contains("changed: 0"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let widened = candidate(dir.path(), "widened", |s| {
        s["trusted_authorization_servers"]
            .as_array_mut()
            .unwrap()
            .push(json!("https://rogue.example"));
    });
    let out = run(&[widened.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("newly-allowed: 1"), "{stdout}");
}

/// The example policy repository's GitHub Actions workflow: each of its
/// `trustpath` steps, run as written in the repository's directory, passes
/// on the shipped policies and writes JUnit XML; its pre-commit hook passes
/// too, and stops a widening change.
#[test]
fn example_policy_repo_workflow_steps_and_hook_run() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-repo");
    let workflow = std::fs::read_to_string(example.join(".github/workflows/policy.yml")).unwrap();
    let steps: Vec<&str> = workflow
        .lines()
        .filter_map(|l| l.trim().strip_prefix("run: trustpath "))
        .collect();
    assert_eq!(steps.len(), 2, "{workflow}");
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_trustpath"));
    let bin_dir = bin.parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out_dir = tempfile::tempdir().unwrap();
    for step in steps {
        let command = format!(
            "trustpath {}",
            step.replace("> ", &format!("> {}/", out_dir.path().display()))
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &command])
            .current_dir(&example)
            .env("PATH", &path)
            .env("TRUSTPATH_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for report in ["policy-tests.xml", "replay.xml"] {
        let xml = std::fs::read_to_string(out_dir.path().join(report)).unwrap();
        assert!(
            xml.starts_with("<?xml") && xml.contains("<testcase "),
            "{report}: {xml}"
        );
        assert!(!xml.contains("<failure"), "{report}: {xml}");
    }

    // The hook: passes here; in a copy whose policies newly allow a logged
    // decision, it stops the commit.
    let hook = |dir: &Path| {
        std::process::Command::new("bash")
            .arg(example.join("hooks/pre-commit"))
            .current_dir(dir)
            .env("TRUSTPATH", &bin)
            .env("TRUSTPATH_LOG", "error")
            .output()
            .unwrap()
    };
    let out = hook(&example);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        example.join("decisions.ndjson"),
        copy.path().join("decisions.ndjson"),
    )
    .unwrap();
    let widened = candidate(copy.path(), "policies", |s| {
        s["trusted_authorization_servers"]
            .as_array_mut()
            .unwrap()
            .push(json!("https://rogue.example"));
    });
    assert_eq!(widened, copy.path().join("policies"));
    let out = hook(copy.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("newly allows or widens"));
}
