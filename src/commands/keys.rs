//! `trustpath keys rotate`: a new grant signing key, the old one kept for
//! verification (and in the JWKS) until every grant it signed has expired.

use anyhow::{Context, Result};
use trustpath::config::Config;
use trustpath::grant::GrantSigner;

/// `keys rotate --log`.
pub fn rotate_log_key(config: &Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (old, new) = runtime
        .block_on(trustpath::app::rotate_log_key(config))
        .map_err(|e| match e {
            trustpath::app::AppError::Request(m) => super::exit::usage(m),
            other => anyhow::Error::from(other)
                .context("rotating the log key (the server must be stopped)"),
        })?;
    println!("log key rotated: {old} signed the handover to {new}");
    println!("pin the new key (trustpath log verify --public-key accepts either)");
    Ok(())
}

pub fn rotate_grant_key(config: &Config) -> Result<()> {
    if config.store.url.is_some() {
        return Err(super::exit::usage(
            "keys rotate works on one node's data directory; a fleet's replicas share one \
             grant key (store.url is set)",
        ));
    }
    // A running server would go on signing with the old key after its
    // window was fixed: the data directory's lock says whether one runs.
    if config.data_dir.join("log.sled").is_dir() || config.data_dir.join("log.fjall").is_dir() {
        trustpath::store::open_for_scan(&config.data_dir).context(
            "opening the data directory (keys rotate needs the server stopped: it takes \
             the new key at its next start)",
        )?;
    }
    let now = chrono::Utc::now().timestamp();
    // The longest grant the old key signed, plus the clock skew tolerated
    // (assertions.leeway_seconds) between trustpath and whoever checks it.
    let max_ttl = i64::try_from(config.grants.max_ttl_seconds).unwrap_or(i64::MAX);
    let leeway = i64::try_from(config.assertions.leeway_seconds).unwrap_or(i64::MAX);
    let keep_until = now.saturating_add(max_ttl).saturating_add(leeway);
    let (old, new) = GrantSigner::rotate(
        &trustpath::app::signing_key_path(config),
        &trustpath::grant::retired_dir(&config.data_dir),
        &config.issuer,
        now,
        keep_until,
    )?;
    let until = chrono::DateTime::from_timestamp(keep_until, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    println!("grant signing key rotated: {new} signs from the next start");
    println!("{old} stays in the JWKS, and its grants verify, until {until}");
    Ok(())
}
