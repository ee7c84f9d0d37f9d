//! Per-build scratch directories (`$TMPDIR/hako-context-<pid>-<start>-XXXXXX`):
//! an unpacked or downloaded build context, a Dockerfile from standard input.
//!
//! A build removes its directory when it ends; a build killed with SIGKILL
//! cannot, so every build first sweeps the directories whose owner (the pid
//! and its start time, so a reused pid does not keep them) is gone.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

const PREFIX: &str = "hako-context-";

/// A process's start time (clock ticks since boot, /proc/PID/stat field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The owner (pid, start time) a scratch directory name records.
fn owner(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((pid, start))
}

/// Remove the scratch directories in `tmp` whose owner process is gone.
/// Only our own directories (same owner uid, not symlinks) are touched.
pub fn sweep(tmp: &Path) -> usize {
    let Ok(entries) = fs::read_dir(tmp) else {
        return 0;
    };
    let uid = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((pid, start)) = owner(&name) else {
            continue;
        };
        if start_time(pid) == Some(start) {
            continue;
        }
        let Ok(md) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if !md.is_dir() || md.uid() != uid {
            continue;
        }
        if fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A scratch directory, removed on drop (and by the next build's sweep when
/// this process is killed).
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// Sweep stale directories, then create this build's.
    pub fn new() -> Result<Scratch> {
        let tmp = std::env::temp_dir();
        sweep(&tmp);
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or(0);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{pid}-{start}-"))
            .tempdir_in(&tmp)
            .ctx(|| format!("creating a build directory in {}", tmp.display()))?;
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new subdirectory.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.path().join(name);
        fs::create_dir(&p).ctx(|| format!("creating {}", p.display()))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_only_dead_owners() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let alive = t
            .path()
            .join(format!("{PREFIX}{me}-{}-abc", start_time(me).unwrap()));
        // Same pid, another start time: a reused pid.
        let reused = t.path().join(format!("{PREFIX}{me}-1-abc"));
        // A pid that cannot exist (above pid_max's limit).
        let dead = t.path().join(format!("{PREFIX}4194305-7-abc"));
        let foreign = t.path().join(format!("{PREFIX}download-abc"));
        for d in [&alive, &reused, &dead, &foreign] {
            fs::create_dir_all(d.join("sub")).unwrap();
        }
        assert_eq!(sweep(t.path()), 2);
        assert!(alive.exists() && foreign.exists());
        assert!(!reused.exists() && !dead.exists());
        assert_eq!(owner("hako-context-12-34-x"), Some((12, 34)));
        assert_eq!(owner("hako-context-x"), None);
    }
}
