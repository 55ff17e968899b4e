//! `trustpath eval --query`: one rule of the policies, evaluated as the
//! server evaluates (the same engine set-up and builtins), printed as JSON.
//! What `opa eval` is for policy authors, and what the differential suite
//! against OPA (tests/opa/) compares.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::exit::{usage, Found};
use trustpath::config::Config;
use trustpath::policy::{self, PolicyOrigin};

/// Evaluates `query` over the configured policies (a bundle's signature is
/// checked as the server checks it).
pub fn run(config: &Config, query: &str, input: Option<&Path>) -> Result<()> {
    let rule = query.trim();
    if !rule.starts_with("data.") && rule != "data" {
        return Err(usage(format!(
            "--query must name a rule or package under data (data.pkg.rule), got {rule:?}"
        )));
    }
    let input = match input {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: line {}: {e}", path.display(), e.line())))?
        }
        None => Value::Null,
    };
    let origin = PolicyOrigin::from_config(config)?;
    let sources = policy::read_policies(&origin)
        .with_context(|| format!("loading the policies from {}", config.policies))?;
    match policy::evaluate_rule(sources.engine, rule, &input)? {
        Some(value) => {
            println!("{}", serde_json::to_string(&value)?);
            Ok(())
        }
        None => {
            eprintln!("{rule} is undefined");
            Err(Found(format!("{rule} is undefined")).into())
        }
    }
}
