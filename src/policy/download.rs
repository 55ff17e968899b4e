//! Fetching a bundle over HTTPS, conditionally on its ETag.
//!
//! The client is reqwest's blocking one, run on a thread of its own for
//! each download: policy loading is synchronous (at start, on a reload task
//! or in a CLI command), and that thread is never one of the async
//! runtime's, where the blocking client must not run.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use super::bundle::BundleError;
use crate::config::BundleConfig;

/// A bundle server: its URL and how to reach it.
#[derive(Debug, Clone)]
pub struct BundleServer {
    url: url::Url,
    ca_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    max_bytes: u64,
    timeout: Duration,
}

/// What a download brought.
pub enum Downloaded {
    /// The server's bundle is the one we have (304).
    NotModified,
    Bundle {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

impl BundleServer {
    pub fn new(url: url::Url, config: &BundleConfig) -> Self {
        Self {
            url,
            ca_file: config.ca_file.clone(),
            token_file: config.token_file.clone(),
            max_bytes: config.max_bytes,
            timeout: config.timeout.0,
        }
    }

    /// GETs the bundle, sending `If-None-Match: etag` when given.
    pub fn get(&self, etag: Option<&str>) -> Result<Downloaded, BundleError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.get_blocking(etag))
                .join()
                .unwrap_or_else(|_| Err(BundleError::Download("the download thread failed".into())))
        })
    }

    fn get_blocking(&self, etag: Option<&str>) -> Result<Downloaded, BundleError> {
        let fail = |m: String| BundleError::Download(format!("{}: {m}", self.url));
        let mut client = reqwest::blocking::Client::builder()
            .https_only(true)
            .timeout(self.timeout)
            .connect_timeout(self.timeout);
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| fail(format!("cannot read ca_file {}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| fail(format!("ca_file {}: {e}", path.display())))?
            {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client.build().map_err(|e| fail(e.to_string()))?;
        let mut request = client.get(self.url.clone());
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read token_file {}: {e}", path.display())))?;
            request = request.bearer_auth(token.trim());
        }
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = request.send().map_err(|e| fail(error_chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Downloaded::NotModified);
        }
        if !status.is_success() {
            return Err(fail(format!("the server answered {status}")));
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        response
            .take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(e.to_string()))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(fail(format!(
                "the bundle is larger than bundle.max_bytes ({})",
                self.max_bytes
            )));
        }
        Ok(Downloaded::Bundle { bytes, etag })
    }
}

/// reqwest's error with its causes (the TLS or connect error underneath).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
