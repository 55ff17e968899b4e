//! The organisation's Rego policies, compiled once and shared.

mod builtins;
mod bundle;
mod calls;
mod download;
mod result_cache;
mod signature;
mod sprintf;
mod syntax;
pub mod test_runner;
pub mod verdict;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use regorus::utils::limits::ExecutionTimerConfig;
use serde_json::Value;
use sha2::{Digest, Sha256};

use bundle::Bundle;
pub use bundle::BundleError;
use download::{BundleServer, Downloaded};
use result_cache::{InputReads, ResultCache};
use signature::BundleVerifier;

use crate::config::{BundleConfig, Config, PolicySource};
pub use crate::model::{PolicyBundleOrigin, PolicyFile};

/// The rule the connection decision comes from.
pub const CONNECTION_ENTRY_POINT: &str = "data.trustpath.connection.decision";
/// The rule a tool call's decision comes from. Optional in a policy set:
/// without it every tool call is denied (the result is undefined).
pub const TOOL_CALL_ENTRY_POINT: &str = "data.trustpath.tool_call.decision";

/// Longest line accepted in a policy file.
const MAX_COLUMNS: u32 = 1 << 20;

/// Deepest nesting of `[` and `{` accepted in a policy file. regorus'
/// parser takes exponential time in it (about 0.5 s at 12 levels of
/// objects here, and triple that per level beyond), so a deep literal
/// could hang a reload; deep documents belong in a `data.json`.
const MAX_NESTING: usize = 12;

