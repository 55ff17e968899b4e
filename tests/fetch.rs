//! Fetching client identity documents, JWK Sets and metadata: against a
//! local HTTP server on loopback with the development setting on, and the
//! SSRF refusals with it off (no network needed: refused before connecting).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use common::*;
use serde_json::{json, Value};
use trustpath::identity::fetch::{FetchConfig, FetchError, FetchKind, Fetcher};

/// A canned answer: status, headers, body.
type Canned = (u16, Vec<(String, String)>, Vec<u8>);

/// What the fixture server answers, and how often each path was asked.
#[derive(Default)]
struct Fixture {
    routes: Mutex<HashMap<String, Canned>>,
    hits: Mutex<HashMap<String, usize>>,
    slow_ms: AtomicUsize,
}

impl Fixture {
    fn set(&self, path: &str, status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) {
        self.routes.lock().unwrap().insert(
            path.to_string(),
            (
                status,
                headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body.into(),
            ),
        );
    }

    fn json(&self, path: &str, cache_control: &str, body: &Value) {
        self.set(
            path,
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", cache_control),
            ],
            body.to_string(),
        );
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn serve_fixture(
    State(f): State<Arc<Fixture>>,
    UrlPath(path): UrlPath<String>,
    req: HeaderMap,
) -> Response {
    *f.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    if path == "slow.json" {
        tokio::time::sleep(Duration::from_millis(
            f.slow_ms.load(Ordering::SeqCst) as u64
        ))
        .await;
    }
    let Some((status, headers, body)) = f.routes.lock().unwrap().get(&path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = headers
        .iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.clone());
    if etag.is_some()
        && req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == etag.as_deref()
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::CACHE_CONTROL, "max-age=300")],
        )
            .into_response();
    }
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in headers {
        response.headers_mut().insert(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    response
}

async fn start_fixture() -> (Arc<Fixture>, SocketAddr) {
    let fixture = Arc::new(Fixture::default());
    let app = Router::new()
        .route("/{*path}", get(serve_fixture))
        .with_state(fixture.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fixture, addr)
}

/// A server allowed to fetch from loopback, on a fresh data directory.
fn fetching_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &repo_policies(),
        Some(&dev_config(dir.path())),
    );
    (dir, server)
}

fn dev_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(
        &path,
        "[fetch]\nallow_http_loopback = true\ntimeout_ms = 800\nconnect_timeout_ms = 500\n\
         cache_min_seconds = 0\ncache_max_seconds = 3600\njwks_refresh_min_seconds = 30\n",
    )
    .unwrap();
    path
}

/// A CIMD request naming `client_id` and sending no document.
fn by_url(client_id: &str, scopes: &[&str], assertion: Option<String>) -> Value {
    let mut body = cimd_request(scopes, json!(null), assertion);
    body["client"]["client_id"] = json!(client_id);
    body["client"].as_object_mut().unwrap().remove("document");
    body["client"]
        .as_object_mut()
        .unwrap()
        .remove("redirect_uri");
    body
}

fn document_for(client_id: &str, extra: Value) -> Value {
    let mut doc = json!({
        "client_id": client_id,
        "client_name": "Fetched agent",
        "redirect_uris": ["https://agents.example.com/callback"],
        "token_endpoint_auth_method": "none",
    });
    doc.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    doc
}

fn assertion_for(key: &TestKey, client_id: &str, jti: &str) -> String {
    key.sign(&json!({
        "iss": client_id, "sub": client_id, "aud": AS_ISSUER,
        "iat": now(), "exp": now() + 60, "jti": jti,
    }))
}

fn reasons(out: &Value) -> String {
    out["authentication"]["reasons"].to_string()
}

