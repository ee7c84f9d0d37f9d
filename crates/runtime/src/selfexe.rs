//! Protection against CVE-2019-5736: a process inside the container must never be
//! able to open the runtime binary through /proc/PID/exe and overwrite it.
//!
//! Before entering a container's namespaces the runtime re-executes itself from
//! a copy it cannot be written through. The cheap way (as runc 1.2 does) is a
//! read-only bind mount of the binary in a private mount namespace: the kernel
//! keeps the read-only mount in /proc/PID/exe, so opening it for writing fails
//! with EROFS, and the page cache is shared (no copy). Where that mount cannot
//! be made, a sealed memfd copy of the binary is used instead.

use crate::error::{Context, Error, Result};
use nix::mount::{mount, MsFlags};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const MARKER: &str = "_HAKO_RUNTIME_SEALED";

/// Re-executes from a protected copy unless already running from one. Returns
/// only when already protected (or on error before exec).
pub fn ensure_sealed() -> Result<()> {
    if std::env::var_os(MARKER).is_some() {
        // SAFETY: single-threaded at this point of start-up.
        unsafe { std::env::remove_var(MARKER) };
        return Ok(());
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
    env.push(CString::new(format!("{MARKER}=1")).expect("no NUL"));
    if let Ok(exe) = readonly_bind_of_self() {
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
    // SAFETY: the name is a valid C string; flags are constants.
    let fd = unsafe {
        libc::memfd_create(
            c"hako-runtime".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(Error::io("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut src = std::fs::File::open("/proc/self/exe").ctx(|| "opening /proc/self/exe")?;
    let mut dst = std::fs::File::from(memfd.try_clone().ctx(|| "dup of memfd")?);
    std::io::copy(&mut src, &mut dst).ctx(|| "copying the runtime binary into a memfd")?;
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
