//! Storage engines: the implementations of the log's storage roles
//! (`crate::log::storage`) and of the assertion replay guard's
//! (`crate::identity::replay::JtiStore`). The pipeline never names one;
//! `app` and the CLI open the engine a deployment uses.

mod entry_compression;
mod entry_file;
pub mod fjall;
mod indexer;
mod keys;
mod ordered;
pub mod postgres;
pub mod sled;
pub mod used_jtis;

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, Engine, StoreConfig};
use crate::identity::replay::JtiStore;
use crate::log::{LogError, LogStore};

/// The store a server writes: the log, its used `jti`s, and, for a fleet,
/// the database that checks its keys against the other replicas'.
pub struct ServerStore {
    pub log: LogStore,
    pub jtis: Box<dyn JtiStore>,
    fleet: Option<self::postgres::PgLog>,
}

impl ServerStore {
    /// In a fleet: records the signing keys, or refuses them when the
    /// fleet uses others (`(purpose, key id)`). One node: nothing to check.
    pub fn claim_keys(&self, keys: &[(&str, &str)]) -> Result<(), LogError> {
        match &self.fleet {
            Some(pg) => pg.claim_keys(keys),
            None => Ok(()),
        }
    }
}

fn pool_options(store: &StoreConfig) -> self::postgres::PoolOptions {
    self::postgres::PoolOptions {
        size: store.pool_size,
        timeout: Duration::from_secs(store.connect_timeout_seconds),
    }
}

/// Opens the store a config names for a server: the fleet's database when
/// `store.url` is set, else the data directory.
pub fn open_server(config: &Config) -> Result<ServerStore, LogError> {
    if let Some(url) = &config.store.url {
        let Some(node) = config.store.node.as_deref() else {
            return Err(LogError::Writer(
                "store.node (--node, TRUSTPATH_NODE) is required with a fleet's store: \
                 each replica needs its own name"
                    .into(),
            ));
        };
        let pg = self::postgres::PgLog::open(url, Some(node), pool_options(&config.store))?;
        return Ok(ServerStore {
            log: pg.log_store(),
            jtis: Box::new(pg.jti_store()),
            fleet: Some(pg),
        });
    }
    let cache_bytes = config.log.cache_mb.saturating_mul(1024 * 1024);
    let (log, jtis) = open(&config.data_dir, config.log.engine, cache_bytes)?;
    Ok(ServerStore {
        log,
        jtis,
        fleet: None,
    })
}

/// Opens the log a config names for a reading command; never creates.
pub fn open_for_reading(config: &Config) -> Result<LogStore, LogError> {
    match &config.store.url {
        Some(url) => open_url(url, &config.store),
        None => open_for_scan(&config.data_dir),
    }
}

/// Opens the fleet log at `url` with the default pool settings, as a
/// command that reads or copies (not a replica) does.
pub fn open_fleet_log(url: &str) -> Result<LogStore, LogError> {
    open_url(url, &StoreConfig::default())
}

fn open_url(url: &str, store: &StoreConfig) -> Result<LogStore, LogError> {
    self::postgres::PgLog::open(url, None, pool_options(store)).map(|pg| pg.log_store())
}

/// Opens the data directory's log and used-`jti` store for a server, with
/// a page cache of `cache_bytes` (sled). A directory that already holds a
/// log keeps its engine, whatever `engine` says; a new one gets `engine`.
pub fn open(
    data_dir: &Path,
    engine: Engine,
    cache_bytes: u64,
) -> Result<(LogStore, Box<dyn JtiStore>), LogError> {
    let engine = existing_engine(data_dir).unwrap_or(engine);
    Ok(match engine {
        Engine::Sled => {
            let log = self::sled::SledLog::open_with_cache(data_dir, cache_bytes)?;
            (log.log_store(), Box::new(log.jti_store()?))
        }
        Engine::Fjall => {
            let log = self::fjall::FjallLog::open(data_dir)?;
            (log.log_store(), Box::new(log.jti_store()?))
        }
    })
}

/// Opens the data directory's log for a reading command; never creates.
pub fn open_for_scan(data_dir: &Path) -> Result<LogStore, LogError> {
    match existing_engine(data_dir) {
        Some(Engine::Fjall) => {
            self::fjall::FjallLog::open_for_scan(data_dir).map(|l| l.log_store())
        }
        _ => self::sled::open_for_scan(data_dir),
    }
}

/// The engine of the log already in `data_dir`, if there is one.
fn existing_engine(data_dir: &Path) -> Option<Engine> {
    if data_dir.join("log.sled").is_dir() {
        Some(Engine::Sled)
    } else if self::fjall::path(data_dir).is_dir() {
        Some(Engine::Fjall)
    } else {
        None
    }
}

/// Creates the data directory readable by its owner only, and narrows an
/// existing one to that: it holds the log, keys and replay state.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}
