//! Reading a file of an image's or container's root filesystem from the
//! host side. The root is untrusted: its /etc/passwd may be a symlink to a
//! host file, a device (/dev/zero never ends) or a FIFO (blocks forever).
//! So the path is resolved inside the root with openat2 RESOLVE_IN_ROOT
//! semantics (pathrs: symlinks and ".." cannot leave it, magic links are
//! refused), the inode is checked to be a regular file *before* it is
//! opened for reading (opening a FIFO would block), and at most `max`
//! bytes are read.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use pathrs::flags::OpenFlags;
use pathrs::Root;

use crate::error::{Error, Result};

/// The cap for the small text files read from a root (passwd, group): far
/// above any real one (a 10 000-user passwd is under 1 MiB).
pub const MAX_ETC_FILE: u64 = 4 << 20;

/// The content of `path` (absolute in the root) inside `root`, or None when
/// it does not exist there (also when a directory on the way is missing).
/// Anything but a regular file of at most `max` bytes is an error naming
/// `path`.
pub fn read_file(root: &Path, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let what = || format!("reading {path} in the root filesystem");
    let r = Root::open(root).map_err(|e| {
        Error::io(
            format!("opening root filesystem {}", root.display()),
            to_io(e),
        )
    })?;
    let handle = match r.resolve(path) {
        Ok(h) => h,
        Err(e) => {
            let e = to_io(e);
            return match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(None),
                _ => Err(Error::io(what(), e)),
            };
        }
    };
    // The O_PATH handle is inspected, not opened: opening a FIFO blocks.
    let st = nix::sys::stat::fstat(handle.as_fd()).map_err(|e| Error::io(what(), e.into()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::Invalid(format!(
            "{path} in the root filesystem is not a regular file"
        )));
    }
    let too_big = || {
        Error::Invalid(format!(
            "{path} in the root filesystem is larger than {max} bytes"
        ))
    };
    if st.st_size as u64 > max {
        return Err(too_big());
    }
    let file = handle
        .reopen(OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC)
        .map_err(|e| Error::io(what(), to_io(e)))?;
    let mut out = Vec::with_capacity(st.st_size as usize);
    // The file may grow after fstat (a running container writes it): the
    // cap holds for the read too.
    file.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::io(what(), e))?;
    if out.len() as u64 > max {
        return Err(too_big());
    }
    Ok(Some(out))
}

/// What looking up a command in a root found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// An executable regular file.
    Found,
    /// Nothing of that name (docker's exit code 127).
    NotFound,
    /// A file that cannot be run: a directory or without execute bits (126).
    NotExecutable,
}

/// Look `cmd` up in `root` as execve (with a PATH search, as runc's
/// LookPath) would: a name with a "/" as a path (relative to `cwd`), any
/// other in `path` (a PATH value), skipping what is not executable.
pub fn find_command(root: &Path, cmd: &str, path: &str, cwd: &str) -> Result<Command> {
    // Opened by the caller's lookup: `root` may be a process's /proc/PID/root,
    // a magic link pathrs would refuse to follow.
    let dir = std::fs::File::open(root)
        .map_err(|e| Error::io(format!("opening root filesystem {}", root.display()), e))?;
    let r = Root::from_fd(dir);
    // Regular with an execute bit, or why not.
    let check = |p: &str| -> Command {
        let Ok(handle) = r.resolve(p) else {
            return Command::NotFound;
        };
        match nix::sys::stat::fstat(handle.as_fd()) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_mode & 0o111 != 0 => {
                Command::Found
            }
            Ok(_) => Command::NotExecutable,
            Err(_) => Command::NotFound,
        }
    };
    if cmd.contains('/') {
        let full = if cmd.starts_with('/') {
            cmd.to_string()
        } else {
            format!("{}/{cmd}", cwd.trim_end_matches('/'))
        };
        return Ok(check(&full));
    }
    let found = path
        .split(':')
        .map(|d| if d.is_empty() { cwd } else { d })
        .any(|d| check(&format!("{}/{cmd}", d.trim_end_matches('/'))) == Command::Found);
    Ok(if found {
        Command::Found
    } else {
        Command::NotFound
    })
}

fn to_io(e: pathrs::error::Error) -> std::io::Error {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(Some(errno)) => std::io::Error::from_raw_os_error(errno),
        _ => std::io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_inside_and_reads_regular_files_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = t.path().join("secret");
        std::fs::write(&outside, "host").unwrap();
        std::fs::write(root.join("etc/ok"), "inside").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink("/etc/ok", root.join("etc/inner")).unwrap();
        std::os::unix::fs::symlink("/dev/null", root.join("etc/dev")).unwrap();
        nix::unistd::mkfifo(&root.join("etc/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::write(root.join("etc/big"), vec![b'x'; 100]).unwrap();

        let read = |p: &str| read_file(&root, p, 64);
        assert_eq!(read("/etc/ok").unwrap().unwrap(), b"inside");
        assert_eq!(read("/etc/inner").unwrap().unwrap(), b"inside");
        // Links out of the root resolve inside it, where nothing is.
        assert!(read("/etc/abs").unwrap().is_none());
        assert!(read("/etc/rel").unwrap().is_none());
        assert!(read("/missing/x").unwrap().is_none());
        // The host's /dev/null is not reached; a device node inside is refused.
        assert!(read("/etc/dev").unwrap().is_none());
        let e = read("/etc/fifo").unwrap_err().to_string();
        assert_eq!(e, "/etc/fifo in the root filesystem is not a regular file");
        let e = read("/etc/big").unwrap_err().to_string();
        assert_eq!(e, "/etc/big in the root filesystem is larger than 64 bytes");
        assert!(read("/etc").is_err());
    }
}
