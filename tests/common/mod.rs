//! Test support: a real trustpath process on a loopback port with a real
//! sled directory, and real Ed25519 keys that sign real JWTs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub mod pg;

pub const AS_ISSUER: &str = "https://auth.example.com";

/// Entries a fresh data directory starts with: the log key's and the grant
/// key's `signing_key` entries and the policy's `policy_loaded` entry.
pub const START_ENTRIES: u64 = 3;
pub const CLIENT_ID: &str = "https://agents.example.com/client.json";

pub fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A running `trustpath serve`. Killed (SIGKILL, no graceful shutdown) on drop.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, policies: &Path, config: Option<&Path>) -> Server {
        Self::start_with(data_dir, policies, config, |_| {})
    }

    /// Like [`Server::start`], with `configure` applied to the command
    /// (limits, environment, where stderr goes).
    pub fn start_with(
        data_dir: &Path,
        policies: &Path,
        config: Option<&Path>,
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trustpath"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--policies")
            .arg(policies)
            .env("TRUSTPATH_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn trustpath");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listen line");
        let base = line
            .trim()
            .strip_prefix("trustpath listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Server {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `host:port` the server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("address")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the process with SIGTERM (graceful: final checkpoint) and waits.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "trustpath exited with {exit}");
    }

    /// Sends a signal by name (`HUP`, ...) and returns at once.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Stops the process abruptly, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Ed25519 key pair that signs JWTs and publishes itself as a JWK.
pub struct TestKey {
    signing: SigningKey,
    pub kid: String,
}

impl TestKey {
    pub fn generate(kid: &str) -> TestKey {
        TestKey {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
            kid: kid.to_string(),
        }
    }

    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
        })
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let der = self.signing.to_pkcs8_der().expect("pkcs8");
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes()))
            .expect("sign")
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 7523 client assertion claims for CLIENT_ID at AS_ISSUER.
pub fn assertion_claims(jti: &str) -> Value {
    let now = now();
    json!({
        "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": AS_ISSUER,
        "iat": now, "exp": now + 60, "jti": jti,
    })
}

/// A client identity document for CLIENT_ID carrying `jwks`.
pub fn cimd_document(jwks: Option<Value>) -> Value {
    let mut doc = json!({
        "client_id": CLIENT_ID,
        "client_name": "Example agent",
        "redirect_uris": ["https://agents.example.com/callback"],
        "token_endpoint_auth_method": "private_key_jwt",
    });
    if let Some(jwks) = jwks {
        doc["jwks"] = jwks;
    }
    doc
}

/// A CIMD connection request.
pub fn cimd_request(scopes: &[&str], document: Value, assertion: Option<String>) -> Value {
    let mut client = json!({
        "client_id": CLIENT_ID,
        "document": document,
        "redirect_uri": "https://agents.example.com/callback",
    });
    if let Some(a) = assertion {
        client["assertion"] = json!(a);
    }
    json!({
        "session_id": "sess-1",
        "resource": "https://mcp.example.com/mcp",
        "scopes": scopes,
        "metadata_source": {
            "kind": "cimd",
            "authorization_server": { "issuer": AS_ISSUER, "token_endpoint": "https://auth.example.com/token" },
        },
        "client": client,
    })
}

/// A CIMD request in `session` for `scopes` from a client whose document
/// holds `key`, with a fresh assertion `key` signed.
pub fn verified_request(key: &TestKey, session: &str, scopes: &[&str]) -> Value {
    let mut body = cimd_request(
        scopes,
        cimd_document(Some(key.jwks())),
        Some(key.sign(&assertion_claims(&uuid::Uuid::new_v4().to_string()))),
    );
    body["session_id"] = json!(session);
    body
}

/// A verified client's decision in `session`, with a grant for `scopes`.
pub async fn connect(server: &Server, key: &TestKey, session: &str, scopes: &[&str]) -> Value {
    let out = post_decision(server, &verified_request(key, session, scopes)).await;
    assert!(out["grant"]["token"].is_string(), "{out:#}");
    out
}

/// The grant token of a decision that has one.
pub fn grant_token(decision: &Value) -> String {
    decision["grant"]["token"].as_str().unwrap().to_string()
}

