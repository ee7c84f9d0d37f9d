//! Protection against CVE-2019-5736: a process inside the container must never be
//! able to open the runtime binary through /proc/PID/exe and overwrite it.
//!
//! Two ways, chosen per container ([`guard_for`]):
//!
//! - The hako-dmz hop. The container's process is exec'd through hako-dmz, a
//!   2 KiB libc-free program run from a sealed memfd, so a `#!/proc/self/exe`
//!   executable reaches that sealed copy, never the host binary. Until that
//!   exec the init runs the host binary, so this is only enough when no other
//!   process can be in the container meanwhile: a new pid namespace, no hooks
//!   running inside the container, and (see `exec`) no exec into it with
//!   CAP_SYS_PTRACE before it starts. The init is also made non-dumpable,
//!   which keeps /proc/PID/exe from processes without CAP_SYS_PTRACE.
//! - Otherwise (and always for `exec`), before entering a container's
//!   namespaces the runtime re-executes itself from a copy it cannot be
//!   written through. The cheap way (as runc 1.2 does) is a read-only bind
//!   mount of the binary in a private mount namespace: the kernel keeps the
//!   read-only mount in /proc/PID/exe, so opening it for writing fails with
//!   EROFS, and the page cache is shared (no copy). Where that mount cannot be
//!   made, a sealed memfd copy of the binary is used instead.
//!
//! The hop costs one exec of a tiny static program (~0.1 ms); the re-exec costs
//! a second start of the runtime (~1 ms, a fifth of a container start).

use crate::error::{Context, Error, Result};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

const MARKER: &str = "_HAKO_RUNTIME_SEALED";

/// hako-dmz, built by build.rs from dmz/dmz.rs (empty where there is none).
static DMZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hako-dmz"));

/// How the init's final exec keeps the host binary out of the container.
#[derive(Debug, Clone, Copy)]
pub enum ExecGuard {
    /// This process already runs from a read-only or sealed copy.
    Sealed,
    /// Exec through hako-dmz, from this sealed memfd (open for the life of
    /// the process, close-on-exec).
    Dmz(std::os::fd::RawFd),
}

impl ExecGuard {
    /// The memfd to exec the process through, if any.
    pub fn dmz_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            ExecGuard::Dmz(fd) => Some(*fd),
            ExecGuard::Sealed => None,
        }
    }
}

/// Whether this process runs from a protected copy, decided from the binary
/// itself ([`self_exe_protected`]), never from the environment: a caller
/// could set the marker. The marker (removed once read, so the container does
/// not inherit it) only tells a re-executed runtime that it already tried.
pub fn running_sealed() -> bool {
    static SEALED: OnceLock<bool> = OnceLock::new();
    *SEALED.get_or_init(|| {
        let _ = reexecuted();
        if std::env::var_os(MARKER).is_some() {
            // SAFETY: called at start-up, while the runtime is single-threaded.
            unsafe { std::env::remove_var(MARKER) };
        }
        self_exe_protected()
    })
}

/// Whether this process already re-executed itself: the marker holds the pid
/// of the process that set it, which execve keeps (a marker inherited from a
/// caller names another process and is ignored).
fn reexecuted() -> bool {
    static SEEN: OnceLock<bool> = OnceLock::new();
    *SEEN.get_or_init(|| {
        std::env::var_os(MARKER).is_some_and(|v| v == std::process::id().to_string().as_str())
    })
}

/// Whether this process's binary cannot be written through: it sits on a
/// read-only mount (the bind mount [`readonly_bind_of_self`] makes) or is a
/// memfd sealed against writes (F_GET_SEALS reads the seals of the file
/// itself; a regular file has none and answers EINVAL).
fn self_exe_protected() -> bool {
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    let readonly = nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    // SAFETY: fcntl F_GET_SEALS on an fd we own, no pointer arguments.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    readonly || (seals >= 0 && seals & libc::F_SEAL_WRITE != 0)
}

/// Whether hako-dmz alone protects a container made from `spec`: nothing but
/// the init can be in the container before the init execs the process.
pub fn dmz_suffices(spec: &Spec) -> bool {
    if DMZ.is_empty() {
        return false;
    }
    let new_pid_ns = crate::spec::creates_namespace(spec, LinuxNamespaceType::Pid);
    // createContainer and startContainer hooks run inside the container while
    // the init is still the runtime.
    let hooks_inside = spec.hooks().as_ref().is_some_and(|h| {
        h.create_container().as_ref().is_some_and(|v| !v.is_empty())
            || h.start_container().as_ref().is_some_and(|v| !v.is_empty())
    });
    new_pid_ns && !hooks_inside
}

