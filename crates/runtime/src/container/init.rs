//! Code that runs in the forked children: stage one (namespaces) and the
//! container init. Nothing here returns to the runtime's main flow: the callers
//! _exit or execve.

use crate::capabilities::CapSets;
use crate::cgroups::Cgroup;
use crate::channel::{Channel, Msg};
use crate::error::{Context, Error, Result};
use crate::namespaces::{self, Plan};
use crate::{hooks, process, rootfs};
use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use std::os::fd::{AsFd, RawFd};
use std::path::Path;

pub(crate) struct InitArgs<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub caps: &'a CapSets,
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    pub cgroup: &'a Cgroup,
    pub console_fd: Option<RawFd>,
    pub fifo_fd: RawFd,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub id: &'a str,
    /// Exec the process through hako-dmz from this memfd (see selfexe).
    pub dmz_fd: Option<RawFd>,
}

/// Stage one: enter the namespaces, then fork the init so it is pid 1 of a new
/// pid namespace (unshare(CLONE_NEWPID) only applies to children).
pub(crate) fn stage_one(a: &InitArgs, ch: &Channel) -> Result<()> {
    ch.expect(|m| matches!(m, Msg::Go), "the go signal")?;
    a.plan.join_all()?;
    if a.plan.new_user {
        namespaces::unshare_flags(nix::sched::CloneFlags::CLONE_NEWUSER)?;
        ch.send(&Msg::MapsRequest)?;
        ch.expect(|m| matches!(m, Msg::MapsDone), "the id maps")?;
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "becoming gid 0 in the user namespace")?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "becoming uid 0 in the user namespace")?;
    }
    // A new cgroup namespace is made by the init once it is in its cgroup.
    namespaces::unshare_flags(a.plan.new_flags - nix::sched::CloneFlags::CLONE_NEWCGROUP)?;
    if a.plan.new_time {
        write_time_offsets(a.spec)?;
    }
    // SAFETY: single-threaded; the child only runs init code and then execs or _exits.
    match unsafe { fork() }.ctx(|| "forking the container init")? {
        ForkResult::Child => {
            let code = match init(a, ch) {
                Ok(never) => match never {},
                Err(e) => {
                    // After `Ready` the runtime is gone: the container's stderr is
                    // the only place left to report to.
                    if ch.send(&Msg::Error(e.to_string())).is_err() {
                        eprintln!("hako-runtime: container init: {e}");
                    }
                    1
                }
            };
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => ch.send(&Msg::Pid(child.as_raw())),
    }
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if text.is_empty() {
        return Ok(());
    }
    std::fs::write("/proc/self/timens_offsets", &text)
        .ctx(|| format!("writing time offsets {:?}", text.trim()))
}

