//! The built-in pause: hako itself, re-executed inside each pod sandbox as
//! its infra process (`hako cri pause`). It holds the pod's namespaces
//! open, reaps the orphans the kernel hands it as the pod's PID 1, and
//! ends on SIGTERM or SIGINT. No pause image is needed.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Where the hako binary is bound inside a sandbox with the built-in pause.
pub const PAUSE_PATH: &str = "/.hako/hako";

/// Run as the pause process until asked to end; returns the exit code.
pub fn pause() -> i32 {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    // Blocked, then taken synchronously: no handler code, no races.
    if set.thread_block().is_err() {
        return 1;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => return 0,
            Err(_) => continue,
        }
    }
}

fn reap() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}
