//! The default seccomp profile of hako containers, and docker-format
//! profiles given with `--security-opt seccomp=FILE`.
//!
//! The default is an allowlist: anything not named fails with EPERM. It
//! allows what ordinary programs use and keeps out interfaces that are not
//! namespaced or have a record of kernel exploits (keyrings, bpf, perf,
//! userfaultfd, kernel modules, clock setting, reboot, swap, quotas,
//! kexec, new namespaces). A few of those come back with the capability
//! that guards them anyway (`--cap-add SYS_ADMIN` allows mount and
//! unshare, `SYS_PTRACE` ptrace, ...), as an administrator who adds the
//! capability means to use it. Privileged containers get no filter.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

use crate::error::{Context, Error, Result};

/// Allowed for every container.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // files and descriptors
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "close", "close_range", "creat", "lseek",
    "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "fsync", "fdatasync", "sync",
    "syncfs", "sync_file_range", "truncate", "truncate64", "ftruncate", "ftruncate64",
    "fallocate", "fadvise64", "fadvise64_64", "readahead", "sendfile", "sendfile64", "splice",
    "tee", "vmsplice", "copy_file_range", "pipe", "pipe2", "ioctl", "stat", "stat64", "fstat",
    "fstat64", "lstat", "lstat64", "newfstatat", "fstatat64", "statx", "statfs", "statfs64",
    "fstatfs", "fstatfs64", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
    "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "unlink",
    "unlinkat", "mknod", "mknodat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown",
    "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32", "umask", "utime",
    "utimes", "utimensat", "futimesat", "chroot", "getxattr", "lgetxattr", "fgetxattr",
    "setxattr", "lsetxattr", "fsetxattr", "listxattr", "llistxattr", "flistxattr",
    "removexattr", "lremovexattr", "fremovexattr", "inotify_init", "inotify_init1",
    "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "memfd_create",
    "name_to_handle_at",
    // polling and events
    "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "timerfd_settime",
    "timerfd_settime64", "timerfd_gettime", "timerfd_gettime64", "io_setup", "io_destroy",
    "io_submit", "io_cancel", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    // memory
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "pkey_mprotect", "pkey_alloc",
    "pkey_free", "madvise", "mincore", "mlock", "mlock2", "munlock", "mlockall", "munlockall",
    "msync", "membarrier", "remap_file_pages", "get_mempolicy", "set_mempolicy", "mbind",
    "process_madvise",
    // processes and threads
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
    "kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp",
    "getsid", "setsid", "set_tid_address", "set_robust_list", "get_robust_list", "futex",
    "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue", "rseq",
    "arch_prctl", "prctl", "capget", "capset", "sched_yield", "sched_getaffinity",
    "sched_setaffinity", "sched_getparam", "sched_setparam", "sched_getscheduler",
    "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_getattr", "sched_setattr",
    "getpriority", "setpriority", "ioprio_get", "ioprio_set", "getrlimit", "setrlimit",
    "ugetrlimit", "prlimit64", "getrusage", "times", "pidfd_open", "pidfd_send_signal",
    "pidfd_getfd", "process_mrelease", "restart_syscall", "uname", "sysinfo", "getrandom",
    // credentials
    "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
    "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid",
    "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32", "getresuid",
    "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32", "setgroups",
    "setgroups32", "setfsuid", "setfsuid32", "setfsgid", "setfsgid32",
    // signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "sigaction", "sigprocmask", "sigreturn", "sigsuspend", "sigpending", "sigaltstack",
    "signal", "pause", "alarm",
    // time
    "nanosleep", "clock_nanosleep", "clock_nanosleep_time64", "clock_gettime",
    "clock_gettime64", "clock_getres", "clock_getres_time64", "gettimeofday", "time",
    "getitimer", "setitimer", "timer_create", "timer_delete", "timer_settime",
    "timer_settime64", "timer_gettime", "timer_gettime64", "timer_getoverrun",
    // networking
    "socket", "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname",
    "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    "recvmmsg_time64", "shutdown", "setsockopt", "getsockopt", "socketcall",
    // System V and POSIX IPC (namespaced)
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semtimedop_time64",
    "semctl", "msgget", "msgsnd", "msgrcv", "msgctl", "ipc", "mq_open", "mq_unlink",
    "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_notify", "mq_getsetattr",
    // names of the UTS namespace
    "sethostname", "setdomainname", "landlock_create_ruleset", "landlock_add_rule",
    "landlock_restrict_self", "seccomp", "getcpu", "cachestat",
];

/// Allowed only with a capability the container has.
#[rustfmt::skip]
const WITH_CAP: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "mount",
            "umount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "clone3",
            "bpf",
            "fanotify_init",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "perf_event_open",
            "swapon",
            "swapoff",
            "vhangup",
            "keyctl",
            "add_key",
            "request_key",
        ],
    ),
    (
        Capability::SysPtrace,
        &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"],
    ),
    (
        Capability::SysModule,
        &["init_module", "finit_module", "delete_module"],
    ),
    (
        Capability::SysTime,
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    (
        Capability::SysBoot,
        &["reboot", "kexec_load", "kexec_file_load"],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysNice, &["move_pages", "migrate_pages"]),
];

/// Namespace flags clone(2) may not carry without CAP_SYS_ADMIN.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// personality(2) values programs use (linux, with ADDR_NO_RANDOMIZE, the
/// 32-bit UNAME26 forms, and the query 0xffffffff).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn rule(names: &[&str], action: LinuxSeccompAction, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action);
    if !args.is_empty() {
        b = b.args(args);
    }
    b.build().expect("syscall rule builds")
}

