//! `trustpath replay`: output and exit codes around the library's replay.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use trustpath::log::query::Filter;
use trustpath::policy::PolicyBundle;
use trustpath::replay::{self, Change, ChangeKind, Comparable, ReplaySource, Summary};
use trustpath::text::escape;

/// Exit code when `--fail-on-change` / `--fail-on` is tripped.
const GATE_FAILED: u8 = super::exit::FOUND;

pub struct ReplayArgs<'a> {
    pub candidate: &'a Path,
    pub data_dir: Option<PathBuf>,
    /// A fleet's database URL.
    pub store: Option<String>,
    pub export: Option<PathBuf>,
    pub filter: Filter,
    pub format: ReplayFormat,
    /// Change kinds that make the command fail; empty: never fail on changes.
    pub fail_on: Vec<ChangeKind>,
    pub workers: Option<usize>,
    /// Succeed even when nothing was re-evaluated.
    pub allow_empty: bool,
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFormat {
    /// A block per change, then a summary.
    Text,
    /// One JSON object per change, then a summary line.
    Json,
    /// JUnit XML: a test case per changed entry (failed when its change is
    /// one `--fail-on` names), and one for the summary.
    Junit,
}

/// Parses `--fail-on newly-allowed,widened`.
pub fn parse_fail_on(list: &str) -> Result<Vec<ChangeKind>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            ChangeKind::parse(name).with_context(|| {
                let known: Vec<&str> = ChangeKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "--fail-on: unknown change {name:?} (known: {})",
                    known.join(", ")
                )
            })
        })
        .collect()
}

pub fn run(args: ReplayArgs<'_>) -> Result<ExitCode> {
    let candidate = PolicyBundle::from_path(args.candidate).with_context(|| {
        format!(
            "loading candidate policies from {}",
            args.candidate.display()
        )
    })?;
    let source = match (args.data_dir, args.store, args.export) {
        (Some(dir), None, None) => ReplaySource::Log(
            trustpath::store::open_for_scan(&dir)
                .context("opening the data directory (is a server running on it?)")?,
        ),
        (None, Some(url), None) => ReplaySource::Log(
            trustpath::store::open_fleet_log(&url).context("opening the fleet's store")?,
        ),
        (None, None, Some(file)) => ReplaySource::Export(file),
        _ => {
            return Err(super::exit::usage(
                "give exactly one of --data-dir, --store and --export",
            ))
        }
    };
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    let mut cases = Vec::new();
    let bar = super::progress::Bar::new("replaying");
    let summary = replay::replay_with(
        source,
        &candidate,
        &args.filter,
        workers,
        |change| {
            let written = match args.format {
                ReplayFormat::Json => serde_json::to_writer(&mut out, change)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out)),
                ReplayFormat::Text => print_change(&mut out, change),
                ReplayFormat::Junit => {
                    cases.push(junit_case(change, &args.fail_on));
                    Ok(())
                }
            };
            if let Err(e) = written {
                write_error.get_or_insert(e);
            }
        },
        &bar,
    )?;
    drop(bar);
    if let Some(e) = write_error {
        return Err(e).context("writing the report");
    }
    let revision = candidate.revision().as_str();
    match args.format {
        ReplayFormat::Json => {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "summary": summary,
                    "candidate_revision": revision,
                }),
            )?;
            writeln!(out)?;
        }
        ReplayFormat::Text => print_summary(&mut out, &summary, revision)?,
        ReplayFormat::Junit => {
            let mut text = Vec::new();
            print_summary(&mut text, &summary, revision)?;
            let mut total = quick_junit::TestCase::new(
                "replay summary",
                quick_junit::TestCaseStatus::success(),
            );
            total
                .set_classname("trustpath.replay")
                .set_system_out_lossy(&text);
            cases.push(total);
            let mut suite =
                quick_junit::TestSuite::new(format!("trustpath replay against {revision}"));
            suite.add_test_cases(cases);
            let mut report = quick_junit::Report::new("trustpath replay");
            report.add_test_suite(suite);
            report
                .serialize(&mut out)
                .context("writing the JUnit report")?;
            writeln!(out)?;
        }
    }
    out.flush()?;

    // A gate that evaluated nothing proves nothing: the wrong file, a
    // filter that matches nothing, an empty log.
    if summary.replayed == 0 && !args.allow_empty {
        return Err(super::exit::Found(format!(
            "replay evaluated no decisions or tool calls ({} entries read); \
             pass --allow-empty if that is expected",
            summary.entries_read
        ))
        .into());
    }

    let tripped: Vec<&str> = args
        .fail_on
        .iter()
        .filter(|k| summary.count(**k) > 0)
        .map(|k| k.name())
        .collect();
    if tripped.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("replay: failing on {}", tripped.join(", "));
        Ok(ExitCode::from(GATE_FAILED))
    }
}

