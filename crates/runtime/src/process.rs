//! Per-process attributes of `process` in config.json, applied by the container
//! init (and by `exec`) in the final steps before execve.

use crate::error::{Context, Error, Result};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType, Process};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        let r = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: `r` is a valid rlimit for the duration of the call.
        if unsafe { libc::setrlimit(rlimit_resource(l.typ()), &r) } != 0 {
            return Err(Error::io(
                format!(
                    "setting {:?} to soft {} hard {}",
                    l.typ(),
                    l.soft(),
                    l.hard()
                ),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(v: i32) -> Result<()> {
    std::fs::write("/proc/self/oom_score_adj", v.to_string())
        .ctx(|| format!("setting oom_score_adj to {v}"))
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::io(
            "setting no_new_privs",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Switches to the process user: supplementary groups, then gid, then uid (after
/// setuid we could no longer change groups).
pub fn set_user(p: &Process) -> Result<()> {
    let u = p.user();
    let gids: Vec<Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // setgroups is denied in a user namespace whose setgroups file says "deny".
    if let Err(e) = nix::unistd::setgroups(&gids) {
        if !(gids.is_empty() && e == nix::errno::Errno::EPERM) {
            return Err(Error::io(
                format!("setting additional gids {:?}", u.additional_gids()),
                e,
            ));
        }
    }
    let gid = Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setting gid {}", u.gid()))?;
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setting uid {}", u.uid()))?;
    if let Some(mask) = u.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    } else {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    }
    Ok(())
}

/// The environment for execve: the spec's, plus HOME from the container's
/// /etc/passwd when the spec does not set it (as runc does).
pub fn environment(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(p.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env
}

/// HOME for `uid` from the container's /etc/passwd (read inside the
/// container). The image controls that file: only a regular file is read
/// (opened without blocking, so a FIFO cannot hang the init) and at most
/// `PASSWD_MAX` bytes of it (so /dev/zero or a huge file cannot grow us).
fn home_of(uid: u32) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const PASSWD_MAX: u64 = 4 << 20;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/etc/passwd")
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > PASSWD_MAX {
        return None;
    }
    let mut passwd = String::new();
    file.take(PASSWD_MAX).read_to_string(&mut passwd).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok()? == uid).then(|| f[5].to_string())
    })
}

/// Finds args[0] like execvp would, with PATH from the container's environment,
/// so a missing binary fails `create` with a clear message instead of the
/// container dying after `start`.
pub fn find_executable(arg0: &str, env: &[String], cwd: &Path) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.contains('/') {
        let p = if Path::new(arg0).is_absolute() {
            PathBuf::from(arg0)
        } else {
            cwd.join(arg0)
        };
        return if is_exec(&p) {
            Ok(p)
        } else if p.exists() {
            Err(Error::Container(format!(
                "exec {arg0:?}: permission denied"
            )))
        } else {
            Err(Error::Container(format!(
                "exec {arg0:?}: no such file or directory"
            )))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if is_exec(&cand) {
            return Ok(cand);
        }
    }
    Err(Error::Container(format!(
        "exec {arg0:?}: executable file not found in $PATH"
    )))
}

/// Marks every fd from `first` up close-on-exec, so nothing of the runtime's
/// (an fd to a host directory, CVE-2024-21626) reaches the container.
pub fn cloexec_from(first: u32) -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "marking fds close-on-exec",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Changes into the process cwd and checks it really is inside the container
/// root: a cwd reached through a leaked fd would show as "(unreachable)".
pub fn enter_cwd(cwd: &Path) -> Result<()> {
    nix::unistd::chdir(cwd).ctx(|| format!("chdir to cwd {}", cwd.display()))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::Container(format!(
            "cwd {} is outside the container root",
            cwd.display()
        ))),
    }
}

