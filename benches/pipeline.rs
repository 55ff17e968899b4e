//! Per-stage costs of the decision pipeline, in process, without HTTP:
//!
//!     cargo bench --bench pipeline
//!
//! Each stage runs a fixed number of iterations after a warm-up and prints
//! the mean time per call.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};
use trustpath::config::Config;
use trustpath::decide::{policy_input, trim, GrantLimits};
use trustpath::grant::GrantSigner;
use trustpath::identity::replay::ReplayGuard;
use trustpath::identity::retrieval::Retrieved;
use trustpath::identity::Authenticator;
use trustpath::model::ConnectionRequest;
use trustpath::policy::verdict::ConnectionVerdict;
use trustpath::policy::{PolicyBundle, CONNECTION_ENTRY_POINT};

const ITERATIONS: u32 = 20_000;

fn time<T>(name: &str, mut f: impl FnMut() -> T) {
    for _ in 0..ITERATIONS / 10 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        black_box(f());
    }
    let per_call = start.elapsed() / ITERATIONS;
    println!("{name:<40} {:>9.1} µs", per_call.as_secs_f64() * 1e6);
}

fn request() -> ConnectionRequest {
    let id = "https://agents.example.com/client.json";
    serde_json::from_value(json!({
        "session_id": "s",
        "resource": "https://mcp.example.com/mcp",
        "scopes": ["files:read", "files:write", "payroll"],
        "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": "https://auth.example.com"}},
        "client": {
            "client_id": id,
            "redirect_uri": "https://agents.example.com/callback",
            "document": {"client_id": id, "redirect_uris": ["https://agents.example.com/callback"]},
        },
    }))
    .unwrap()
}

/// A CIMD request whose document carries an Ed25519 key, and a maker of
/// fresh assertions (distinct jti) signed with it.
fn private_key_jwt_request() -> (ConnectionRequest, impl FnMut() -> String) {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let id = "https://agents.example.com/client.json";
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let req: ConnectionRequest = serde_json::from_value(json!({
        "scopes": ["files:read"],
        "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": "https://auth.example.com"}},
        "client": {"client_id": id, "document": {"client_id": id,
            "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": x}]}}},
    }))
    .unwrap();
    let der = key.to_pkcs8_der().unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let mut n = 0u64;
    let make = move || {
        n += 1;
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": id, "sub": id, "aud": "https://auth.example.com",
            "iat": now, "exp": now + 60, "jti": format!("j{n}")});
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
    };
    (req, make)
}

fn main() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let bundle = PolicyBundle::from_path(&policies).unwrap();
    let config = Config::default();
    let authenticator = Authenticator::from_config(&config, ReplayGuard::ephemeral()).unwrap();
    let limits = GrantLimits {
        default_ttl_seconds: 300,
        max_ttl_seconds: 900,
    };
    let req = request();
    let now = chrono::Utc::now();
    let body = serde_json::to_vec(&json!({
        "scopes": ["files:read", "files:write", "payroll"],
        "metadata_source": {"kind": "cimd", "authorization_server": {"issuer": "https://auth.example.com"}},
        "client": {"client_id": "https://agents.example.com/client.json",
                   "document": {"client_id": "https://agents.example.com/client.json"}},
    }))
    .unwrap();

    time("parse request body", || {
        trustpath::input::parse_json::<ConnectionRequest>(&body).unwrap()
    });
    // Authentication is async (a fleet claims a jti over the network);
    // here nothing it awaits waits, so a current-thread runtime runs it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let authenticate = |r: &ConnectionRequest| {
        runtime.block_on(authenticator.authenticate(r, &Retrieved::default(), now.timestamp()))
    };
    time("authenticate (document only)", || authenticate(&req));
    let client = authenticate(&req);
    let (jwt_req, mut next_assertion) = private_key_jwt_request();
    let mut jwt_reqs: Vec<ConnectionRequest> = (0..ITERATIONS + ITERATIONS / 10)
        .map(|_| {
            let mut r = jwt_req.clone();
            r.client.assertion = Some(next_assertion());
            r
        })
        .collect();
    time("authenticate (private_key_jwt, EdDSA)", || {
        let r = jwt_reqs.pop().unwrap();
        let a = authenticate(&r);
        assert_eq!(
            a.authentication.result,
            trustpath::model::AuthenticationStatus::Verified
        );
        a
    });
    time("build policy input", || {
        trustpath::model::to_document(&policy_input(&req, "s", &client, now, &limits, None))
    });
    let input =
        trustpath::model::to_document(&policy_input(&req, "s", &client, now, &limits, None));
    time("evaluate connection policy", || {
        bundle.evaluate(CONNECTION_ENTRY_POINT, &input).unwrap()
    });
    let result: Option<Value> = bundle.evaluate(CONNECTION_ENTRY_POINT, &input).unwrap();
    time("trim", || {
        trim(
            &req.scopes,
            req.tools.as_deref(),
            &client.authentication,
            ConnectionVerdict::from_policy_result(result.clone()),
            &limits,
            None,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let signer =
        GrantSigner::load_or_create(&dir.path().join("k.pem"), "https://trustpath.local").unwrap();
    let claims = trustpath::model::GrantClaims {
        iss: "https://trustpath.local".into(),
        sub: "https://agents.example.com/client.json".into(),
        aud: Some("https://mcp.example.com/mcp".into()),
        scope: "files:read".into(),
        tools: vec!["read_file".into()],
        sid: "s".into(),
        jti: "j".into(),
        decision_id: "d".into(),
        iat: 0,
        exp: 300,
        act: None,
    };
    time("sign grant (EdDSA)", || signer.sign(&claims).unwrap());
    // The decision entry as the request seals it (canonical JSON, salted
    // seals), with the policy input built above.
    let entry = trustpath::log::entry::LogEntry::from_value(json!({
        "authentication": serde_json::to_value(&client.authentication).unwrap(),
        "client_id": "https://agents.example.com/client.json",
        "decision": {
            "allow": true, "approved_scopes": ["files:read"],
            "denied_scopes": [{"reason": "requires verified authentication", "scope": "files:write"},
                              {"reason": "unknown scope", "scope": "payroll"}],
            "outcome": "reduced", "reasons": [],
            "requested_scopes": ["files:read", "files:write", "payroll"],
            "tools": ["list_files", "read_file"], "ttl_seconds": 300
        },
        "decision_id": "01a22685-c1c6-773d-8f32-95ba023d0efc",
        "grant_jti": "01a22685-c1c6-773d-8f32-95bbf0f8518e",
        "input": serde_json::to_value(&input).unwrap(),
        "kind": "connection_decision",
        "policy_revision": "3916b2aad3d559aaa454645f17c1f267cfa2cb95b5fa5a183e7bf3984f311b09",
        "seq": 0,
        "session_id": "bench-session-1-2",
        "time": "2026-11-29T08:57:09.830899Z",
        "trace_id": "e97dbb6f6cfcd696e7317390bd1a5db8"
    }))
    .unwrap();
    time("seal decision entry", || {
        trustpath::log::sealed::seal_unnumbered(&entry).unwrap()
    });
}
