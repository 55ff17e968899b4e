//! Configuration: a TOML file, then `TRUSTPATH_*` environment variables and
//! command-line flags on top. Validated once at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value from the file or the environment that does not fit its
    /// key; the message names the key and where the value came from.
    #[error("configuration: {0}")]
    Value(String),
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where sled keeps the decision log, and where keys are created.
    pub data_dir: PathBuf,
    /// Where the Rego policies come from: a directory, an OPA bundle file
    /// (`.tar.gz`) or an HTTPS URL serving one.
    pub policies: PolicySource,
    /// How OPA bundles are fetched and which keys must have signed them.
    pub bundle: BundleConfig,
    /// `iss` of the grants trustpath signs.
    pub issuer: String,
    pub grants: GrantConfig,
    pub assertions: AssertionConfig,
    pub log: LogConfig,
    /// Where the log lives: the data directory (default) or, for a fleet,
    /// a PostgreSQL database shared by every replica.
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    /// How long the log keeps personal fields and whole entries.
    pub retention: RetentionConfig,
    pub tool_calls: ToolCallConfig,
    /// OTLP span export.
    pub telemetry: TelemetryConfig,
    /// The incident-response console at `/console/`.
    pub console: ConsoleConfig,
    /// The server's own log lines: `text` or `json` (`--log-format` and
    /// `TRUSTPATH_LOG_FORMAT` win).
    pub log_format: Option<LogFormat>,
    /// Fetching documents, keys and metadata that the AS did not send.
    pub fetch: FetchConfig,
    /// API callers and their roles. With none, the server only listens on loopback.
    pub callers: Vec<CallerConfig>,
    /// Pre-registered (and DCR) clients, by client_id.
    pub clients: BTreeMap<String, RegisteredClient>,
    /// Issuers of workload identity and ID-JAG tokens that trustpath trusts.
    pub trusted_issuers: Vec<TrustedIssuer>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            policies: PolicySource::Directory(PathBuf::from("policies")),
            bundle: BundleConfig::default(),
            issuer: "https://trustpath.local".to_string(),
            grants: GrantConfig::default(),
            assertions: AssertionConfig::default(),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            retention: RetentionConfig::default(),
            tool_calls: ToolCallConfig::default(),
            telemetry: TelemetryConfig::default(),
            console: ConsoleConfig::default(),
            log_format: None,
            fetch: Default::default(),
            callers: Vec::new(),
            clients: BTreeMap::new(),
            trusted_issuers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantConfig {
    /// Lifetime when the policy names none.
    pub default_ttl_seconds: u64,
    /// Upper bound on any grant, whatever the policy says.
    pub max_ttl_seconds: u64,
    /// PKCS#8 PEM Ed25519 key; created in the data directory when absent.
    pub signing_key_file: Option<PathBuf>,
    /// More keys that verify grants (never sign), each a public JWK in a
    /// JSON file with a `kid`: listed in the JWKS for as long as they are
    /// configured (a key from another deployment, or kept by hand). Keys
    /// `trustpath keys rotate` retires need no entry here.
    pub verification_key_files: Vec<PathBuf>,
}