/// Refuses brackets nested deeper than [`MAX_NESTING`], naming the line.
/// Strings and comments do not count.
fn check_nesting(text: &str) -> Result<(), String> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            // A comment runs to the end of its line.
            '#' if chars.by_ref().any(|c| c == '\n') => line += 1,
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            '`' => {
                for c in chars.by_ref() {
                    match c {
                        '\n' => line += 1,
                        '`' => break,
                        _ => {}
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "line {line}: brackets nest deeper than {MAX_NESTING} levels, which \
                         the Rego parser takes exponential time over; move deep literals \
                         into a data.json"
                    ));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A runaway policy is stopped and the request denied (fail closed).
const EVALUATION_TIME_LIMIT: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy directory {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no .rego files in {0}")]
    Empty(String),
    #[error("{path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("bundle {origin}: {error}")]
    Bundle { origin: String, error: BundleError },
    #[error("policy does not compile: {0}")]
    Compile(String),
    #[error("policy evaluation failed: {0}")]
    Evaluate(String),
    #[error("{0}")]
    Config(String),
    #[error("{download}; the cached bundle {path} does not load either: {cached}")]
    Cached {
        download: Box<PolicyError>,
        path: PathBuf,
        cached: Box<PolicyError>,
    },
}

/// Where a bundle URL's last bundle in force is kept, in the data directory.
pub const BUNDLE_CACHE_FILE: &str = "policy-bundle.tar.gz";

impl PolicyError {
    /// The bundle server could not be reached or answered with an error.
    fn is_download(&self) -> bool {
        matches!(
            self,
            PolicyError::Bundle {
                error: BundleError::Download(_),
                ..
            }
        )
    }
}

/// Names every decision's rules: a bundle's `.manifest` revision, or else
/// the hash of the policy files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRevision(String);

impl PolicyRevision {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Compiled policies and data. `regorus::Engine` is `Clone + Send + Sync`
/// with the `arc` feature: each evaluation clones it, nothing locks it.
///
/// One evaluation path serves `serve`, `eval`, `replay` and `trustpath
/// test`: regorus' interpreter with strict builtin errors. regorus' register
/// VM is about 3x faster on the shipped policy but drops any error raised
/// inside a rule body (the rule is then undefined, even in its strict
/// mode), so a deny rule that errors would vanish and its decision allow.
/// A PDP cannot serve with that; BENCHMARKS.md records the cost.
pub struct PolicyBundle {
    engine: regorus::Engine,
    /// Entry points the policies do not define: their result is undefined.
    undefined: Vec<&'static str>,
    revision: PolicyRevision,
    manifest: Vec<PolicyFile>,
    /// Which content this is (see [`PolicyTexts::fingerprint`]).
    fingerprint: String,
    bundle: Option<PolicyBundleOrigin>,
    /// What of the input decides a result, and results kept by it.
    input_reads: InputReads,
    results: Option<ResultCache>,
}

/// The policy files of a source, read and added to a fresh engine: what
/// both the decision path and the test runner start from.
pub struct PolicySources {
    pub engine: regorus::Engine,
    /// Every file loaded, sorted, as errors and reports name it.
    pub files: Vec<PathBuf>,
    /// The `.rego` files and their text.
    pub rego: Vec<(PathBuf, String)>,
    pub revision: PolicyRevision,
    pub manifest: Vec<PolicyFile>,
    fingerprint: String,
    bundle: Option<PolicyBundleOrigin>,
    input_reads: InputReads,
}

/// One policy file as read: how messages name it, its path relative to the
/// source (where a data file mounts), and its text.
struct SourceFile {
    shown: PathBuf,
    relative: String,
    text: String,
}

/// The policy files of a source, read but not parsed.
struct PolicyTexts {
    /// The source as messages name it.
    source: String,
    files: Vec<SourceFile>,
    revision: PolicyRevision,
    /// Which content this is: the files' hash for a directory, the
    /// archive's SHA-256 for a bundle. A reload compares it.
    fingerprint: String,
    bundle: Option<(PolicyBundleOrigin, Bundle)>,
}

/// Hash of the files' paths and texts, length-prefixed so that moving
/// bytes between files changes it.
fn content_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut hasher = Sha256::new();
    for (relative, text) in files {
        for part in [relative.as_bytes(), text] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hex::encode(hasher.finalize())
}

/// The text of every policy file under `dir`, sorted by path.
fn read_directory(dir: &Path) -> Result<PolicyTexts, PolicyError> {
    let mut paths = Vec::new();
    collect_files(dir, &mut paths)?;
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        let relative = path.strip_prefix(dir).unwrap_or(&path);
        let relative = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        files.push(SourceFile {
            shown: path,
            relative,
            text,
        });
    }
    if !files.iter().any(|f| f.relative.ends_with(".rego")) {
        return Err(PolicyError::Empty(dir.display().to_string()));
    }
    let hash = content_hash(
        files
            .iter()
            .map(|f| (f.relative.as_str(), f.text.as_bytes())),
    );
    Ok(PolicyTexts {
        source: dir.display().to_string(),
        files,
        revision: PolicyRevision(hash.clone()),
        fingerprint: hash,
        bundle: None,
    })
}

/// Where policies come from and how they are checked: the configured
/// source, the keys bundles must be signed with, the bundle server.
#[derive(Debug)]
pub struct PolicyOrigin {
    source: PolicySource,
    verifier: Option<BundleVerifier>,
    server: Option<BundleServer>,
    max_bytes: u64,
    /// For a bundle URL: where the last downloaded bundle put in force is
    /// kept (`DATA_DIR/policy-bundle.tar.gz`), so a start while the bundle
    /// server is down can use it (verified again, as any bundle).
    cache: Option<PathBuf>,
    /// The last bundle downloaded (SHA-256, bytes), until it is put in
    /// force (then written to `cache`) or another replaces it.
    downloaded: std::sync::Mutex<Option<(String, Vec<u8>)>>,
}

impl PolicyOrigin {
    /// The origin `policies` and `[bundle]` configure. Reads the keys.
    pub fn from_config(config: &Config) -> Result<Self, PolicyError> {
        Ok(Self {
            source: config.policies.clone(),
            verifier: BundleVerifier::from_config(&config.bundle).map_err(PolicyError::Config)?,
            server: match &config.policies {
                PolicySource::BundleUrl(url) => {
                    Some(BundleServer::new(url.clone(), &config.bundle))
                }
                _ => None,
            },
            max_bytes: config.bundle.max_bytes,
            cache: matches!(config.policies, PolicySource::BundleUrl(_))
                .then(|| config.data_dir.join(BUNDLE_CACHE_FILE)),
            downloaded: Default::default(),
        })
    }

    /// A directory or bundle file read as it is, signatures unchecked: for
    /// `trustpath test`, `eval --query` and `replay`, which put nothing in
    /// force.
    pub fn unverified(path: &Path) -> Self {
        Self {
            source: PolicySource::from_path(path.to_path_buf()),
            verifier: None,
            server: None,
            max_bytes: BundleConfig::default().max_bytes,
            cache: None,
            downloaded: Default::default(),
        }
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    fn bundle_error(&self, error: BundleError) -> PolicyError {
        PolicyError::Bundle {
            origin: self.source.to_string(),
            error,
        }
    }

    /// Reads the source now (a URL unconditionally).
    fn read(&self) -> Result<PolicyTexts, PolicyError> {
        match &self.source {
            PolicySource::Directory(dir) => read_directory(dir),
            PolicySource::BundleFile(path) => self.read_bundle(&self.read_archive(path)?),
            PolicySource::BundleUrl(_) => match self.download(None)? {
                Downloaded::Bundle { bytes, .. } => self.read_bundle(&bytes),
                Downloaded::NotModified => Err(self.bundle_error(BundleError::Download(
                    "304 Not Modified to a request without If-None-Match".into(),
                ))),
            },
        }
    }

    fn read_archive(&self, path: &Path) -> Result<Vec<u8>, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(self.bundle_error(BundleError::TooLarge(self.max_bytes)));
        }
        Ok(bytes)
    }

    fn download(&self, etag: Option<&str>) -> Result<Downloaded, PolicyError> {
        let server = self.server.as_ref().expect("a URL source has a server");
        let downloaded = server.get(etag).map_err(|e| self.bundle_error(e))?;
        if let (Some(_), Downloaded::Bundle { bytes, .. }) = (&self.cache, &downloaded) {
            let sha = crate::digest::sha256_hex(bytes);
            *self.downloaded.lock().unwrap_or_else(|e| e.into_inner()) = Some((sha, bytes.clone()));
        }
        Ok(downloaded)
    }

    /// The bundle with `fingerprint` went into force: when it is the one
    /// downloaded last, it becomes the cached bundle (written whole, then
    /// renamed). Only where the data directory exists: a CLI run creates
    /// none.
    fn keep_in_force(&self, fingerprint: &str) {
        let Some(cache) = &self.cache else { return };
        let downloaded = self
            .downloaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some((sha, bytes)) = downloaded.filter(|(sha, _)| sha == fingerprint) else {
            return;
        };
        if !cache.parent().is_some_and(Path::is_dir) {
            return;
        }
        let partial = cache.with_extension("partial");
        let written =
            std::fs::write(&partial, &bytes).and_then(|()| std::fs::rename(&partial, cache));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %cache.display(), bundle_sha256 = %sha, "the bundle in force could not be cached");
        }
    }

    /// The cached bundle (see `cache`), read and verified like a download.
    fn read_cached(&self) -> Option<Result<PolicyTexts, PolicyError>> {
        let cache = self.cache.as_ref().filter(|c| c.is_file())?;
        Some(
            self.read_archive(cache)
                .and_then(|archive| self.read_bundle(&archive)),
        )
    }

    /// A bundle archive's policy files, its signature checked when keys
    /// are configured.
    fn read_bundle(&self, archive: &[u8]) -> Result<PolicyTexts, PolicyError> {
        let bundle = Bundle::unpack(archive, self.max_bytes.saturating_mul(4))
            .map_err(|e| self.bundle_error(e))?;
        let signed_by = match &self.verifier {
            Some(verifier) => Some(verifier.verify(&bundle).map_err(|e| self.bundle_error(e))?),
            None => {
                if bundle.signatures.is_some() {
                    tracing::warn!(
                        source = %self.source,
                        "the bundle is signed but [bundle] names no verification_keys: \
                         its signature is not checked"
                    );
                }
                None
            }
        };
        let mut files = Vec::new();
        for (path, bytes) in bundle.policy_files() {
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                self.bundle_error(BundleError::Unsupported(format!("{path} is not UTF-8")))
            })?;
            files.push(SourceFile {
                shown: PathBuf::from(format!("{}#{path}", self.source)),
                relative: path.to_string(),
                text,
            });
        }
        if !files.iter().any(|f| f.relative.ends_with(".rego")) {
            return Err(PolicyError::Empty(self.source.to_string()));
        }
        let manifest_revision = Some(bundle.manifest.revision.clone()).filter(|r| !r.is_empty());
        let revision = manifest_revision.clone().unwrap_or_else(|| {
            content_hash(
                files
                    .iter()
                    .map(|f| (f.relative.as_str(), f.text.as_bytes())),
            )
        });
        let origin = PolicyBundleOrigin {
            sha256: bundle.sha256.clone(),
            revision: manifest_revision,
            roots: bundle.manifest.roots(),
            signed_by,
        };
        Ok(PolicyTexts {
            source: self.source.to_string(),
            files,
            revision: PolicyRevision(revision),
            fingerprint: bundle.sha256.clone(),
            bundle: Some((origin, bundle)),
        })
    }
}

