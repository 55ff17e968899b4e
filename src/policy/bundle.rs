//! OPA bundles: a gzipped tar of `.rego` files and `data.json`/`data.yaml`
//! documents, with an optional `.manifest` (revision, roots) and
//! `.signatures.json` (see `signature.rs`). Unpacked into memory with
//! bounds, so a hostile archive cannot fill the disk or the memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use serde::Deserialize;
use serde_json::Value;

/// The signatures file, at the bundle's root.
pub const SIGNATURES_FILE: &str = ".signatures.json";
/// The manifest, at the bundle's root.
pub const MANIFEST_FILE: &str = ".manifest";

/// Most files a bundle may hold.
const MAX_FILES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a gzipped tar archive: {0}")]
    Archive(String),
    #[error("{0}: a path that leaves the bundle or is not valid UTF-8")]
    Path(String),
    #[error("{0}: only regular files and directories may be in a bundle")]
    EntryType(String),
    #[error("{0} appears twice in the bundle")]
    Duplicate(String),
    #[error("the bundle unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("the bundle holds more than {MAX_FILES} files")]
    TooManyFiles,
    #[error(".manifest: {0}")]
    Manifest(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0} is outside the bundle's roots ({1})")]
    OutsideRoots(String, String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("download: {0}")]
    Download(String),
}

/// `.manifest`, as OPA writes it. Unknown fields are ignored, as OPA does.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub revision: String,
    /// Paths (`a/b`) under `data` this bundle owns; absent means all.
    pub roots: Option<Vec<String>>,
    #[serde(default)]
    pub rego_version: Option<i64>,
    #[serde(default)]
    pub wasm: Option<Vec<Value>>,
}

impl Manifest {
    /// The roots, `[""]` (everything) when the manifest names none.
    pub fn roots(&self) -> Vec<String> {
        self.roots.clone().unwrap_or_else(|| vec![String::new()])
    }
}

/// A bundle unpacked into memory.
#[derive(Debug)]
pub struct Bundle {
    /// Every file but `.signatures.json`, by its path inside the bundle
    /// (no leading `/`).
    pub files: BTreeMap<String, Vec<u8>>,
    pub manifest: Manifest,
    /// `.signatures.json`'s bytes, when the bundle has one.
    pub signatures: Option<Vec<u8>>,
    /// SHA-256 of the archive as it arrived: which bundle this was.
    pub sha256: String,
}

impl Bundle {
    /// Unpacks a `.tar.gz`. At most `max_unpacked` bytes of file content.
    pub fn unpack(archive: &[u8], max_unpacked: u64) -> Result<Self, BundleError> {
        let sha256 = crate::digest::sha256_hex(archive);
        let decoder = flate2::read::GzDecoder::new(archive);
        // The header sizes are checked below; this also bounds what a
        // lying header or padding could make the decoder produce.
        let mut tar = tar::Archive::new(decoder.take(max_unpacked.saturating_mul(2) + (1 << 20)));
        let archive_err = |e: std::io::Error| BundleError::Archive(e.to_string());
        let mut files = BTreeMap::new();
        let mut signatures = None;
        let mut unpacked = 0u64;
        for entry in tar.entries().map_err(archive_err)? {
            let mut entry = entry.map_err(archive_err)?;
            let raw_path = entry.path().map_err(archive_err)?.into_owned();
            let shown = raw_path.display().to_string();
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            }
            if !kind.is_file() {
                return Err(BundleError::EntryType(shown));
            }
            let path = bundle_path(&raw_path).ok_or(BundleError::Path(shown))?;
            unpacked = unpacked.saturating_add(entry.size());
            if unpacked > max_unpacked {
                return Err(BundleError::TooLarge(max_unpacked));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(archive_err)?;
            if path == SIGNATURES_FILE {
                if signatures.replace(bytes).is_some() {
                    return Err(BundleError::Duplicate(path));
                }
                continue;
            }
            if files.len() >= MAX_FILES {
                return Err(BundleError::TooManyFiles);
            }
            if files.insert(path.clone(), bytes).is_some() {
                return Err(BundleError::Duplicate(path));
            }
        }
        let manifest = match files.get(MANIFEST_FILE) {
            Some(bytes) => serde_json::from_slice::<Manifest>(bytes)
                .map_err(|e| BundleError::Manifest(e.to_string()))?,
            None => Manifest::default(),
        };
        let bundle = Self {
            files,
            manifest,
            signatures,
            sha256,
        };
        bundle.check_supported()?;
        Ok(bundle)
    }