/// The guard for creating a container from `spec`. Re-executes the runtime
/// (and does not return) when hako-dmz is not enough or cannot be made, so
/// command handlers call it before they create anything; later calls in the
/// same process return the same answer without re-executing.
pub fn guard_for(spec: &Spec) -> Result<ExecGuard> {
    if running_sealed() {
        return Ok(ExecGuard::Sealed);
    }
    if dmz_suffices(spec) {
        if let Some(fd) = dmz_memfd() {
            return Ok(ExecGuard::Dmz(fd));
        }
    }
    // A container without a mount namespace of its own shares the runtime's:
    // the read-only bind mount would move the runtime into a private one.
    let own_mount_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));
    // A shared root propagation (a bidirectional bind) needs the host's
    // shared mounts still peers when the container's namespace is made:
    // the private namespace (a slave of the host's) would cut them off.
    let shared_root = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .is_some_and(|p| p == "shared" || p == "rshared");
    reexec_protected(own_mount_ns && !shared_root)?;
    Ok(ExecGuard::Sealed)
}

/// hako-dmz in a sealed, executable, close-on-exec memfd, made once per
/// process. None where memfds cannot be made or executed from.
fn dmz_memfd() -> Option<std::os::fd::RawFd> {
    static FD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    FD.get_or_init(|| {
        sealed_memfd(c"hako-dmz", |f| {
            use std::io::Write;
            f.write_all(DMZ)
        })
        .ok()
    })
    .as_ref()
    .map(|fd| fd.as_raw_fd())
}

/// Whether process `pid` runs from a copy that cannot be written through: a
/// read-only mount or a memfd (sealed by us).
pub fn exe_is_protected(pid: i32) -> bool {
    let exe = format!("/proc/{pid}/exe");
    let ro = nix::sys::statvfs::statvfs(exe.as_str())
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    ro || std::fs::read_link(&exe)
        .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:hako-runtime"))
}

/// Re-executes from a protected copy unless already running from one. Returns
/// only when already protected (or on error before exec).
pub fn ensure_sealed() -> Result<()> {
    reexec_protected(true)
}

/// [`ensure_sealed`]; `may_unshare_mounts` allows the cheap read-only bind
/// mount, which needs a private mount namespace (else the memfd copy).
fn reexec_protected(may_unshare_mounts: bool) -> Result<()> {
    // Both read the marker before running_sealed removes it.
    let tried = reexecuted();
    if running_sealed() {
        return Ok(());
    }
    if tried {
        // Re-executed, and the copy is still writable: never loop.
        return Err(Error::Other(
            "re-executing the runtime from a protected copy: the copy is still writable".into(),
        ));
    }
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()).unwrap_or_default())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    env.push(CString::new(format!("{MARKER}={}", std::process::id())).expect("no NUL"));
    if let Some(Ok(exe)) = may_unshare_mounts.then(readonly_bind_of_self) {
        let path = CString::new(exe.into_os_string().into_encoded_bytes()).unwrap_or_default();
        // execve only returns on failure: then fall back to the memfd copy.
        let _ = nix::unistd::execve(&path, &args, &env);
    }
    let memfd = clone_binary()?;
    match nix::unistd::fexecve(&memfd, &args, &env) {
        Err(e) => Err(Error::io(
            "re-executing the runtime from its sealed copy",
            e,
        )),
        Ok(never) => match never {},
    }
}

/// In a private mount namespace, bind-mounts the binary read-only onto itself
/// and returns its path. The namespace is private to this process (and the
/// containers it creates, whose pivot_root drops it), so the host is unchanged.
fn readonly_bind_of_self() -> Result<std::path::PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ctx(|| "reading /proc/self/exe")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .ctx(|| "creating a private mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "making / a slave mount")?;
    mount(
        Some(&exe),
        &exe,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("bind-mounting {}", exe.display()))?;
    mount(
        None::<&str>,
        &exe,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .ctx(|| format!("remounting {} read-only", exe.display()))?;
    Ok(exe)
}

fn clone_binary() -> Result<OwnedFd> {
    let mut src = std::fs::File::open("/proc/self/exe").ctx(|| "opening /proc/self/exe")?;
    sealed_memfd(c"hako-runtime", |dst| {
        std::io::copy(&mut src, dst).map(drop)
    })
}

/// A close-on-exec memfd named `name`, filled by `fill`, then sealed against
/// every change. Asks for exec permission explicitly (MFD_EXEC, Linux 6.3+)
/// where the kernel knows the flag.
fn sealed_memfd(
    name: &std::ffi::CStr,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<OwnedFd> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: the name is a valid C string; flags are constants.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above, without the flag older kernels reject.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(Error::io("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut dst = std::fs::File::from(memfd.try_clone().ctx(|| "dup of memfd")?);
    fill(&mut dst).ctx(|| format!("filling memfd {name:?}"))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own fd with integer arguments.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(Error::io(
            "sealing the runtime memfd",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(memfd)
}