impl Default for GrantConfig {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 300,
            max_ttl_seconds: 900,
            signing_key_file: None,
            verification_key_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssertionConfig {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_seconds: u64,
    /// Longest accepted `exp - iat` of a client assertion.
    pub max_lifetime_seconds: u64,
    /// JWS algorithms accepted on client assertions and workload JWTs.
    pub algorithms: Vec<String>,
}

impl Default for AssertionConfig {
    fn default() -> Self {
        Self {
            leeway_seconds: 30,
            max_lifetime_seconds: 300,
            algorithms: ["EdDSA", "ES256", "ES384", "RS256", "PS256"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Answer a decision only after its entry is flushed to disk.
    pub durable: bool,
    /// Checkpoint origin line and signed-note key name.
    pub origin: String,
    /// Sign a checkpoint once this many entries are uncovered...
    pub checkpoint_every_entries: u64,
    /// ...or once the oldest uncovered entry is this many seconds old.
    pub checkpoint_every_seconds: u64,
    /// PKCS#8 PEM Ed25519 log key; created in the data directory when absent.
    pub signing_key_file: Option<PathBuf>,
    /// The embedded storage engine of a new data directory.
    pub engine: Engine,
    /// sled's page cache, in MiB: most of the server's memory on a long
    /// log (sled's own default, 1 GiB, doubled the resident size for no
    /// measured gain; BENCHMARKS.md).
    pub cache_mb: u64,
    /// Where entries are streamed as they become durable (`[[log.sinks]]`).
    pub sinks: Vec<SinkConfig>,
}

/// One `[[log.sinks]]`: a copy of the log, entry by entry, delivered at
/// least once from a cursor kept in the data directory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink in metrics and its cursor file: an identifier.
    pub name: String,
    pub kind: SinkKind,
    #[serde(default)]
    pub format: SinkFormat,
    /// Entries per delivery (one write, or one POST).
    #[serde(default = "SinkConfig::default_batch_size")]
    pub batch_size: usize,
    /// `file`: the NDJSON file written.
    pub path: Option<PathBuf>,
    /// `file`: rotate once the file would grow past this many bytes.
    #[serde(default = "SinkConfig::default_max_bytes")]
    pub max_bytes: u64,
    /// `file`: rotated files kept (`path.1` is the newest).
    #[serde(default = "SinkConfig::default_keep")]
    pub keep: usize,
    /// `http`: where batches are POSTed.
    pub url: Option<String>,
    /// `http`: a file holding the bearer token (the config holds no secret).
    pub token_file: Option<PathBuf>,
    /// `http`: gzip each body (`Content-Encoding: gzip`).
    #[serde(default = "SinkConfig::default_gzip")]
    pub gzip: bool,
    /// `http`: how long one POST may take.
    #[serde(default = "SinkConfig::default_timeout")]
    pub timeout: Period,
}

impl SinkConfig {
    fn default_batch_size() -> usize {
        500
    }
    fn default_max_bytes() -> u64 {
        100 * 1024 * 1024
    }
    fn default_keep() -> usize {
        5
    }
    fn default_gzip() -> bool {
        true
    }
    fn default_timeout() -> Period {
        Period(std::time::Duration::from_secs(10))
    }

    fn validate(&self, i: usize) -> Result<(), String> {
        let at = format!("log.sinks[{i}]");
        // It names the cursor file: nothing that could leave the directory.
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "{at}.name {:?}: 1 to 64 letters, digits, '-' or '_'",
                self.name
            ));
        }
        let at = format!("{at} ({})", self.name);
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(format!("{at}: batch_size must be between 1 and 10000"));
        }
        let unused = |field: &str, set: bool| {
            if set {
                Err(format!(
                    "{at}: {field} does not apply to kind = {:?}",
                    self.kind.as_str()
                ))
            } else {
                Ok(())
            }
        };
        match self.kind {
            SinkKind::Stdout => {
                unused("path", self.path.is_some())?;
                unused("url", self.url.is_some())?;
                unused("token_file", self.token_file.is_some())?;
            }
            SinkKind::File => {
                if self.path.is_none() {
                    return Err(format!("{at}: path is required for kind = \"file\""));
                }
                if self.max_bytes < 4096 {
                    return Err(format!("{at}: max_bytes must be at least 4096"));
                }
                unused("url", self.url.is_some())?;
                unused("token_file", self.token_file.is_some())?;
            }
            SinkKind::Http => {
                let Some(url) = &self.url else {
                    return Err(format!("{at}: url is required for kind = \"http\""));
                };
                let parsed = url::Url::parse(url).map_err(|e| format!("{at}: url {url:?}: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!(
                        "{at}: url must be http:// or https://, got {url:?}"
                    ));
                }
                unused("path", self.path.is_some())?;
            }
        }
        Ok(())
    }
}

/// Where a sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// NDJSON on standard output (the server's own logs go to stderr).
    Stdout,
    /// NDJSON appended to a file, rotated by size.
    File,
    /// Batched POSTs of NDJSON.
    Http,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File => "file",
            SinkKind::Http => "http",
        }
    }
}

/// What each delivered line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    /// The entry as `GET /v1/log/entries` shows it, with its leaf hash.
    #[default]
    Entry,
    /// OCSF events (LOG-FORMAT.md maps each entry kind).
    Ocsf,
}

/// Where each setting came from (the file, the environment), for naming
/// the source of a value that does not validate.
pub struct Sources(figment::Figment);

