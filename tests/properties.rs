//! Property tests over what an attacker controls: assertion claims (numbers
//! at the i64 edges, floats, strings where numbers belong), CIMD client_id
//! spellings, and scope strings. No input may panic, verify an out-of-range
//! time, be accepted as a non-canonical client_id, or smuggle a scope.

mod common;

use common::TestKey;
use proptest::prelude::*;
use serde_json::{json, Value};
use trustpath::identity::document::{check_cimd_client_id, cimd_host};
use trustpath::identity::proof::{self, Expectations, PresentedJwt, MAX_UNIX_TIME};
use trustpath::model::{is_scope_token, ConnectionRequest};
use trustpath::policy::verdict::ConnectionVerdict;

const CLIENT: &str = "https://agents.example.com/client.json";
const AS: &str = "https://auth.example.com";

/// A value for a time claim: absent, at the edges, near now, or of the
/// wrong type altogether.
fn time_claim(now: i64) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MIN + 1),
            Just(i64::MAX),
            Just(-1),
            Just(0),
            Just(MAX_UNIX_TIME),
            Just(MAX_UNIX_TIME + 1),
            (now - 600..now + 600),
        ]
        .prop_map(|t| Some(json!(t))),
        any::<i64>().prop_map(|t| Some(json!(t))),
        any::<u64>().prop_map(|t| Some(json!(t))),
        any::<f64>().prop_map(|f| Some(json!(f))),
        "-?[0-9]{1,20}".prop_map(|s| Some(json!(s))),
        Just(Some(Value::Null)),
    ]
}