/// Reads the policies of `origin` into an engine. A file that does not
/// parse is named, with its line, in the error.
pub fn read_policies(origin: &PolicyOrigin) -> Result<PolicySources, PolicyError> {
    compile_texts(origin.read()?)
}

fn compile_texts(texts: PolicyTexts) -> Result<PolicySources, PolicyError> {
    let PolicyTexts {
        source,
        files: texts,
        revision,
        fingerprint,
        bundle,
    } = texts;
    let mut engine = regorus::Engine::new();
    engine.set_execution_timer_config(timer_config());
    // A builtin error (sprintf given what it cannot format, a type error)
    // ends the evaluation instead of making its rule undefined: otherwise
    // an erroring deny rule would vanish and its decision would allow.
    // `trustpath test` starts from this engine too, so it sees the same.
    engine.set_strict_builtin_errors(true);
    builtins::register(&mut engine)?;
    // regorus refuses lines over 1,024 columns by default; OPA has no such
    // limit, and generated policies have long lines. The 1 MiB file bound
    // stays.
    engine.set_policy_length_config(regorus::PolicyLengthConfig {
        max_col: NonZeroU32::new(MAX_COLUMNS).expect("non-zero"),
        ..Default::default()
    });
    let mut rego = Vec::new();
    let mut files = Vec::with_capacity(texts.len());
    let mut manifest = Vec::with_capacity(texts.len());
    let mut data_documents = Vec::new();
    for SourceFile {
        shown,
        relative,
        text,
    } in texts
    {
        let load_err = |message: String| PolicyError::Load {
            path: shown.clone(),
            message,
        };
        if relative.ends_with(".rego") {
            check_nesting(&text).map_err(load_err)?;
            engine
                .add_policy(shown.display().to_string(), text.clone())
                .map_err(|e| load_err(e.to_string()))?;
            rego.push((shown.clone(), text.clone()));
        } else {
            let data: Value = if relative.ends_with(".yaml") {
                yaml_serde::from_str(&text).map_err(|e| load_err(e.to_string()))?
            } else {
                serde_json::from_str(&text).map_err(|e| load_err(e.to_string()))?
            };
            let mount = relative.rsplit_once('/').map_or("", |(dir, _)| dir);
            data_documents.push((mount.to_string(), data.clone()));
            engine
                .add_data(regorus::Value::from(mounted(&relative, data)))
                .map_err(|e| load_err(e.to_string()))?;
        }
        manifest.push(PolicyFile {
            path: relative,
            sha256: crate::digest::sha256_hex(text.as_bytes()),
        });
        files.push(shown);
    }
    let syntax_tree = syntax::modules(&engine)?;
    calls::check(&syntax_tree)?;
    let input_reads = InputReads::of(&syntax_tree);
    let bundle = match bundle {
        Some((origin, unpacked)) => {
            let packages = engine
                .get_packages()
                .map_err(|e| PolicyError::Compile(e.to_string()))?;
            unpacked
                .check_roots(packages.iter().map(String::as_str), &data_documents)
                .map_err(|error| PolicyError::Bundle {
                    origin: source,
                    error,
                })?;
            Some(origin)
        }
        None => None,
    };
    Ok(PolicySources {
        engine,
        files,
        rego,
        revision,
        manifest,
        fingerprint,
        bundle,
        input_reads,
    })
}