impl Sources {
    /// `"/etc/trustpath.toml"`, `"the TRUSTPATH_ environment"` or
    /// `"the default"`, for a dotted key such as `limits.max_body_bytes`.
    pub fn source_of(&self, key: &str) -> String {
        match self.0.find_metadata(key) {
            Some(meta) => match &meta.source {
                Some(figment::Source::File(path)) => path.display().to_string(),
                _ if meta.name.contains("environment") || meta.name.contains("TRUSTPATH_") => {
                    "the TRUSTPATH_ environment".to_string()
                }
                _ => meta.name.to_string(),
            },
            None => "the default".to_string(),
        }
    }
}

/// The server's log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[console]`: the read-only incident-response pages for `audit` callers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve `/console/` (on by default; off answers 404).
    pub enabled: bool,
    /// The log verifier key (signed-note vkey, as `GET /v1/log/public-key`
    /// prints it) the browser checks checkpoints against. Pin it so a
    /// browser's proof check does not take the key from the server it is
    /// checking; unset, the page uses this server's own current key.
    pub log_verifier: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            log_verifier: None,
        }
    }
}

/// Where the policies are read from. Written as one string: an `https://`
/// URL, a path ending in `.tar.gz` or `.tgz` (an OPA bundle file), or a
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `.rego` files and `data.json`/`data.yaml` files under a directory.
    Directory(PathBuf),
    /// An OPA bundle (gzipped tar) on disk.
    BundleFile(PathBuf),
    /// An OPA bundle served over HTTPS, polled with `If-None-Match`.
    BundleUrl(url::Url),
}

impl PolicySource {
    /// Reads a source as the config, `--policies` or `TRUSTPATH_POLICIES`
    /// write it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("https://") {
            let url = url::Url::parse(text).map_err(|e| format!("policies {text:?}: {e}"))?;
            return Ok(Self::BundleUrl(url));
        }
        if text.contains("://") {
            return Err(format!(
                "policies {text:?}: only https:// URLs are fetched (a bundle decides \
                 every grant, so it never travels in the clear)"
            ));
        }
        if text.is_empty() {
            return Err(
                "policies: empty; give a directory, a bundle file or an https:// URL".into(),
            );
        }
        Ok(Self::from_path(PathBuf::from(text)))
    }

    /// A path: a bundle file when it names one (`.tar.gz`, `.tgz`, or an
    /// existing file), otherwise a directory.
    pub fn from_path(path: PathBuf) -> Self {
        let name = path.to_string_lossy();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") || path.is_file() {
            Self::BundleFile(path)
        } else {
            Self::Directory(path)
        }
    }

    /// Whether the policies arrive as an OPA bundle.
    pub fn is_bundle(&self) -> bool {
        !matches!(self, Self::Directory(_))
    }
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Directory(path) | Self::BundleFile(path) => write!(f, "{}", path.display()),
            Self::BundleUrl(url) => write!(f, "{url}"),
        }
    }
}

impl Serialize for PolicySource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicySource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `[bundle]`: fetching and verifying OPA bundles (`policies` a bundle file
/// or URL). With `verification_keys` set, every bundle must carry a
/// `.signatures.json` one of them signed, as OPA's bundle signing has it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundleConfig {
    /// Keys that may sign bundles (OPA's `keys`). Non-empty: unsigned
    /// bundles are refused.
    pub verification_keys: Vec<BundleKeyConfig>,
    /// Verify with this key whatever the signature names (OPA's
    /// `signing.keyid`).
    pub key_id: Option<String>,
    /// The scope the signature must carry (OPA's `signing.scope`).
    pub scope: String,
    /// How often a bundle URL (or file) is checked for a new bundle.
    pub poll_interval: Period,
    /// PEM certificates trusted for the bundle server (besides the
    /// built-in roots), for a private CA.
    pub ca_file: Option<PathBuf>,
    /// A file holding a bearer token sent to the bundle server.
    pub token_file: Option<PathBuf>,
    /// Largest bundle accepted, compressed; unpacked it may be 4 times that.
    pub max_bytes: u64,
    /// How long one download may take.
    pub timeout: Period,
}

impl Default for BundleConfig {
    fn default() -> Self {
        Self {
            verification_keys: Vec::new(),
            key_id: None,
            scope: String::new(),
            poll_interval: Period(std::time::Duration::from_secs(60)),
            ca_file: None,
            token_file: None,
            max_bytes: 32 << 20,
            timeout: Period(std::time::Duration::from_secs(30)),
        }
    }
}

