//! `trustpath log …`: verify, export, query, session and proof, on a
//! stopped server's data directory or an export file. Reading only: none of
//! these creates anything.

use anyhow::{Context, Result};

use serde::Deserialize as _;
use trustpath::log::{sealed, LogEntry, Record};
use trustpath::model::ToolCallInput;

use crate::{LogCommand, Settings};

pub fn run(command: LogCommand) -> Result<()> {
    use trustpath::log::verify;
    match command {
        LogCommand::Verify {
            export: Some(file),
            public_key,
            selection,
            ..
        } => {
            let vkey = public_key.expect("clap requires --public-key with --export");
            let vkey = match std::fs::read_to_string(&vkey) {
                Ok(text) => text,
                Err(_) => vkey,
            };
            let verifier = trustpath::log::checkpoint::NoteVerifier::from_vkey(&vkey)
                .context("--public-key")?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?,
            );
            report_verify(verify::verify_export(reader, &verifier), selection)
        }
        LogCommand::Verify {
            export: None,
            public_key,
            live,
            settings,
            ..
        } => {
            let (config, store) = open_log(settings)?;
            let verifier = match public_key {
                Some(vkey) => {
                    let vkey = std::fs::read_to_string(&vkey).unwrap_or(vkey);
                    trustpath::log::checkpoint::NoteVerifier::from_vkey(&vkey)
                        .context("--public-key")?
                }
                None => trustpath::app::log_verifier(&config)?,
            };
            let bar = super::progress::Bar::new("verifying");
            if !live {
                let result = verify::verify_store_with(&store, &verifier, false, &bar);
                drop(bar);
                return report_verify(result, false);
            }
            let result = verify::verify_store_with(&store, &verifier, true, &bar);
            drop(bar);
            let checked = result.as_ref().map_or(0, |v| v.tree_size);
            report_verify(result, false)?;
            let newer = store.next_seq()?.saturating_sub(checked);
            if newer > 0 {
                println!(
                    "{newer} newer entries are not covered by a signed checkpoint yet \
                     (the log is being written); a later run checks them"
                );
            }
            Ok(())
        }
        LogCommand::Export {
            filter,
            from,
            to,
            url: Some(url),
            token,
            ..
        } => {
            if !filter.to_filter()?.is_empty() {
                return Err(super::exit::usage(
                    "filters do not combine with --url: export the range, or use `log query`",
                ));
            }
            export_from(&url, token.as_deref(), from, to)
        }
        LogCommand::Export {
            filter,
            from,
            to,
            settings,
            ..
        } => {
            // The flags are checked before anything is opened.
            let filter = filter.to_filter()?;
            let (config, store) = open_log(settings)?;
            let verifier = trustpath::app::log_verifier(&config)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let count = if filter.is_empty() {
                let bar = super::progress::Bar::new("exporting");
                verify::export_with(&store, &verifier, from, to, &mut out, &bar)?
            } else {
                let page = trustpath::log::query::query(&store, &filter, usize::MAX, None)?;
                let mut seqs: Vec<u64> = page
                    .seqs
                    .into_iter()
                    .filter(|s| *s >= from && to.is_none_or(|t| *s < t))
                    .collect();
                seqs.reverse();
                verify::export_selected(&store, &verifier, &seqs, &mut out)?
            };
            std::io::Write::flush(&mut out)?;
            super::progress::note!("exported {count} entries");
            Ok(())
        }
        LogCommand::Query {
            filter,
            limit,
            json,
            settings,
        } => {
            let filter = filter.to_filter()?;
            let (_, store) = open_log(settings)?;
            let page = trustpath::log::query::query(&store, &filter, limit, None)?;
            print_entries(&store, &page.seqs, json)
        }
        LogCommand::Session {
            session_id,
            json,
            settings,
        } => {
            let (_, store) = open_log(settings)?;
            let filter = trustpath::log::query::Filter {
                session: Some(session_id.clone()),
                ..Default::default()
            };
            let mut page = trustpath::log::query::query(&store, &filter, usize::MAX, None)?;
            if page.seqs.is_empty() {
                anyhow::bail!(
                    "no entries for session {}",
                    trustpath::text::escape(&session_id)
                );
            }
            page.seqs.reverse();
            print_entries(&store, &page.seqs, json)
        }
        LogCommand::Redact {
            subject,
            requested_by,
            settings,
        } => redact(&subject, &requested_by, settings),
        LogCommand::Tail {
            url,
            token,
            from_seq,
            follow,
        } => tail(&url, token.as_deref(), from_seq, follow),
        LogCommand::Stats { json, settings } => {
            let (config, store) = open_log(settings)?;
            let stats = trustpath::retention::stats(&store, &config.retention)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_stats(&stats);
            }
            Ok(())
        }
        LogCommand::Proof { seq, settings } => {
            let (config, store) = open_log(settings)?;
            let verifier = trustpath::app::log_verifier(&config)?;
            let proof = trustpath::log::proof::inclusion_bundle(&store, &verifier, seq)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(())
        }
    }
}

