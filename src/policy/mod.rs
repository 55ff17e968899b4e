//! The organisation's Rego policies, compiled once and shared.

pub mod verdict;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The rule the connection decision comes from.
pub const CONNECTION_ENTRY_POINT: &str = "data.trustpath.connection.decision";

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
pub struct PolicyBundle {
    engine: regorus::Engine,
    revision: PolicyRevision,
    files: Vec<PathBuf>,
}

impl PolicyBundle {
    /// Loads every `*.rego` file and every `data.json` under `dir`.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let mut files = Vec::new();
        collect_files(dir, &mut files)?;
        files.sort();
        let rego_count = files.iter().filter(|f| is_rego(f)).count();
        if rego_count == 0 {
            return Err(PolicyError::Empty(dir.to_path_buf()));
        }

        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: EVALUATION_TIME_LIMIT,
            check_interval: NonZeroU32::new(64).expect("non-zero"),
        });
        let mut hasher = Sha256::new();
        for path in &files {
            let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
                path: path.clone(),
                source,
            })?;
            let relative = path.strip_prefix(dir).unwrap_or(path);
            // Length-prefixed so that moving bytes between files changes the hash.
            for part in [relative.to_string_lossy().as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
            let load_err = |message: String| PolicyError::Load {
                path: path.clone(),
                message,
            };
            if is_rego(path) {
                engine
                    .add_policy(path.display().to_string(), text)
                    .map_err(|e| load_err(e.to_string()))?;
            } else {
                let data =
                    regorus::Value::from_json_str(&text).map_err(|e| load_err(e.to_string()))?;
                engine.add_data(data).map_err(|e| load_err(e.to_string()))?;
            }
        }
        // Evaluating once makes the engine analyse and prepare everything now,
        // so errors surface at load and the shared copy is already prepared.
        engine.set_input(regorus::Value::new_object());
        engine
            .eval_rule(CONNECTION_ENTRY_POINT.to_string())
            .map_err(|e| PolicyError::Compile(e.to_string()))?;

        Ok(Self {
            engine,
            revision: PolicyRevision(hex::encode(hasher.finalize())),
            files,
        })
    }

    pub fn revision(&self) -> &PolicyRevision {
        &self.revision
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Evaluates `rule` against `input`. `Ok(None)` means the rule is undefined.
    pub fn evaluate(&self, rule: &str, input: &Value) -> Result<Option<Value>, PolicyError> {
        let mut engine = self.engine.clone();
        engine.set_input(regorus::Value::from(input.clone()));
        let value = engine
            .eval_rule(rule.to_string())
            .map_err(|e| PolicyError::Evaluate(e.to_string()))?;
        if value == regorus::Value::Undefined {
            return Ok(None);
        }
        serde_json::to_value(&value)
            .map(Some)
            .map_err(|e| PolicyError::Evaluate(e.to_string()))
    }

    /// Evaluates a whole package (a `data.` path) for the test runner.
    pub fn evaluate_path(&self, path: &str) -> Result<Option<Value>, PolicyError> {
        self.evaluate(path, &Value::Object(Default::default()))
    }
}

/// The policy bundle in force. Swapping in a new bundle never blocks a
/// decision for longer than an `Arc` clone; a bundle that fails to load
/// never replaces the running one.
pub struct PolicyStore {
    dir: PathBuf,
    current: RwLock<Arc<PolicyBundle>>,
}

impl PolicyStore {
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(PolicyBundle::load(dir)?)),
        })
    }

    pub fn current(&self) -> Arc<PolicyBundle> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads from disk. On error the running bundle stays in force.
    pub fn reload(&self) -> Result<Arc<PolicyBundle>, PolicyError> {
        let bundle = Arc::new(PolicyBundle::load(&self.dir)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = bundle.clone();
        Ok(bundle)
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
