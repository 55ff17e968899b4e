//! The organisation's Rego policies, compiled once and shared.

mod builtins;
mod calls;
mod sprintf;
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

pub use crate::model::PolicyFile;

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
    #[error("no .rego files under {0}")]
    Empty(PathBuf),
    #[error("{path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("policy does not compile: {0}")]
    Compile(String),
    #[error("policy evaluation failed: {0}")]
    Evaluate(String),
}

/// Hash of the loaded policy files: names every decision's rules.
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
}

/// The policy files under a directory, read and added to a fresh engine:
/// what both the decision path and the test runner start from.
pub struct PolicySources {
    pub engine: regorus::Engine,
    /// Every file loaded, sorted.
    pub files: Vec<PathBuf>,
    /// The `.rego` files and their text.
    pub rego: Vec<(PathBuf, String)>,
    pub revision: PolicyRevision,
    pub manifest: Vec<PolicyFile>,
}

/// Every policy file under `dir`, sorted by path: its text and manifest line.
type PolicyTexts = Vec<(PathBuf, String, PolicyFile)>;

/// The text of every policy file under `dir`, sorted by path, and the
/// revision they make.
fn read_files(dir: &Path) -> Result<(PolicyTexts, PolicyRevision), PolicyError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    if !files.iter().any(|f| is_rego(f)) {
        return Err(PolicyError::Empty(dir.to_path_buf()));
    }
    let mut hasher = Sha256::new();
    let mut texts = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        let relative = path.strip_prefix(dir).unwrap_or(&path);
        // Length-prefixed so that moving bytes between files changes the hash.
        for part in [relative.to_string_lossy().as_bytes(), text.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let file = PolicyFile {
            path: relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
            sha256: crate::digest::sha256_hex(text.as_bytes()),
        };
        texts.push((path, text, file));
    }
    Ok((texts, PolicyRevision(hex::encode(hasher.finalize()))))
}

/// The revision the files under `dir` would load as, without loading them.
pub fn revision_of(dir: &Path) -> Result<PolicyRevision, PolicyError> {
    Ok(read_files(dir)?.1)
}

/// Reads every `*.rego` file and every `data.json` under `dir` into an
/// engine. A file that does not parse is named, with its line, in the error.
pub fn read_policies(dir: &Path) -> Result<PolicySources, PolicyError> {
    let (texts, revision) = read_files(dir)?;
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
    for (path, text, file) in texts {
        let load_err = |message: String| PolicyError::Load {
            path: path.clone(),
            message,
        };
        if is_rego(&path) {
            check_nesting(&text).map_err(load_err)?;
            engine
                .add_policy(path.display().to_string(), text.clone())
                .map_err(|e| load_err(e.to_string()))?;
            rego.push((path.clone(), text));
        } else {
            let data = serde_json::from_str(&text).map_err(|e| load_err(e.to_string()))?;
            let data = mounted(&file.path, data);
            engine
                .add_data(regorus::Value::from(data))
                .map_err(|e| load_err(e.to_string()))?;
        }
        files.push(path);
        manifest.push(file);
    }
    calls::check(&engine)?;
    Ok(PolicySources {
        engine,
        files,
        rego,
        revision,
        manifest,
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
    /// Loads every `*.rego` file and every `data.json` under `dir`, and
    /// compiles the entry points.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let PolicySources {
            mut engine,
            revision,
            manifest,
            ..
        } = read_policies(dir)?;
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

        Ok(Self {
            engine,
            undefined,
            revision,
            manifest,
        })
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
        evaluate_rule(self.engine.clone(), rule, input)
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

/// The policy bundle in force. Decisions read it without taking a lock;
/// a bundle that fails to load never replaces the running one.
pub struct PolicyStore {
    dir: PathBuf,
    current: ArcSwap<PolicyBundle>,
    /// The last revision that failed to load, so a broken edit is reported
    /// once rather than at every check.
    failed: std::sync::Mutex<Option<PolicyRevision>>,
}

impl PolicyStore {
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(PolicyBundle::load(dir)?),
            failed: std::sync::Mutex::new(None),
        })
    }

    pub fn current(&self) -> Arc<PolicyBundle> {
        self.current.load_full()
    }

    /// Loads the bundle on disk without putting it in force: the caller
    /// logs it first (`policy_loaded`), then [`PolicyStore::install`]s it.
    pub fn load_from_disk(&self) -> Result<PolicyBundle, PolicyError> {
        PolicyBundle::load(&self.dir)
    }

    /// Loads the bundle on disk when its files differ from the bundle in
    /// force. `Ok(None)`: nothing changed, or the same broken revision as
    /// last time (reported once).
    pub fn load_if_changed(&self) -> Result<Option<PolicyBundle>, PolicyError> {
        let on_disk = revision_of(&self.dir)?;
        let failed = self.failed.lock().expect("policy store").clone();
        if on_disk == *self.current().revision() || failed.as_ref() == Some(&on_disk) {
            return Ok(None);
        }
        match self.load_from_disk() {
            Ok(bundle) => Ok(Some(bundle)),
            Err(e) => {
                *self.failed.lock().expect("policy store") = Some(on_disk);
                Err(e)
            }
        }
    }

    /// Puts a loaded bundle in force.
    pub fn install(&self, bundle: PolicyBundle) -> Arc<PolicyBundle> {
        let bundle = Arc::new(bundle);
        self.current.store(bundle.clone());
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
        } else if is_rego(&path) || path.file_name().is_some_and(|n| n == "data.json") {
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
        PolicyBundle {
            engine,
            undefined: Vec::new(),
            revision: PolicyRevision("test".into()),
            manifest: Vec::new(),
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
