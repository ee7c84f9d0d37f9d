//! Lifecycle hooks: each gets the container state on stdin and must finish
//! within its timeout.

use crate::error::{Error, Result};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs hooks in order; the first failure stops the rest and is returned.
pub fn run(kind: &str, hooks: &[Hook], state: &[u8]) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state).map_err(|e| {
            Error::Container(format!("{kind} hook #{i} ({}): {e}", h.path().display()))
        })?;
    }
    Ok(())
}

/// Runs every hook in order, warning on stderr about each one that fails:
/// for poststart and poststop the runtime-spec asks the runtime to log a
/// warning and continue, with the remaining hooks still run. Returns how
/// many failed.
pub fn run_warn(kind: &str, hooks: &[Hook], state: &[u8]) -> usize {
    let mut failed = 0;
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(h, state) {
            eprintln!(
                "hako-runtime: warning: {kind} hook #{i} ({}): {e}",
                h.path().display()
            );
            failed += 1;
        }
    }
    failed
}

fn run_one(h: &Hook, state: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("starting: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; that is not a failure.
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    let status = loop {
        match child.try_wait().map_err(|e| format!("waiting: {e}"))? {
            Some(st) => break st,
            None => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("timed out after {}s", h.timeout().unwrap_or(0)));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    };
    if status.success() {
        Ok(())
    } else if let Some(sig) = status.signal() {
        Err(format!("killed by signal {sig}"))
    } else {
        Err(format!("exit status {}", status.code().unwrap_or(-1)))
    }
}
