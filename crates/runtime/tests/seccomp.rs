//! Integration tests of `hako_runtime::seccomp`: filters are compiled in the test
//! process and loaded in a forked child, which then makes raw syscalls and
//! reports the errno it got through its exit code (or dies by the filter's
//! signal). The child does nothing but load the filter, make the syscall under
//! test and _exit, so forking from the multi-threaded test harness is safe.
//! Every child is killed and reaped by a guard even if an assertion fails.

use std::ffi::CString;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use hako_runtime::seccomp::{compile, send_listener_fd, Filter};
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags, ScmpSyscall};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::LinuxSeccomp;

/// Kills and reaps the child unless the test already reaped it.
struct ChildGuard {
    pid: Pid,
    reaped: bool,
}

impl ChildGuard {
    fn wait(&mut self) -> WaitStatus {
        let status = waitpid(self.pid, None).expect("waitpid");
        self.reaped = true;
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Forks; the child loads `filter`, runs `body` and exits with its result.
/// A failed load exits 200 so it is told apart from an errno.
fn spawn_filtered(filter: &Filter, body: impl FnOnce() -> i32) -> ChildGuard {
    // SAFETY: the child only makes syscalls (the filter load is a single
    // seccomp(2) call with a program prepared before the fork) and _exits; it
    // never returns into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = match filter.load() {
                Ok(_listener) => body(),
                Err(_) => 200,
            };
            // SAFETY: _exit ends the child without running the parent's atexit
            // handlers or destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => ChildGuard {
            pid: child,
            reaped: false,
        },
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// A raw syscall's outcome as an exit code: 0 on success, else the errno.
fn outcome(ret: libc::c_long) -> i32 {
    if ret < 0 {
        errno()
    } else {
        0
    }
}

fn profile(json: &str) -> Filter {
    let spec: LinuxSeccomp = serde_json::from_str(json).expect("profile json");
    compile(&spec).expect("compiling profile")
}

fn getcwd(size: usize) -> i32 {
    let mut buf = [0u8; 8192];
    // SAFETY: buf is valid for `size` (<= 8192) bytes.
    outcome(unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), size.min(buf.len())) })
}

#[test]
fn errno_action_with_an_argument_condition() {
    // getcwd(buf, 4096) is refused with ENOMSG; any other size passes.
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":42,
             "args":[{"index":1,"value":4096,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let mut c = spawn_filtered(&filter, || getcwd(4096));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::ENOMSG));
    let mut c = spawn_filtered(&filter, || getcwd(4000));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, 0));
}

#[test]
fn errno_defaults_to_eperm_and_mkdir_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().join("x").to_str().unwrap()).unwrap();
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    );
    let p = path.as_ptr();
    // SAFETY: p is a valid NUL-terminated path for the child's lifetime.
    let mut c = spawn_filtered(&filter, || {
        outcome(unsafe { libc::syscall(libc::SYS_mkdir, p, 0o700) })
    });
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::EPERM));
    assert!(!dir.path().join("x").exists());
}

#[test]
fn masked_eq_compares_the_masked_argument() {
    // Deny getcwd when (size & 0xf00) == 0x100.
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":13,
             "args":[{"index":1,"value":3840,"valueTwo":256,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
    );
    let mut c = spawn_filtered(&filter, || getcwd(0x1ff));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::EACCES));
    let mut c = spawn_filtered(&filter, || getcwd(0x2ff));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, 0));
}

#[test]
fn default_errno_ret_applies_to_the_default_action() {
    // Everything but exiting fails with ENOSYS.
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "syscalls":[{"names":["exit","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    // SAFETY: getppid has no arguments or memory effects.
    let mut c = spawn_filtered(&filter, || {
        outcome(unsafe { libc::syscall(libc::SYS_getppid) })
    });
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::ENOSYS));
}

#[test]
fn kill_actions_kill_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
    ] {
        let filter = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["getcwd"],"action":"{action}"}}]}}"#
        ));
        let mut c = spawn_filtered(&filter, || getcwd(100));
        match c.wait() {
            WaitStatus::Signaled(_, Signal::SIGSYS, _) => {}
            other => panic!("{action}: child ended with {other:?}, not SIGSYS"),
        }
    }
}

