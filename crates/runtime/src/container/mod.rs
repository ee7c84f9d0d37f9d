//! The container lifecycle, one file per verb of the runc command line.

mod create;
mod delete;
mod events;
mod exec;
mod init;
mod kill;
mod pause;
mod start;
mod tty;
mod update;
mod wait;

pub use create::{create, CreateOptions};
pub use delete::delete;
pub use events::{oom_kills, stats, Stats};
pub use exec::{exec, ExecOptions, ExecOutcome};
pub use kill::{kill, parse_signal};
pub use pause::{pause, resume};
pub use start::start;
pub use tty::{relay, ConsoleListener};
pub use update::update;
pub use wait::{become_subreaper, block_signals, wait_forwarding};

use crate::error::{Error, Result};
use crate::state::{Container, Status};
use std::path::Path;

/// Loads a container and checks its status is one of `allowed`.
pub(crate) fn load_in(root: &Path, id: &str, allowed: &[Status], verb: &str) -> Result<Container> {
    let c = Container::load(root, id)?;
    let st = c.status(root);
    if !allowed.contains(&st) {
        return Err(Error::State(format!(
            "cannot {verb} container {id:?}: it is {st}"
        )));
    }
    Ok(c)
}

/// A fork from [`fork_joined`].
pub(crate) enum Forked {
    /// In the child, which has joined what it could of its cgroup itself (the
    /// error says why not).
    Child(Result<()>),
    /// In the parent. Without `placed_v2` the child still has to be moved into
    /// the cgroup2 cgroup (`add_pid_to(pid, false, true)`): the kernel had no
    /// clone3(CLONE_INTO_CGROUP).
    Parent {
        child: nix::unistd::Pid,
        placed_v2: bool,
    },
}

/// fork() whose child starts in `cgroup`: cloned straight into its cgroup2
/// cgroup and moving itself into the v1 ones, before it enters any of the
/// container's namespaces (whose mount namespace hides the host's cgroup
/// paths). Neither waits for the kernel's global threadgroup lock, which
/// moving the child by pid from here would (an RCU grace period, 10-15 ms).
///
/// # Safety
/// As fork(): the caller is single-threaded and the child leaves only through
/// _exit or execve.
pub(crate) unsafe fn fork_joined(cgroup: &crate::cgroups::Cgroup) -> Result<Forked> {
    use crate::error::Context;
    use std::os::fd::AsFd;
    let v2_dir = match cgroup.open_v2_dir() {
        Some(r) => Some(r.ctx(|| "opening the container's cgroup2 directory")?),
        None => None,
    };
    // SAFETY: the caller's contract.
    let (forked, placed_v2) =
        unsafe { crate::util::fork_into_cgroup(v2_dir.as_ref().map(|f| f.as_fd())) }
            .ctx(|| "fork")?;
    Ok(match forked {
        nix::unistd::ForkResult::Child => Forked::Child(
            cgroup
                .join_self_v1()
                .map_err(|e| Error::Other(format!("joining the container's cgroup: {e}"))),
        ),
        nix::unistd::ForkResult::Parent { child } => Forked::Parent { child, placed_v2 },
    })
}

/// Waits (briefly polling) until a process is gone; it may not be our child.
pub(crate) fn wait_gone(pid: i32, start: Option<u64>, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // Reap it if it happens to be our child.
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        if !crate::util::process_alive(pid, start) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Hands a seccomp notify fd received from a container process to the
/// listener at linux.seccomp.listenerPath, with the "container process state"
/// document (runtime-spec config-linux.md).
pub(crate) fn pass_seccomp_fd(
    spec: &oci_spec::runtime::Spec,
    fd: Option<std::os::fd::OwnedFd>,
    state: &[u8],
) -> Result<()> {
    use std::os::fd::AsFd;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let (Some(fd), Some(path)) = (fd, seccomp.and_then(|s| s.listener_path().as_ref())) else {
        return Err(Error::Container(
            "seccomp notify fd without a listenerPath".into(),
        ));
    };
    let state: serde_json::Value = serde_json::from_slice(state).unwrap_or_default();
    let doc = serde_json::json!({
        "ociVersion": state["ociVersion"],
        "fds": ["seccompFd"],
        "pid": state["pid"],
        "metadata": seccomp.and_then(|s| s.listener_metadata().clone()).unwrap_or_default(),
        "state": state,
    });
    crate::seccomp::send_listener_fd(path, fd.as_fd(), doc.to_string().as_bytes())
        .map_err(|e| Error::Container(e.to_string()))
}
