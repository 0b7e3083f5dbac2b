//! A run's output folder: one writer at a time, and a state that recovers from a
//! kill at any instant.
//!
//! * [`RunLock`] is an advisory `flock` on `out_dir/.plinth.lock`, held for the
//!   whole run by the process that writes the folder. A second writer is refused
//!   with the holder's PID and command. The kernel releases the lock when the holder
//!   dies, however it dies, so a killed run never leaves a lock to remove by hand.
//! * [`recover`] (run under the lock, before the run reads anything) finishes or
//!   undoes whatever [`crate::checkpoint::replace_dir`] swap a kill interrupted, and
//!   deletes the temporary files of interrupted atomic writes. After it, each
//!   replaced folder is the newest complete one.
//! * [`fault_point`] is the test hook that kills the process at a named point of
//!   a save, so the fault-injection tests hit every window.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{ModelError, Result};

/// The lock file in a run folder.
pub const LOCK_FILE: &str = ".plinth.lock";

/// The environment variable naming a [`fault_point`] to die at (`NAME` or `NAME:N`
/// for its N-th arrival); for tests only.
pub const FAULT_ENV: &str = "PLINTH_FAULT_AT";

/// Held for as long as this process writes a run folder; dropping it (or dying)
/// releases the folder.
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    /// The folder did not exist before this run: if the run ends without writing
    /// anything (a failed start), the folder goes again.
    created: bool,
    _file: File,
}