/// A data file's document where OPA mounts it: `a/b/data.json` (a path
/// relative to the policy directory) at `data.a.b`.
fn mounted(relative: &str, data: Value) -> Value {
    let mut dirs: Vec<&str> = relative.split('/').collect();
    dirs.pop();
    dirs.into_iter().rev().fold(data, |inner, dir| {
        let mut outer = serde_json::Map::new();
        outer.insert(dir.to_string(), inner);
        Value::Object(outer)
    })
}

impl PolicyBundle {
    /// Reads `origin` and compiles the entry points.
    pub fn load(origin: &PolicyOrigin) -> Result<Self, PolicyError> {
        Self::compile(read_policies(origin)?)
    }

    /// A directory or bundle file, signatures unchecked
    /// ([`PolicyOrigin::unverified`]): a candidate, not a policy in force.
    pub fn from_path(path: &Path) -> Result<Self, PolicyError> {
        Self::load(&PolicyOrigin::unverified(path))
    }

    fn compile(sources: PolicySources) -> Result<Self, PolicyError> {
        let PolicySources {
            mut engine,
            revision,
            manifest,
            fingerprint,
            bundle,
            input_reads,
            ..
        } = sources;
        // Compiling analyses and prepares the engine now, so errors surface at
        // load (naming file and line) and every clone starts prepared.
        let mut undefined = Vec::new();
        for entry_point in [CONNECTION_ENTRY_POINT, TOOL_CALL_ENTRY_POINT] {
            match engine.compile_with_entrypoint(&entry_point.into()) {
                Ok(_) => {}
                Err(e) if entry_point == CONNECTION_ENTRY_POINT => {
                    return Err(PolicyError::Compile(format!("{entry_point}: {e}")));
                }
                // Policies without tool-call rules still load; tool calls deny.
                Err(_) if !defines_package(&engine, entry_point) => {
                    tracing::warn!("{entry_point} is not defined: tool calls will be denied");
                    undefined.push(entry_point);
                }
                Err(e) => return Err(PolicyError::Compile(format!("{entry_point}: {e}"))),
            }
        }

        tracing::debug!(
            policy_revision = revision.as_str(),
            "{}",
            input_reads.describe()
        );
        Ok(Self {
            engine,
            undefined,
            revision,
            manifest,
            fingerprint,
            bundle,
            results: ResultCache::new(&input_reads),
            input_reads,
        })
    }

