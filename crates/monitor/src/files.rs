//! The files the monitor writes for the engine, each written to a temp
//! name and renamed so a reader never sees half of one:
//! - the exit file (`exit.json`) once it is done: the final exit;
//! - the state file (`state.json`) at every start and restart: the pid of
//!   the current run, the restart count, whether it waits to restart.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::jsonlog::escape_into;

/// Write `body` to `path` atomically.
pub fn write_atomic(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp");
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
        // No fsync: these describe processes that a reboot ends anyway, and
        // the engine reconciles a missing one; a journal commit per file
        // costs milliseconds on every start and exit.
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        eprintln!("hako-monitor: writing {}: {e}", path.display());
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct Exit {
    pub code: i32,
    pub finished_at: String,
    pub oom_killed: bool,
    /// Why the container could not be started again, if that was the end.
    pub error: String,
}

/// `{"exit_code":N,"finished_at":"...","oom_killed":B,"restart_count":N,"error":"..."}`.
pub fn write_exit(path: &Path, exit: &Exit, restarts: u32) {
    let mut error = String::new();
    escape_into(&mut error, &exit.error);
    write_atomic(
        path,
        &format!(
            "{{\"exit_code\":{},\"finished_at\":\"{}\",\"oom_killed\":{},\"restart_count\":{restarts},\"error\":\"{error}\"}}\n",
            exit.code, exit.finished_at, exit.oom_killed
        ),
    );
}

/// The current run: `pid` 0 and `restarting` while waiting to restart,
/// with the exit that caused the restart.
pub fn write_state(
    path: &Path,
    pid: i32,
    started_at: &str,
    restarts: u32,
    restarting: bool,
    last: &Exit,
) {
    write_atomic(
        path,
        &format!(
            "{{\"pid\":{pid},\"started_at\":\"{started_at}\",\"restart_count\":{restarts},\"restarting\":{restarting},\"exit_code\":{},\"finished_at\":\"{}\",\"oom_killed\":{}}}\n",
            last.code, last.finished_at, last.oom_killed
        ),
    );
}
