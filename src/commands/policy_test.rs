//! `trustpath test`: output and exit codes around the library's test runner.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use trustpath::policy::test_runner::{self, FileCoverage, TestOutcome, TestReport};

/// Exit code when a test fails or errors, or the policies do not load.
const TESTS_FAILED: u8 = super::exit::FOUND;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFormat {
    Pretty,
    Json,
    /// JUnit XML, a test suite per package, for CI systems.
    Junit,
}

pub fn run(
    dir: &Path,
    run: Option<&str>,
    format: TestFormat,
    coverage: bool,
    threshold: Option<f64>,
    verbose: bool,
) -> Result<ExitCode> {
    let coverage = coverage || threshold.is_some();
    let run = run
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| super::exit::usage(format!("--run is not a valid regular expression: {e}")))?;
    // Policies that do not compile are what the check found.
    let report = test_runner::run(dir, run.as_ref(), coverage)
        .map_err(|e| super::exit::Found(format!("loading policies from {}: {e}", dir.display())))?;
    match format {
        TestFormat::Json => print_json(&report)?,
        TestFormat::Junit => print_junit(&report)?,
        TestFormat::Pretty => print_text(&report, verbose),
    }
    let covered = report.coverage.as_deref().map(covered_percent);
    if let (Some(threshold), Some(covered)) = (threshold, covered) {
        if covered < threshold {
            eprintln!("coverage {covered:.1}% is below the threshold of {threshold}%");
            return Ok(ExitCode::from(TESTS_FAILED));
        }
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(TESTS_FAILED)
    })
}

/// Lines covered of all lines the coverage counts, over every file.
fn covered_percent(files: &[FileCoverage]) -> f64 {
    let covered: usize = files.iter().map(|f| f.covered.len()).sum();
    let total: usize = files
        .iter()
        .map(|f| f.covered.len() + f.not_covered.len())
        .sum();
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

/// JUnit XML: a test suite per package, a test case per test.
fn print_junit(report: &TestReport) -> Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suites: std::collections::BTreeMap<&str, TestSuite> = Default::default();
    for t in &report.tests {
        let status = match t.outcome {
            TestOutcome::Pass => TestCaseStatus::success(),
            TestOutcome::Skip => TestCaseStatus::skipped(),
            TestOutcome::Fail | TestOutcome::Error => {
                let kind = if t.outcome == TestOutcome::Fail {
                    NonSuccessKind::Failure
                } else {
                    NonSuccessKind::Error
                };
                let mut status = TestCaseStatus::non_success(kind);
                let message = t
                    .error
                    .clone()
                    .unwrap_or_else(|| "the test rule was not true".to_string());
                status.set_message(message);
                status
            }
        };
        let mut case = TestCase::new(t.name.as_str(), status);
        case.set_classname(t.package.as_str())
            .set_time(std::time::Duration::from_nanos(t.duration))
            .add_property(quick_junit::Property::new("location", t.location.as_str()));
        suites
            .entry(t.package.as_str())
            .or_insert_with(|| TestSuite::new(t.package.as_str()))
            .add_test_case(case);
    }
    let mut junit = Report::new("trustpath test");
    junit.add_test_suites(suites.into_values());
    let mut out = std::io::stdout().lock();
    junit.serialize(&mut out)?;
    std::io::Write::write_all(&mut out, b"\n")?;
    Ok(())
}

/// An array of test objects; with `--coverage`, an object holding the
/// array (`tests`) and the coverage (`coverage`).
fn print_json(report: &TestReport) -> Result<()> {
    let text = if report.coverage.is_some() {
        serde_json::to_string_pretty(report)?
    } else {
        serde_json::to_string_pretty(&report.tests)?
    };
    println!("{text}");
    Ok(())
}

fn print_text(report: &TestReport, verbose: bool) {
    for t in &report.tests {
        let shown = verbose || t.outcome != TestOutcome::Pass;
        if !shown {
            continue;
        }
        let label = match t.outcome {
            TestOutcome::Pass => "PASS",
            TestOutcome::Fail => "FAIL",
            TestOutcome::Error => "ERROR",
            TestOutcome::Skip => "SKIP",
        };
        let ms = t.duration as f64 / 1e6;
        println!(
            "{label} {}.{} ({}) {ms:.2}ms",
            t.package, t.name, t.location
        );
        if let Some(error) = &t.error {
            for line in error.lines().filter(|l| !l.trim().is_empty()) {
                println!("  {line}");
            }
        }
    }
    if let Some(files) = &report.coverage {
        println!("{}", "-".repeat(80));
        for file in files {
            println!("{}", coverage_line(file));
        }
    }
    let total = report.tests.len();
    println!("{}", "-".repeat(80));
    println!("PASS: {}/{total}", report.count(TestOutcome::Pass));
    for (label, outcome) in [
        ("FAIL", TestOutcome::Fail),
        ("ERROR", TestOutcome::Error),
        ("SKIP", TestOutcome::Skip),
    ] {
        let n = report.count(outcome);
        if n > 0 {
            println!("{label}: {n}/{total}");
        }
    }
}

/// `file: 45/50 lines covered (90.0%); not covered: 12, 30-33`
fn coverage_line(file: &FileCoverage) -> String {
    let (covered, missed) = (file.covered.len(), file.not_covered.len());
    let total = covered + missed;
    let percent = if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    };
    let mut line = format!(
        "{}: {covered}/{total} lines covered ({percent:.1}%)",
        file.path
    );
    if missed > 0 {
        line.push_str("; not covered: ");
        line.push_str(&ranges(&file.not_covered));
    }
    line
}

/// `[12, 30, 31, 32, 33]` -> `12, 30-33`
fn ranges(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}
