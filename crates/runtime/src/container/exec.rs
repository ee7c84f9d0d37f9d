//! `exec`: run another process inside a running container.

use super::init::prepare_process;
use crate::capabilities::CapSets;
use crate::channel::{self, Msg};
use crate::error::{Context, Error, Result};
use crate::namespaces::{self, Plan};
use crate::state::{self, Status};
use crate::util;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Process;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: u32,
}

/// Starts the process; returns its pid (with `detach`) or, in the foreground,
/// waits for it and returns its exit code.
pub fn exec(o: &ExecOptions) -> Result<ExecOutcome> {
    let c = super::load_in(
        &o.root,
        &o.id,
        &[Status::Running, Status::Created],
        "exec in",
    )?;
    let p = &o.process;
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Spec("exec: no command given".into()));
    }
    if c.status(&o.root) == Status::Created && !crate::selfexe::exe_is_protected(c.pid) {
        // The init still runs the host's runtime binary (hako-dmz mode, see
        // selfexe): a process holding CAP_SYS_PTRACE could reach it.
        let ptrace = p
            .capabilities()
            .as_ref()
            .and_then(|c| c.bounding().as_ref())
            .is_some_and(|b| b.contains(&oci_spec::runtime::Capability::SysPtrace));
        if ptrace {
            return Err(Error::State(format!(
                "cannot exec with CAP_SYS_PTRACE in container {:?} before it is started \
                 (its init is still the runtime): start it first",
                o.id
            )));
        }
    }
    let caps = match p.capabilities() {
        Some(cs) => CapSets::from_spec(cs)?,
        None => CapSets::default(),
    };
    let linux = c.spec.linux().clone().unwrap_or_default();
    let seccomp = match linux.seccomp() {
        Some(s) => Some(
            crate::seccomp::compile_cached(s, &o.root.join(crate::seccomp::CACHE_DIR))
                .map_err(|e| Error::Spec(e.to_string()))?,
        ),
        None => None,
    };
    let plan = Plan::of_process(c.pid, &namespaces::ALL)?;
    let terminal = p.terminal().unwrap_or(false);
    let console = crate::console::connect_for(o.console_socket.as_deref(), terminal)?;
    if !o.detach {
        super::become_subreaper()?;
        super::block_signals()?;
    }
    let (parent_ch, child_ch) = channel::pair()?;
    // As for create, the first process joins the container's cgroups itself.
    // SAFETY: single-threaded runtime; the child _exits or execs.
    let (stage1, in_v2) = match unsafe { super::fork_joined(&c.cgroup) }? {
        super::Forked::Child(joined) => {
            drop(parent_ch);
            let r: Result<()> = (|| {
                joined?;
                plan.join_all()?;
                // Joining a pid namespace only applies to children: fork again.
                // SAFETY: as above.
                match unsafe { fork() }.ctx(|| "fork")? {
                    ForkResult::Child => {
                        let r = (|| -> Result<std::convert::Infallible> {
                            child_ch.expect(|m| matches!(m, Msg::Go), "the go signal")?;
                            nix::unistd::setsid().ok();
                            let prepared = prepare_process(
                                p,
                                &caps,
                                seccomp.as_ref(),
                                console.as_ref().map(|c| c.as_raw_fd()),
                                o.preserve_fds,
                                &child_ch,
                            )?;
                            Err(prepared.exec())
                        })();
                        let Err(e) = r;
                        let _ = child_ch.send(&Msg::Error(e.to_string()));
                        // SAFETY: leaving the forked child.
                        unsafe { libc::_exit(127) }
                    }
                    ForkResult::Parent { child } => child_ch.send(&Msg::Pid(child.as_raw())),
                }
            })();
            if let Err(e) = r {
                let _ = child_ch.send(&Msg::Error(e.to_string()));
            }
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) }
        }
        super::Forked::Parent { child, placed_v2 } => (child, placed_v2),
    };
    drop(child_ch);
    let pid = match parent_ch.expect(|m| matches!(m, Msg::Pid(_)), "the process pid") {
        Ok(Msg::Pid(p)) => p,
        Ok(_) => unreachable!(),
        Err(e) => {
            let _ = waitpid(stage1, None);
            return Err(e);
        }
    };
    let _ = waitpid(stage1, None);
    let fail = |e: Error| {
        // SAFETY: killing the half-started exec process we own.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = waitpid(Pid::from_raw(pid), None);
        e
    };
    if !in_v2 {
        c.cgroup
            .add_pid_to(pid, false, true)
            .map_err(|e| fail(Error::Other(format!("adding exec process to cgroup: {e}"))))?;
    }
    parent_ch.send(&Msg::Go).map_err(fail)?;
    // EOF means execve succeeded (the channel is close-on-exec).
    loop {
        match parent_ch.recv() {
            Ok(None) => break,
            Ok(Some(Msg::SeccompFd)) => {
                let mut st = c.clone();
                st.pid = pid;
                let doc = state::hook_state(&st, Status::Running);
                super::pass_seccomp_fd(&c.spec, parent_ch.take_fd(), &doc).map_err(fail)?;
                parent_ch.send(&Msg::SeccompDone).map_err(fail)?;
            }
            Ok(Some(Msg::Error(e))) => return Err(fail(Error::Container(e))),
            Ok(Some(m)) => return Err(fail(Error::Other(format!("unexpected message {m:?}")))),
            Err(e) => return Err(fail(e)),
        }
    }
    if let Some(pf) = &o.pid_file {
        util::write_atomic(pf, pid.to_string().as_bytes(), 0o644)?;
    }
    if o.detach {
        return Ok(ExecOutcome::Detached(pid));
    }
    Ok(ExecOutcome::Exited(super::wait_forwarding(pid)?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    Detached(i32),
    Exited(i32),
}
