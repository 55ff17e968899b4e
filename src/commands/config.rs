//! `trustpath config check`: the effective configuration, or the key at
//! fault and where its value came from.

use anyhow::Result;
use serde_json::Value;
use trustpath::config::{Config, Sources};

/// Where the settings came from: the file and environment (`sources`), and
/// the keys a command-line flag (or its variable) set.
pub struct Origins {
    pub sources: Sources,
    pub flags: Vec<&'static str>,
}

impl Origins {
    fn of(&self, key: &str) -> String {
        if self.flags.contains(&key) {
            "the command line (or its TRUSTPATH_ variable)".to_string()
        } else {
            self.sources.source_of(key)
        }
    }
}

pub fn check(config: &Config, origins: &Origins) -> Result<()> {
    if let Err(e) = config.validate() {
        let message = e.to_string();
        let origin = key_in(&message)
            .map(|key| format!(" ({key} from {})", origins.of(&key)))
            .unwrap_or_default();
        return Err(super::exit::usage(format!("{message}{origin}")));
    }
    let mut value = serde_json::to_value(config)?;
    hide_secrets(&mut value);
    drop_nulls(&mut value);
    print!("{}", toml::to_string_pretty(&value)?);
    super::progress::note!("configuration OK");
    Ok(())
}

/// The first dotted key a validation message names (`limits.max_body_bytes`,
/// `log.sinks[0]`), without its index.
fn key_in(message: &str) -> Option<String> {
    let pattern = regex::Regex::new(r"\b([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)+|[a-z_]+\[\d+\])")
        .expect("a valid pattern");
    let key = pattern.captures(message)?.get(1)?.as_str();
    let unindexed = regex::Regex::new(r"\[\d+\]").expect("a valid pattern");
    Some(unindexed.replace_all(key, "").into_owned())
}

/// Caller token hashes and a database password are not printed.
fn hide_secrets(value: &mut Value) {
    if let Some(callers) = value.get_mut("callers").and_then(Value::as_array_mut) {
        for caller in callers {
            caller["token_sha256"] = Value::String("<hidden>".into());
        }
    }
    if let Some(url) = value.pointer_mut("/store/url") {
        if let Some(text) = url.as_str() {
            if let Ok(mut parsed) = url::Url::parse(text) {
                if parsed.password().is_some() {
                    let _ = parsed.set_password(Some("hidden"));
                    *url = Value::String(parsed.to_string());
                }
            }
        }
    }
}

/// TOML has no null: an unset optional key is left out.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}