/// One key that may sign bundles.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleKeyConfig {
    /// The key id a signature names (`kid`, or `keyid` in its payload).
    pub id: String,
    /// JWS algorithm: RS256/384/512, PS256/384/512, ES256/384, EdDSA or
    /// HS256/384/512.
    pub algorithm: String,
    /// The PEM public key (or, for HS*, the shared secret).
    pub file: PathBuf,
}

impl BundleConfig {
    fn validate(&self, source: &PolicySource) -> Result<(), String> {
        if !source.is_bundle() && !self.verification_keys.is_empty() {
            return Err(format!(
                "bundle.verification_keys is set but policies ({source}) is a directory: \
                 signatures are checked on bundles (a .tar.gz file or an https:// URL)"
            ));
        }
        if self.max_bytes < 1024 {
            return Err("bundle.max_bytes must be at least 1024".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, key) in self.verification_keys.iter().enumerate() {
            if key.id.is_empty() || !ids.insert(key.id.as_str()) {
                return Err(format!(
                    "bundle.verification_keys[{i}].id {:?} is empty or used twice",
                    key.id
                ));
            }
        }
        if let Some(id) = &self.key_id {
            if !ids.contains(id.as_str()) {
                return Err(format!(
                    "bundle.key_id {id:?} names none of bundle.verification_keys"
                ));
            }
        }
        Ok(())
    }
}

/// `[telemetry]`: OTLP span export, off unless an endpoint is named.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL, e.g.
    /// `http://otel-collector:4318/v1/traces` (JSON encoding).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// How long one export may take.
    pub timeout: Period,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "trustpath".to_string(),
            timeout: Period(std::time::Duration::from_secs(10)),
        }
    }
}

/// Embedded storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    #[default]
    Sled,
    Fjall,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            durable: true,
            origin: "trustpath.local/decision-log".to_string(),
            checkpoint_every_entries: 1000,
            checkpoint_every_seconds: 10,
            signing_key_file: None,
            engine: Engine::default(),
            cache_mb: 256,
            sinks: Vec::new(),
        }
    }
}

/// A length of time written with units: `90s`, `12h`, `30d`, `1y 2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(pub std::time::Duration);

/// Written as it is read: `"30d"`.
impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let period = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a period with units such as \"90s\", \"12h\" or \"30d\": {e}"
            ))
        })?;
        if period.as_secs() == 0 {
            return Err(serde::de::Error::custom(format!(
                "{text:?}: a period is at least one second"
            )));
        }
        Ok(Period(period))
    }
}

/// In the largest whole unit: `300d`, `12h`, `90s`.
impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match [(86_400, "d"), (3_600, "h"), (60, "m")]
            .into_iter()
            .find(|(unit, _)| secs.is_multiple_of(*unit))
        {
            Some((unit, name)) => write!(f, "{}{name}", secs / unit),
            None => write!(f, "{secs}s"),
        }
    }
}

/// `[retention]`: after how long the log drops what. A setting left out
/// keeps that data for as long as the log exists. Redacting keeps each
/// entry's leaf hash, so every proof and `log verify` still hold.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Who the end user is: subject, delegation approver and actor chain.
    pub end_user: Option<Period>,
    /// The claims of the end user's subject token.
    pub subject_claims: Option<Period>,
    /// The client identity document as checked.
    pub client_document: Option<Period>,
    /// Tool-call argument names, hashes and allow-listed values.
    pub tool_arguments: Option<Period>,
    /// Every sealed field: after it only the correlation fields are left
    /// (ids, client, issuer, scopes, outcome, lifetime, policy revision).
    pub body: Option<Period>,
    /// Whole entries, correlation fields too: only the leaf hash is left.
    pub expire: Option<Period>,
    /// How often retention looks for work.
    pub interval: Period,
    /// Entries looked at per batch (one atomic write and one record each).
    pub batch_size: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            end_user: None,
            subject_claims: None,
            client_document: None,
            tool_arguments: None,
            body: None,
            expire: None,
            interval: Period(std::time::Duration::from_secs(60)),
            batch_size: 32,
        }
    }
}

