//! `tmpcopyup` (a runc extension podman uses, e.g. for /run and /tmp with
//! `--read-only`): a tmpfs mounted over an image directory starts with a copy of
//! what it covers.
//!
//! The copy walks directory fds with *at() calls and O_NOFOLLOW, never paths: a
//! symlink in the image is copied as a symlink and never followed to the host.

use crate::error::{Context, Result};
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, mknodat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Copies the contents of directory `src` into directory `dst` (recursively,
/// keeping modes and owners; timestamps are not kept).
pub(crate) fn copy_tree(src: BorrowedFd, dst: BorrowedFd) -> Result<()> {
    let dup = nix::unistd::dup(src.as_fd()).ctx(|| "duplicating a directory fd")?;
    let mut dir = nix::dir::Dir::from_fd(dup).ctx(|| "reading a directory to copy up")?;
    for entry in dir.iter() {
        let entry = entry.ctx(|| "listing a directory to copy up")?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        copy_entry(src, dst, name).map_err(|e| {
            crate::error::Error::Container(format!("copying up {}: {e}", name.to_string_lossy()))
        })?;
    }
    Ok(())
}

fn copy_entry(src: BorrowedFd, dst: BorrowedFd, name: &OsStr) -> Result<()> {
    let st = fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW).ctx(|| "stat")?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let perm = Mode::from_bits_truncate(st.st_mode);
    match kind {
        SFlag::S_IFDIR => {
            mkdirat(dst, name, perm).ctx(|| "mkdir")?;
            let s = open_dir(src, name)?;
            let d = open_dir(dst, name)?;
            copy_tree(s.as_fd(), d.as_fd())?;
            set_owner_and_mode(&d, &st)
        }
        SFlag::S_IFREG => {
            let s = openat(
                src,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| "opening the source file")?;
            let d = openat(
                dst,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                perm,
            )
            .ctx(|| "creating the copy")?;
            let mut from = std::fs::File::from(s);
            let mut to = std::fs::File::from(d);
            std::io::copy(&mut from, &mut to).ctx(|| "copying the contents")?;
            set_owner_and_mode(&to, &st)
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(src, name).ctx(|| "readlink")?;
            symlinkat(target.as_os_str(), dst, name).ctx(|| "symlink")?;
            fchownat(
                dst,
                name,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ctx(|| "chown of the symlink")
        }
        _ => {
            // Fifos, sockets and device nodes: the same node, not their contents.
            mknodat(dst, name, kind, perm, st.st_rdev).ctx(|| "mknod")?;
            fchownat(
                dst,
                name,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ctx(|| "chown of the node")
        }
    }
}

fn open_dir(parent: BorrowedFd, name: &OsStr) -> Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening a directory")
}

/// Owner first: chown clears set-id bits, which the chmod then restores.
fn set_owner_and_mode(fd: &impl AsFd, st: &FileStat) -> Result<()> {
    fchown(
        fd.as_fd(),
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .ctx(|| "chown")?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(st.st_mode)).ctx(|| "chmod")
}
