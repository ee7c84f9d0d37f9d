//! Persistent network namespaces: a namespace made by a short-lived thread
//! and kept alive by a bind mount of its nsfs file, as `ip netns add` does.
//! CNI plugins configure it before the container exists, and the runtime
//! joins it by path (`linux.namespaces[].path`).

use std::fs;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Context, Error, Result};

/// Make a new network namespace bound at `path` (which must not exist yet).
pub fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .ctx(|| format!("creating network namespace file {}", path.display()))?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its
    // own leaves the rest of the process in the host's namespace.
    let res = std::thread::spawn(move || -> nix::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .map_err(|_| Error::Invalid("the network namespace thread panicked".into()))?;
    if let Err(e) = res {
        let _ = fs::remove_file(path);
        return Err(e).ctx(|| format!("binding a new network namespace at {}", path.display()));
    }
    Ok(())
}

/// Whether a namespace is bound at `path`.
pub fn exists(path: &Path) -> bool {
    // An nsfs bind mount lives on another device than its directory.
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), path.parent().map(fs::metadata)) {
        (Ok(f), Some(Ok(d))) => f.dev() != d.dev(),
        _ => false,
    }
}

/// Unbind and remove the namespace file; the namespace goes when its last
/// process does. A missing file is not an error.
pub fn remove(path: &Path) -> Result<()> {
    if exists(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .ctx(|| format!("unmounting network namespace {}", path.display()))?;
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("removing network namespace file {}", path.display())),
    }
}

/// Bring `lo` up inside the namespace at `path` (what the CNI loopback
/// plugin does, without running a program for it).
pub fn loopback_up(path: &Path) -> Result<()> {
    let ns =
        fs::File::open(path).ctx(|| format!("opening network namespace {}", path.display()))?;
    // setns(CLONE_NEWNET) also moves only the calling thread.
    let res = std::thread::spawn(move || -> std::io::Result<()> {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)?;
        // SAFETY: a plain datagram socket, closed by OwnedFd below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned here only.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        use std::os::fd::AsRawFd;
        // SAFETY: ifreq is plain old data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
        unsafe {
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| Error::Invalid("the loopback thread panicked".into()))?;
    res.ctx(|| format!("bringing up lo in {}", path.display()))
}