fn in_range(value: &Value) -> bool {
    value
        .as_i64()
        .is_some_and(|t| (0..=MAX_UNIX_TIME).contains(&t))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever the time claims, verification answers (no panic), and an
    /// accepted assertion only ever carries times in range and within the
    /// configured lifetime.
    #[test]
    fn assertion_times_never_verify_out_of_range(
        (iat, nbf, exp) in {
            let now = common::now();
            (time_claim(now), time_claim(now), time_claim(now))
        }
    ) {
        let key = TestKey::generate("k1");
        let keys = proof::parse_jwks(&key.jwks()).unwrap();
        let mut claims = json!({"iss": CLIENT, "sub": CLIENT, "aud": AS, "jti": "j"});
        for (name, value) in [("iat", &iat), ("nbf", &nbf), ("exp", &exp)] {
            if let Some(value) = value {
                claims[name] = value.clone();
            }
        }
        let token = key.sign(&claims);
        let presented = PresentedJwt::inspect(&token);
        let expect = Expectations {
            issuer: CLIENT,
            subject: Some(CLIENT),
            bound_claim: None,
            audiences: vec![AS.to_string()],
            leeway_seconds: 30,
            max_lifetime_seconds: Some(300),
            require_jti: true,
            algorithms: &[jsonwebtoken::Algorithm::EdDSA],
        };
        let now = common::now();
        if let Ok(verified) = proof::verify(&token, &presented, &keys, &expect, now) {
            for value in [&iat, &nbf, &exp].into_iter().flatten() {
                prop_assert!(in_range(value), "verified with {value}");
            }
            let exp = exp.as_ref().and_then(Value::as_i64).unwrap();
            prop_assert_eq!(verified.exp, exp);
            let start = iat.as_ref().and_then(Value::as_i64).unwrap_or(now);
            prop_assert!(exp - start <= 300, "lifetime {} accepted", exp - start);
        }
    }

    /// A client_id is accepted only in the exact form the URL parser
    /// serialises, so the host the policy gets is the host fetched from.
    #[test]
    fn cimd_client_id_accepted_only_when_canonical(
        scheme in prop_oneof![
            Just("https://"), Just("https:"), Just("https:/"), Just("https:\\\\"),
            Just("https:///"), Just("HTTPS://"), Just("http://"), Just("https:\\/"),
            Just(" https://"), Just("https:/\\"),
        ],
        host in prop_oneof![
            Just("agents.example.com"), Just("AGENTS.example.com"), Just("evil.example"),
            Just("evil.example\\x:"), Just("127.0.0.1"), Just("[::1]"), Just("[::ffff:7f00:1]"),
            Just("agents.example.com:443"), Just("agents.example.com:8443"),
            Just("user@agents.example.com"), Just("agents.example.com."), Just("0x7f.1"),
            Just("xn--nxasmq6b.example"), Just("ag\u{e9}nts.example.com"), Just(""),
        ],
        sep in prop_oneof![
            Just("/"), Just("\\"), Just("//"), Just("/./"), Just("/../"), Just("%2F"),
            Just("?"), Just("#"), Just("/%2e%2e/"), Just("\t/"),
        ],
        path in "[a-zA-Z0-9.%:/\\\\@ ]{0,16}",
        loopback in any::<bool>(),
    ) {
        let id = format!("{scheme}{host}{sep}{path}");
        let reasons = check_cimd_client_id(&id, loopback);
        if reasons.is_empty() {
            let url = url::Url::parse(&id).expect("accepted means parsed");
            prop_assert_eq!(url.as_str(), id.as_str());
            let host = cimd_host(&id);
            prop_assert_eq!(host.as_deref(), url.host_str());
            prop_assert!(url.fragment().is_none() && url.username().is_empty());
        } else {
            let canonical = url::Url::parse(&id).is_ok_and(|u| u.as_str() == id);
            if !canonical {
                prop_assert!(cimd_host(&id).is_none());
            }
        }
    }

    /// A scope is accepted in a request exactly when it is an RFC 6749
    /// scope-token; an accepted list survives the grant's space-joined
    /// `scope` string unchanged. The policy's scopes are held to the same.
    #[test]
    fn scopes_are_scope_tokens_or_refused(
        scope in prop_oneof![any::<String>(), "[ -~\\t\\n]{0,12}", "[!#-\\[\\]-~]{1,12}"],
    ) {
        let body = json!({
            "scopes": ["files:read", scope],
            "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": AS}},
            "client": {"client_id": CLIENT},
        });
        let text = body.to_string();
        let parsed = trustpath::input::parse_json::<ConnectionRequest>(text.as_bytes());
        match parsed {
            Ok(request) => {
                prop_assert!(is_scope_token(&scope));
                let scopes = request.scopes.as_slice();
                let joined = scopes.join(" ");
                let split: Vec<&str> = joined.split_whitespace().collect();
                prop_assert_eq!(split, scopes.iter().map(String::as_str).collect::<Vec<_>>());
            }
            Err(e) => {
                prop_assert!(!is_scope_token(&scope));
                prop_assert_eq!(e.field.as_deref(), Some("scopes[1]"));
            }
        }
        let verdict = ConnectionVerdict::from_policy_result(Some(json!({"allow": true, "scopes": [scope]})));
        prop_assert_eq!(verdict.is_ok(), is_scope_token(&scope));
    }
}