/// `POST /v1/tool-calls`, which must answer 200; returns the answer.
pub async fn tool_call(server: &Server, body: &Value) -> Value {
    let (status, out) = post_json(server, "/v1/tool-calls", body).await;
    assert_eq!(status, 200, "{out:#}");
    out
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn post_decision(server: &Server, body: &Value) -> Value {
    let resp = http()
        .post(server.url("/v1/decisions"))
        .json(body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200, "decision call failed");
    resp.json().await.expect("json")
}

/// Runs the trustpath binary with `args`; returns (success, stdout, stderr).
pub fn trustpath(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trustpath"))
        .args(args)
        .env("TRUSTPATH_LOG", "error")
        .output()
        .expect("run trustpath");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `trustpath log verify --export FILE --public-key VKEY [extra]`; returns
/// (success, stdout and stderr together).
pub fn verify_export_file(file: &Path, vkey: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "log",
        "verify",
        "--export",
        file.to_str().unwrap(),
        "--public-key",
        vkey.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = trustpath(&args);
    (ok, format!("{out}{err}"))
}

/// GET a path; returns the status.
pub async fn status_of(server: &Server, path: &str) -> u16 {
    http()
        .get(server.url(path))
        .send()
        .await
        .expect("get")
        .status()
        .as_u16()
}

/// GET a path that must answer 200; returns the body.
pub async fn get_ok(server: &Server, path: &str) -> bytes::Bytes {
    let resp = http().get(server.url(path)).send().await.expect("get");
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.bytes().await.expect("body")
}

/// The stored log entry of a decision response, as text.
pub async fn stored_entry(server: &Server, decision: &Value) -> String {
    let id = decision["decision_id"].as_str().expect("decision_id");
    String::from_utf8(
        get_ok(server, &format!("/v1/decisions/{id}"))
            .await
            .to_vec(),
    )
    .unwrap()
}

/// GET a path that must answer 200; returns the body as JSON.
/// The seqs of a `GET /v1/decisions` page, in its order.
pub fn page_seqs(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .expect("a page of entries")
        .iter()
        .map(|e| e["seq"].as_u64().expect("an entry's seq"))
        .collect()
}

pub async fn get_json(server: &Server, path: &str) -> Value {
    serde_json::from_slice(&get_ok(server, path).await).expect("json body")
}

/// POST a JSON body; returns the status and the JSON answer.
pub async fn post_json(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let resp = http()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Sends document-only decisions (each its own session) on `workers`
/// connections until `until` passes or the server goes away; returns
/// (decision id, seq) of every decision answered 200.
pub async fn load_until(
    server: &Server,
    prefix: &str,
    workers: usize,
    until: Option<std::time::Instant>,
) -> Vec<(String, u64)> {
    let client = http();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (client, url) = (client.clone(), server.url("/v1/decisions"));
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    if until.is_some_and(|t| std::time::Instant::now() >= t) {
                        break;
                    }
                    let mut body = cimd_request(&["files:read"], cimd_document(None), None);
                    body["session_id"] = json!(format!("{prefix}-{w}-{i}"));
                    let Ok(resp) = client.post(&url).json(&body).send().await else {
                        break;
                    };
                    if resp.status() != 200 {
                        continue;
                    }
                    // A body cut off by a kill was never acknowledged.
                    let Ok(answer) = resp.json::<Value>().await else {
                        break;
                    };
                    acked.push((
                        answer["decision_id"].as_str().unwrap().to_string(),
                        answer["log_entry"]["seq"].as_u64().unwrap(),
                    ));
                }
                acked
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.extend(task.await.unwrap());
    }
    out
}

/// RFC 7662 introspection of `token`, which must answer 200.
pub async fn introspect(server: &Server, token: &str) -> Value {
    let resp = http()
        .post(server.url("/v1/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// `trustpath log verify` on a data directory: (success, stdout and stderr).
pub fn verify_dir(data: &Path) -> (bool, String) {
    let (ok, stdout, stderr) = trustpath(&["log", "verify", "--data-dir", data.to_str().unwrap()]);
    (ok, format!("{stdout}{stderr}"))
}

/// A stopped data directory's sled tree, opened to be edited by a test,
/// with its entries' bytes readable (they are in the entry file).
pub struct RawLog {
    engine: trustpath::store::sled::SledLog,
    tree: sled::Tree,
}

impl RawLog {
    pub fn open(data: &Path) -> Self {
        let engine = trustpath::store::sled::SledLog::open(data).unwrap();
        let tree = engine.raw_tree();
        Self { engine, tree }
    }

    /// Entry `seq`'s bytes, as stored and hashed.
    pub fn entry(&self, seq: u64) -> Vec<u8> {
        self.engine.log_store().entry(seq).unwrap().unwrap()
    }

    pub fn flush(&self) {
        self.engine.log_store().flush().unwrap();
    }
}

impl std::ops::Deref for RawLog {
    type Target = sled::Tree;
    fn deref(&self) -> &sled::Tree {
        &self.tree
    }
}

/// Copies the data directory to `name` beside it, applies `tamper` to the
/// copy's sled tree, and runs `log verify` on the copy.
pub fn tampered(data: &Path, name: &str, tamper: impl FnOnce(&RawLog)) -> (bool, String) {
    let copy = data.parent().unwrap().join(name);
    copy_dir(data, &copy);
    {
        let raw = RawLog::open(&copy);
        tamper(&raw);
        raw.flush();
    }
    verify_dir(&copy)
}
