//! Storage engines: the implementations of the log's storage roles
//! (`crate::log::storage`) and of the assertion replay guard's
//! (`crate::identity::replay::JtiStore`). The pipeline never names one;
//! `app` and the CLI open the engine a deployment uses.

pub mod fjall;
mod keys;
mod ordered;
pub mod sled;

use std::path::Path;

use crate::config::Engine;
use crate::identity::replay::JtiStore;
use crate::log::{LogError, LogStore};

/// Opens the data directory's log and used-`jti` store for a server. A
/// directory that already holds a log keeps its engine, whatever `engine`
/// says; a new one gets `engine`.
pub fn open(data_dir: &Path, engine: Engine) -> Result<(LogStore, Box<dyn JtiStore>), LogError> {
    let engine = existing_engine(data_dir).unwrap_or(engine);
    Ok(match engine {
        Engine::Sled => {
            let log = self::sled::SledLog::open(data_dir)?;
            (log.log_store(), Box::new(log.jti_store()?))
        }
        Engine::Fjall => {
            let log = self::fjall::FjallLog::open(data_dir)?;
            (log.log_store(), Box::new(log.jti_store()))
        }
    })
}

/// Opens the data directory's log for a reading command; never creates.
pub fn open_for_scan(data_dir: &Path) -> Result<LogStore, LogError> {
    match existing_engine(data_dir) {
        Some(Engine::Fjall) => self::fjall::FjallLog::open(data_dir).map(|l| l.log_store()),
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