    /// The OPA bundle these policies came in, if they did.
    pub fn bundle(&self) -> Option<&PolicyBundleOrigin> {
        self.bundle.as_ref()
    }

    pub fn revision(&self) -> &PolicyRevision {
        &self.revision
    }

    /// The files loaded, each with its SHA-256.
    pub fn manifest(&self) -> &[PolicyFile] {
        &self.manifest
    }

    /// Evaluates `rule` against `input`. `Ok(None)` means the rule is
    /// undefined; an error in any rule it depends on is an error, never an
    /// undefined rule (strict builtin errors).
    pub fn evaluate(&self, rule: &str, input: &Value) -> Result<Option<Value>, PolicyError> {
        if self.undefined.contains(&rule) {
            return Ok(None);
        }
        let evaluate = || evaluate_rule(self.engine.clone(), rule, input);
        match &self.results {
            Some(results) => results.get_or_evaluate(rule, input, evaluate),
            None => evaluate(),
        }
    }

    /// Whether results are kept, and by which parts of the input.
    pub fn result_keeping(&self) -> String {
        self.input_reads.describe()
    }
}

/// Evaluates `rule` on `engine` (one set up by [`read_policies`]) against
/// `input`: the one evaluation every command shares, so `eval --query`
/// answers what the server would.
pub fn evaluate_rule(
    mut engine: regorus::Engine,
    rule: &str,
    input: &Value,
) -> Result<Option<Value>, PolicyError> {
    engine.set_input(regorus::Value::from(input.clone()));
    let value =
        guarded(|| engine.eval_rule(rule.to_string())).map_err(|e| evaluate_error(rule, &e))?;
    to_json(value)
}

