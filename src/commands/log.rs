//! `trustpath log …`: verify, export, query, session and proof, on a
//! stopped server's data directory or an export file. Reading only: none of
//! these creates anything.

use anyhow::{Context, Result};

use crate::LogCommand;

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
            settings,
            ..
        } => {
            let config = settings.resolve()?;
            let store = trustpath::store::sled::open_for_scan(&config.data_dir)?;
            let verifier = match public_key {
                Some(vkey) => {
                    let vkey = std::fs::read_to_string(&vkey).unwrap_or(vkey);
                    trustpath::log::checkpoint::NoteVerifier::from_vkey(&vkey)
                        .context("--public-key")?
                }
                None => trustpath::app::log_verifier(&config)?,
            };
            report_verify(verify::verify_store(&store, &verifier), false)
        }
        LogCommand::Export {
            filter,
            from,
            to,
            settings,
        } => {
            let config = settings.resolve()?;
            let store = trustpath::store::sled::open_for_scan(&config.data_dir)?;
            let verifier = trustpath::app::log_verifier(&config)?;
            let filter = filter.to_filter()?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let count = if filter.is_empty() {
                verify::export(&store, &verifier, from, to, &mut out)?
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
            eprintln!("exported {count} entries");
            Ok(())
        }
        LogCommand::Query {
            filter,
            limit,
            json,
            settings,
        } => {
            let config = settings.resolve()?;
            let store = trustpath::store::sled::open_for_scan(&config.data_dir)?;
            let page = trustpath::log::query::query(&store, &filter.to_filter()?, limit, None)?;
            print_entries(&store, &page.seqs, json)
        }
        LogCommand::Session {
            session_id,
            json,
            settings,
        } => {
            let config = settings.resolve()?;
            let store = trustpath::store::sled::open_for_scan(&config.data_dir)?;
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
        LogCommand::Proof { seq, settings } => {
            let config = settings.resolve()?;
            let store = trustpath::store::sled::open_for_scan(&config.data_dir)?;
            let verifier = trustpath::app::log_verifier(&config)?;
            let proof = trustpath::log::proof::inclusion_bundle(&store, &verifier, seq)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(())
        }
    }
}

/// Prints entries as NDJSON (exact stored bytes) or as a table.
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
        if json {
            out.write_all(&bytes)?;
            writeln!(out)?;
            continue;
        }
        let e: serde_json::Value = serde_json::from_slice(&bytes)?;
        let (outcome, detail) = entry_summary(&e);
        let row = format!(
            "{:>8}  {:<27}  {:<19}  {:<36}  {:<8}  {:<40}  {}",
            seq,
            text(&e["time"]),
            text(&e["kind"]),
            text(&e["session_id"]),
            outcome,
            text(&e["client_id"]),
            detail,
        );
        // Stored strings came from requests: escaped so that none can
        // start a row of its own or drive the operator's terminal.
        writeln!(out, "{}", trustpath::text::escape(&row))?;
    }
    out.flush()?;
    Ok(())
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("-").to_string()
}

/// The outcome column and a one-line detail for each kind of entry.
fn entry_summary(e: &serde_json::Value) -> (String, String) {
    let list = |v: &serde_json::Value| {
        let items: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        format!("[{}]", items.join(" "))
    };
    match e["kind"].as_str().unwrap_or_default() {
        "connection_decision" => (
            text(&e["decision"]["outcome"]),
            format!(
                "auth={} requested={} approved={}",
                text(&e["authentication"]["result"]),
                list(&e["decision"]["requested_scopes"]),
                list(&e["decision"]["approved_scopes"]),
            ),
        ),
        "grant_issued" => (
            "-".into(),
            format!(
                "grant={} scope=[{}] exp={}",
                text(&e["grant"]["jti"]),
                text(&e["grant"]["scope"]),
                e["grant"]["exp"]
            ),
        ),
        "tool_call" => {
            let allowed = e["decision"]["allow"].as_bool() == Some(true);
            (
                if allowed { "allowed" } else { "denied" }.into(),
                format!(
                    "{} {} grant={} {}",
                    text(&e["method"]),
                    text(&e["tool"]),
                    text(&e["input"]["grant"]["status"]),
                    list(&e["decision"]["reasons"]),
                ),
            )
        }
        "grant_revoked" => (
            "-".into(),
            format!(
                "grant={} by={} reason={:?}",
                text(&e["grant_jti"]),
                text(&e["revoked_by"]),
                text(&e["reason"])
            ),
        ),
        "session_revoked" => (
            "-".into(),
            format!(
                "grants={} by={} reason={:?}",
                list(&e["grant_jtis"]),
                text(&e["revoked_by"]),
                text(&e["reason"])
            ),
        ),
        "policy_loaded" => (
            "-".into(),
            format!(
                "revision={} trigger={} previous={} files={}",
                text(&e["policy_revision"]),
                text(&e["trigger"]),
                text(&e["previous_revision"]),
                e["files"].as_array().map_or(0, Vec::len)
            ),
        ),
        "signing_key" => (
            "-".into(),
            format!(
                "purpose={} event={} key_id={} previous={}",
                text(&e["purpose"]),
                text(&e["event"]),
                text(&e["key_id"]),
                text(&e["previous_key_id"])
            ),
        ),
        other => ("-".into(), format!("unknown kind {other:?}")),
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
            std::process::exit(1);
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
        }
        Coverage::Selection => {
            let summary = format!(
                "{} of the tree's {} entries checked (a selection), root {}; \
                 completeness is not shown: entries may have been left out",
                v.entries_checked, v.tree_size, v.root_hash
            );
            if !accept_selection {
                println!("FAILED: {summary}; pass --selection to accept a selection");
                std::process::exit(1);
            }
            println!("OK (selection): {summary}");
        }
    }
    Ok(())
}