/// The settings' configuration and its data directory's log, for reading.
fn open_log(settings: Settings) -> Result<(trustpath::config::Config, trustpath::log::LogStore)> {
    let config = settings.resolve()?;
    let store = trustpath::store::open_for_reading(&config)?;
    Ok((config, store))
}

/// Prints entries as NDJSON (each as read back: redacted fields show their
/// seal) or as a table.
fn print_entries(store: &trustpath::log::LogStore, seqs: &[u64], json: bool) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !json {
        writeln!(
            out,
            "{:>8}  {:<27}  {:<19}  {:<36}  {:<8}  {:<40}  detail",
            "seq", "time", "kind", "session", "outcome", "client"
        )?;
    }
    for seq in seqs {
        let bytes = store.entry(*seq)?.context("indexed entry is missing")?;
        let opened =
            sealed::open_at(*seq, &bytes).with_context(|| format!("entry {seq} cannot be read"))?;
        if json {
            serde_json::to_writer(&mut out, &opened.value)?;
            writeln!(out)?;
            continue;
        }
        // An entry this build cannot read is still listed, by its seq.
        let row = match opened.entry() {
            Ok(_) if opened.expired => format!("{seq:>8}  expired by retention"),
            Ok(e) => {
                let (outcome, detail) = summary(&e);
                format!(
                    "{:>8}  {:<27}  {:<19}  {:<36}  {:<8}  {:<40}  {}",
                    seq,
                    e.time,
                    e.record.kind(),
                    or_dash(e.record.session_id()),
                    outcome,
                    or_dash(e.record.client_id()),
                    detail,
                )
            }
            Err(err) => format!("{seq:>8}  unreadable entry: {err}"),
        };
        // Stored strings came from requests: escaped so that none can
        // start a row of its own or drive the operator's terminal.
        writeln!(out, "{}", trustpath::text::escape(&row))?;
    }
    out.flush()?;
    Ok(())
}

fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// The name serde gives a unit enum value (`"document_only"`).
fn label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".into(),
    }
}

/// The outcome column and a one-line detail for each kind of entry.
fn summary(entry: &LogEntry) -> (String, String) {
    match &entry.record {
        Record::ConnectionDecision(r) => (
            r.decision.outcome.as_str().into(),
            format!(
                "auth={} requested={} approved={}",
                label(&r.authentication.result),
                list(r.decision.requested_scopes.as_slice()),
                list(r.decision.approved_scopes.as_slice()),
            ),
        ),
        Record::GrantIssued(r) => (
            "-".into(),
            format!(
                "grant={} scope=[{}] exp={}",
                r.grant.jti, r.grant.scope, r.grant.exp
            ),
        ),
        Record::ToolCall(r) => {
            let grant = ToolCallInput::deserialize(&r.input)
                .map_or("-", |input| input.grant.status.as_str());
            (
                if r.decision.allow {
                    "allowed"
                } else {
                    "denied"
                }
                .into(),
                format!(
                    "{} {} grant={} {}",
                    r.method,
                    r.tool,
                    grant,
                    list(&r.decision.reasons),
                ),
            )
        }
        Record::GrantRevoked(r) => (
            "-".into(),
            format!(
                "grant={} by={} reason={:?}",
                r.grant_jti, r.revoked_by, r.reason
            ),
        ),
        Record::SessionRevoked(r) => (
            "-".into(),
            format!(
                "grants={} by={} reason={:?}",
                list(&r.grant_jtis),
                r.revoked_by,
                r.reason
            ),
        ),
        Record::PolicyLoaded(r) => (
            "-".into(),
            format!(
                "revision={} trigger={} previous={} files={}",
                entry.policy_revision,
                label(&r.trigger),
                or_dash(r.previous_revision.as_deref()),
                r.files.len()
            ),
        ),
        Record::PolicyRejected(r) => (
            "-".into(),
            format!(
                "trigger={} sha256={} error={:?}",
                label(&r.trigger),
                r.sha256,
                r.error
            ),
        ),
        Record::SigningKey(r) => (
            "-".into(),
            format!(
                "purpose={} event={} key_id={} previous={}",
                r.purpose.as_str(),
                label(&r.event),
                r.key_id,
                or_dash(r.previous_key_id.as_deref())
            ),
        ),
        Record::Retention(r) => (
            "-".into(),
            format!(
                "cause={} entries={} redacted={} expired={}",
                serde_json::to_string(&r.cause).unwrap_or_default(),
                r.entries,
                serde_json::to_string(&r.redacted).unwrap_or_default(),
                serde_json::to_string(&r.expired).unwrap_or_default(),
            ),
        ),
    }
}