    /// Refuses what trustpath cannot evaluate as OPA would.
    fn check_supported(&self) -> Result<(), BundleError> {
        let manifest = &self.manifest;
        if manifest.rego_version == Some(0) {
            return Err(BundleError::Unsupported(
                ".manifest: rego_version 0 (Rego v0 syntax) is not supported; build the bundle \
                 for Rego v1"
                    .into(),
            ));
        }
        if manifest.wasm.as_ref().is_some_and(|w| !w.is_empty())
            || self
                .files
                .keys()
                .any(|p| p.ends_with(".wasm") || p == "plan.json")
        {
            return Err(BundleError::Unsupported(
                "Wasm and plan bundles are not supported: ship the .rego sources".into(),
            ));
        }
        if self.files.keys().any(|p| file_name(p) == "patch.json") {
            return Err(BundleError::Unsupported(
                "delta bundles (patch.json) are not supported".into(),
            ));
        }
        let revision = &manifest.revision;
        if revision.len() > 256 || revision.chars().any(char::is_control) {
            return Err(BundleError::Manifest(
                "revision must be at most 256 characters without control characters".into(),
            ));
        }
        for root in manifest.roots() {
            if root.starts_with('/') || root.ends_with('/') || root.contains("//") {
                return Err(BundleError::Manifest(format!(
                    "root {root:?} must be a path like \"a/b\""
                )));
            }
        }
        Ok(())
    }

    /// The files the policy engine reads: `.rego` files and data documents.
    pub fn policy_files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files
            .iter()
            .filter(|(path, _)| is_policy_file(path))
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
    }

    /// Checks that every package and every data document lies under one of
    /// the manifest's roots, as OPA does before it activates a bundle.
    pub fn check_roots<'a>(
        &self,
        packages: impl IntoIterator<Item = &'a str>,
        data: &[(String, Value)],
    ) -> Result<(), BundleError> {
        let roots = self.manifest.roots();
        let shown = roots
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let outside = |what: String| BundleError::OutsideRoots(what, shown.clone());
        for package in packages {
            let name = package.strip_prefix("data.").unwrap_or(package);
            if !under_roots(&roots, &name.replace('.', "/")) {
                return Err(outside(format!("package {name}")));
            }
        }
        for (mount, value) in data {
            check_data_roots(&roots, mount, value).map_err(|path| outside(data_name(&path)))?;
        }
        Ok(())
    }
}

/// `data.a.b` for the slash path `a/b`.
fn data_name(path: &str) -> String {
    if path.is_empty() {
        "data".into()
    } else {
        format!("data.{}", path.replace('/', "."))
    }
}

/// Whether `path` (slash-separated, under `data`) is at or below a root.
fn under_roots(roots: &[String], path: &str) -> bool {
    roots.iter().any(|root| {
        root.is_empty()
            || path == root
            || path
                .strip_prefix(root.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// A data document mounted at `mount` stays under the roots: either the
/// mount point is under one, or it is above some and each key of the
/// object descends toward one. Returns the first path outside.
fn check_data_roots(roots: &[String], mount: &str, value: &Value) -> Result<(), String> {
    if under_roots(roots, mount) {
        return Ok(());
    }
    let above_a_root = roots
        .iter()
        .any(|root| mount.is_empty() || root.starts_with(&format!("{mount}/")));
    match value {
        Value::Object(map) if above_a_root => {
            for (key, inner) in map {
                let path = if mount.is_empty() {
                    key.clone()
                } else {
                    format!("{mount}/{key}")
                };
                check_data_roots(roots, &path, inner)?;
            }
            Ok(())
        }
        _ => Err(mount.to_string()),
    }
}

/// A path inside the bundle: relative, `/`-separated, without `.` or `..`.
fn bundle_path(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A file the engine reads: Rego, or a data document.
pub fn is_policy_file(path: &str) -> bool {
    path.ends_with(".rego") || is_data_file(path)
}

/// `data.json` or `data.yaml`, mounted at its directory's path.
pub fn is_data_file(path: &str) -> bool {
    matches!(file_name(path), "data.json" | "data.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roots(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roots_cover_paths_by_whole_segments() {
        let r = roots(&["trustpath", "limits/ttl"]);
        assert!(under_roots(&r, "trustpath/connection"));
        assert!(under_roots(&r, "limits/ttl"));
        assert!(!under_roots(&r, "trustpathx"));
        assert!(!under_roots(&r, "limits"));
        assert!(under_roots(&roots(&[""]), "anything/at/all"));
    }

    #[test]
    fn data_above_a_root_is_checked_key_by_key() {
        let r = roots(&["limits/ttl"]);
        assert!(check_data_roots(&r, "", &json!({"limits": {"ttl": {"max": 1}}})).is_ok());
        assert_eq!(
            check_data_roots(&r, "", &json!({"limits": {"ttl": 1, "other": 2}})),
            Err("limits/other".into())
        );
        assert_eq!(
            check_data_roots(&r, "", &json!({"users": []})),
            Err("users".into())
        );
    }

    #[test]
    fn paths_may_not_leave_the_bundle() {
        assert_eq!(
            bundle_path(Path::new("/a/./b.rego")).as_deref(),
            Some("a/b.rego")
        );
        assert_eq!(bundle_path(Path::new("../etc/passwd")), None);
        assert_eq!(bundle_path(Path::new("a/../../b")), None);
    }
}
