//! OPA bundles as the policy source: plain and signed, from a file and
//! from an HTTPS server this test runs on loopback (its own CA, ETags, a
//! bearer token). A refused bundle keeps the policy in force, is logged as
//! `policy_rejected`, and shows on `/ready` and in the metrics.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A bundle being put together: path inside the bundle to bytes.
#[derive(Clone, Default)]
struct BundleFiles(BTreeMap<String, Vec<u8>>);

impl BundleFiles {
    /// The repository's policies, with a `.manifest` naming `revision`.
    fn repo(revision: &str) -> Self {
        let mut files = Self::default();
        let root = repo_policies();
        for path in walk(&root) {
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.put(&relative, std::fs::read(&path).unwrap());
        }
        files.put(
            ".manifest",
            // Unsorted keys and spaces: signatures hash the JSON value.
            format!(r#"{{ "roots": ["trustpath", "sub"], "revision": "{revision}" }}"#)
                .into_bytes(),
        );
        files
    }

    fn put(&mut self, path: &str, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.0.insert(path.to_string(), bytes.into());
        self
    }

    fn with(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.put(path, bytes);
        self
    }

    /// The `.signatures.json` OPA's `opa sign` would write, made here
    /// from the bundle format's rules: SHA-256 of each file's bytes, or of
    /// its JSON value written compactly with sorted keys for `.manifest`
    /// and data files.
    fn signed(&self, key: &SigningKey) -> Self {
        let files: Vec<Value> = self
            .0
            .iter()
            .map(|(name, bytes)| {
                let hashed = if name == ".manifest" || name.ends_with("data.json") {
                    let value: Value = serde_json::from_slice(bytes).unwrap();
                    serde_json::to_vec(&value).unwrap()
                } else {
                    bytes.clone()
                };
                json!({
                    "name": name,
                    "hash": hex::encode(Sha256::digest(&hashed)),
                    "algorithm": "SHA-256",
                })
            })
            .collect();
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.id.clone());
        let token = jsonwebtoken::encode(
            &header,
            &json!({ "files": files, "scope": key.scope }),
            &key.encoding,
        )
        .unwrap();
        let mut signed = self.clone();
        signed.put(
            ".signatures.json",
            serde_json::to_vec(&json!({ "signatures": [token] })).unwrap(),
        );
        signed
    }