fn arg(index: usize, value: u64, value_two: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .value_two(value_two)
        .op(op)
        .build()
        .expect("seccomp arg builds")
}

fn host_arches() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => Vec::new(),
    }
}

/// The default profile for a container with capabilities `caps`.
pub fn default_profile(caps: &HashSet<Capability>) -> LinuxSeccomp {
    let allow = LinuxSeccompAction::ScmpActAllow;
    let mut names: Vec<&str> = ALLOWED.to_vec();
    for (cap, extra) in WITH_CAP {
        if caps.contains(cap) {
            names.extend_from_slice(extra);
        }
    }
    let mut syscalls = vec![rule(&names, allow, Vec::new())];
    for p in PERSONALITIES {
        syscalls.push(rule(
            &["personality"],
            allow,
            vec![arg(0, *p, 0, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    if caps.contains(&Capability::SysAdmin) {
        syscalls.push(rule(&["clone"], allow, Vec::new()));
    } else {
        syscalls.push(rule(
            &["clone"],
            allow,
            vec![arg(
                0,
                CLONE_NAMESPACES,
                0,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        // clone3 passes its flags in memory, out of a filter's reach: ENOSYS
        // makes libcs fall back to clone, which is checked.
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone3".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(libc::ENOSYS as u32)
                .build()
                .expect("syscall rule builds"),
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(host_arches())
        .syscalls(syscalls)
        .build()
        .expect("seccomp profile builds")
}

/// A docker-format profile (`defaultAction`, `architectures` or `archMap`,
/// `syscalls` with `includes`/`excludes` by capability and architecture).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<DockerSyscall>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

fn cap_of(name: &str) -> Option<Capability> {
    crate::security::parse_capability(name).ok()
}

/// Load a docker-format profile file for a container with `caps`.
pub fn load_profile(path: &Path, caps: &HashSet<Capability>) -> Result<LinuxSeccomp> {
    let text = std::fs::read(path).ctx(|| format!("reading seccomp profile {}", path.display()))?;
    let p: DockerProfile = serde_json::from_slice(&text)
        .map_err(|e| Error::Invalid(format!("seccomp profile {}: {e}", path.display())))?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut architectures = p.architectures.clone();
    for m in &p.arch_map {
        if host_arches().contains(&m.architecture) {
            architectures.push(m.architecture);
            architectures.extend(m.sub_architectures.iter().copied());
        }
    }
    let has = |c: &String| cap_of(c).is_some_and(|c| caps.contains(&c));
    // A rule applies when the container has every capability and one of the
    // architectures it includes, and none it excludes.
    let included = |f: &Filter| {
        f.caps.iter().all(has) && (f.arches.is_empty() || f.arches.iter().any(|a| a == arch))
    };
    let excluded = |f: &Filter| f.caps.iter().any(has) || f.arches.iter().any(|a| a == arch);
    let mut syscalls = Vec::new();
    for s in p.syscalls {
        if !included(&s.includes) || excluded(&s.excludes) {
            continue;
        }
        let mut names = s.names.clone();
        names.extend(s.name.clone());
        if names.is_empty() {
            continue;
        }
        let mut b = LinuxSyscallBuilder::default().names(names).action(s.action);
        if let Some(e) = s.errno_ret {
            b = b.errno_ret(e);
        }
        if !s.args.is_empty() {
            b = b.args(s.args);
        }
        syscalls.push(
            b.build()
                .map_err(|e| Error::Invalid(format!("seccomp profile {}: {e}", path.display())))?,
        );
    }
    let mut b = LinuxSeccompBuilder::default()
        .default_action(p.default_action)
        .architectures(architectures)
        .syscalls(syscalls);
    if let Some(e) = p.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    if !p.flags.is_empty() {
        let flags = p
            .flags
            .iter()
            .map(|f| {
                serde_json::from_value(serde_json::Value::String(f.clone())).map_err(|_| {
                    Error::Invalid(format!(
                        "seccomp profile {}: unknown flag {f:?}",
                        path.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        b = b.flags(flags);
    }
    if let Some(l) = p.listener_path {
        b = b.listener_path(l);
    }
    b.build()
        .map_err(|e| Error::Invalid(format!("seccomp profile {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn capabilities_widen_the_default() {
        let plain = default_profile(&HashSet::new());
        let n = names(&plain);
        assert!(n.contains(&"read".to_string()) && !n.contains(&"mount".to_string()));
        assert!(!n.contains(&"keyctl".to_string()) && !n.contains(&"bpf".to_string()));
        let admin = default_profile(&[Capability::SysAdmin].into_iter().collect());
        let n = names(&admin);
        assert!(n.contains(&"mount".to_string()) && n.contains(&"clone".to_string()));
        assert_eq!(plain.default_errno_ret(), Some(1));
    }

    #[test]
    fn docker_format_with_includes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(
            &f,
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
                "syscalls": [
                  {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                  {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_PTRACE"]}}
                ]}"#,
        )
        .unwrap();
        let p = load_profile(&f, &HashSet::new()).unwrap();
        let rules = p.syscalls().as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].errno_ret(), Some(13));
        std::fs::write(&f, "{").unwrap();
        let e = load_profile(&f, &HashSet::new()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("seccomp profile {}", f.display())),
            "{e}"
        );
    }
}
