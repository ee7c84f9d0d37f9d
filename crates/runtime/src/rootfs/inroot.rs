//! Paths inside the container's root filesystem, resolved with openat2
//! RESOLVE_IN_ROOT (symlinks and ".." cannot leave the root) straight from
//! the kernel: one syscall per lookup. pathrs does the same, but wraps each
//! failed lookup and each mkdir_all in procfs verification (a fresh private
//! procfs mount, fstatfs/statx/readlink checks) that costs tens of syscalls;
//! a container start makes about fifty such lookups, most of them for
//! mount points that do not exist yet. Kernels without openat2 (before 5.6)
//! fall back to pathrs for everything.
//!
//! Every operation on a final component works relative to a resolved
//! parent directory descriptor, with O_NOFOLLOW/AT_SYMLINK_NOFOLLOW, so the
//! name itself is never followed out of the root either.

use std::ffi::OsStr;
use std::fs::Permissions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mknodat, Mode, SFlag};
use pathrs::{Handle, InodeType};

/// The rootfs, opened once.
pub(crate) struct Root {
    inner: pathrs::Root,
    fast: bool,
}

fn to_io(e: pathrs::error::Error) -> io::Error {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(Some(errno)) => io::Error::from_raw_os_error(errno),
        _ => io::Error::other(e.to_string()),
    }
}

/// (parent, last component) of a relative path; the name is a normal component.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match path.components().next_back() {
        Some(Component::Normal(name)) => Ok((path.parent().unwrap_or(Path::new("")), name)),
        _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

impl Root {
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let inner = pathrs::Root::open(path).map_err(to_io)?;
        let probe = openat2(inner.as_fd(), ".", how(OFlag::O_DIRECTORY));
        let fast = !matches!(probe, Err(Errno::ENOSYS) | Err(Errno::EPERM));
        Ok(Root { inner, fast })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }

    /// The directory `rel` resolves to ("" is the root itself).
    fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let p = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(openat2(self.fd(), p, how(OFlag::O_DIRECTORY))?)
    }

    /// Resolve `rel`, following symlinks inside the root.
    pub(crate) fn resolve(&self, rel: impl AsRef<Path>) -> io::Result<Handle> {
        if !self.fast {
            return self.inner.resolve(rel).map_err(to_io);
        }
        let rel = rel.as_ref();
        let p = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(Handle::from_fd(openat2(self.fd(), p, how(OFlag::empty()))?))
    }

    /// Resolve `rel` without following its last component if it is a symlink.
    pub(crate) fn resolve_nofollow(&self, rel: impl AsRef<Path>) -> io::Result<Handle> {
        if !self.fast {
            return self.inner.resolve_nofollow(rel).map_err(to_io);
        }
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.dir(parent)?;
        let fd = nix::fcntl::openat(
            &dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Handle::from_fd(fd))
    }

    /// `mkdir -p` inside the root; returns the final directory.
    pub(crate) fn mkdir_all(
        &self,
        rel: impl AsRef<Path>,
        perm: &Permissions,
    ) -> io::Result<Handle> {
        if !self.fast {
            return self.inner.mkdir_all(rel, perm).map_err(to_io);
        }
        let mode = Mode::from_bits_truncate(perm.mode() & 0o7777);
        let mut cur = self.dir(Path::new(""))?;
        let mut prefix = std::path::PathBuf::new();
        for c in rel.as_ref().components() {
            let Component::Normal(name) = c else {
                continue;
            };
            prefix.push(name);
            match openat2(self.fd(), &prefix, how(OFlag::O_DIRECTORY)) {
                Ok(fd) => cur = fd,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(&cur, name, mode) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    // Just made (or raced into being): a real directory, never a link.
                    cur = nix::fcntl::openat(
                        &cur,
                        name,
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Handle::from_fd(cur))
    }

    /// Create (or open, if it exists) a regular file; the parent must exist.
    pub(crate) fn create_file(
        &self,
        rel: impl AsRef<Path>,
        flags: pathrs::flags::OpenFlags,
        perm: &Permissions,
    ) -> io::Result<()> {
        if !self.fast {
            return self
                .inner
                .create_file(rel, flags, perm)
                .map(drop)
                .map_err(to_io);
        }
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.dir(parent)?;
        let fd = nix::fcntl::openat(
            &dir,
            name,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(perm.mode() & 0o7777),
        )?;
        drop(fd);
        Ok(())
    }

    /// Make a symlink, device node or fifo.
    pub(crate) fn create(&self, rel: impl AsRef<Path>, kind: &InodeType) -> io::Result<()> {
        if !self.fast {
            return self.inner.create(rel, kind).map_err(to_io);
        }
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.dir(parent)?;
        let node = |typ: SFlag, perm: &Permissions, dev: u64| {
            mknodat(
                &dir,
                name,
                typ,
                Mode::from_bits_truncate(perm.mode() & 0o7777),
                dev,
            )
        };
        match kind {
            InodeType::Symlink(target) => nix::unistd::symlinkat(target.as_path(), &dir, name)?,
            InodeType::CharacterDevice(perm, dev) => node(SFlag::S_IFCHR, perm, *dev)?,
            InodeType::BlockDevice(perm, dev) => node(SFlag::S_IFBLK, perm, *dev)?,
            InodeType::Fifo(perm) => node(SFlag::S_IFIFO, perm, 0)?,
            other => return self.inner.create(rel, other).map_err(to_io),
        }
        Ok(())
    }

    /// Remove a non-directory.
    pub(crate) fn remove_file(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        if !self.fast {
            return self.inner.remove_file(rel).map_err(to_io);
        }
        let (parent, name) = split(rel.as_ref())?;
        let dir = self.dir(parent)?;
        nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }
}

fn how(extra: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | extra)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_and_dotdot_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let root_dir = d.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        symlink("/", root_dir.join("up")).unwrap();
        symlink("../../../../etc", root_dir.join("esc")).unwrap();
        let r = Root::open(&root_dir).unwrap();
        // mkdir_all through an absolute symlink lands inside the root.
        r.mkdir_all("up/made/here", &Permissions::from_mode(0o755))
            .unwrap();
        assert!(root_dir.join("made/here").is_dir());
        r.mkdir_all("esc/x", &Permissions::from_mode(0o755))
            .unwrap();
        assert!(root_dir.join("etc/x").is_dir());
        r.create_file(
            "esc/f",
            pathrs::flags::OpenFlags::O_CREAT,
            &Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(root_dir.join("etc/f").is_file());
        // The last component is not followed by the nofollow forms.
        assert!(r.resolve_nofollow("up").is_ok());
        r.create("etc/l", &InodeType::Symlink("/nowhere".into()))
            .unwrap();
        r.remove_file("etc/l").unwrap();
        assert!(r.resolve("no/such").is_err());
        assert!(r.resolve_nofollow("..").is_err());
    }
}