    /// The gzipped tar, paths written as `opa build` does (`/a/b.rego`).
    fn archive(&self) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (path, bytes) in &self.0 {
            append_raw(&mut tar, &format!("/{path}"), bytes);
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn write(&self, path: &Path) {
        // Replaced atomically, as a deploy would.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.archive()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

/// A file whose name goes into the tar header as written: the builder
/// refuses the absolute paths `opa build` writes, and `..`.
fn append_raw<W: std::io::Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
    tar.append(&header, bytes).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A bundle signing key, its public half written where `[bundle]` reads it.
#[derive(Clone)]
struct SigningKey {
    id: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    scope: String,
    public_file: PathBuf,
}

impl SigningKey {
    /// A fresh ECDSA P-256 key (ES256).
    fn es256(dir: &Path, id: &str) -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        let public_file = dir.join(format!("{id}.pub.pem"));
        std::fs::write(&public_file, pair.public_key_pem()).unwrap();
        Self {
            id: id.to_string(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            scope: String::new(),
            public_file,
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("trustpath.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The newest entry of `kind` in the log, as the API shows it.
async fn newest(server: &Server, kind: &str) -> Option<Value> {
    let found = get_json(server, &format!("/v1/decisions?kind={kind}&limit=1")).await;
    found["entries"].get(0).cloned()
}

/// The policy revision a decision was logged under.
async fn logged_revision(server: &Server, decision: &Value) -> Value {
    let entry: Value = serde_json::from_str(&stored_entry(server, decision).await).unwrap();
    entry["policy_revision"].clone()
}

/// Polls `check` until it holds (or fails after 20 s).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn policies_check(server: &Server) -> Value {
    get_json(server, "/ready").await["checks"]["policies"].clone()
}

async fn last_reload_ok(server: &Server) -> Option<f64> {
    let text = String::from_utf8(get_ok(server, "/metrics").await.to_vec()).unwrap();
    text.lines()
        .find(|l| l.starts_with("trustpath_policy_last_reload_ok"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

#[tokio::test]
async fn a_plain_bundle_file_serves_with_its_manifest_revision() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("policy.tar.gz");
    let mut files = BundleFiles::repo("2026.11.28-1");
    // A data.yaml in sub/ mounts at data.sub.
    files.put("sub/data.yaml", "limits:\n  ttl: 120\nnames: [a, b]\n");
    files.put(
        "trustpath/probe.rego",
        "package trustpath.probe\n\nsub := data.sub\n",
    );
    files.write(&bundle);

    let server = Server::start(&dir.path().join("data"), &bundle, None);
    let key = TestKey::generate("k1");
    let decision = connect(&server, &key, "s-plain", &["files:read"]).await;
    assert_eq!(decision["decision"]["allow"], true, "{decision}");
    assert_eq!(logged_revision(&server, &decision).await, "2026.11.28-1");

    let loaded = newest(&server, "policy_loaded")
        .await
        .expect("policy_loaded");
    assert_eq!(loaded["policy_revision"], "2026.11.28-1");
    assert_eq!(
        loaded["bundle"]["sha256"],
        sha256_hex(&std::fs::read(&bundle).unwrap())
    );
    assert_eq!(loaded["bundle"]["roots"], json!(["trustpath", "sub"]));
    assert!(loaded["bundle"].get("signed_by").is_none(), "{loaded}");
    assert_eq!(loaded["directory"], bundle.display().to_string());
    let check = policies_check(&server).await;
    assert_eq!(check["revision"], "2026.11.28-1");
    assert!(check.get("rejected").is_none(), "{check}");
    server.stop();

    // The same bundle through the CLI: replay of the logged decision (no
    // change), its tests, one rule, the data.yaml.
    let path = bundle.to_str().unwrap();
    let data = dir.path().join("data");
    let (ok, out, err) = trustpath(&[
        "replay",
        "--format",
        "json",
        "--policies",
        path,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let summary: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["replayed"], 1, "{out}");
    assert_eq!(summary["summary"]["changed"], 0, "{out}");
    let (ok, out, err) = trustpath(&["test", path]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("PASS"), "{out}");
    let (ok, out, err) = trustpath(&[
        "eval",
        "--policies",
        path,
        "--query",
        "data.trustpath.probe.sub",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"limits": {"ttl": 120}, "names": ["a", "b"]})
    );
}

#[test]
fn bundles_that_break_the_format_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, BundleFiles, &str)> = vec![
        (
            "roots",
            BundleFiles::repo("r").with(".manifest", r#"{"roots": ["elsewhere"]}"#),
            "package trustpath.connection is outside the bundle's roots (\"elsewhere\")",
        ),
        (
            "data-roots",
            BundleFiles::repo("r").with("users/data.json", r#"{"alice": 1}"#),
            "data.users is outside the bundle's roots",
        ),
        (
            "wasm",
            BundleFiles::repo("r").with("policy.wasm", vec![0u8, 97, 115, 109]),
            "Wasm and plan bundles are not supported",
        ),
        (
            "v0",
            BundleFiles::repo("r").with(".manifest", r#"{"rego_version": 0}"#),
            "rego_version 0",
        ),
        (
            "bad-rego",
            BundleFiles::repo("r").with(
                "trustpath/broken.rego",
                "package trustpath.broken\n\nx := \n",
            ),
            "trustpath/broken.rego",
        ),
    ];
    for (name, files, expected) in cases {
        let bundle = dir.path().join(format!("{name}.tar.gz"));
        files.write(&bundle);
        let (ok, out, err) = trustpath(&["test", bundle.to_str().unwrap()]);
        assert!(!ok, "{name}: loaded\n{out}");
        assert!(err.contains(expected), "{name}: {err}");
    }

    // Not a bundle at all, and a path that climbs out.
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"not gzip").unwrap();
    let (ok, _, err) = trustpath(&["test", junk.to_str().unwrap()]);
    assert!(!ok && err.contains("not a gzipped tar archive"), "{err}");
    let climbing = dir.path().join("climb.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        append_raw(&mut tar, "../x/x.rego", b"package x\n");
        std::fs::write(&climbing, tar.into_inner().unwrap().finish().unwrap()).unwrap();
    }
    let (ok, _, err) = trustpath(&["test", climbing.to_str().unwrap()]);
    assert!(
        !ok && err.contains("a path that leaves the bundle"),
        "{err}"
    );
}

#[tokio::test]
async fn signed_bundle_files_are_verified_before_they_are_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::es256(dir.path(), "policy-ci");
    let intruder = SigningKey::es256(dir.path(), "intruder");
    let config = write_config(
        dir.path(),
        &format!(
            "[bundle]\npoll_interval = \"1s\"\n\n[[bundle.verification_keys]]\nid = \"policy-ci\"\n\
             algorithm = \"ES256\"\nfile = {:?}\n",
            key.public_file
        ),
    );
    let bundle = dir.path().join("policy.tar.gz");
    let data = dir.path().join("data");

    // Unsigned at start: the server does not start.
    BundleFiles::repo("v0").write(&bundle);
    let err = refused_start(
        &data,
        [
            OsStr::new("--policies"),
            bundle.as_os_str(),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
    );
    assert!(err.contains("the bundle has no .signatures.json"), "{err}");

    let v1 = BundleFiles::repo("v1").signed(&key);
    v1.write(&bundle);
    let server = Server::start(&data, &bundle, Some(&config));
    let loaded = newest(&server, "policy_loaded").await.unwrap();
    assert_eq!(loaded["policy_revision"], "v1");
    assert_eq!(loaded["bundle"]["signed_by"], "policy-ci");
    assert_eq!(policies_check(&server).await["signed_by"], "policy-ci");

    // Each of these is refused, logged once, and v1 stays in force.
    let mut tampered = BundleFiles::repo("v2").signed(&key);
    tampered.put(
        "trustpath/connection.rego",
        std::fs::read_to_string(repo_policies().join("trustpath/connection.rego"))
            .unwrap()
            .replace("default", "# default"),
    );
    let mut extra_file = BundleFiles::repo("v2").signed(&key);
    extra_file.put("trustpath/extra.rego", "package trustpath.extra\n");
    let mut missing_file = BundleFiles::repo("v2").signed(&key);
    missing_file.0.remove("trustpath/tool_call_test.rego");
    let wrong_scope_key = SigningKey {
        scope: "write".into(),
        ..key.clone()
    };
    let refused: Vec<(&str, BundleFiles, &str)> = vec![
        ("unsigned", BundleFiles::repo("v2"), "no .signatures.json"),
        (
            "another key",
            BundleFiles::repo("v2").signed(&SigningKey {
                id: "policy-ci".into(),
                ..intruder
            }),
            "does not verify with key \"policy-ci\"",
        ),
        (
            "tampered",
            tampered,
            "trustpath/connection.rego: digest mismatch",
        ),
        (
            "extra file",
            extra_file,
            "trustpath/extra.rego is not in the bundle's signature",
        ),
        (
            "missing file",
            missing_file,
            "trustpath/tool_call_test.rego is in the bundle's signature but not in the bundle",
        ),
        (
            "scope",
            BundleFiles::repo("v2").signed(&wrong_scope_key),
            "scope mismatch",
        ),
    ];
    for (name, files, expected) in refused {
        files.write(&bundle);
        let sha = sha256_hex(&std::fs::read(&bundle).unwrap());
        eventually(name, || async {
            newest(&server, "policy_rejected")
                .await
                .is_some_and(|e| e["sha256"] == sha)
        })
        .await;
        let rejected = newest(&server, "policy_rejected").await.unwrap();
        assert_eq!(rejected["policy_revision"], "v1", "{name}");
        assert_eq!(rejected["trigger"], "file_change");
        let error = rejected["error"].as_str().unwrap();
        assert!(error.contains(expected), "{name}: {error}");
        let check = policies_check(&server).await;
        assert_eq!(check["revision"], "v1", "{name}");
        assert_eq!(check["rejected"]["sha256"], sha, "{name}");
        assert!(check["rejected"]["error"]
            .as_str()
            .unwrap()
            .contains(expected));
        assert_eq!(last_reload_ok(&server).await, Some(0.0), "{name}");
        let decision = connect(&server, &TestKey::generate("k"), name, &["files:read"]).await;
        assert_eq!(logged_revision(&server, &decision).await, "v1", "{name}");
    }
    // A refused bundle is logged once, not at every poll.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let found = get_json(&server, "/v1/decisions?kind=policy_rejected&limit=100").await;
    assert_eq!(found["entries"].as_array().unwrap().len(), 6, "{found}");

    // A good signed bundle goes into force and clears the rejection.
    BundleFiles::repo("v3").signed(&key).write(&bundle);
    eventually("v3 in force", || async {
        policies_check(&server).await["revision"] == "v3"
    })
    .await;
    let loaded = newest(&server, "policy_loaded").await.unwrap();
    assert_eq!(loaded["trigger"], "file_change");
    assert_eq!(loaded["previous_revision"], "v1");
    assert!(policies_check(&server).await.get("rejected").is_none());
    assert_eq!(last_reload_ok(&server).await, Some(1.0));
    server.stop();
    let (ok, out) = verify_dir(&data);
    assert!(ok, "{out}");
}

/// An HTTPS bundle server on loopback: one bundle at `/bundle.tar.gz`,
/// its ETag the bundle's SHA-256, a bearer token required.
struct BundleServer {
    addr: std::net::SocketAddr,
    bundle: Arc<Mutex<Vec<u8>>>,
    not_modified: Arc<Mutex<u32>>,
    ca_file: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl BundleServer {
    async fn start(dir: &Path, token: &'static str) -> Self {
        Self::start_at(dir, token, "127.0.0.1:0".parse().unwrap()).await
    }

    /// On `addr`: the same URL again after a restart.
    async fn start_at(dir: &Path, token: &'static str, addr: std::net::SocketAddr) -> Self {
        let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let ca_file = dir.join("bundle-server.pem");
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![ca.cert.der().clone()],
                tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
                    ca.signing_key.serialize_der().into(),
                ),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bundle = Arc::new(Mutex::new(Vec::new()));
        let not_modified = Arc::new(Mutex::new(0));
        let (served, counted) = (bundle.clone(), not_modified.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (served, counted) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let reply = answer(&request, &served, &counted, token);
                        async move { Ok::<_, std::convert::Infallible>(reply) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            bundle,
            not_modified,
            ca_file,
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://{}/bundle.tar.gz", self.addr)
    }

    fn serve(&self, files: &BundleFiles) -> String {
        let archive = files.archive();
        let sha = sha256_hex(&archive);
        *self.bundle.lock().unwrap() = archive;
        sha
    }
}

fn answer(
    request: &hyper::Request<hyper::body::Incoming>,
    bundle: &Mutex<Vec<u8>>,
    not_modified: &Mutex<u32>,
    token: &str,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let reply = |status: u16, body: Vec<u8>| {
        hyper::Response::builder()
            .status(status)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    };
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {token}").as_bytes());
    if !authorized {
        return reply(401, Vec::new());
    }
    if request.uri().path() != "/bundle.tar.gz" {
        return reply(404, Vec::new());
    }
    let bytes = bundle.lock().unwrap().clone();
    let etag = format!("\"{}\"", sha256_hex(&bytes));
    if request
        .headers()
        .get("if-none-match")
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        *not_modified.lock().unwrap() += 1;
        let mut response = reply(304, Vec::new());
        response.headers_mut().insert("etag", etag.parse().unwrap());
        return response;
    }
    let mut response = reply(200, bytes);
    response.headers_mut().insert("etag", etag.parse().unwrap());
    response
}

// Multi-threaded: the bundle server keeps answering while the test blocks
// on a CLI run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bundles_are_polled_over_https_with_etags() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::es256(dir.path(), "policy-ci");
    let bundles = BundleServer::start(dir.path(), "bundle-token").await;
    let token_file = dir.path().join("token");
    std::fs::File::create(&token_file)
        .unwrap()
        .write_all(b"bundle-token\n")
        .unwrap();
    let keys = format!(
        "[[bundle.verification_keys]]\nid = \"policy-ci\"\nalgorithm = \"ES256\"\nfile = {:?}\n",
        key.public_file
    );
    let config = write_config(
        dir.path(),
        &format!(
            "policies = {:?}\n\n[bundle]\npoll_interval = \"1s\"\nca_file = {:?}\n\
             token_file = {:?}\n\n{keys}",
            bundles.url(),
            bundles.ca_file,
            token_file
        ),
    );
    bundles.serve(&BundleFiles::repo("v1").signed(&key));

    // Without the private CA the server is not trusted: no start.
    let untrusting = write_config(
        &{
            let d = dir.path().join("untrusting");
            std::fs::create_dir_all(&d).unwrap();
            d
        },
        &format!(
            "policies = {:?}\n\n[bundle]\ntoken_file = {token_file:?}\n\n{keys}",
            bundles.url()
        ),
    );
    let (ok, _, err) = trustpath(&[
        "eval",
        "--config",
        untrusting.to_str().unwrap(),
        "--query",
        "data.trustpath.settings",
    ]);
    assert!(!ok);
    assert!(err.contains("certificate"), "{err}");

    let data = dir.path().join("data");
    let server = Server::start(&data, Path::new(&bundles.url()), Some(&config));
    assert_eq!(policies_check(&server).await["revision"], "v1");
    assert_eq!(policies_check(&server).await["source"], bundles.url());

    // Unchanged: the server answers 304 to the ETag, nothing is logged.
    eventually("304s", || async {
        *bundles.not_modified.lock().unwrap() >= 2
    })
    .await;
    assert!(newest(&server, "policy_rejected").await.is_none());

    // A new signed bundle is polled into force.
    bundles.serve(&BundleFiles::repo("v2").signed(&key));
    eventually("v2 in force", || async {
        policies_check(&server).await["revision"] == "v2"
    })
    .await;
    let loaded = newest(&server, "policy_loaded").await.unwrap();
    assert_eq!(loaded["trigger"], "poll");
    assert_eq!(loaded["directory"], bundles.url());

    // An unsigned one is refused: logged, shown, counted; v2 decides.
    let sha = bundles.serve(&BundleFiles::repo("v3"));
    eventually("rejection", || async {
        newest(&server, "policy_rejected")
            .await
            .is_some_and(|e| e["sha256"] == sha)
    })
    .await;
    let rejected = newest(&server, "policy_rejected").await.unwrap();
    assert_eq!(rejected["trigger"], "poll");
    assert_eq!(rejected["policy_revision"], "v2");
    assert_eq!(rejected["source"], bundles.url());
    let check = policies_check(&server).await;
    assert_eq!(check["revision"], "v2");
    assert!(check["rejected"]["error"]
        .as_str()
        .unwrap()
        .contains("no .signatures.json"));
    assert_eq!(last_reload_ok(&server).await, Some(0.0));
    let decision = connect(&server, &TestKey::generate("k"), "s-https", &["files:read"]).await;
    assert_eq!(logged_revision(&server, &decision).await, "v2");

    // The bundle server goes away: the policy in force stays, /ready says why.
    bundles.task.abort();
    eventually("download failure shown", || async {
        policies_check(&server).await["rejected"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("download"))
    })
    .await;
    assert_eq!(get_json(&server, "/ready").await["status"], "ready");
    server.stop();

    // A start while the bundle server is down uses the last bundle put in
    // force from it (v2, verified again; v3 was refused), and says why.
    let cached = data.join("policy-bundle.tar.gz");
    assert_eq!(
        sha256_hex(&std::fs::read(&cached).unwrap()),
        newest_loaded_sha(&loaded)
    );
    let server = Server::start(&data, Path::new(&bundles.url()), Some(&config));
    let check = policies_check(&server).await;
    assert_eq!(check["revision"], "v2");
    assert!(
        check["rejected"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("download")),
        "{check}"
    );
    // The server back with the same bundle: the download error clears,
    // nothing new is put in force or logged.
    let entries = get_json(&server, "/v1/decisions?limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .len();
    let back = BundleServer::start_at(dir.path(), "bundle-token", bundles.addr).await;
    back.serve(&BundleFiles::repo("v2").signed(&key));
    eventually("download error cleared", || async {
        policies_check(&server).await.get("rejected").is_none()
    })
    .await;
    assert_eq!(policies_check(&server).await["revision"], "v2");
    let after = get_json(&server, "/v1/decisions?limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, entries);
    server.stop();

    // A cached bundle that no longer verifies is not used: no start.
    let mut tampered = std::fs::read(&cached).unwrap();
    tampered.truncate(tampered.len() / 2);
    std::fs::write(&cached, tampered).unwrap();
    back.task.abort();
    let err = refused_start(&data, [OsStr::new("--config"), config.as_os_str()]);
    assert!(err.contains("policy-bundle.tar.gz"), "{err}");
}

/// `trustpath serve` on `data` with `args`, which must refuse to start:
/// its standard error.
fn refused_start<'a>(data: &Path, args: impl IntoIterator<Item = &'a OsStr>) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The bundle SHA-256 a `policy_loaded` entry records.
fn newest_loaded_sha(entry: &Value) -> String {
    entry["bundle"]["sha256"].as_str().unwrap().to_string()
}
