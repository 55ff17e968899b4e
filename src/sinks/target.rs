//! Where a sink's NDJSON goes: stdout, a rotated file, or an HTTP endpoint.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::SinkError;
use crate::config::{SinkConfig, SinkKind};

pub enum Target {
    Stdout,
    File(FileTarget),
    Http(HttpTarget),
}

impl Target {
    pub fn open(config: &SinkConfig) -> Result<Self, SinkError> {
        let setup = |m: String| SinkError::Setup(config.name.clone(), m);
        Ok(match config.kind {
            SinkKind::Stdout => Target::Stdout,
            SinkKind::File => Target::File(FileTarget {
                path: config
                    .path
                    .clone()
                    .ok_or_else(|| setup("path is required".into()))?,
                max_bytes: config.max_bytes,
                keep: config.keep,
            }),
            SinkKind::Http => {
                let url = config
                    .url
                    .clone()
                    .ok_or_else(|| setup("url is required".into()))?;
                let token = match &config.token_file {
                    Some(path) => Some(read_token(&config.name, path)?),
                    None => None,
                };
                let client = reqwest::Client::builder()
                    .timeout(config.timeout.0)
                    // A SIEM endpoint is configured, not discovered: a
                    // redirect would send the log somewhere nobody chose.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| setup(e.to_string()))?;
                Target::Http(HttpTarget {
                    url,
                    token,
                    gzip: config.gzip,
                    client,
                })
            }
        })
    }

    /// Delivers `body` (whole NDJSON lines) or fails having delivered
    /// nothing the caller may count on.
    pub async fn deliver(&mut self, body: Vec<u8>) -> Result<(), SinkError> {
        match self {
            Target::Stdout => {
                let mut out = tokio::io::stdout();
                out.write_all(&body).await.map_err(delivery)?;
                out.flush().await.map_err(delivery)
            }
            Target::File(file) => {
                let file = file.clone();
                tokio::task::spawn_blocking(move || file.append(&body))
                    .await
                    .map_err(delivery)?
                    .map_err(delivery)
            }
            Target::Http(http) => http.post(body).await,
        }
    }
}

fn delivery(e: impl std::fmt::Display) -> SinkError {
    SinkError::Delivery(e.to_string())
}

fn read_token(sink: &str, path: &Path) -> Result<String, SinkError> {
    let text = std::fs::read_to_string(path).map_err(|source| SinkError::Token {
        sink: sink.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim().to_string();
    if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(SinkError::Setup(
            sink.to_string(),
            format!(
                "token file {}: one line of visible ASCII expected",
                path.display()
            ),
        ));
    }
    Ok(token)
}

/// NDJSON appended to `path`, rotated by size: `path.1` is the newest
/// rotated file, `path.{keep}` the oldest kept.
#[derive(Clone)]
pub struct FileTarget {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
}

impl FileTarget {
    fn append(&self, body: &[u8]) -> std::io::Result<()> {
        let size = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if size > 0 && size + body.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(body)?;
        // The cursor moves past these entries next: they must be on disk.
        file.sync_data()
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let oldest = self.rotated(self.keep);
        if oldest.exists() {
            std::fs::remove_file(&oldest)?;
        }
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }
}

pub struct HttpTarget {
    url: String,
    token: Option<String>,
    gzip: bool,
    client: reqwest::Client,
}

impl HttpTarget {
    /// One POST of the batch; anything but a 2xx is a failure (retried).
    async fn post(&self, body: Vec<u8>) -> Result<(), SinkError> {
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson");
        let body = if self.gzip {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body).map_err(delivery)?;
            encoder.finish().map_err(delivery)?
        } else {
            body
        };
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.body(body).send().await.map_err(|e| {
            // Never the URL's query or credentials in the logs: the host is enough.
            SinkError::Delivery(format!("POST failed: {}", e.without_url()))
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SinkError::Delivery(format!("POST answered {status}")))
        }
    }
}
