//! The container's terminal: a pty from the container's own devpts whose master
//! goes to the caller over the console socket (SCM_RIGHTS), as runc does.

use crate::error::{Context, Error, Result};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

/// Connects to the console socket when the process wants a terminal; done by the
/// runtime before fork so a bad path fails early. A terminal without a socket
/// is an error: there would be nobody to hand the pty to.
pub fn connect_for(
    socket: Option<&std::path::Path>,
    terminal: bool,
) -> Result<Option<std::os::unix::net::UnixStream>> {
    match (socket, terminal) {
        (Some(path), true) => std::os::unix::net::UnixStream::connect(path)
            .map(Some)
            .ctx(|| format!("connecting to console socket {}", path.display())),
        (None, true) => Err(Error::Spec(
            "process.terminal is true: --console-socket is required".into(),
        )),
        _ => Ok(None),
    }
}

/// Opens a pty, sends the master over `socket`, and makes the slave this
/// process's controlling terminal and stdio.
pub fn setup(socket: RawFd, size: Option<(u32, u32)>) -> Result<()> {
    let master = posix_openpt(
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
    )
    .ctx(|| "opening /dev/ptmx")?;
    grantpt(&master).ctx(|| "grantpt")?;
    unlockpt(&master).ctx(|| "unlockpt")?;
    let name = ptsname_r(&master).ctx(|| "ptsname")?;
    let slave = nix::fcntl::open(
        name.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening {name}"))?;
    if let Some((h, w)) = size {
        let ws = libc::winsize {
            ws_row: h as u16,
            ws_col: w as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "sending the pty master over the console socket")?;
    drop(master);
    nix::unistd::setsid().ok();
    // SAFETY: TIOCSCTTY takes an integer argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::io(
            "making the pty the controlling terminal",
            std::io::Error::last_os_error(),
        ));
    }
    let raw = slave.into_raw_fd();
    for target in 0..3 {
        // SAFETY: dup2 onto stdio of fds we own.
        if unsafe { libc::dup2(raw, target) } < 0 {
            return Err(Error::io(
                "dup of the pty onto stdio",
                std::io::Error::last_os_error(),
            ));
        }
    }
    if raw > 2 {
        // SAFETY: raw is our own fd, no longer needed after dup2.
        unsafe { libc::close(raw) };
    }
    Ok(())
}