#[tokio::test]
async fn fetched_documents_keys_and_metadata() {
    let (fixture, addr) = start_fixture().await;
    let (_dir, server) = fetching_server();
    let url = |path: &str| format!("http://{addr}/{path}");

    // A document with jwks_uri, fetched and verified; cached for its max-age.
    let key = TestKey::generate("k1");
    let client = url("client.json");
    fixture.json("jwks.json", "max-age=300", &key.jwks());
    fixture.json(
        "client.json",
        "max-age=300",
        &document_for(
            &client,
            json!({"jwks_uri": url("jwks.json"), "token_endpoint_auth_method": "private_key_jwt"}),
        ),
    );
    let out = post_decision(
        &server,
        &by_url(
            &client,
            &["files:read"],
            Some(assertion_for(&key, &client, "a1")),
        ),
    )
    .await;
    let auth = &out["authentication"];
    assert_eq!(auth["result"], "verified", "{out:#}");
    assert_eq!(auth["document"]["source"], "fetched");
    assert_eq!(auth["document"]["fetch"]["url"], client);
    assert_eq!(auth["document"]["fetch"]["status"], 200);
    assert_eq!(auth["document"]["fetch"]["cache"], "miss");
    assert!(auth["document"]["fetch"]["fetched_at"].is_string());
    assert_eq!(
        auth["document"]["sha256"],
        auth["document"]["fetch"]["sha256"]
    );
    assert_eq!(auth["keys"]["source"], "fetched");
    assert_eq!(auth["keys"]["fetch"]["url"], url("jwks.json"));
    assert_eq!(
        (fixture.hits("client.json"), fixture.hits("jwks.json")),
        (1, 1)
    );
    // The log has what trustpath saw.
    let entry: Value = serde_json::from_str(&stored_entry(&server, &out).await).unwrap();
    assert_eq!(entry["authentication"]["document"]["fetch"]["url"], client);
    assert_eq!(
        entry["input"]["client"]["document"]["client_name"],
        "Fetched agent"
    );

    // Within max-age: neither document nor keys are fetched again.
    let again = post_decision(
        &server,
        &by_url(
            &client,
            &["files:read"],
            Some(assertion_for(&key, &client, "a2")),
        ),
    )
    .await;
    assert_eq!(again["authentication"]["result"], "verified");
    assert_eq!(again["authentication"]["document"]["fetch"]["cache"], "hit");
    assert_eq!(again["authentication"]["document"]["changed"], false);
    assert_eq!(
        (fixture.hits("client.json"), fixture.hits("jwks.json")),
        (1, 1)
    );

    // An assertion with an unknown kid refreshes the keys once; a second
    // unknown kid within the refresh interval does not fetch again.
    let rotated = TestKey::generate("k2");
    fixture.json("jwks.json", "max-age=300", &rotated.jwks());
    let out = post_decision(
        &server,
        &by_url(
            &client,
            &["files:read"],
            Some(assertion_for(&rotated, &client, "a3")),
        ),
    )
    .await;
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
    assert_eq!(out["authentication"]["keys"]["refreshed"], true);
    assert_eq!(fixture.hits("jwks.json"), 2);
    let stranger = TestKey::generate("k3");
    let out = post_decision(
        &server,
        &by_url(
            &client,
            &["files:read"],
            Some(assertion_for(&stranger, &client, "a4")),
        ),
    )
    .await;
    assert_eq!(out["authentication"]["result"], "failed");
    assert!(reasons(&out).contains("k3"), "{out:#}");
    assert_eq!(fixture.hits("jwks.json"), 2, "refresh is rate-limited");

    // no-store: fetched every time. A changed document shows a new hash,
    // and the policy sees that it changed (a short grant).
    let fresh = url("fresh.json");
    fixture.json("fresh.json", "no-store", &document_for(&fresh, json!({})));
    let first = post_decision(&server, &by_url(&fresh, &["files:read"], None)).await;
    assert_eq!(
        first["authentication"]["result"], "document_only",
        "{first:#}"
    );
    fixture.json(
        "fresh.json",
        "no-store",
        &document_for(
            &fresh,
            json!({"redirect_uris": ["https://agents.example.com/other"]}),
        ),
    );
    let second = post_decision(&server, &by_url(&fresh, &["files:read"], None)).await;
    assert_eq!(fixture.hits("fresh.json"), 2);
    let doc = &second["authentication"]["document"];
    assert_eq!(doc["fetch"]["cache"], "miss");
    assert_ne!(doc["sha256"], first["authentication"]["document"]["sha256"]);
    assert_eq!(
        doc["previous_sha256"],
        first["authentication"]["document"]["sha256"]
    );
    assert_eq!(doc["changed"], true);
    let entry: Value = serde_json::from_str(&stored_entry(&server, &second).await).unwrap();
    assert_eq!(
        entry["input"]["authentication"]["document"]["changed"],
        true
    );

    // ETag revalidation once stale: 304 keeps the cached document.
    let tagged = url("tagged.json");
    fixture.set(
        "tagged.json",
        200,
        &[
            ("content-type", "application/json"),
            ("cache-control", "max-age=0"),
            ("etag", "\"v1\""),
        ],
        document_for(&tagged, json!({})).to_string(),
    );
    post_decision(&server, &by_url(&tagged, &["files:read"], None)).await;
    let out = post_decision(&server, &by_url(&tagged, &["files:read"], None)).await;
    assert_eq!(
        out["authentication"]["document"]["fetch"]["cache"], "revalidated",
        "{out:#}"
    );
    assert_eq!(out["authentication"]["document"]["fetch"]["etag"], "\"v1\"");
    assert_eq!(out["authentication"]["result"], "document_only");

    // Refusals: each is a reason, and nothing invalid is cached.
    fixture.set("moved.json", 302, &[("location", &client)], "");
    let hits_before = fixture.hits("client.json");
    let out = post_decision(&server, &by_url(&url("moved.json"), &["files:read"], None)).await;
    assert_eq!(out["authentication"]["result"], "failed");
    assert!(reasons(&out).contains("302"), "{out:#}");
    assert_eq!(
        fixture.hits("client.json"),
        hits_before,
        "the redirect was not followed"
    );

    let big = url("big.json");
    let mut doc = document_for(&big, json!({}));
    let filler = 5 * 1024 + 1 - doc.to_string().len() - r#","pad":"""#.len();
    doc["pad"] = json!("x".repeat(filler));
    assert_eq!(doc.to_string().len(), 5 * 1024 + 1);
    fixture.json("big.json", "max-age=300", &doc);
    let out = post_decision(&server, &by_url(&big, &["files:read"], None)).await;
    assert!(reasons(&out).contains("larger than 5120 bytes"), "{out:#}");
    doc["pad"] = json!("x".repeat(filler - 1));
    fixture.json("big.json", "max-age=300", &doc);
    let out = post_decision(&server, &by_url(&big, &["files:read"], None)).await;
    assert_eq!(
        out["authentication"]["result"], "document_only",
        "5120 bytes is fine: {out:#}"
    );
    assert_eq!(
        fixture.hits("big.json"),
        2,
        "the refused body was not cached"
    );

    fixture.slow_ms.store(3000, Ordering::SeqCst);
    fixture.json(
        "slow.json",
        "max-age=300",
        &document_for(&url("slow.json"), json!({})),
    );
    let started = Instant::now();
    let out = post_decision(&server, &by_url(&url("slow.json"), &["files:read"], None)).await;
    assert!(reasons(&out).contains("timed out"), "{out:#}");
    assert!(started.elapsed() < Duration::from_millis(2500));

    let other = url("other.json");
    fixture.json(
        "other.json",
        "max-age=300",
        &document_for("https://agents.example.com/impostor.json", json!({})),
    );
    for _ in 0..2 {
        let out = post_decision(&server, &by_url(&other, &["files:read"], None)).await;
        assert_eq!(out["authentication"]["result"], "failed");
        assert!(
            reasons(&out).contains("does not equal the client_id URL"),
            "{out:#}"
        );
    }
    assert_eq!(
        fixture.hits("other.json"),
        2,
        "an invalid document is not cached"
    );

    fixture.set(
        "page.json",
        200,
        &[("content-type", "text/html")],
        "<html></html>",
    );
    let out = post_decision(&server, &by_url(&url("page.json"), &["files:read"], None)).await;
    assert!(reasons(&out).contains("not JSON"), "{out:#}");
    fixture.set(
        "gone.json",
        404,
        &[("content-type", "application/json")],
        "{}",
    );
    let out = post_decision(&server, &by_url(&url("gone.json"), &["files:read"], None)).await;
    assert!(reasons(&out).contains("404"), "{out:#}");

    // The metadata chain: fetched protected resource and AS metadata.
    fixture.json(
        "prm.json",
        "max-age=300",
        &json!({"resource": "https://mcp.example.com/mcp", "authorization_servers": [AS_ISSUER],
                "scopes_supported": ["files:read"]}),
    );
    fixture.json("as.json", "max-age=300", &json!({"issuer": AS_ISSUER}));
    let mut body = cimd_request(&["files:read", "files:write"], cimd_document(None), None);
    body["metadata_source"]["protected_resource_metadata_url"] = json!(url("prm.json"));
    body["metadata_source"]["authorization_server_metadata_url"] = json!(url("as.json"));
    let out = post_decision(&server, &body).await;
    let chain = &out["authentication"]["metadata_chain"];
    assert_eq!(chain["resource_matches"], true, "{out:#}");
    assert_eq!(chain["issuer_listed"], true);
    assert_eq!(chain["authorization_server_issuer_matches"], true);
    assert_eq!(chain["unsupported_scopes"], json!(["files:write"]));
    assert_eq!(
        chain["protected_resource_metadata"]["fetch"]["url"],
        url("prm.json")
    );
    assert_eq!(out["decision"]["outcome"], "reduced");
    assert!(out["decision"]["denied_scopes"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not in the resource's scopes_supported"));

    fixture.json("prm-other.json", "max-age=300", &json!({"resource": "https://other.example.com/mcp", "authorization_servers": ["https://elsewhere.example.com"]}));
    fixture.json(
        "as-other.json",
        "max-age=300",
        &json!({"issuer": "https://elsewhere.example.com"}),
    );
    body["metadata_source"]["protected_resource_metadata_url"] = json!(url("prm-other.json"));
    body["metadata_source"]["authorization_server_metadata_url"] = json!(url("as-other.json"));
    let out = post_decision(&server, &body).await;
    let chain = &out["authentication"]["metadata_chain"];
    assert_eq!(chain["resource_matches"], false, "{out:#}");
    assert_eq!(chain["issuer_listed"], false);
    assert_eq!(chain["authorization_server_issuer_matches"], false);
    assert_eq!(chain["reasons"].as_array().unwrap().len(), 3);
    assert_eq!(out["decision"]["outcome"], "denied");
    assert!(out["decision"]["reasons"]
        .to_string()
        .contains("metadata chain"));
}

#[tokio::test]
async fn special_use_addresses_are_refused_before_connecting() {
    // Something listening on loopback, to prove no connection reaches it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });

    let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
    for url in [
        format!("https://127.0.0.1:{port}/c.json"),
        format!("https://[::1]:{port}/c.json"),
        "https://10.0.0.1/c.json".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://100.64.0.1/c.json".to_string(),
        format!("https://[::ffff:127.0.0.1]:{port}/c.json"),
        format!("https://localhost:{port}/c.json"),
        format!("http://127.0.0.1:{port}/c.json"),
        "http://agents.example.com/c.json".to_string(),
        "ftp://agents.example.com/c.json".to_string(),
    ] {
        let started = Instant::now();
        let err = fetcher
            .fetch(&url, FetchKind::ClientDocument)
            .await
            .expect_err(&url);
        let text = err.to_string();
        let refused = matches!(err, FetchError::Refused { .. }) || text.contains("refused");
        assert!(refused, "{url}: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{url} was not refused at once"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused URL was connected to"
    );

    // The same through the decision API, with the development setting off.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), None);
    let out = post_decision(
        &server,
        &by_url(
            &format!("https://localhost:{port}/client.json"),
            &["files:read"],
            None,
        ),
    )
    .await;
    assert_eq!(out["authentication"]["result"], "failed");
    assert!(reasons(&out).contains("refused"), "{out:#}");
    assert_eq!(out["decision"]["outcome"], "denied");
    let out = post_decision(
        &server,
        &by_url(
            &format!("http://127.0.0.1:{port}/client.json"),
            &["files:read"],
            None,
        ),
    )
    .await;
    assert!(reasons(&out).contains("https"), "{out:#}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn workload_issuer_keys_fetched_by_jwks_uri() {
    let (fixture, addr) = start_fixture().await;
    let issuer_key = TestKey::generate("spire-1");
    fixture.json("spire/jwks.json", "max-age=300", &issuer_key.jwks());
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!(
        "\n[[trusted_issuers]]\nissuer = \"https://spire.example.com\"\naudience = \"trustpath\"\n\
         jwks_uri = \"http://{addr}/spire/jwks.json\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let request = || {
        let svid = issuer_key.sign(&json!({
            "iss": "https://spire.example.com", "sub": "spiffe://example.com/agent/builder",
            "aud": "trustpath", "exp": now() + 300, "iat": now(),
        }));
        json!({
            "scopes": ["files:read"],
            "metadata_source": { "kind": "wif", "authorization_server": { "issuer": AS_ISSUER } },
            "client": { "client_id": "spiffe://example.com/agent/builder", "assertion": svid },
        })
    };
    for cache in ["miss", "hit"] {
        let out = post_decision(&server, &request()).await;
        assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
        assert_eq!(out["authentication"]["keys"]["source"], "fetched");
        assert_eq!(out["authentication"]["keys"]["fetch"]["cache"], cache);
    }
    assert_eq!(fixture.hits("spire/jwks.json"), 1);
}

/// Security II, defect 4: the fetch cache is bounded by the bytes it
/// holds, not by how many URLs: any CIMD client picks its own `jwks_uri`.
#[tokio::test]
async fn fetch_cache_is_bounded_in_bytes_not_urls() {
    let (fixture, addr) = start_fixture().await;
    let budget = 1_000_000;
    let fetcher = Fetcher::new(FetchConfig {
        allow_http_loopback: true,
        cache_max_bytes: budget,
        ..FetchConfig::default()
    })
    .unwrap();
    let padded = json!({"keys": [], "padding": "x".repeat(60_000)});
    for i in 0..100 {
        let path = format!("set-{i}.json");
        fixture.json(&path, "max-age=300", &padded);
        let fetched = fetcher
            .fetch(&format!("http://{addr}/{path}"), FetchKind::Jwks)
            .await
            .unwrap();
        fetcher.remember(&fetched);
        assert!(
            fetcher.cached_bytes() <= budget,
            "{}",
            fetcher.cached_bytes()
        );
    }
    // The budget is used, and the newest set is served from the cache.
    assert!(fetcher.cached_bytes() > budget / 2);
    let again = fetcher
        .fetch(&format!("http://{addr}/set-99.json"), FetchKind::Jwks)
        .await
        .unwrap();
    assert_eq!(fixture.hits("set-99.json"), 1);
    assert_eq!(again.value, padded);
    // The oldest was evicted: fetched again.
    fetcher
        .fetch(&format!("http://{addr}/set-0.json"), FetchKind::Jwks)
        .await
        .unwrap();
    assert_eq!(fixture.hits("set-0.json"), 2);
}

/// Security II, defect 4: a key set fetched for an assertion that failed is
/// not kept; one that verified an assertion is.
#[tokio::test]
async fn key_sets_fetched_for_failed_assertions_are_not_cached() {
    let (fixture, addr) = start_fixture().await;
    let (_dir, server) = fetching_server();
    let key = TestKey::generate("k1");
    let impostor = TestKey::generate("k1");
    fixture.json("keys.json", "max-age=300", &key.jwks());
    let mut document = cimd_document(None);
    document["jwks_uri"] = json!(format!("http://{addr}/keys.json"));
    let request = |signer: &TestKey| {
        cimd_request(
            &["files:read"],
            document.clone(),
            Some(signer.sign(&assertion_claims(&uuid::Uuid::new_v4().to_string()))),
        )
    };
    for round in 1..=2 {
        let out = post_decision(&server, &request(&impostor)).await;
        assert_eq!(out["authentication"]["result"], "failed", "{out:#}");
        assert_eq!(
            fixture.hits("keys.json"),
            round,
            "failed: fetched each time"
        );
    }
    let out = post_decision(&server, &request(&key)).await;
    assert_eq!(out["authentication"]["result"], "verified", "{out:#}");
    assert_eq!(fixture.hits("keys.json"), 3);
    let out = post_decision(&server, &request(&key)).await;
    assert_eq!(out["authentication"]["keys"]["fetch"]["cache"], "hit");
    assert_eq!(fixture.hits("keys.json"), 3, "verified: kept");
}
