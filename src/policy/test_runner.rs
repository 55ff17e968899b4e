//! `trustpath test`: runs a policy directory's own `test_*` rules the way
//! `opa test` does. A test passes when its rule is defined and true; an
//! undefined or false rule fails; an evaluation error is an error; `todo_*`
//! rules are reported as skipped. Mocking with `with` is regorus' own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regex::Regex;
use regorus::unstable::{Parser, Rule, RuleHead, Source};
use regorus::utils::limits::ExecutionTimerConfig;
use serde::Serialize;

use super::{read_policies, PolicyError, PolicyOrigin};

/// A test that runs away is stopped and reported as an error.
const TEST_TIME_LIMIT: Duration = Duration::from_secs(5);

/// A `test_*` or `todo_*` rule found in a policy file.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// `data.`-prefixed package path, e.g. `data.trustpath.connection_test`.
    pub package: String,
    pub name: String,
    pub file: PathBuf,
    pub line: u32,
}

impl TestCase {
    /// The rule's full path, which `--run` matches against.
    pub fn path(&self) -> String {
        format!("{}.{}", self.package, self.name)
    }

    fn is_todo(&self) -> bool {
        self.name.starts_with("todo_")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestOutcome {
    Pass,
    Fail,
    Error,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub package: String,
    pub name: String,
    /// `file:line` of the rule.
    pub location: String,
    pub outcome: TestOutcome,
    /// Nanoseconds.
    pub duration: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lines of one file that the tests evaluated, and those they did not.
#[derive(Debug, Clone, Serialize)]
pub struct FileCoverage {
    pub path: String,
    pub covered: Vec<u32>,
    pub not_covered: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub tests: Vec<TestResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Vec<FileCoverage>>,
}

impl TestReport {
    pub fn count(&self, outcome: TestOutcome) -> usize {
        self.tests.iter().filter(|t| t.outcome == outcome).count()
    }

    /// Whether every test that ran passed (skipped ones do not count).
    pub fn passed(&self) -> bool {
        self.count(TestOutcome::Fail) == 0 && self.count(TestOutcome::Error) == 0
    }
}

/// Every `test_*` and `todo_*` rule in `rego` files, in file order. A rule
/// defined in several places is one test, found at its first definition.
pub fn discover(rego: &[(PathBuf, String)]) -> Result<Vec<TestCase>, PolicyError> {
    let mut cases: Vec<TestCase> = Vec::new();
    for (path, text) in rego {
        let load_err = |e: anyhow::Error| PolicyError::Load {
            path: path.clone(),
            message: e.to_string(),
        };
        let source =
            Source::from_contents(path.display().to_string(), text.clone()).map_err(load_err)?;
        // Rego v1, as the engine reads it.
        let module = Parser::new(&source)
            .and_then(|mut p| {
                p.set_max_col(std::num::NonZeroU32::new(super::MAX_COLUMNS).expect("non-zero"));
                p.enable_rego_v1().and_then(|()| p.parse())
            })
            .map_err(load_err)?;
        let package = format!("data.{}", module.package.refr.span().text());
        for rule in &module.policy {
            // Functions (rules with arguments) and defaults are never tests.
            let Rule::Spec { span, head, .. } = rule.as_ref() else {
                continue;
            };
            let refr = match head {
                RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => refr,
                RuleHead::Func { .. } => continue,
            };
            let name = refr.span().text();
            if !(name.starts_with("test_") || name.starts_with("todo_")) {
                continue;
            }
            // Two definitions of one test are one rule to the engine, true
            // when either body is: a failing test would hide behind a
            // passing one. OPA runs them apart; trustpath refuses them.
            if let Some(first) = cases
                .iter()
                .find(|c| c.package == package && c.name == name)
            {
                return Err(PolicyError::Load {
                    path: path.clone(),
                    message: format!(
                        "{}: test {name} in {package} is defined twice (first at {}:{}); \
                         give each test its own name",
                        span.line,
                        first.file.display(),
                        first.line
                    ),
                });
            }
            cases.push(TestCase {
                package: package.clone(),
                name: name.to_string(),
                file: path.clone(),
                line: span.line,
            });
        }
    }
    Ok(cases)
}

/// Loads `path` (a policy directory or a bundle file) and runs its tests
/// (those whose path `run` matches).
pub fn run(path: &Path, run: Option<&Regex>, coverage: bool) -> Result<TestReport, PolicyError> {
    let sources = read_policies(&PolicyOrigin::unverified(path))?;
    let mut engine = sources.engine;
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: TEST_TIME_LIMIT,
        check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
    });
    engine.set_enable_coverage(coverage);
    let cases = discover(&sources.rego)?;
    // A test that panics the engine may leave it half-updated: the next
    // test starts from this copy instead.
    let pristine = engine.clone();

    let mut tests = Vec::new();
    for case in cases
        .iter()
        .filter(|c| run.is_none_or(|r| r.is_match(&c.path())))
    {
        let started = Instant::now();
        let (outcome, error) = if case.is_todo() {
            (TestOutcome::Skip, None)
        } else {
            let result = super::guarded(|| engine.eval_rule(case.path()));
            if result.as_ref().is_err_and(|e| e.is::<super::EnginePanic>()) {
                engine = pristine.clone();
            }
            match result {
                Ok(regorus::Value::Bool(true)) => (TestOutcome::Pass, None),
                Ok(regorus::Value::Undefined) => (TestOutcome::Fail, None),
                Ok(other) => (
                    TestOutcome::Fail,
                    Some(format!("expected true, got {other}")),
                ),
                Err(e) => (TestOutcome::Error, Some(e.to_string())),
            }
        };
        tests.push(TestResult {
            package: case.package.clone(),
            name: case.name.clone(),
            location: format!("{}:{}", case.file.display(), case.line),
            outcome,
            duration: started.elapsed().as_nanos() as u64,
            error,
        });
    }

    let coverage = if coverage {
        let report = engine
            .get_coverage_report()
            .map_err(|e| PolicyError::Evaluate(e.to_string()))?;
        Some(
            report
                .files
                .into_iter()
                .map(|f| FileCoverage {
                    path: f.path,
                    covered: f.covered.into_iter().collect(),
                    not_covered: f.not_covered.into_iter().collect(),
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(TestReport { tests, coverage })
}
