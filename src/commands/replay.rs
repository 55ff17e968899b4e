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
    pub json: bool,
    /// Change kinds that make the command fail; empty: never fail on changes.
    pub fail_on: Vec<ChangeKind>,
    pub workers: Option<usize>,
    /// Succeed even when nothing was re-evaluated.
    pub allow_empty: bool,
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
    let candidate = PolicyBundle::load(args.candidate).with_context(|| {
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
    let summary = replay::replay(source, &candidate, &args.filter, workers, |change| {
        let written = if args.json {
            serde_json::to_writer(&mut out, change)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        } else {
            print_change(&mut out, change)
        };
        if let Err(e) = written {
            write_error.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing the report");
    }
    if args.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "summary": summary,
                "candidate_revision": candidate.revision().as_str(),
            }),
        )?;
        writeln!(out)?;
    } else {
        print_summary(&mut out, &summary, candidate.revision().as_str())?;
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
