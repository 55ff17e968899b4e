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
