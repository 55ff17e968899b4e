//! A sink's cursor: the next seq to deliver, in `DATA_DIR/sinks/NAME.cursor`.
//! Replaced atomically (write, fsync, rename), so a crash leaves the old
//! cursor or the new one, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::SinkError;

pub struct Cursor {
    sink: String,
    path: PathBuf,
    next: u64,
}

impl Cursor {
    /// Reads the cursor of sink `name`; a new sink starts at seq 0.
    pub fn open(data_dir: &Path, name: &str) -> Result<Self, SinkError> {
        let dir = data_dir.join("sinks");
        let path = dir.join(format!("{name}.cursor"));
        let io = |source| SinkError::Cursor {
            sink: name.to_string(),
            path: path.clone(),
            source,
        };
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| SinkError::CursorText {
                    sink: name.to_string(),
                    path: path.clone(),
                    text: text.chars().take(40).collect(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_owner_only(&dir).map_err(io)?;
                0
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            sink: name.to_string(),
            path,
            next,
        })
    }

    /// The next seq to deliver.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Everything before `next` is delivered: store it durably.
    pub async fn advance(&mut self, next: u64) -> Result<(), SinkError> {
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, next))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        written.map_err(|source| SinkError::Cursor {
            sink: self.sink.clone(),
            path: self.path.clone(),
            source,
        })?;
        self.next = next;
        Ok(())
    }
}

/// The cursor directory, readable by the data directory's owner only.
fn create_owner_only(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_atomically(path: &Path, next: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("cursor.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{next}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