/// A changed entry as a JUnit test case: failed when one of its changes is
/// what the gate fails on.
fn junit_case(c: &Change, fail_on: &[ChangeKind]) -> quick_junit::TestCase {
    let mut text = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = print_change(&mut text, c);
    let tripped: Vec<&str> = c
        .changes
        .iter()
        .filter(|k| fail_on.contains(k))
        .map(|k| k.name())
        .collect();
    let status = if tripped.is_empty() {
        quick_junit::TestCaseStatus::success()
    } else {
        let mut failed =
            quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Failure);
        failed
            .set_message(format!("{} (a --fail-on change)", tripped.join(", ")))
            .set_description(String::from_utf8_lossy(&text).into_owned());
        failed
    };
    let id = c
        .tool_call_id
        .as_deref()
        .or(c.decision_id.as_deref())
        .unwrap_or("-");
    let mut case = quick_junit::TestCase::new(format!("seq {} {id}", c.seq), status);
    case.set_classname(format!("trustpath.replay.{}", c.kind))
        .set_system_out_lossy(&text);
    case
}

fn print_change(out: &mut impl Write, c: &Change) -> std::io::Result<()> {
    let kinds: Vec<&str> = c.changes.iter().map(|k| k.name()).collect();
    let id = match (&c.tool_call_id, &c.decision_id) {
        (Some(t), _) => format!("tool call {t}"),
        (None, Some(d)) => format!("decision {d}"),
        (None, None) => "-".to_string(),
    };
    // Ids and reasons came from requests: escaped for the terminal.
    let head = format!(
        "seq {} {} {id} session {} client {}: {}",
        c.seq,
        c.kind,
        c.session_id.as_deref().unwrap_or("-"),
        c.client_id.as_deref().unwrap_or("-"),
        kinds.join(", ")
    );
    writeln!(out, "{}", escape(&head))?;
    writeln!(out, "  before: {}", escape(&describe(&c.before)))?;
    writeln!(out, "  after:  {}", escape(&describe(&c.after)))
}

fn describe(d: &Comparable) -> String {
    let mut text = d.outcome.clone();
    if !d.approved_scopes.is_empty() || !d.denied_scopes.is_empty() {
        text += &format!(
            " approved=[{}] denied=[{}]",
            d.approved_scopes.join(" "),
            d.denied_scopes.join(" ")
        );
    }
    if !d.tools.is_empty() {
        text += &format!(" tools=[{}]", d.tools.join(" "));
    }
    if let Some(ttl) = d.ttl_seconds {
        text += &format!(" ttl={ttl}s");
    }
    if !d.reasons.is_empty() {
        text += &format!(" reasons={:?}", d.reasons);
    }
    text
}

fn print_summary(out: &mut impl Write, s: &Summary, revision: &str) -> std::io::Result<()> {
    writeln!(
        out,
        "replayed {} entries ({} connection decisions, {} tool calls) of {} read, against candidate revision {revision}",
        s.replayed, s.connection_decisions, s.tool_calls, s.entries_read
    )?;
    writeln!(out, "unchanged: {}", s.unchanged)?;
    if s.withheld > 0 {
        writeln!(
            out,
            "withheld: {} (retention redacted or expired what the policy saw)",
            s.withheld
        )?;
    }
    writeln!(out, "changed: {}", s.changed)?;
    for kind in ChangeKind::ALL {
        writeln!(out, "  {}: {}", kind.name(), s.count(kind))?;
    }
    Ok(())
}
