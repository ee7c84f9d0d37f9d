//! Protection against CVE-2019-5736: a process inside the container must never be
//! able to open the runtime binary through /proc/PID/exe and overwrite it. Before
//! entering a container's namespaces, the runtime re-executes itself from a
//! sealed, read-only memfd copy; /proc/PID/exe then names that copy.

use crate::error::{Context, Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const MARKER: &str = "_HAKO_RUNTIME_SEALED";

/// Re-executes from a sealed memfd unless already running from one. Returns only
/// when already sealed (or on error before exec).
pub fn ensure_sealed() -> Result<()> {
    if std::env::var_os(MARKER).is_some() {
        // SAFETY: single-threaded at this point of start-up.
        unsafe { std::env::remove_var(MARKER) };
        return Ok(());
    }
    let memfd = clone_binary()?;
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
    match nix::unistd::fexecve(&memfd, &args, &env) {
        Err(e) => Err(Error::io(
            "re-executing the runtime from its sealed copy",
            e,
        )),
        Ok(never) => match never {},
    }
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