/// The container init. Returns only on failure.
fn init(a: &InitArgs, ch: &Channel) -> Result<std::convert::Infallible> {
    let spec = a.spec;
    // None when the config has no process: the init then only waits, and
    // `start` refuses.
    let proc_ = spec.process().as_ref();
    let linux = spec.linux().clone().unwrap_or_default();
    let ns_list = linux.namespaces().clone().unwrap_or_default();
    let has_ns = |t| ns_list.iter().any(|n| n.typ() == t);
    let in_userns = has_ns(LinuxNamespaceType::User);

    nix::unistd::setsid().ok();
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if a.dmz_fd.is_some() && nix::unistd::Uid::effective().is_root() {
        // Until it execs, the init runs the host's runtime binary: keep its
        // /proc/PID/exe (and ptrace) from anything without CAP_SYS_PTRACE.
        // The exec makes the container's process dumpable again. (Rootless,
        // the runtime itself needs the init's /proc files.)
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
    let new_cgroupns = a
        .plan
        .new_flags
        .contains(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    let mut cgroupns_done = !new_cgroupns;
    let mut enter_cgroupns = || -> Result<()> {
        if cgroupns_done {
            return Ok(());
        }
        cgroupns_done = true;
        ch.send(&Msg::CgroupWait)?;
        ch.expect(|m| matches!(m, Msg::CgroupJoined), "the cgroup")?;
        namespaces::unshare_flags(nix::sched::CloneFlags::CLONE_NEWCGROUP)
    };
    // Without a mount namespace of its own (the host's is shared) the root is
    // left as it is: the mounts go under the rootfs, and it is chrooted into.
    let mount_ns = has_ns(LinuxNamespaceType::Mount);
    if mount_ns {
        rootfs::prepare_root(spec, a.rootfs)?;
    }
    rootfs::mount_all(spec, a.rootfs, a.cgroup, new_cgroupns, &mut enter_cgroupns)?;
    rootfs::create_devices(spec, a.rootfs, in_userns)?;
    enter_cgroupns()?;
    ch.send(&Msg::HooksRequest)?;
    let state = match ch.expect(|m| matches!(m, Msg::HooksDone(_)), "the hooks")? {
        Msg::HooksDone(s) => s,
        _ => unreachable!(),
    };
    if let Some(h) = spec.hooks() {
        hooks::run(
            "createContainer",
            h.create_container().as_deref().unwrap_or_default(),
            state.as_bytes(),
        )?;
    }
    // exec.fifo is reopened through /proc/self/fd; in a chroot that need not
    // have /proc, through this directory of the host's, opened before.
    let fd_dir = if mount_ns {
        rootfs::pivot_into(a.rootfs, a.no_pivot)?;
        None
    } else {
        let dir = nix::fcntl::open(
            "/proc/self/fd",
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| "opening /proc/self/fd")?;
        nix::unistd::chroot(a.rootfs).ctx(|| format!("chroot into {}", a.rootfs.display()))?;
        nix::unistd::chdir("/").ctx(|| "chdir /")?;
        Some(dir)
    };
    if has_ns(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h).ctx(|| format!("setting hostname {h:?}"))?;
        }
        if let Some(d) = spec.domainname() {
            set_domainname(d)?;
        }
    }
    for (k, v) in linux.sysctl().clone().unwrap_or_default() {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, &v).ctx(|| format!("setting sysctl {k}={v}"))?;
    }
    rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
    rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())?;
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        rootfs::remount_root_readonly()?;
    }
    // What prepare_root could not apply before pivot_root.
    use nix::mount::MsFlags;
    if let Some(f) = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(rootfs::propagation_flag)
    {
        if f.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
            rootfs::set_root_propagation(f)?;
        }
    }
    if !a.no_new_keyring {
        join_session_keyring(a.id)?;
    }
    if let Some(p) = linux.personality() {
        let flags = p.flags().clone().unwrap_or_default();
        let flags: Vec<String> = flags
            .iter()
            .map(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            })
            .collect();
        let domain = serde_json::to_value(p.domain())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        process::set_personality(&domain, &flags)?;
    }
    let exe = match proc_ {
        Some(p) => {
            let mut exe = prepare_process(p, a.caps, a.seccomp, a.console_fd, a.preserve_fds, ch)?;
            exe.dmz_fd = a.dmz_fd;
            Some(exe)
        }
        None => None,
    };
    ch.send(&Msg::Ready)?;

    // From here on the runtime may be gone: report failures on the container's
    // stderr, where the caller of `start` (or its log) will see them.
    let e = after_ready(a, spec, &state, exe, fd_dir);
    eprintln!("hako-runtime: container {}: {e}", a.id);
    // SAFETY: leaving the forked init without running destructors.
    unsafe { libc::_exit(1) }
}

/// Waits for `start`, runs startContainer hooks, and execs. Returns only on error.
fn after_ready(
    a: &InitArgs,
    spec: &Spec,
    state: &str,
    exe: Option<Prepared>,
    fd_dir: Option<std::os::fd::OwnedFd>,
) -> Error {
    let r = (|| -> Result<()> {
        // Block until `start` opens the fifo for reading.
        let flags = nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC;
        let fifo = match &fd_dir {
            Some(dir) => nix::fcntl::openat(
                dir,
                a.fifo_fd.to_string().as_str(),
                flags,
                nix::sys::stat::Mode::empty(),
            ),
            None => nix::fcntl::open(
                format!("/proc/self/fd/{}", a.fifo_fd).as_str(),
                flags,
                nix::sys::stat::Mode::empty(),
            ),
        }
        .ctx(|| "opening exec.fifo")?;
        drop(fd_dir);
        nix::unistd::write(&fifo, b"0").ctx(|| "writing exec.fifo")?;
        drop(fifo);
        if let Some(h) = spec.hooks() {
            // startContainer hooks run inside the container, after start, before
            // the user process; their paths resolve in the container's root.
            hooks::run(
                "startContainer",
                h.start_container().as_deref().unwrap_or_default(),
                state.as_bytes(),
            )?;
        }
        Ok(())
    })();
    match (r, exe) {
        (Ok(()), Some(exe)) => exe.exec(),
        (Ok(()), None) => Error::Spec("config.json has no process to run".into()),
        (Err(e), _) => e,
    }
}