/// The engine panicked during an evaluation.
#[derive(Debug, thiserror::Error)]
#[error("the policy engine failed (panicked: {0})")]
pub(crate) struct EnginePanic(String);

/// Runs one evaluation so that a panic inside the engine (a regorus bug a
/// policy can reach with request input) is an evaluation error, which the
/// caller denies on and logs, instead of unwinding through the decision
/// path. The engine it ran on is a throwaway clone (or, in `trustpath
/// test`, replaced afterwards), so nothing half-updated is used again.
pub(crate) fn guarded<T>(eval: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(eval)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(EnginePanic(message).into())
        }
    }
}

/// An evaluation error, naming the entry point; regorus' message names the
/// rule's file and line where it knows them.
fn evaluate_error(rule: &str, e: &anyhow::Error) -> PolicyError {
    PolicyError::Evaluate(format!("{rule}: {e:#}"))
}

/// Whether the package of `entry_point` (`data.a.b.rule` -> `data.a.b`) is loaded.
fn defines_package(engine: &regorus::Engine, entry_point: &str) -> bool {
    let package = entry_point.rsplit_once('.').map_or(entry_point, |(p, _)| p);
    engine
        .get_packages()
        .is_ok_and(|packages| packages.iter().any(|p| p == package))
}

fn to_json(value: regorus::Value) -> Result<Option<Value>, PolicyError> {
    if value == regorus::Value::Undefined {
        return Ok(None);
    }
    serde_json::to_value(&value)
        .map(Some)
        .map_err(|e| PolicyError::Evaluate(e.to_string()))
}

fn timer_config() -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: EVALUATION_TIME_LIMIT,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    }
}

/// A policy set that was not put in force, as `/ready` shows it.
#[derive(Debug, Clone)]
pub struct PolicyRejection {
    /// Why, as the error says it.
    pub error: String,
    /// When (RFC 3339).
    pub at: String,
    /// Which content was refused (the bundle's SHA-256, or the files'
    /// hash); absent when nothing could be read (a server down).
    pub fingerprint: Option<String>,
}

/// What the store remembers between checks.
#[derive(Default)]
struct Watch {
    /// The ETag of the last bundle downloaded.
    etag: Option<String>,
    /// The last content that failed to load: reported once, not at every
    /// check.
    failed: Option<String>,
    rejection: Option<PolicyRejection>,
}

/// The policy bundle in force. Decisions read it without taking a lock;
/// a bundle that fails to load never replaces the running one.
pub struct PolicyStore {
    origin: PolicyOrigin,
    current: ArcSwap<PolicyBundle>,
    watch: std::sync::Mutex<Watch>,
}

