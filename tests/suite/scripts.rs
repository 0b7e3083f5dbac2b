//! The shell scripts around the build: the build-cache record env.sh writes, and
//! scripts/gc-cache.sh, which deletes the caches of clones that no longer exist.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo root")
}

fn gc(cache_home: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/gc-cache.sh"))
        .args(args)
        .env("XDG_CACHE_HOME", cache_home)
        .output()
        .expect("run gc-cache.sh")
}

/// A target directory in `cache_home`, recording `clone` when given.
fn target(cache_home: &Path, key: &str, clone: Option<&Path>) -> PathBuf {
    let dir = cache_home.join("plinth").join(format!("target-{key}"));
    std::fs::create_dir_all(dir.join("release")).expect("mkdir");
    std::fs::write(dir.join("release/libbig.so"), vec![0u8; 4096]).expect("write");
    if let Some(clone) = clone {
        std::fs::write(dir.join("plinth-clone"), format!("{}\n", clone.display())).expect("write");
    }
    dir
}

#[test]
fn env_sh_records_which_clone_owns_its_build_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg("-c")
        .arg("unset CARGO_TARGET_DIR; source scripts/env.sh && printf '%s' \"$CARGO_TARGET_DIR\"")
        .current_dir(repo())
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("source env.sh");
    assert!(out.status.success(), "env.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8(out.stdout).expect("utf8"));
    assert!(dir.starts_with(cache.path().join("plinth")), "{} is not under the cache", dir.display());
    let recorded = std::fs::read_to_string(dir.join("plinth-clone")).expect("record written");
    assert_eq!(recorded.trim_end(), repo().display().to_string());
}

#[test]
fn gc_deletes_only_the_caches_of_clones_that_are_gone() {
    let cache = tempfile::tempdir().expect("tempdir");
    let live_clone = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(live_clone.path().join("scripts")).expect("mkdir");
    std::fs::write(live_clone.path().join("scripts/env.sh"), "").expect("write");
    let gone_clone = live_clone.path().join("deleted-clone");

    let live = target(cache.path(), "aaaaaaaaaaaa", Some(live_clone.path()));
    let gone = target(cache.path(), "bbbbbbbbbbbb", Some(&gone_clone));
    let unknown = target(cache.path(), "cccccccccccc", None);
    let blank = target(cache.path(), "eeeeeeeeeeee", None);
    std::fs::write(blank.join("plinth-clone"), "").expect("an empty record, as a write on a full disk leaves");

    let dry = gc(cache.path(), &["--dry-run"]);
    assert!(dry.status.success());
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(said.contains("would delete") && said.contains("target-bbbbbbbbbbbb"), "{said}");
    assert!(gone.exists(), "--dry-run deleted something");

    let run = gc(cache.path(), &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!gone.exists(), "the cache of a deleted clone is still there");
    assert!(live.join("release/libbig.so").exists(), "a live clone's cache was touched");
    assert!(unknown.join("release/libbig.so").exists(), "a cache without a record was deleted");
    assert!(blank.join("release/libbig.so").exists(), "a cache with an empty record was deleted");
    let warned = String::from_utf8_lossy(&run.stderr);
    assert!(warned.contains("target-cccccccccccc") && warned.contains("by hand"), "{warned}");

    let again = gc(cache.path(), &[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("no build cache of a deleted clone"));
}

#[test]
fn gc_rejects_an_unknown_argument_with_its_usage() {
    let cache = tempfile::tempdir().expect("tempdir");
    let gone = target(cache.path(), "dddddddddddd", Some(Path::new("/nonexistent/plinth-clone")));
    let out = gc(cache.path(), &["--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: scripts/gc-cache.sh [--dry-run]"));
    assert!(gone.exists(), "a rejected call deleted something");
}