/// What is left to do right before execve.
pub(crate) struct Prepared {
    path: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<String>,
    dmz_fd: Option<RawFd>,
}

impl Prepared {
    /// Unblocks signals and execs.
    pub(crate) fn exec(self) -> Error {
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        );
        match self.dmz_fd {
            Some(fd) => process::exec_via_dmz(fd, &self.path, &self.args, &self.env),
            None => process::exec(&self.path, &self.args, &self.env),
        }
    }
}

/// Loads the filter; a notify fd goes to the runtime, which passes it on to the
/// listener (whose path is only reachable from the runtime's namespace).
fn load_seccomp(f: &crate::seccomp::Filter, ch: &Channel) -> Result<()> {
    let fd = f.load().map_err(|e| Error::Container(e.to_string()))?;
    if let Some(fd) = fd {
        ch.send_with_fd(&Msg::SeccompFd, fd.as_fd())?;
        ch.expect(
            |m| matches!(m, Msg::SeccompDone),
            "the seccomp listener hand-off",
        )?;
    }
    Ok(())
}

/// The steps shared by the container init and `exec`: terminal, rlimits,
/// scheduling, fds, user and capabilities, cwd, seccomp (early, when
/// no_new_privs is off and loading needs CAP_SYS_ADMIN), and the executable.
pub(crate) fn prepare_process(
    p: &Process,
    caps: &CapSets,
    seccomp: Option<&crate::seccomp::Filter>,
    console_fd: Option<RawFd>,
    preserve_fds: u32,
    ch: &Channel,
) -> Result<Prepared> {
    if let Some(fd) = console_fd {
        let size = p
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u32, b.width() as u32));
        crate::console::setup(fd, size)?;
        // SAFETY: our own fd, not needed once the master was sent.
        unsafe { libc::close(fd) };
    }
    process::set_rlimits(p.rlimits().as_deref().unwrap_or_default())?;
    if let Some(adj) = p.oom_score_adj() {
        process::set_oom_score_adj(adj)?;
    }
    if let Some(s) = p.scheduler() {
        process::set_scheduler(s)?;
    }
    if let Some(io) = p.io_priority() {
        let class = serde_json::to_value(io.class())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        process::set_io_priority(&class, io.priority())?;
    }
    let env = process::environment(p);
    let args = p.args().clone().unwrap_or_default();
    let cwd = p.cwd();
    let path = process::find_executable(&args[0], &env, cwd)?;
    process::cloexec_from(3 + preserve_fds)?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    // Enter the cwd (and check it is inside the root, which takes getcwd) before
    // any filter is loaded: the profile may deny getcwd or chdir. As runc does,
    // try as the runtime's user first and, when that is not allowed, again once
    // the process's user is set.
    let cwd_entered = match process::enter_cwd(cwd) {
        Ok(()) => true,
        Err(e) if e.is_permission_denied() => false,
        Err(e) => return Err(e),
    };
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while
    // we still have it. With it, load as late as possible (after the user switch).
    if !nnp {
        if let Some(f) = seccomp {
            load_seccomp(f, ch)?;
        }
    }
    caps.drop_bounding()?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    process::set_user(p)?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    caps.apply()?;
    if !cwd_entered {
        process::enter_cwd(cwd)?;
    }
    if nnp {
        process::set_no_new_privs()?;
        if let Some(f) = seccomp {
            load_seccomp(f, ch)?;
        }
    }
    Ok(Prepared {
        path,
        args,
        env,
        dmz_fd: None,
    })
}

fn set_domainname(d: &str) -> Result<()> {
    // SAFETY: pointer and length describe `d`, valid for the call.
    if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
        return Err(Error::io(
            format!("setting domainname {d:?}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A fresh session keyring per container, so containers never share keys.
fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = std::ffi::CString::new(format!("_ses.{id}")).expect("id has no NUL");
    // SAFETY: keyctl with a valid C string argument.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Keyrings may be unavailable or forbidden (seccomp in a nested setup).
        if matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EACCES) | Some(libc::EPERM)
        ) {
            return Ok(());
        }
        return Err(Error::io("joining a new session keyring", e));
    }
    Ok(())
}