#[test]
fn rules_repeating_an_argument_index_are_alternatives() {
    // Two conditions on the same argument: either value is refused.
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
             "args":[{"index":1,"value":100,"op":"SCMP_CMP_EQ"},{"index":1,"value":200,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    for (size, expected) in [(100, libc::EPERM), (200, libc::EPERM), (300, 0)] {
        let mut c = spawn_filtered(&filter, || getcwd(size));
        assert_eq!(c.wait(), WaitStatus::Exited(c.pid, expected), "size {size}");
    }
}

#[test]
fn unknown_syscall_is_an_error_naming_the_field() {
    let spec: LinuxSeccomp = serde_json::from_str(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_LOG"},
            {"names":["write"],"action":"SCMP_ACT_LOG"},{"names":["open"],"action":"SCMP_ACT_LOG"},
            {"names":["foo"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    assert_eq!(
        compile(&spec).unwrap_err().to_string(),
        "linux.seccomp.syscalls[3].names[0]: unknown syscall \"foo\""
    );
}

#[test]
fn notify_listener_is_sent_to_listener_path_and_answers_the_syscall() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("listener.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let spec: LinuxSeccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]
    }))
    .unwrap();
    let filter = compile(&spec).unwrap();
    assert!(filter.has_notify());
    let state = br#"{"ociVersion":"1.2.0","fds":["seccompFd"],"pid":1}"#;
    let sock_path = sock.clone();
    let f2 = filter.clone();
    // SAFETY: as in spawn_filtered; the child loads the filter, sends the fd,
    // makes one syscall and _exits.
    let mut child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = match f2.load() {
                Ok(Some(fd)) => match send_listener_fd(&sock_path, fd.as_fd(), state) {
                    Ok(()) => {
                        drop(fd);
                        getcwd(100)
                    }
                    Err(_) => 201,
                },
                _ => 200,
            };
            // SAFETY: see spawn_filtered.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => ChildGuard {
            pid: child,
            reaped: false,
        },
    };
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut received: Option<OwnedFd> = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS installed this fd in our table; we own it now.
            received = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let n = msg.bytes;
    assert_eq!(&buf[..n], state);
    let fd = received.expect("no fd in SCM_RIGHTS");

    let req = ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
    assert_eq!(req.pid, child.pid.as_raw() as u32);
    assert_eq!(req.data.syscall, ScmpSyscall::from_name("getcwd").unwrap());
    assert_eq!(req.data.args[1], 100);
    ScmpNotifResp::new_error(req.id, -libc::EXDEV, ScmpNotifRespFlags::empty())
        .respond(fd.as_raw_fd())
        .unwrap();
    assert_eq!(child.wait(), WaitStatus::Exited(child.pid, libc::EXDEV));
}

#[test]
fn trap_trace_and_log_actions() {
    let one = |action: &str| {
        profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["getcwd"],"action":"{action}"}}]}}"#
        ))
    };
    // TRAP delivers SIGSYS, whose default action ends the process.
    let mut c = spawn_filtered(&one("SCMP_ACT_TRAP"), || getcwd(100));
    assert!(matches!(
        c.wait(),
        WaitStatus::Signaled(_, Signal::SIGSYS, _)
    ));
    // TRACE with no tracer attached fails the syscall with ENOSYS.
    let mut c = spawn_filtered(&one("SCMP_ACT_TRACE"), || getcwd(100));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::ENOSYS));
    // LOG lets the syscall through.
    let mut c = spawn_filtered(&one("SCMP_ACT_LOG"), || getcwd(100));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, 0));
}

#[test]
fn filter_flags_are_passed_to_the_kernel() {
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":5}]}"#,
    );
    let mut c = spawn_filtered(&filter, || getcwd(100));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::EIO));
    // WAIT_KILLABLE_RECV only exists with a listener: without one the kernel
    // refuses the filter, and load() reports it (exit 200 in the child).
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    );
    let mut c = spawn_filtered(&filter, || getcwd(100));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, 200));
}