impl PolicyStore {
    /// Reads and compiles the source. A bundle server that cannot be
    /// reached falls back to the last bundle put in force from it, verified
    /// again; `/ready` then shows the download error. Anything else that
    /// fails refuses the start.
    pub fn load(origin: PolicyOrigin) -> Result<Self, PolicyError> {
        let (bundle, unreachable) = match PolicyBundle::load(&origin) {
            Err(e) if e.is_download() => match origin.read_cached() {
                Some(cached) => {
                    let bundle = match cached
                        .and_then(compile_texts)
                        .and_then(PolicyBundle::compile)
                    {
                        Ok(bundle) => bundle,
                        Err(cached) => {
                            return Err(PolicyError::Cached {
                                download: Box::new(e),
                                path: origin.cache.clone().unwrap_or_default(),
                                cached: Box::new(cached),
                            })
                        }
                    };
                    tracing::warn!(
                        error = %e,
                        policy_revision = bundle.revision.as_str(),
                        "the bundle server cannot be reached; starting with the cached bundle"
                    );
                    (bundle, Some(e))
                }
                None => return Err(e),
            },
            loaded => (loaded?, None),
        };
        origin.keep_in_force(&bundle.fingerprint);
        let store = Self {
            origin,
            current: ArcSwap::from_pointee(bundle),
            watch: Default::default(),
        };
        if let Some(e) = unreachable {
            store.rejected(e, None);
        }
        Ok(store)
    }

    pub fn current(&self) -> Arc<PolicyBundle> {
        self.current.load_full()
    }

    pub fn source(&self) -> &PolicySource {
        self.origin.source()
    }

    /// The last policy set refused since one was put in force.
    pub fn rejection(&self) -> Option<PolicyRejection> {
        self.watch().rejection.clone()
    }

    fn watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and compiles the source now (a URL without `If-None-Match`),
    /// without putting it in force: the caller logs it first
    /// (`policy_loaded`), then [`PolicyStore::install`]s it.
    pub fn load_now(&self) -> Result<PolicyBundle, PolicyError> {
        let texts = self.origin.read().map_err(|e| self.rejected(e, None))?;
        let fingerprint = texts.fingerprint.clone();
        self.compile(texts, fingerprint)
    }

    /// Loads the source when it differs from the bundle in force.
    /// `Ok(None)`: nothing changed, or the same broken content as last
    /// time (reported once).
    pub fn load_if_changed(&self) -> Result<Option<PolicyBundle>, PolicyError> {
        let texts = match self.origin.source() {
            PolicySource::Directory(dir) => {
                let texts = read_directory(dir).map_err(|e| self.rejected(e, None))?;
                self.readable_again();
                if !self.is_new(&texts.fingerprint) {
                    return Ok(None);
                }
                texts
            }
            PolicySource::BundleFile(path) => {
                let archive = self
                    .origin
                    .read_archive(path)
                    .map_err(|e| self.rejected(e, None))?;
                self.readable_again();
                match self.new_bundle(&archive)? {
                    Some(texts) => texts,
                    None => return Ok(None),
                }
            }
            PolicySource::BundleUrl(_) => {
                let etag = self.watch().etag.clone();
                let downloaded = self
                    .origin
                    .download(etag.as_deref())
                    .map_err(|e| self.rejected(e, None))?;
                self.readable_again();
                let (archive, etag) = match downloaded {
                    Downloaded::NotModified => return Ok(None),
                    Downloaded::Bundle { bytes, etag } => (bytes, etag),
                };
                self.watch().etag = etag;
                match self.new_bundle(&archive)? {
                    Some(texts) => texts,
                    None => return Ok(None),
                }
            }
        };
        let fingerprint = texts.fingerprint.clone();
        self.compile(texts, fingerprint).map(Some)
    }

    /// A bundle archive's policy files, unless it is the bundle in force or
    /// the one refused last (`Ok(None)`).
    fn new_bundle(&self, archive: &[u8]) -> Result<Option<PolicyTexts>, PolicyError> {
        let sha = crate::digest::sha256_hex(archive);
        if !self.is_new(&sha) {
            return Ok(None);
        }
        self.origin
            .read_bundle(archive)
            .map(Some)
            .map_err(|e| self.rejected(e, Some(sha)))
    }

