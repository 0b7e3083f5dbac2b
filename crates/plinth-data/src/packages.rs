//! Fetching pinned Debian packages that ship data files. The project's only
//! network is the package registries, so real data arrives as a package, is
//! checked against a recorded SHA-256, and is unpacked into plinth's cache once.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// A Debian package pinned by version and checksum.
#[derive(Debug, Clone, Copy)]
pub struct DebianPackage {
    pub name: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
    /// Licence and source, for the data documentation.
    pub licence: &'static str,
}

/// WordNet 3.0 (Princeton University, WordNet licence: free use with notice).
pub const WORDNET: DebianPackage = DebianPackage {
    name: "wordnet-base",
    version: "1:3.0-37",
    sha256: "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
    licence: "WordNet 3.0 licence (Princeton University), BSD-like",
};

/// The GNU Collaborative International Dictionary of English 0.48 (Webster's 1913
/// with WordNet additions), GPL-3.0-or-later, as Debian packages it for dictd.
pub const GCIDE: DebianPackage = DebianPackage {
    name: "dict-gcide",
    version: "0.48.5+nmu2",
    sha256: "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
    licence: "GPL-3.0-or-later (GNU Collaborative International Dictionary of English)",
};

/// plinth's cache: `$PLINTH_CACHE_DIR`, else `$XDG_CACHE_HOME/plinth`, else `~/.cache/plinth`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PLINTH_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("plinth")
}

/// Downloads `pkg` with `apt-get download`, checks its SHA-256 and unpacks it with
/// `dpkg-deb -x` under `cache/packages/NAME_VERSION/`, returning that root.
/// A completed unpack is reused without any network access.
pub fn fetch_debian(pkg: &DebianPackage, cache: &Path) -> Result<PathBuf> {
    let safe_version = pkg.version.replace(':', "%3a");
    let root = cache.join("packages").join(format!("{}_{}", pkg.name, safe_version));
    let done = root.join(".plinth-complete");
    if done.exists() {
        return Ok(root);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    let work = cache.join("packages").join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    tracing::info!(package = pkg.name, version = pkg.version, "downloading Debian package");
    let status = Command::new("apt-get")
        .args(["download", &format!("{}={}", pkg.name, pkg.version)])
        .current_dir(&work)
        .output()
        .map_err(|e| {
            DataError::Fetch(format!(
                "cannot run apt-get to fetch {}: {e}; plinth reads its corpus from Debian's package registry",
                pkg.name
            ))
        })?;
    if !status.status.success() {
        return Err(DataError::Fetch(format!(
            "apt-get download {}={} failed: {}; run `apt-get update` and retry",
            pkg.name,
            pkg.version,
            String::from_utf8_lossy(&status.stderr).trim()
        )));
    }
    let deb = std::fs::read_dir(&work)
        .map_err(io(&work))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| DataError::Fetch(format!("apt-get reported success but left no .deb for {}", pkg.name)))?;
    let bytes = std::fs::read(&deb).map_err(io(&deb))?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    if digest != pkg.sha256 {
        return Err(DataError::Fetch(format!(
            "{} has SHA-256 {digest} but plinth pins {}; the registry served a different file, refusing to use it",
            deb.display(),
            pkg.sha256
        )));
    }
    let _ = std::fs::remove_dir_all(&root);
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .output()
        .map_err(|e| DataError::Fetch(format!("cannot run dpkg-deb to unpack {}: {e}", deb.display())))?;
    if !out.status.success() {
        return Err(DataError::Fetch(format!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::write(&done, pkg.sha256).map_err(io(&done))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(root)
}