/// A real log of `n` entries in a sled directory, exported in full and as a
/// selection, with its verifier.
fn real_export(
    n: u64,
) -> (
    Vec<String>,
    Vec<String>,
    trustpath::log::checkpoint::NoteVerifier,
) {
    use trustpath::log::entry::SessionRevokedRecord;
    use trustpath::log::{checkpoint::LogSigner, verify, CheckpointPolicy, LogWriter};
    let dir = tempfile::tempdir().unwrap();
    let store = trustpath::store::sled::open(dir.path()).unwrap();
    let signer =
        LogSigner::load_or_create(&dir.path().join("log.pem"), "trustpath.test/log").unwrap();
    let verifier = signer.verifier().clone();
    let policy = CheckpointPolicy {
        every_entries: 1,
        every: std::time::Duration::from_secs(1),
    };
    let (writer, thread) = LogWriter::start(
        store.clone(),
        signer,
        trustpath::log::WriterOptions {
            checkpoints: policy,
            durable: false,
            max_queue: 4096,
            node: None,
            observer: Default::default(),
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for i in 0..n {
            let record = trustpath::log::Record::SessionRevoked(SessionRevokedRecord {
                revocation_id: format!("r{i}"),
                session_id: format!("s{i}"),
                grant_jtis: vec![],
                reason: "fuzz".into(),
                revoked_by: "test".into(),
            });
            writer
                .append("2026-01-01T00:00:00Z".into(), "rev".into(), record)
                .await
                .unwrap();
        }
    });
    drop(writer);
    thread.join();
    let mut full = Vec::new();
    verify::export(&store, &verifier, 0, None, &mut full).unwrap();
    let mut selected = Vec::new();
    verify::export_selected(&store, &verifier, &[1, 3], &mut selected).unwrap();
    let lines = |b: Vec<u8>| -> Vec<String> {
        String::from_utf8(b)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    (lines(full), lines(selected), verifier)
}

/// One way to damage an export.
#[derive(Debug, Clone)]
enum Damage {
    /// `prefix: None` gives as many hashes as `from` needs, so the
    /// parser gets past the prefix check.
    Header {
        from: u64,
        to: u64,
        prefix: Option<usize>,
    },
    Drop(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, String),
    Truncate(usize),
    Filtered(bool),
}

fn damage() -> impl Strategy<Value = Damage> {
    let edge = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 63),
        0u64..16,
        any::<u64>(),
    ];
    prop_oneof![
        (edge.clone(), edge, proptest::option::of(0usize..70))
            .prop_map(|(from, to, prefix)| Damage::Header { from, to, prefix }),
        (0usize..12).prop_map(Damage::Drop),
        (0usize..12).prop_map(Damage::Duplicate),
        (0usize..12, 0usize..12).prop_map(|(a, b)| Damage::Swap(a, b)),
        (0usize..12, "\\PC{0,40}").prop_map(|(i, s)| Damage::Replace(i, s)),
        (0usize..12).prop_map(Damage::Truncate),
        any::<bool>().prop_map(Damage::Filtered),
    ]
}

