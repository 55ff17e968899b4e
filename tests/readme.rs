//! The README's commands, run as written: every fenced block marked
//! `sh runnable` runs against a real server (in README order), then every
//! block marked `sh runnable stopped` runs once that server has stopped.
//! `cargo run --release --` is this build's binary and
//! `http://127.0.0.1:8080` the test server's address; the variables the
//! README names (`$DECISION_ID`, `$GRANT`, ...) come from a decision the
//! test makes first. An HTTP error answer fails the block (`curl` runs with
//! `--fail-with-body`), so the README cannot drift from the API.

mod common;

use std::path::Path;

use common::*;

/// (line of the fence, marker, commands) of each runnable block.
fn runnable_blocks(readme: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        match &mut current {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    if info.starts_with("sh runnable") {
                        current = Some((i + 1, info.to_string(), String::new()));
                    }
                }
            }
            Some((_, _, body)) => {
                if line == "```" {
                    blocks.push(current.take().unwrap());
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

fn run_block(line: usize, body: &str, server_base: &str, dir: &Path, env: &[(&str, String)]) {
    let bin = env!("CARGO_BIN_EXE_trustpath");
    let body = body
        .replace("cargo run --release --", &format!("'{bin}'"))
        .replace("http://127.0.0.1:8080", server_base);
    let script =
        format!("set -euo pipefail\ncurl() {{ command curl --fail-with-body \"$@\"; }}\n{body}");
    let mut command = std::process::Command::new("bash");
    command
        .args(["-c", &script])
        .current_dir(dir)
        .env("TRUSTPATH_LOG", "error");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "README.md line {line}:\n{body}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_runnable_readme_block_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = runnable_blocks(&readme);
    assert!(blocks.len() >= 10, "{} runnable blocks", blocks.len());

    // The README's commands run from a checkout: its examples and policies
    // are there, and `data` is the server's data directory.
    let dir = tempfile::tempdir().unwrap();
    for name in ["examples", "policies"] {
        std::os::unix::fs::symlink(root.join(name), dir.path().join(name)).unwrap();
    }
    let config = dir.path().join("trustpath.toml");
    // A checkpoint soon after each decision, so the proof steps have one.
    std::fs::write(&config, "[log]\ncheckpoint_every_seconds = 1\n").unwrap();
    let server = Server::start(&dir.path().join("data"), &repo_policies(), Some(&config));
    let base = server.url("");
    let base = base.trim_end_matches('/').to_string();

    // The values the README refers to by name.
    let request: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/requests/document-only.json")).unwrap(),
    )
    .unwrap();
    let decision = post_decision(&server, &request).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let env = [
        (
            "DECISION_ID",
            decision["decision_id"].as_str().unwrap().to_string(),
        ),
        ("GRANT", grant_token(&decision)),
        (
            "JTI",
            decision["grant"]["jti"].as_str().unwrap().to_string(),
        ),
        (
            "SESSION",
            decision["session_id"].as_str().unwrap().to_string(),
        ),
        ("OLD_N", "1".to_string()),
        // The open mode takes any token: the README's headers stay as written.
        ("DECIDE_TOKEN", "t".to_string()),
        ("ENFORCE_TOKEN", "t".to_string()),
        ("ADMIN_TOKEN", "t".to_string()),
        ("AUDIT_TOKEN", "t".to_string()),
    ];

    for (line, info, body) in blocks.iter().filter(|(_, info, _)| info == "sh runnable") {
        let _ = info;
        run_block(*line, body, &base, dir.path(), &env);
    }
    server.stop();
    for (line, _, body) in blocks
        .iter()
        .filter(|(_, info, _)| info == "sh runnable stopped")
    {
        run_block(*line, body, &base, dir.path(), &env);
    }
    // The blocks left what they say they do.
    for file in ["log.vkey", "checkpoint.txt", "entry-0.json", "log.ndjson"] {
        assert!(dir.path().join(file).exists(), "{file} not written");
    }
}
