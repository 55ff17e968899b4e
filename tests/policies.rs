//! The shipped policies' own `test_*` rules pass, and a broken policy
//! never replaces the running one.

mod common;

use std::path::Path;

use serde_json::json;
use trustpath::policy::verdict::ConnectionVerdict;
use trustpath::policy::{PolicyBundle, PolicyStore, CONNECTION_ENTRY_POINT, TOOL_CALL_ENTRY_POINT};

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
    let bundle = PolicyBundle::from_path(&dir).expect("shipped policies load");
    let mut rules = Vec::new();
    test_rules(&dir, &mut rules);
    assert!(
        rules.len() >= 8,
        "expected the shipped test_ rules, found {rules:?}"
    );
    let failed: Vec<_> = rules
        .iter()
        .filter(|(package, rule)| {
            let result = bundle.evaluate(&format!("data.{package}.{rule}"), &json!({}));
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
    let store = PolicyStore::load(trustpath::policy::PolicyOrigin::unverified(dir.path())).unwrap();
    let revision = store.current().revision().clone();

    std::fs::write(
        &rego,
        "package trustpath.connection\n\ndecision := {\"allow\": \n",
    )
    .unwrap();
    let err = match store.load_now() {
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
    store.install(store.load_now().unwrap());
    assert_ne!(store.current().revision(), &revision);
}

/// The shipped connection policy answers every input shape it
/// distinguishes with a well-formed verdict, and never allows an
/// unauthenticated client or an untrusted authorization server.
#[test]
fn shipped_connection_policy_is_defined_and_fails_closed() {
    let bundle = PolicyBundle::from_path(&common::repo_policies()).unwrap();
    let scope_sets: [&[&str]; 5] = [
        &[],
        &["files:read"],
        &["files:read", "files:write"],
        &["files:write", "repo:admin", "payroll"],
        &["tickets:read", "files:read", "repo:admin"],
    ];
    let delegations = [
        None,
        Some(json!({"approval_id": "a", "approved_by": "h", "approved_at": "t"})),
        Some(
            json!({"approval_id": "a", "approved_by": "h", "approved_at": "t", "scopes": ["files:read"]}),
        ),
    ];
    let mut checked = 0;
    for result in ["verified", "document_only", "failed", "none"] {
        for kind in ["cimd", "dcr", "preregistered", "wif"] {
            for issuer in ["https://auth.example.com", "https://rogue.example"] {
                for client_id in [
                    "https://agents.example.com/c.json",
                    "https://evil.example/c.json",
                    "x",
                ] {
                    for scopes in scope_sets {
                        for delegation in &delegations {
                            let mut input = json!({
                                "scopes": scopes,
                                "metadata_source": {"kind": kind, "authorization_server": {"issuer": issuer}},
                                "client": {"client_id": client_id},
                                "authentication": {"result": result},
                            });
                            if let Some(d) = delegation {
                                input["delegation"] = d.clone();
                            }
                            let result = bundle.evaluate(CONNECTION_ENTRY_POINT, &input).unwrap();
                            let verdict = ConnectionVerdict::from_policy_result(result)
                                .unwrap_or_else(|e| panic!("{e} for {input}"));
                            if ["failed", "none"].contains(&result_name(&input))
                                || issuer != "https://auth.example.com"
                            {
                                assert!(!verdict.allow, "allowed {input}");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * 4 * 2 * 3 * 5 * 3);
}

fn result_name(input: &serde_json::Value) -> &str {
    input["authentication"]["result"].as_str().unwrap()
}

/// The same for the tool-call entry point: a grant that is not active, or
/// an actor that is not the grant's, is never allowed.
#[test]
fn shipped_tool_call_policy_is_defined_and_fails_closed() {
    let bundle = PolicyBundle::from_path(&common::repo_policies()).unwrap();
    let mut checked = 0;
    for status in ["active", "expired", "invalid"] {
        for scopes in [
            &[][..],
            &["files:read"][..],
            &["files:read", "repo:admin"][..],
        ] {
            for (method, tool) in [
                ("tools/call", "read_file"),
                ("tools/call", "write_file"),
                ("tools/call", "delete_repository"),
                ("tools/call", "unknown"),
                ("resources/read", "file:///a"),
                ("sampling/createMessage", "x"),
            ] {
                for names in [&["path"][..], &["path", "password"][..], &[][..]] {
                    for (act, actor) in [
                        (None, None),
                        (Some(json!({"sub": "a7", "act": {"sub": "o"}})), Some("a7")),
                        (Some(json!({"sub": "a7"})), Some("a9")),
                        (Some(json!({"sub": "a7"})), None),
                    ] {
                        let mut input = json!({
                            "tool": tool, "method": method,
                            "arguments": {"names": names, "sha256": "00", "values": {}},
                            "grant": {"status": status, "scopes": scopes, "claims": {"sub": "c"}},
                        });
                        if let Some(act) = act {
                            input["grant"]["claims"]["act"] = act;
                        }
                        if let Some(actor) = actor {
                            input["actor"] = json!(actor);
                        }
                        let result = bundle.evaluate(TOOL_CALL_ENTRY_POINT, &input).unwrap();
                        let allow = result.as_ref().expect("defined")["allow"].clone();
                        let actor_differs = input["grant"]["claims"]["act"]["sub"]
                            .as_str()
                            .is_some_and(|sub| input["actor"].as_str() != Some(sub));
                        if status != "active" || actor_differs {
                            assert_eq!(allow, json!(false), "allowed {input}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 6 * 3 * 4);
}

#[test]
fn runaway_policy_is_cut_off_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        "package trustpath.connection\n\n\
         decision := {\"allow\": true, \"n\": n}\n\n\
         n := count([1 | some x in numbers.range(1, 20000); some y in numbers.range(1, 20000)])\n",
    )
    .unwrap();
    let bundle = PolicyBundle::from_path(dir.path()).expect("a slow policy still loads");
    let started = std::time::Instant::now();
    let err = bundle
        .evaluate(CONNECTION_ENTRY_POINT, &json!({}))
        .unwrap_err();
    assert!(err.to_string().contains("time limit"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[test]
fn policy_without_the_entry_point_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.rego"), "package other\n\nx := 1\n").unwrap();
    let err = PolicyBundle::from_path(dir.path())
        .err()
        .expect("must not load")
        .to_string();
    assert!(err.contains("trustpath.connection"), "{err}");
}

/// The server picks up edited policy files without a signal, and a broken
/// edit never replaces the policy in force.
#[tokio::test]
async fn server_reloads_changed_policy_files() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    common::copy_dir(&common::repo_policies(), &policies);
    let server = common::Server::start(&dir.path().join("data"), &policies, None);
    let request = common::cimd_request(&["tickets:read"], common::cimd_document(None), None);
    let first = revision(&server).await;
    assert_eq!(
        common::post_decision(&server, &request).await["decision"]["outcome"],
        "approved"
    );

    // Drop tickets:read from the data: the next decisions no longer approve it.
    let data_path = policies.join("data.json");
    let mut data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&data_path).unwrap()).unwrap();
    data["trustpath"]["settings"]["scopes"]
        .as_object_mut()
        .unwrap()
        .remove("tickets:read");
    std::fs::write(&data_path, data.to_string()).unwrap();
    let second = wait_for_change(&server, &first).await;
    let out = common::post_decision(&server, &request).await;
    assert_eq!(out["decision"]["outcome"], "denied");
    assert_eq!(out["policy_revision"], second);

    // The log says which files the new revision is, before any decision
    // made under it.
    let loaded = policy_loaded_entries(&server).await;
    assert_eq!(loaded.len(), 2, "start and one reload");
    let reload = &loaded[0];
    assert_eq!(reload["trigger"], "file_change");
    assert_eq!(reload["previous_revision"], first);
    assert_eq!(reload["policy_revision"], second);
    assert!(reload["seq"].as_u64() < out["log_entry"]["seq"].as_u64());
    let listed = reload["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "data.json")
        .expect("data.json listed");
    let on_disk = std::fs::read(&data_path).unwrap();
    assert_eq!(listed["sha256"], trustpath::digest::sha256_hex(&on_disk));
    assert_eq!(loaded[1]["trigger"], "start");
    assert_eq!(loaded[1]["policy_revision"], first);

    // A broken file: the policy in force stays, decisions go on.
    std::fs::write(
        policies.join("trustpath/broken.rego"),
        "package trustpath.broken\n\nx := (\n",
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    assert_eq!(revision(&server).await, second);
    assert_eq!(
        common::post_decision(&server, &request).await["policy_revision"],
        second
    );
    std::fs::remove_file(policies.join("trustpath/broken.rego")).unwrap();
    // Back to the second revision's files: nothing to reload.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(revision(&server).await, second);
    // Neither the broken edit nor the way back put anything in force.
    assert_eq!(policy_loaded_entries(&server).await.len(), 2);

    // SIGHUP reloads the same files: nothing new in force, nothing logged.
    server.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(revision(&server).await, second);
    assert_eq!(policy_loaded_entries(&server).await.len(), 2);
    // A change put in force by SIGHUP says so (the file check may win the
    // race; either way the change is logged once).
    data["trustpath"]["settings"]["ttl"]["default_seconds"] = serde_json::json!(500);
    std::fs::write(&data_path, data.to_string()).unwrap();
    server.signal("HUP");
    let third = wait_for_change(&server, &second).await;
    let loaded = policy_loaded_entries(&server).await;
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded[0]["policy_revision"], third);
    assert_eq!(loaded[0]["previous_revision"], second);
    let trigger = loaded[0]["trigger"].as_str().unwrap();
    assert!(["sighup", "file_change"].contains(&trigger), "{trigger}");
}

/// The `policy_loaded` entries, newest first.
async fn policy_loaded_entries(server: &common::Server) -> Vec<serde_json::Value> {
    common::get_json(server, "/v1/decisions?kind=policy_loaded").await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

async fn revision(server: &common::Server) -> serde_json::Value {
    common::get_json(server, "/health").await["policy_revision"].clone()
}

/// The revision once it differs from `from` (at most 5 s).
async fn wait_for_change(server: &common::Server, from: &serde_json::Value) -> serde_json::Value {
    for _ in 0..50 {
        let now = revision(server).await;
        if now != *from {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("policy revision did not change within 5 s");
}

/// `strings.count(s, "")` panicked inside regorus; a policy applying it to
/// request input crashed the evaluation. Now it answers as OPA does (the
/// character count plus one), in the server, in `trustpath test` and in
/// replay, through the same engine.
#[tokio::test]
async fn builtins_answer_as_opa_does_on_request_input() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.rego"),
        r#"package trustpath.connection

decision := {"allow": true, "scopes": input.scopes, "reasons": [sprintf("%d/%d/%s", [
    strings.count(input.session_id, ""),
    strings.count(input.session_id, "aa"),
    strings.replace_n({"a": "b", "b": "a"}, input.session_id),
])]}

test_count_is_opas if strings.count("11111", "11") == 2
test_empty_substring if strings.count("five", "") == 5
test_replace_n_is_one_pass if strings.replace_n({"a": "b", "b": "a"}, "abba") == "baab"
test_json_is_valid_of_a_number if json.is_valid(1) == false
"#,
    )
    .unwrap();
    let (ok, out, err) = common::trustpath(&["test", policies.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("PASS: 4/4"), "{out}");

    let server = common::Server::start(&dir.path().join("data"), &policies, None);
    let mut body = common::cimd_request(&["files:read"], common::cimd_document(None), None);
    body["session_id"] = json!("aaaab");
    let out = common::post_decision(&server, &body).await;
    assert_eq!(out["decision"]["allow"], true, "{out:#}");
    let logged = common::get_json(
        &server,
        &format!("/v1/decisions/{}", out["decision_id"].as_str().unwrap()),
    )
    .await;
    // 5 characters + 1; "aa" twice, not three times; one pass.
    assert!(
        logged.to_string().contains("6/2/bbbba"),
        "{}",
        logged["decision"]
    );
}

/// A `data.json` in `sub/` is `data.sub`, as OPA mounts it. Mounted at
/// `data`, a deny rule reading `data.sub…` was silently undefined: an allow.
#[test]
fn data_files_mount_at_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lists/clients")).unwrap();
    std::fs::write(
        dir.path().join("lists/clients/data.json"),
        r#"{"blocked": ["evil-session"]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("data.json"), r#"{"top": 1}"#).unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        "package trustpath.connection\n\n\
         default decision := {\"allow\": false}\n\n\
         decision := {\"allow\": true, \"top\": data.top} if {\n\
         \tnot input.session_id in data.lists.clients.blocked\n\
         \tcount(data.lists.clients.blocked) == 1\n\
         }\n",
    )
    .unwrap();
    let bundle = PolicyBundle::from_path(dir.path()).unwrap();
    let decide = |session: &str| {
        bundle
            .evaluate(CONNECTION_ENTRY_POINT, &json!({"session_id": session}))
            .unwrap()
            .unwrap()
    };
    assert_eq!(decide("evil-session"), json!({"allow": false}));
    assert_eq!(decide("fine"), json!({"allow": true, "top": 1}));
}

/// A call to a function nothing defines fails the load, naming the file,
/// line and column, in `trustpath test` as in the server; it is never
/// found only by the decision that reaches it. Functions the policies
/// define (own package, `data.…`, import aliases) and builtins load.
#[test]
fn unknown_functions_fail_at_load_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lib.rego"),
        "package lib\n\ndouble(x) := x * 2\n",
    )
    .unwrap();
    let policy = |call: &str| {
        format!(
            "package trustpath.connection\n\nimport data.lib\nimport data.lib as L\n\n\
             f(x) := x + 1\n\n\
             decision := {{\"allow\": true, \"v\": [f(1), lib.double(2), L.double(3), \
             data.lib.double(4), count([1]), crypto.sha256(\"a\")]}} if input.rare\n\n\
             other := {call} if input.rarer\n"
        )
    };
    std::fs::write(dir.path().join("p.rego"), policy("1")).unwrap();
    PolicyBundle::from_path(dir.path()).expect("every call resolves");
    for (call, column) in [
        ("crypto.sha9(\"a\")", 10),
        ("data.lib.triple(1)", 10),
        ("L.triple(1)", 10),
        ("nope(1)", 10),
    ] {
        std::fs::write(dir.path().join("p.rego"), policy(call)).unwrap();
        let err = PolicyBundle::from_path(dir.path())
            .err()
            .unwrap_or_else(|| panic!("{call} loaded"))
            .to_string();
        let name = call.split('(').next().unwrap();
        assert!(
            err.contains("p.rego") && err.contains(&format!("10:{column}: calls {name}")),
            "{err}"
        );
        let (ok, _, stderr) = common::trustpath(&["test", dir.path().to_str().unwrap()]);
        assert!(!ok && stderr.contains(&format!("calls {name}")), "{stderr}");
    }
}

/// Loading is bounded: brackets nested past 12 levels are refused at once
/// with the line (regorus' parser is exponential in the depth: a bad commit
/// must not hang a reload), strings and comments do not count, and a long
/// line (over regorus' default 1,024 columns) loads.
#[test]
fn loading_is_bounded_and_long_lines_load() {
    let dir = tempfile::tempdir().unwrap();
    let nested = |depth: usize| {
        format!(
            "package trustpath.connection\n\n# {}\ns := \"{}\"\n\ndecision := {{\"allow\": false, \"x\": {}1{}}}\n",
            "[".repeat(40),
            "{".repeat(40),
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    std::fs::write(dir.path().join("p.rego"), nested(12)).unwrap();
    PolicyBundle::from_path(dir.path()).expect("12 levels load");
    std::fs::write(dir.path().join("p.rego"), nested(40)).unwrap();
    let started = std::time::Instant::now();
    let err = PolicyBundle::from_path(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(
        err.contains("p.rego") && err.contains("line 6: brackets nest deeper than 12"),
        "{err}"
    );

    let long = "a".repeat(5000);
    std::fs::write(
        dir.path().join("p.rego"),
        format!(
            "package trustpath.connection\n\ndecision := {{\"allow\": false, \"x\": \"{long}\"}}\n\n\
             test_long if count(decision.x) == 5000\n"
        ),
    )
    .unwrap();
    PolicyBundle::from_path(dir.path()).expect("a long line loads");
    let (ok, out, err) = common::trustpath(&["test", dir.path().to_str().unwrap()]);
    assert!(ok && out.contains("PASS: 1/1"), "{out}{err}");
}

/// Two tests with one name in one package are one rule to the engine, true
/// when either body is, so a failing one would pass behind the other:
/// `trustpath test` refuses them, naming both places.
#[test]
fn a_test_name_defined_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a_test.rego"),
        "package trustpath.connection\n\ntest_same if 1 == 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b_test.rego"),
        "package trustpath.connection\n\ndecision := {\"allow\": false}\n\ntest_same if 1 == 2\n",
    )
    .unwrap();
    let (ok, out, err) = common::trustpath(&["test", dir.path().to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("test_same") && err.contains("defined twice") && err.contains("a_test.rego:3"),
        "{err}"
    );
}

/// Where trustpath still answers differently from OPA, pinned so that a
/// change (a regorus upgrade, a fix here) is noticed and the README's list
/// is updated. Each line says what OPA answers.
#[test]
fn known_differences_from_opa_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        r#"package trustpath.connection

decision := {"allow": false, "s": sprintf("%5.2f", [input.n])}

# Now as OPA (Go's fmt): one minus sign, Go's report of a bad verb.
test_sprintf_negative_integer if sprintf("%d", [-7]) == "-7"
test_sprintf_s_of_a_number if sprintf("%s", [1]) == "%!s(int64=1)"
# OPA: true (arbitrary-precision decimals); regorus: 64-bit floats
test_float_sum if 0.1 + 0.2 != 0.3
# Now as OPA: Go escapes <, > and & in JSON, and maps case rune by rune.
test_json_marshal_escaping if json.marshal({"a": "<&>"}) == "{\"a\":\"\\u003c\\u0026\\u003e\"}"
test_upper_sharp_s if upper("straße") == "STRAßE"
test_lower_dotted_i if lower("İSTANBUL") == "istanbul"
# Go's AddDate normalises: January 31 plus a month is March 3 (2026).
test_add_date_normalises if time.date(time.add_date(time.parse_rfc3339_ns("2026-01-31T00:00:00Z"), 0, 1, 0)) == [2026, 3, 3]
"#,
    )
    .unwrap();
    let (ok, out, err) = common::trustpath(&["test", dir.path().to_str().unwrap()]);
    assert!(ok && out.contains("PASS: 7/7"), "{out}{err}");
    // Width and precision, as OPA: " 1.23".
    let bundle = PolicyBundle::from_path(dir.path()).unwrap();
    let decision = bundle
        .evaluate(CONNECTION_ENTRY_POINT, &json!({"n": 1.23456}))
        .unwrap()
        .unwrap();
    assert_eq!(decision["s"], " 1.23");

    // OPA mocks any builtin with `with`; regorus only its own, so the
    // builtins trustpath adds cannot be mocked (the test errors). Those it
    // replaces still can.
    std::fs::write(
        dir.path().join("p.rego"),
        r#"package trustpath.connection

decision := {"allow": false}

h := crypto.sha256(input.session_id)
n := strings.count(input.session_id, "a")

test_mock_added if h == "x" with crypto.sha256 as "x"
test_mock_replaced if n == 42 with strings.count as 42 with input.session_id as "a"
"#,
    )
    .unwrap();
    let (ok, out, _) = common::trustpath(&["test", dir.path().to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("ERROR data.trustpath.connection.test_mock_added")
            && out.contains("PASS: 1/2"),
        "{out}"
    );
}

/// `trustpath eval --query`: one rule's value as JSON, evaluated as the
/// server does (its builtins included); undefined exits 1, a query outside
/// `data` 2, an evaluation error 3.
#[test]
fn eval_query_prints_a_rules_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("q.rego"),
        "package q\n\nimport rego.v1\n\nn := strings.count(input.s, \"11\")\nup := upper(input.s)\nbad := to_number(\"x\")\nu if input.nope\n",
    )
    .unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"s": "11111"}"#).unwrap();
    let policies = dir.path().to_str().unwrap();
    let run = |query: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
            .args(["-q", "eval", "--query", query, "--policies", policies])
            .arg("--input")
            .arg(&input)
            .output()
            .unwrap()
    };
    let out = run("data.q.n");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    assert_eq!(
        String::from_utf8_lossy(&run("data.q.up").stdout).trim(),
        "\"11111\""
    );
    assert_eq!(run("data.q.u").status.code(), Some(1));
    assert_eq!(run("data.q.missing").status.code(), Some(3));
    assert_eq!(run("q.n").status.code(), Some(2));
    let bad = run("data.q.bad");
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("to_number"));
}
