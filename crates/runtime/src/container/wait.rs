//! Waiting for a container process in the foreground (`run`, `exec` without
//! --detach), forwarding the signals the runtime receives to it.

use crate::error::{Context, Result};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Makes orphaned descendants (the container init once stage one exits) our
/// children, so we can wait for them.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "becoming a child subreaper");
    }
    Ok(())
}

/// The signals forwarded to the container: all but those that cannot be caught
/// and those that concern the runtime's own terminal handling.
pub(crate) fn forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        set.remove(s);
    }
    set
}

/// Blocks the forwarded signals (and SIGCHLD) so they queue for
/// `wait_forwarding`; call before forking so none is lost. The forked children
/// unblock everything before exec.
pub fn block_signals() -> Result<()> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded()), None).ctx(|| "blocking signals")
}

/// Waits for `pid`, forwarding signals; returns its exit code (128+N if killed
/// by signal N, as shells report).
pub fn wait_forwarding(pid: i32) -> Result<i32> {
    let set = forwarded();
    loop {
        // Reap first: SIGCHLD may have arrived before the signals were blocked.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                    return Ok(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(crate::error::Error::io(
                        "waiting for the container process",
                        e,
                    ))
                }
            }
        }
        let sig = set.wait().ctx(|| "waiting for signals")?;
        if sig != Signal::SIGCHLD {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}
