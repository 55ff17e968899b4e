//! Writing key files that only the owner may read.

use std::io::Write;
use std::path::Path;

/// Creates `path` with mode 0600 and writes `bytes`. Fails if it exists, so
/// a key is never silently replaced.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Loads the PKCS#8 PEM Ed25519 key at `path`, creating it (0600) when absent.
pub fn ed25519_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let describe = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    if path.exists() {
        let pem = std::fs::read_to_string(path).map_err(|e| describe(&e))?;
        return ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| describe(&e));
    }
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| describe(&e))?;
    write_new(path, pem.as_bytes()).map_err(|e| describe(&e))?;
    Ok(key)
}