#[test]
fn conditions_on_different_arguments_must_all_hold() {
    // Refused only when the buffer is non-NULL and the size is 4096.
    let filter = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":42,
             "args":[{"index":0,"value":0,"op":"SCMP_CMP_NE"},{"index":1,"value":4096,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let mut c = spawn_filtered(&filter, || getcwd(4096));
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::ENOMSG));
    // A NULL buffer does not match, so the kernel itself answers (EFAULT).
    let mut c = spawn_filtered(&filter, || {
        // SAFETY: getcwd with a NULL buffer only makes the kernel return EFAULT.
        outcome(unsafe { libc::syscall(libc::SYS_getcwd, std::ptr::null_mut::<u8>(), 4096) })
    });
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::EFAULT));
}

/// podman's default profile (containers-common, installed with podman) turned
/// into the OCI form podman hands a runtime, for an x86_64 container without
/// extra capabilities: entries conditioned on other architectures or on
/// capabilities are left out, entries excluded for those capabilities kept.
fn podman_default_profile() -> LinuxSeccomp {
    let path = "/usr/share/containers/seccomp.json";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let applies = |inc: &serde_json::Value| {
        let arches_ok = inc["arches"]
            .as_array()
            .is_none_or(|a| a.iter().any(|x| x == "amd64"));
        let caps_ok = inc["caps"].as_array().is_none_or(|c| c.is_empty());
        arches_ok && caps_ok
    };
    let syscalls: Vec<serde_json::Value> = d["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| applies(&s["includes"]))
        .map(|s| {
            let mut r = serde_json::json!({"names": s["names"], "action": s["action"]});
            if !s["errnoRet"].is_null() {
                r["errnoRet"] = s["errnoRet"].clone();
            }
            if s["args"].is_array() {
                r["args"] = s["args"].clone();
            }
            r
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "defaultAction": d["defaultAction"],
        "defaultErrnoRet": d["defaultErrnoRet"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    }))
    .unwrap()
}

#[test]
fn podmans_default_profile_compiles_and_runs_a_program() {
    let filter = compile(&podman_default_profile()).unwrap();
    let true_bin = CString::new("/bin/true").unwrap();
    let argv = [true_bin.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // An ordinary program runs to completion under the profile.
    let mut c = spawn_filtered(&filter, || {
        // SAFETY: argv and envp are NULL-terminated arrays of valid C strings
        // that outlive the call; execve only returns on failure.
        unsafe { libc::execve(true_bin.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        errno()
    });
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, 0));
    // chroot needs CAP_SYS_CHROOT in podman's profile: refused with EPERM.
    let root = CString::new("/").unwrap();
    let p = root.as_ptr();
    // SAFETY: p is a valid NUL-terminated path for the child's lifetime.
    let mut c = spawn_filtered(&filter, || {
        outcome(unsafe { libc::syscall(libc::SYS_chroot, p) })
    });
    assert_eq!(c.wait(), WaitStatus::Exited(c.pid, libc::EPERM));
}

#[test]
fn features_probe_the_kernel_without_installing_a_filter() {
    let f = hako_runtime::seccomp::features();
    assert!(f.enabled);
    assert!(f.archs.contains(&"SCMP_ARCH_X86_64"));
    assert_eq!(f.known_flags.len(), 4);
    // This kernel (6.x) has all four flags.
    assert_eq!(f.supported_flags, f.known_flags);
    // An undefined flag bit is reported as unsupported.
    assert!(!hako_runtime::seccomp::kernel_supports_flags(1 << 30));
    // Probing installed nothing: this process can still make any syscall
    // (a filter would show in /proc/self/status as Seccomp: 2).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(status.lines().any(|l| l == "Seccomp:\t0"), "{status}");
    let v = serde_json::to_value(&f).unwrap();
    assert!(v["supportedFlags"].is_array() && v["knownFlags"].is_array());
}