impl RunLock {
    /// Creates `dir` if needed and takes its lock for `command` (`pretrain`,
    /// `finetune`, `run`); refuses, naming the holder, if another process has it.
    /// Then [`recover`]s the folder.
    pub fn acquire(dir: &Path, command: &str) -> Result<RunLock> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModelError::Io { path, source }
        };
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.split_whitespace().collect::<Vec<_>>().join(" ");
                let holder = if holder.is_empty() { "another process".to_string() } else { format!("pid {holder}") };
                return Err(ModelError::Busy(format!(
                    "{} is being written by another plinth run ({holder}); wait for it to finish, or choose another out_dir (nothing was changed)",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(ModelError::Io { path, source }),
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        writeln!(file, "{} {command}", std::process::id()).map_err(io(&path))?;
        for done in recover(dir)? {
            tracing::info!("{}: {done}", dir.display());
        }
        Ok(RunLock { dir: dir.to_path_buf(), created, _file: file })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunLock {
    /// A run that created its folder and wrote nothing into it (it failed before
    /// its first output) leaves no folder behind. The lock file itself stays in
    /// every other case: deleting it would let a second writer lock a new file
    /// while a third still holds the old one.
    fn drop(&mut self) {
        if !self.created {
            return;
        }
        let only_lock = std::fs::read_dir(&self.dir)
            .map(|entries| entries.filter_map(|e| e.ok()).all(|e| e.file_name() == LOCK_FILE))
            .unwrap_or(false);
        if only_lock {
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// What a name in a run folder is, as [`crate::checkpoint::replace_dir`] and
/// [`crate::checkpoint::write_atomic`] name their temporaries.
#[derive(Debug, PartialEq, Eq)]
enum Leftover<'a> {
    /// `.NAME.tmpPID`: the new contents of NAME, being written (complete once
    /// `.NAME.oldPID` exists).
    NewDir { name: &'a str, pid: &'a str },
    /// `.NAME.oldPID`: the previous NAME, moved aside.
    OldDir { name: &'a str, pid: &'a str },
    /// `FILE.tmpPID`: an atomic write that did not finish.
    TmpFile,
}

fn classify(file_name: &str) -> Option<Leftover<'_>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = file_name.strip_prefix('.') {
        for (marker, old) in [(".tmp", false), (".old", true)] {
            if let Some(at) = rest.rfind(marker) {
                let (name, pid) = (&rest[..at], &rest[at + marker.len()..]);
                if !name.is_empty() && digits(pid) {
                    return Some(if old { Leftover::OldDir { name, pid } } else { Leftover::NewDir { name, pid } });
                }
            }
        }
    }
    let at = file_name.rfind(".tmp")?;
    (at > 0 && digits(&file_name[at + 4..])).then_some(Leftover::TmpFile)
}

/// Brings `dir` back to a consistent state after a kill: for every folder NAME that
/// a [`crate::checkpoint::replace_dir`] swap left without its final rename, the
/// newest complete copy becomes NAME (the new one if it was complete, else the
/// previous); incomplete copies, superseded copies and unfinished atomic writes are
/// deleted. Returns what it did, for the log. Call it only while holding the
/// folder's [`RunLock`].
pub fn recover(dir: &Path) -> Result<Vec<String>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let mut done = Vec::new();
    let remove = |path: PathBuf, done: &mut Vec<String>| -> Result<()> {
        let r = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        r.map_err(io(&path))?;
        done.push(format!("removed the leftover {}", path.file_name().unwrap_or_default().to_string_lossy()));
        Ok(())
    };
    let mut targets: Vec<&str> = names
        .iter()
        .filter_map(|n| match classify(n) {
            Some(Leftover::NewDir { name, .. } | Leftover::OldDir { name, .. }) => Some(name),
            _ => None,
        })
        .collect();
    targets.sort_unstable();
    targets.dedup();
    for target in targets {
        let live = dir.join(target);
        if !live.exists() {
            // Killed between the two renames of a swap: the new copy is complete
            // (the old one is moved aside only after it was written). Otherwise the
            // newest old copy is the last complete one.
            let olds: Vec<&str> = names
                .iter()
                .filter_map(|n| match classify(n) {
                    Some(Leftover::OldDir { name, pid }) if name == target => Some(pid),
                    _ => None,
                })
                .collect();
            let completed_new = olds.iter().find(|pid| names.contains(&format!(".{target}.tmp{pid}")));
            let promote = match completed_new {
                Some(pid) => Some(format!(".{target}.tmp{pid}")),
                None => olds
                    .iter()
                    .map(|pid| format!(".{target}.old{pid}"))
                    .max_by_key(|n| std::fs::metadata(dir.join(n)).and_then(|m| m.modified()).ok()),
            };
            if let Some(from) = promote {
                std::fs::rename(dir.join(&from), &live).map_err(io(&live))?;
                done.push(format!("restored {target}/ from {from}, the newest complete copy (a save was interrupted)"));
            }
        }
        for n in &names {
            match classify(n) {
                Some(Leftover::NewDir { name, .. } | Leftover::OldDir { name, .. })
                    if name == target && dir.join(n).exists() =>
                {
                    remove(dir.join(n), &mut done)?
                }
                _ => {}
            }
        }
    }
    for n in &names {
        if classify(n) == Some(Leftover::TmpFile) && dir.join(n).is_file() {
            remove(dir.join(n), &mut done)?;
        }
    }
    Ok(done)
}

/// Test hook: if `$PLINTH_FAULT_AT` names this point (`NAME`, or `NAME:N` for
/// the N-th arrival in this process), the process kills itself with SIGKILL here,
/// exactly as `kill -9` would. Costs one environment lookup when unset.
pub fn fault_point(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static ARRIVALS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());
    static UNSET: AtomicU64 = AtomicU64::new(0);
    if UNSET.load(Ordering::Relaxed) == 1 {
        return;
    }
    let Some(spec) = std::env::var_os(FAULT_ENV) else {
        UNSET.store(1, Ordering::Relaxed);
        return;
    };
    let spec = spec.to_string_lossy();
    let (point, nth) = match spec.split_once(':') {
        Some((p, n)) => (p, n.parse::<u64>().unwrap_or(1)),
        None => (spec.as_ref(), 1),
    };
    if point != name {
        return;
    }
    let mut arrivals = ARRIVALS.lock().unwrap_or_else(|e| e.into_inner());
    let count = match arrivals.iter_mut().find(|(p, _)| p == name) {
        Some((_, c)) => {
            *c += 1;
            *c
        }
        None => {
            arrivals.push((name.to_string(), 1));
            1
        }
    };
    if count == nth {
        let _ = std::io::stderr().flush();
        // SIGKILL from outside, as `kill -9` sends it: no destructor, no flush.
        let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
        // `kill` is not there: abort, which skips destructors just the same.
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_named_by_what_wrote_them() {
        assert_eq!(classify(".checkpoint.tmp123"), Some(Leftover::NewDir { name: "checkpoint", pid: "123" }));
        assert_eq!(classify(".best.old9"), Some(Leftover::OldDir { name: "best", pid: "9" }));
        assert_eq!(classify("metrics.jsonl.tmp77"), Some(Leftover::TmpFile));
        for keep in ["checkpoint", "metrics.jsonl", ".plinth.lock", ".tmp12", "x.tmp", "x.tmpfile", ".a.tmp"] {
            assert_eq!(classify(keep), None, "{keep}");
        }
    }

    fn folder(root: &Path, name: &str, content: &str) {
        std::fs::create_dir_all(root.join(name)).expect("mkdir");
        std::fs::write(root.join(name).join("weights"), content).expect("write");
    }

    fn content(root: &Path, name: &str) -> String {
        std::fs::read_to_string(root.join(name).join("weights")).expect("read")
    }

    #[test]
    fn every_window_of_a_swap_recovers_to_the_newest_complete_copy() {
        // Killed while writing the new copy: the old one stands.
        let d = tempfile::tempdir().expect("tempdir");
        folder(d.path(), "checkpoint", "old");
        folder(d.path(), ".checkpoint.tmp5", "half");
        recover(d.path()).expect("recover");
        assert_eq!(content(d.path(), "checkpoint"), "old");
        assert!(!d.path().join(".checkpoint.tmp5").exists());
        // Killed between the renames: the new copy is complete and wins.
        let d = tempfile::tempdir().expect("tempdir");
        folder(d.path(), ".checkpoint.old5", "old");
        folder(d.path(), ".checkpoint.tmp5", "new");
        let done = recover(d.path()).expect("recover");
        assert_eq!(content(d.path(), "checkpoint"), "new", "{done:?}");
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 1);
        // Killed before the old copy was deleted.
        let d = tempfile::tempdir().expect("tempdir");
        folder(d.path(), "checkpoint", "new");
        folder(d.path(), ".checkpoint.old5", "old");
        std::fs::write(d.path().join("report.json.tmp5"), "{").expect("write");
        recover(d.path()).expect("recover");
        assert_eq!(content(d.path(), "checkpoint"), "new");
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 1);
        // The first save ever, killed while writing: nothing to restore.
        let d = tempfile::tempdir().expect("tempdir");
        folder(d.path(), ".checkpoint.tmp5", "half");
        recover(d.path()).expect("recover");
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 0);
    }

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid() {
        let d = tempfile::tempdir().expect("tempdir");
        let held = RunLock::acquire(d.path(), "pretrain").expect("first");
        let err = RunLock::acquire(d.path(), "pretrain").expect_err("second").to_string();
        assert!(err.contains(&format!("pid {} pretrain", std::process::id())), "{err}");
        drop(held);
        RunLock::acquire(d.path(), "finetune").expect("free again once released");
    }

    #[test]
    fn a_run_that_writes_nothing_leaves_no_folder() {
        let d = tempfile::tempdir().expect("tempdir");
        let fresh = d.path().join("run");
        drop(RunLock::acquire(&fresh, "pretrain").expect("lock"));
        assert!(!fresh.exists(), "a failed start leaves nothing behind");
        let lock = RunLock::acquire(&fresh, "pretrain").expect("lock");
        std::fs::write(fresh.join("metrics.jsonl"), "").expect("write");
        drop(lock);
        assert!(fresh.join("metrics.jsonl").exists(), "what a run wrote stays");
        // A folder that was there before the run stays, even empty.
        let existing = d.path().join("existing");
        std::fs::create_dir(&existing).expect("mkdir");
        drop(RunLock::acquire(&existing, "pretrain").expect("lock"));
        assert!(existing.is_dir());
    }
}