fn apply(lines: &mut Vec<String>, damage: &Damage) {
    let n = lines.len();
    if n == 0 {
        return;
    }
    match damage {
        Damage::Header { from, to, prefix } => {
            let mut header: Value = serde_json::from_str(&lines[0]).unwrap_or(json!({}));
            if !header.is_object() {
                header = json!({});
            }
            header["from"] = json!(from);
            header["to"] = json!(to);
            let count = prefix.unwrap_or(from.count_ones() as usize);
            header["prefix"] = json!(vec!["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; count]);
            lines[0] = header.to_string();
        }
        Damage::Drop(i) if *i < n => {
            lines.remove(*i);
        }
        Damage::Duplicate(i) if *i < n => {
            let line = lines[*i].clone();
            lines.insert(*i, line);
        }
        Damage::Swap(a, b) if *a < n && *b < n => lines.swap(*a, *b),
        Damage::Replace(i, text) if *i < n => lines[*i] = text.clone(),
        Damage::Truncate(i) => lines.truncate(*i),
        Damage::Filtered(on) => {
            let mut header: Value = serde_json::from_str(&lines[0]).unwrap_or(json!({}));
            if !header.is_object() {
                header = json!({});
            }
            header["filtered"] = json!(on);
            lines[0] = header.to_string();
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The export parser never panics, and a damaged export never verifies
    /// as the complete log it claims to be.
    #[test]
    fn damaged_exports_never_panic_or_pass_as_complete(
        damages in proptest::collection::vec(damage(), 1..4),
        selection in any::<bool>(),
    ) {
        use std::sync::OnceLock;
        use trustpath::log::verify::{verify_export, Coverage};
        static LOG: OnceLock<(Vec<String>, Vec<String>, trustpath::log::checkpoint::NoteVerifier)> =
            OnceLock::new();
        let (full, selected, verifier) = LOG.get_or_init(|| real_export(8));
        let original = if selection { selected } else { full };
        let mut lines = original.clone();
        for d in &damages {
            apply(&mut lines, d);
        }
        let text = lines.join("\n") + "\n";
        let result = verify_export(text.as_bytes(), verifier);
        if let Ok(v) = result {
            if let Coverage::Complete { from, to } = v.coverage {
                // Only a range the log really has, with its real entries.
                prop_assert!(from <= to && to <= 8);
                if lines != *original {
                    let entries: Vec<&String> = lines[1..lines.len() - 1].iter().collect();
                    let from = usize::try_from(from).unwrap();
                    let to = usize::try_from(to).unwrap();
                    let real: Vec<&String> = full[1 + from..1 + to].iter().collect();
                    prop_assert_eq!(entries, real);
                }
            }
        }
    }
}

/// A connection input drawn from a small domain, so that inputs repeat
/// in what the policy reads while their session ids and times differ.
fn connection_input() -> impl Strategy<Value = serde_json::Value> {
    let scope =
        proptest::sample::select(vec!["files:read", "files:write", "payroll", "repo:admin"]);
    (
        proptest::collection::vec(scope.clone(), 0..4),
        proptest::sample::select(vec!["verified", "document_only", "none", "failed"]),
        proptest::option::of(proptest::collection::vec(scope, 0..3)),
        any::<bool>(),
        proptest::sample::select(vec!["cimd", "preregistered", "wif"]),
        proptest::sample::select(vec!["https://auth.example.com", "https://other.example"]),
        proptest::option::of(proptest::sample::select(vec!["", "not in scopes_supported"])),
        any::<u32>(),
    )
        .prop_map(|(scopes, result, delegated, changed, kind, issuer, chain, n)| {
            let mut input = json!({
                "session_id": format!("s{n}"),
                "now_unix": n,
                "scopes": scopes,
                "metadata_source": {"kind": kind, "authorization_server": {"issuer": issuer}},
                "client": {"client_id": "https://agents.example.com/c.json", "host": "agents.example.com"},
                "authentication": {"result": result, "method": "none", "reasons": [],
                    "document": {"source": "inline", "sha256": format!("{n}"), "changed": changed}},
                "delegation": null,
            });
            if let Some(scopes) = delegated {
                input["delegation"] = json!({"scopes": scopes, "actor": "a"});
            }
            if let Some(reason) = chain {
                let reasons: Vec<&str> = [reason].into_iter().filter(|r| !r.is_empty()).collect();
                input["authentication"]["metadata_chain"] = json!({"reasons": reasons, "unsupported_scopes": []});
            }
            input
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    /// A result kept for inputs that agree on what the policies read is
    /// the result a fresh evaluation of this input gives.
    #[test]
    fn a_kept_policy_result_is_what_evaluating_gives(input in connection_input()) {
        use std::sync::OnceLock;
        use trustpath::policy::{evaluate_rule, read_policies, PolicyBundle, PolicyOrigin, CONNECTION_ENTRY_POINT};
        let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        static BUNDLE: OnceLock<PolicyBundle> = OnceLock::new();
        let bundle = BUNDLE.get_or_init(|| PolicyBundle::from_path(&policies).unwrap());
        prop_assert!(bundle.result_keeping().starts_with("results kept"));
        static ENGINE: OnceLock<regorus::Engine> = OnceLock::new();
        let engine = ENGINE.get_or_init(|| {
            read_policies(&PolicyOrigin::unverified(&policies)).unwrap().engine
        });
        let fresh = evaluate_rule(engine.clone(), CONNECTION_ENTRY_POINT, &input).unwrap();
        let kept = bundle.evaluate(CONNECTION_ENTRY_POINT, &input).unwrap();
        prop_assert_eq!(kept, fresh);
    }
}

/// Any JSON value: names and strings from all of Unicode (escapes, BMP
/// characters above the surrogates, astral ones), integers of every size,
/// finite floats, nested arrays and objects.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let text = || {
        proptest::string::string_regex(
            "(.|[\\x00-\\x1f\"\\\\\u{e000}-\u{ffff}\u{10000}-\u{10ffff}]){0,8}",
        )
        .unwrap()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-(1i64 << 54)..(1i64 << 54)).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The log's canonical JSON writer gives the reference crate's bytes
    /// for any value.
    #[test]
    fn canonical_json_is_the_reference_implementations(value in any_json()) {
        let ours = trustpath::canonical::to_vec(&value).unwrap();
        let reference = serde_json_canonicalizer::to_vec(&value).unwrap();
        prop_assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&reference)
        );
    }
}