impl RetentionConfig {
    /// The settings made, by key name.
    pub fn settings(&self) -> Vec<(&'static str, Period)> {
        [
            ("end_user", self.end_user),
            ("subject_claims", self.subject_claims),
            ("client_document", self.client_document),
            ("tool_arguments", self.tool_arguments),
            ("body", self.body),
            ("expire", self.expire),
        ]
        .into_iter()
        .filter_map(|(name, period)| period.map(|p| (name, p)))
        .collect()
    }

    fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("retention.batch_size must be positive".into());
        }
        // What outlives a broader setting would be dropped with it anyway:
        // a configuration that says otherwise is a mistake.
        let settings = self.settings();
        for (outer, longer) in [("body", self.body), ("expire", self.expire)] {
            let Some(longer) = longer else { continue };
            for (name, period) in &settings {
                let inner = outer == "expire" || *name != "expire";
                if inner && *name != outer && *period > longer {
                    return Err(format!(
                        "retention.{name} ({}) is longer than retention.{outer} ({}), \
                         which drops it too",
                        period, longer
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The shared store of a fleet.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://USER@HOST/DB`: the fleet's database. Absent: the
    /// embedded engine in the data directory.
    pub url: Option<String>,
    /// This replica's name, recorded in every entry it writes.
    pub node: Option<String>,
    /// Database connections this replica keeps at most.
    pub pool_size: u32,
    /// How long a query waits for a connection (or to connect).
    pub connect_timeout_seconds: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            node: None,
            pool_size: 8,
            connect_timeout_seconds: 2,
        }
    }
}

// The URL may carry a password: never printed.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("node", &self.node)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_seconds", &self.connect_timeout_seconds)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    /// Open connections at once; beyond it new ones wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// Open connections from one peer address at once; beyond it the
    /// peer's new connections are closed at once, so one client cannot
    /// take every connection.
    pub max_connections_per_peer: usize,
    /// A request's headers must arrive within this many milliseconds of
    /// the connection opening or of the previous response; so an idle
    /// keep-alive connection is closed after it too (slowloris).
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this many milliseconds.
    pub body_read_timeout_ms: u64,
    /// Decisions and tool-call checks in progress at once; beyond it the
    /// answer is a fast 503, never an unbounded queue.
    pub max_in_flight_decisions: usize,
    /// Appends that may wait for the log writer; beyond them a decision
    /// gets an immediate 503 (`overloaded`) rather than a place in an
    /// unbounded queue.
    pub max_log_queue: usize,
    /// Free space (MB) the data directory's filesystem must keep; below
    /// it `/ready` answers 503. 0: not checked.
    pub min_free_disk_mb: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_connections: 1024,
            max_connections_per_peer: 256,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            max_in_flight_decisions: 512,
            max_log_queue: 1024,
            min_free_disk_mb: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolCallConfig {
    /// Argument values the log may keep, by tool name (`"*"`: every tool).
    /// Every other value is kept only as part of the arguments' SHA-256,
    /// because tool arguments can carry secrets and personal data.
    pub log_argument_values: BTreeMap<String, Vec<String>>,
}

impl ToolCallConfig {
    /// Whether the value of argument `name` of `tool` may be logged.
    pub fn logs_value(&self, tool: &str, name: &str) -> bool {
        [tool, "*"].iter().any(|t| {
            self.log_argument_values
                .get(*t)
                .is_some_and(|names| names.iter().any(|n| n == name))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The authorization server: may ask for decisions.
    Decide,
    /// Security reviewers: may read the log.
    Audit,
    /// The MCP server or gateway (the enforcement point): may check tool
    /// calls and introspect grants.
    Enforce,
    /// Everything.
    Admin,
}

impl Role {
    pub fn permits(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Decide => "decide",
            Role::Audit => "audit",
            Role::Enforce => "enforce",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the bearer token, so the config file holds no secret.
    pub token_sha256: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredClient {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Keys for `private_key_jwt`, as a JWK Set.
    #[serde(default)]
    pub jwks: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    pub issuer: String,
    /// The `aud` the issuer's tokens must carry for trustpath.
    pub audience: String,
    /// Inline JWK Set.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// JWK Set in a JSON file.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// JWK Set fetched (and cached) by URL, under the `[fetch]` rules.
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

impl Config {
    /// Reads a TOML config file; every field is optional.
    /// The file (if any), then `TRUSTPATH_SECTION__KEY` variables on top
    /// (`TRUSTPATH_LIMITS__MAX_BODY_BYTES=131072`, `TRUSTPATH_LOG__DURABLE=
    /// false`, `TRUSTPATH_RETENTION__BODY=30d`): every key of every section
    /// can be set from the environment. Top-level keys have their own
    /// variables (`TRUSTPATH_LISTEN`, ...) through the command line.
    /// A bad value is named with its key and where it came from.
    pub fn load(path: Option<&Path>) -> Result<(Self, Sources), ConfigError> {
        use figment::providers::{Env, Format as _, Toml};
        let mut figment = figment::Figment::new();
        if let Some(path) = path {
            // The file alone first: its mistakes are named with their line
            // (and a missing file is an error, not an empty layer).
            Self::from_file(path)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("TRUSTPATH_")
                // Only section keys: other TRUSTPATH_ variables (the log
                // filter, a token, the config path) are not settings.
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let config = figment.extract::<Self>().map_err(|e| {
            let messages: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            ConfigError::Value(messages.join("; "))
        })?;
        Ok((config, Sources(figment)))
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks what can be checked before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.grants.max_ttl_seconds == 0 {
            return bad("grants.max_ttl_seconds must be positive".into());
        }
        if self.grants.default_ttl_seconds == 0
            || self.grants.default_ttl_seconds > self.grants.max_ttl_seconds
        {
            return bad("grants.default_ttl_seconds must be between 1 and max_ttl_seconds".into());
        }
        // The origin is the first line of every signed checkpoint (C2SP
        // signed note): visible ASCII only, no spaces, no '+'.
        let origin_ok = !self.log.origin.is_empty()
            && self
                .log
                .origin
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'+');
        if !origin_ok {
            return bad(format!(
                "log.origin must be visible ASCII without spaces or '+', got {:?}",
                self.log.origin
            ));
        }
        if self.limits.max_log_queue == 0 || self.limits.max_in_flight_decisions == 0 {
            return bad("limits.max_log_queue and max_in_flight_decisions must be positive".into());
        }
        if let Some(url) = &self.store.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return bad("store.url must be a postgres:// URL".into());
            }
        }
        if let Some(node) = &self.store.node {
            if let Err(e) = crate::text::check_identifier(node) {
                return bad(format!("store.node {node:?}: {e}"));
            }
        }
        if self.store.pool_size == 0 || self.store.connect_timeout_seconds == 0 {
            return bad(
                "store.pool_size and store.connect_timeout_seconds must be positive".into(),
            );
        }
        self.retention.validate().map_err(ConfigError::Invalid)?;
        self.bundle
            .validate(&self.policies)
            .map_err(ConfigError::Invalid)?;
        if self.log.checkpoint_every_entries == 0 || self.log.checkpoint_every_seconds == 0 {
            return bad("log.checkpoint_every_entries and _seconds must be positive".into());
        }
        if !(16..=1024 * 1024).contains(&self.log.cache_mb) {
            return bad(format!(
                "log.cache_mb must be between 16 and 1048576, got {}",
                self.log.cache_mb
            ));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            let ok =
                url::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return bad(format!(
                    "telemetry.otlp_endpoint must be an http(s) URL, got {endpoint:?}"
                ));
            }
        }
        let mut sink_names = std::collections::BTreeSet::new();
        for (i, sink) in self.log.sinks.iter().enumerate() {
            sink.validate(i).map_err(ConfigError::Invalid)?;
            if !sink_names.insert(sink.name.as_str()) {
                return bad(format!("log.sinks[{i}].name {:?} is used twice", sink.name));
            }
        }
        // The issuer is signed into every grant and compared by resource
        // servers: visible ASCII, no spaces.
        if self.issuer.is_empty() || !self.issuer.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(format!(
                "issuer must be non-empty visible ASCII without spaces, got {:?}",
                self.issuer
            ));
        }
        for alg in &self.assertions.algorithms {
            if crate::model::parse_algorithm(alg).is_none() {
                return bad(format!(
                    "assertions.algorithms: {alg:?} is not an accepted asymmetric JWS algorithm"
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, caller) in self.callers.iter().enumerate() {
            // Caller names are logged as who revoked what.
            if let Err(e) = crate::text::check_identifier(&caller.name) {
                return bad(format!("callers[{i}].name {:?}: {e}", caller.name));
            }
            if !names.insert(caller.name.as_str()) {
                return bad(format!("callers[{i}].name {:?} is used twice", caller.name));
            }
            let ok = caller.token_sha256.len() == 64
                && caller.token_sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return bad(format!(
                    "callers[{}].token_sha256 must be 64 hex digits",
                    caller.name
                ));
            }
        }
        for issuer in &self.trusted_issuers {
            let sources = [
                issuer.jwks.is_some(),
                issuer.jwks_file.is_some(),
                issuer.jwks_uri.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return bad(format!(
                    "trusted_issuers[{}]: give exactly one of jwks, jwks_file and jwks_uri",
                    issuer.issuer
                ));
            }
        }
        if self.callers.is_empty() && !self.listen.ip().is_loopback() {
            return bad(format!(
                "no API callers are configured, so trustpath only listens on loopback, not {}",
                self.listen
            ));
        }
        Ok(())
    }
}

/// `[fetch]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Development and tests only: also allow `http` URLs and loopback
    /// addresses (every other special-use range stays refused).
    pub allow_http_loopback: bool,
    pub connect_timeout_ms: u64,
    /// The whole exchange, body included.
    pub timeout_ms: u64,
    /// Client ID Metadata Documents (the CIMD draft caps them at 5 KB).
    pub max_document_bytes: usize,
    /// JWK Sets and metadata documents.
    pub max_jwks_bytes: usize,
    /// Bounds on how long a fetched document is reused.
    pub cache_min_seconds: u64,
    pub cache_max_seconds: u64,
    /// Most bytes the cache holds, counted as the documents' raw bytes (and
    /// their URLs): client_id and jwks_uri URLs come from outside, so the
    /// cache must not grow with whatever is sent. When full, expired
    /// entries go first, then those closest to expiry.
    pub cache_max_bytes: usize,
    /// An assertion naming a `kid` a cached JWK Set lacks re-fetches the set,
    /// at most once per this many seconds per URL.
    pub jwks_refresh_min_seconds: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            allow_http_loopback: false,
            connect_timeout_ms: 2_000,
            timeout_ms: 5_000,
            max_document_bytes: 5 * 1024,
            max_jwks_bytes: 64 * 1024,
            cache_min_seconds: 60,
            cache_max_seconds: 24 * 3600,
            cache_max_bytes: 16 * 1024 * 1024,
            jwks_refresh_min_seconds: 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../examples/trustpath.toml");

    #[test]
    fn the_example_config_loads_and_validates() {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        config.validate().unwrap();
        assert_eq!(config.telemetry.service_name, "trustpath");
    }

    /// The commented-out sinks of the example, switched on, are valid too.
    #[test]
    fn the_example_sinks_load_and_validate() {
        let mut in_sinks = false;
        let text: String = EXAMPLE
            .lines()
            .map(|line| {
                if line.starts_with("# [[log.sinks]]") {
                    in_sinks = true;
                }
                if line.starts_with('[') {
                    in_sinks = false;
                }
                match line.strip_prefix("# ") {
                    Some(setting) if in_sinks => format!("{setting}\n"),
                    _ => format!("{line}\n"),
                }
            })
            .collect();
        let config: Config = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        let kinds: Vec<_> = config.log.sinks.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [SinkKind::Http, SinkKind::File]);
        assert_eq!(config.log.sinks[0].format, SinkFormat::Ocsf);
    }

    #[test]
    fn a_bad_sink_is_named_with_its_field() {
        let text = "[[log.sinks]]\nname = \"a\"\nkind = \"file\"\n\n[[log.sinks]]\nname = \"a\"\nkind = \"stdout\"\n";
        let config: Config = toml::from_str(text).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("log.sinks[0] (a): path is required"), "{err}");
        let text = "[[log.sinks]]\nname = \"a\"\nkind = \"stdout\"\n\n[[log.sinks]]\nname = \"a\"\nkind = \"stdout\"\n";
        let config: Config = toml::from_str(text).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("log.sinks[1].name \"a\" is used twice"),
            "{err}"
        );
        let text = "[[log.sinks]]\nname = \"../x\"\nkind = \"stdout\"\n";
        let config: Config = toml::from_str(text).unwrap();
        assert!(config.validate().is_err());
    }
}