    /// Whether `fingerprint` is neither the content in force nor the
    /// content that failed last.
    fn is_new(&self, fingerprint: &str) -> bool {
        fingerprint != self.current().fingerprint
            && self.watch().failed.as_deref() != Some(fingerprint)
    }

    fn compile(
        &self,
        texts: PolicyTexts,
        fingerprint: String,
    ) -> Result<PolicyBundle, PolicyError> {
        compile_texts(texts)
            .and_then(PolicyBundle::compile)
            .map_err(|e| self.rejected(e, Some(fingerprint)))
    }

    /// The source could be read (or downloaded) again: a rejection that
    /// named no content (a read or download error) no longer holds.
    fn readable_again(&self) {
        let mut watch = self.watch();
        if watch
            .rejection
            .as_ref()
            .is_some_and(|r| r.fingerprint.is_none())
        {
            watch.rejection = None;
        }
    }

    /// Remembers a failed load (for `/ready`, and so the same content is
    /// not reported again) and hands the error back.
    fn rejected(&self, error: PolicyError, fingerprint: Option<String>) -> PolicyError {
        let mut watch = self.watch();
        if fingerprint.is_some() {
            watch.failed.clone_from(&fingerprint);
        }
        watch.rejection = Some(PolicyRejection {
            error: error.to_string(),
            at: crate::time::rfc3339(chrono::Utc::now()),
            fingerprint,
        });
        error
    }

    /// Puts a loaded bundle in force.
    pub fn install(&self, bundle: PolicyBundle) -> Arc<PolicyBundle> {
        self.origin.keep_in_force(&bundle.fingerprint);
        let bundle = Arc::new(bundle);
        self.current.store(bundle.clone());
        let mut watch = self.watch();
        watch.failed = None;
        watch.rejection = None;
        bundle
    }
}

fn is_rego(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rego")
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let read_err = |source| PolicyError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if is_rego(&path)
            || path
                .file_name()
                .is_some_and(|n| n == "data.json" || n == "data.yaml")
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle whose policy calls `boom()`, an engine function that panics
    /// on a request input that asks for it.
    fn panicking_bundle() -> PolicyBundle {
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(true);
        engine
            .add_extension(
                "boom".into(),
                1,
                Box::new(|args: Vec<regorus::Value>| {
                    if args[0] == regorus::Value::from(true) {
                        panic!("window size must be non-zero");
                    }
                    Ok(regorus::Value::from(1))
                }),
            )
            .unwrap();
        engine
            .add_policy(
                "p.rego".into(),
                "package trustpath.connection\ndecision := boom(input.explode)\n".into(),
            )
            .unwrap();
        let input_reads = InputReads::of(&syntax::modules(&engine).unwrap());
        assert_ne!(input_reads, InputReads::Whole);
        PolicyBundle {
            engine,
            undefined: Vec::new(),
            revision: PolicyRevision("test".into()),
            manifest: Vec::new(),
            fingerprint: "test".into(),
            bundle: None,
            // Kept results on, so the test also shows a panic is not kept.
            results: ResultCache::new(&input_reads),
            input_reads,
        }
    }

    #[test]
    fn a_panic_in_the_engine_is_an_error_and_the_bundle_stays_usable() {
        let bundle = panicking_bundle();
        let rule = CONNECTION_ENTRY_POINT;
        let err = bundle
            .evaluate(rule, &serde_json::json!({"explode": true}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("panicked: window size must be non-zero"),
            "{err}"
        );
        for _ in 0..2 {
            let ok = bundle
                .evaluate(rule, &serde_json::json!({"explode": false}))
                .unwrap();
            assert_eq!(ok, Some(serde_json::json!(1)));
        }
    }
}