pub fn set_personality(domain: &str, flags: &[String]) -> Result<()> {
    let mut persona: libc::c_ulong = match domain {
        "LINUX" => 0x0000,
        "LINUX32" => 0x0008,
        other => {
            return Err(Error::Spec(format!(
                "config.json: linux.personality.domain: unknown domain {other:?}"
            )))
        }
    };
    for f in flags {
        persona |= match f.as_str() {
            "ADDR_NO_RANDOMIZE" => 0x0004_0000,
            "MMAP_PAGE_ZERO" => 0x0010_0000,
            "ADDR_COMPAT_LAYOUT" => 0x0020_0000,
            "READ_IMPLIES_EXEC" => 0x0040_0000,
            "ADDR_LIMIT_32BIT" => 0x0080_0000,
            "SHORT_INODE" => 0x0100_0000,
            "WHOLE_SECONDS" => 0x0200_0000,
            "STICKY_TIMEOUTS" => 0x0400_0000,
            "ADDR_LIMIT_3GB" => 0x0800_0000,
            other => {
                return Err(Error::Spec(format!(
                    "config.json: linux.personality.flags: unknown flag {other:?}"
                )))
            }
        };
    }
    // SAFETY: personality takes an integer and returns the previous persona.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(Error::io(
            "setting personality",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// ioprio_set(2) for the whole process.
pub fn set_io_priority(class: &str, priority: i64) -> Result<()> {
    let class_num: i64 = match class {
        "IOPRIO_CLASS_RT" => 1,
        "IOPRIO_CLASS_BE" => 2,
        "IOPRIO_CLASS_IDLE" => 3,
        other => {
            return Err(Error::Spec(format!(
                "config.json: process.ioPriority.class: unknown class {other:?}"
            )))
        }
    };
    let value = (class_num << 13) | priority;
    // SAFETY: integer-only syscall; IOPRIO_WHO_PROCESS (1) with pid 0 is ourselves.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) } != 0 {
        return Err(Error::io(
            format!("setting I/O priority {class} {priority}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// sched_setattr(2) from process.scheduler.
pub fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    use oci_spec::runtime::{LinuxSchedulerFlag, LinuxSchedulerPolicy};
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: s.nice().unwrap_or(0),
        sched_priority: s.priority().unwrap_or(0) as u32,
        sched_runtime: s.runtime().unwrap_or(0),
        sched_deadline: s.deadline().unwrap_or(0),
        sched_period: s.period().unwrap_or(0),
    };
    // SAFETY: `attr` is a properly sized sched_attr alive across the call.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
        return Err(Error::io(
            format!("setting scheduler policy {:?}", s.policy()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// execve, never returning on success.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> Error {
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let cargs: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let cenv: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    match nix::unistd::execve(&cpath, &cargs, &cenv) {
        Err(e) => Error::io(format!("exec {}", path.display()), e),
        Ok(never) => match never {},
    }
}

/// Execs hako-dmz from its memfd, which execs `path` with `args` (see
/// selfexe): its argv is the path followed by the process's argv.
pub fn exec_via_dmz(dmz_fd: RawFd, path: &Path, args: &[String], env: &[String]) -> Error {
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let mut cargs = Vec::with_capacity(args.len() + 1);
    cargs.push(CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default());
    cargs.extend(args.iter().map(|a| to_c(a)));
    let cenv: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    // Through /proc/self/fd with plain execve where /proc is mounted: a seccomp
    // profile that allows execve but not execveat (which fexecve uses) then
    // still works as it does without the hop.
    let via_proc = format!("/proc/self/fd/{dmz_fd}");
    let r = if Path::new(&via_proc).exists() {
        let cpath = CString::new(via_proc).expect("no NUL");
        nix::unistd::execve(&cpath, &cargs, &cenv)
    } else {
        // SAFETY: the memfd stays open for the life of the runtime process.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(dmz_fd) };
        nix::unistd::fexecve(fd, &cargs, &cenv)
    };
    match r {
        Err(e) => Error::io(format!("exec {} (through hako-dmz)", path.display()), e),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env, Path::new("/")).is_ok());
        let e = find_executable("no-such-binary-xyz", &env, Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("not found in $PATH"), "{e}");
        assert!(find_executable("/bin/sh", &[], Path::new("/")).is_ok());
    }
}