/// `log tail`: pages through `GET /v1/log/entries`, then polls for more.
fn tail(url: &str, token: Option<&str>, from_seq: u64, follow: bool) -> Result<()> {
    use std::io::Write;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let base = url.trim_end_matches('/');
    let mut next = from_seq;
    runtime.block_on(async {
        loop {
            let mut request = client
                .get(format!("{base}/v1/log/entries"))
                .query(&[("from_seq", next), ("limit", 1000)]);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("GET {base}/v1/log/entries"))?;
            let status = response.status();
            let page: serde_json::Value = response
                .json()
                .await
                .with_context(|| format!("{base}/v1/log/entries answered {status}, not JSON"))?;
            if !status.is_success() {
                anyhow::bail!("{base}/v1/log/entries answered {status}: {page}");
            }
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            let mut out = std::io::stdout().lock();
            for entry in &entries {
                serde_json::to_writer(&mut out, entry)?;
                writeln!(out)?;
                if let Some(seq) = entry["seq"].as_u64() {
                    next = next.max(seq + 1);
                }
            }
            out.flush()?;
            if page["next_from_seq"].is_u64() {
                continue;
            }
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
}

/// `log export --url`: a running server's export, streamed to stdout as
/// it arrives (the same lines as an export of a stopped server's log).
fn export_from(url: &str, token: Option<&str>, from: u64, to: Option<u64>) -> Result<()> {
    use std::io::Write;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = format!("{}/v1/log/export", url.trim_end_matches('/'));
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .get(&endpoint)
            .query(&[("from", from)]);
        if let Some(to) = to {
            request = request.query(&[("to", to)]);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .send()
            .await
            .with_context(|| format!("GET {endpoint}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("{endpoint} answered {status}: {body}");
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut header = Vec::new();
        let mut range = None;
        while let Some(chunk) = response.chunk().await.with_context(|| {
            format!("{endpoint}: the export broke off; what was written is incomplete")
        })? {
            out.write_all(&chunk)?;
            if range.is_none() {
                header.extend_from_slice(&chunk);
                if let Some(end) = header.iter().position(|b| *b == b'\n') {
                    let parsed: serde_json::Value = serde_json::from_slice(&header[..end])
                        .with_context(|| {
                            format!("{endpoint}: the first line is not an export header")
                        })?;
                    range = Some((parsed["from"].as_u64(), parsed["to"].as_u64()));
                }
            }
        }
        out.flush()?;
        match range {
            Some((Some(from), Some(to))) => {
                super::progress::note!("exported {} entries", to - from)
            }
            _ => anyhow::bail!("{endpoint}: no export header arrived"),
        }
        Ok(())
    })
}

/// `log redact`: an erasure request, carried out and recorded.
fn redact(subject: &str, requested_by: &str, settings: Settings) -> Result<()> {
    let subject = trustpath::retention::SubjectRef::parse(subject)
        .map_err(|e| super::exit::usage(format!("--subject: {e}")))?;
    trustpath::text::check_identifier(requested_by)
        .map_err(|e| super::exit::usage(format!("--requested-by: {e}")))?;
    let config = settings.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (retainer, writer) = trustpath::app::open_retainer(&config)?;
    let applied = runtime.block_on(retainer.erase(&subject, requested_by));
    // The writer signs a checkpoint over the record as it stops.
    drop(retainer);
    writer.join();
    let applied = applied?;
    let seq = applied.log_entry.as_ref().map_or(0, |r| r.seq);
    println!(
        "erased: {} entries redacted; erasure recorded at seq {seq}",
        applied.entries
    );
    Ok(())
}

fn print_stats(stats: &trustpath::retention::Stats) {
    let mb = |bytes: u64| format!("{:.2} MB", bytes as f64 / 1e6);
    println!(
        "entries: {}  entry bytes: {}  (expired: {}, redacted: {})",
        stats.total.entries,
        mb(stats.total.bytes),
        stats.expired_entries,
        stats.redacted_entries
    );
    println!("by kind:");
    for (kind, t) in &stats.by_kind {
        println!(
            "  {kind:<20} {:>10} entries  {:>12}",
            t.entries,
            mb(t.bytes)
        );
    }
    println!("by age:");
    for (age, t) in &stats.by_age {
        println!("  {age:<20} {:>10} entries  {:>12}", t.entries, mb(t.bytes));
    }
    println!(
        "growth per day: {} entries, {}",
        stats.growth_per_day.entries,
        mb(stats.growth_per_day.bytes)
    );
    println!(
        "under the configured retention: {} now, {} after a year at this growth",
        mb(stats.bytes_under_retention),
        mb(stats.bytes_after_a_year_under_retention)
    );
    println!(
        "(entry bytes as read back; a data directory's log.entries holds them compressed, \
         and indexes and engine overhead come on top)"
    );
}

/// Says which entries retention redacted or expired (each covered by a
/// retention record, or verification would have failed).
fn report_retention(seen: &trustpath::log::retained::RetentionSeen) {
    let ranges = |runs: &trustpath::log::retained::Runs| {
        let shown: Vec<String> = runs
            .ranges()
            .iter()
            .take(10)
            .map(|[from, to]| format!("{from}..{to}"))
            .collect();
        let more = runs.ranges().len().saturating_sub(10);
        let more = if more > 0 {
            format!(" and {more} more ranges")
        } else {
            String::new()
        };
        format!("{}{more}", shown.join(", "))
    };
    if seen.redacted.count() > 0 {
        println!(
            "    redacted by recorded retention: {} entries (seqs {})",
            seen.redacted.count(),
            ranges(&seen.redacted)
        );
    }
    if seen.expired.count() > 0 {
        println!(
            "    expired by recorded retention: {} entries, leaf hashes kept (seqs {})",
            seen.expired.count(),
            ranges(&seen.expired)
        );
    }
}

/// Prints what was verified, saying plainly when it was a selection.
fn report_verify(
    result: Result<trustpath::log::verify::Verified, trustpath::log::verify::Tampering>,
    accept_selection: bool,
) -> Result<()> {
    use trustpath::log::verify::Coverage;
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            println!("FAILED: {e}");
            std::process::exit(super::exit::FOUND.into());
        }
    };
    match v.coverage {
        Coverage::Complete { from, to } => {
            let range = if from == 0 && to == v.tree_size {
                format!("all {to} entries")
            } else {
                format!("entries {from}..{to} (a complete range)")
            };
            println!(
                "OK: {range} of tree size {}, root {}, {} checkpoint(s) verified",
                v.tree_size, v.root_hash, v.checkpoints
            );
            report_retention(&v.retention);
        }
        Coverage::Selection => {
            let summary = format!(
                "{} of the tree's {} entries checked (a selection), root {}; \
                 completeness is not shown: entries may have been left out",
                v.entries_checked, v.tree_size, v.root_hash
            );
            if !accept_selection {
                println!("FAILED: {summary}; pass --selection to accept a selection");
                std::process::exit(super::exit::FOUND.into());
            }
            println!("OK (selection): {summary}");
        }
    }
    Ok(())
}
