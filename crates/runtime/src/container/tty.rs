//! `run` in the foreground with a terminal and no console socket: like runc, the
//! runtime receives the pty master itself and relays it to its own stdio,
//! forwarding signals and window-size changes.

use crate::error::{Context, Error, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

/// A listening console socket in a temp path, removed on drop.
pub struct ConsoleListener {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleListener {
    pub fn new(id: &str) -> Result<ConsoleListener> {
        let path =
            std::env::temp_dir().join(format!("hako-runtime-{}-{id}.console", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .ctx(|| format!("binding console socket {}", path.display()))?;
        Ok(ConsoleListener { path, listener })
    }

    /// Accepts the container's connection and receives the pty master.
    pub fn receive(&self) -> Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        let (conn, _) = self
            .listener
            .accept()
            .ctx(|| "accepting the console connection")?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ctx(|| "receiving the pty master")?;
        for c in msg.cmsgs().ctx(|| "reading control messages")? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the fd was just received and belongs to us alone.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(Error::Container(
            "no pty master received on the console socket".into(),
        ))
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Restores the terminal mode on drop.
struct RawMode(Option<Termios>);

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: fd 0 is our stdin for the whole life of the process.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            let _ = tcsetattr(stdin, SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(master: BorrowedFd) {
    // SAFETY: winsize is plain integers, for which all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills `ws`; TIOCSWINSZ reads it; both outlive the calls.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Relays stdio to the pty until `pid` exits; returns its exit code. The
/// forwarded signals must already be blocked (see `block_signals`).
pub fn relay(pid: i32, master: OwnedFd) -> Result<i32> {
    // SAFETY: fd 0 is our stdin for the whole life of the process.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let _raw = match tcgetattr(stdin) {
        Ok(orig) => {
            let mut raw = orig.clone();
            cfmakeraw(&mut raw);
            tcsetattr(stdin, SetArg::TCSANOW, &raw).ctx(|| "setting the terminal to raw mode")?;
            copy_winsize(master.as_fd());
            RawMode(Some(orig))
        }
        Err(_) => RawMode(None),
    };
    let mask = super::wait::forwarded();
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).ctx(|| "creating a signalfd")?;
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("polling the terminal", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if master_open && ready[1] {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                Ok(n) => write_all(1, &buf[..n]),
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(Error::io("reading the pty", e)),
            }
        }
        let stdin_idx = if master_open { 2 } else { 1 };
        if stdin_open && ready.get(stdin_idx).copied().unwrap_or(false) {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => write_all(master.as_raw_fd(), &buf[..n]),
            }
        }
        if ready[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = Signal::try_from(info.ssi_signo as i32).ok();
                match sig {
                    Some(Signal::SIGCHLD) => {}
                    Some(Signal::SIGWINCH) => copy_winsize(master.as_fd()),
                    Some(s) => {
                        let _ = kill(Pid::from_raw(pid), s);
                    }
                    None => {}
                }
            }
            loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => {
                        drain(&master, &mut buf);
                        return Ok(code);
                    }
                    Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => {
                        drain(&master, &mut buf);
                        return Ok(128 + s as i32);
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        }
    }
}

/// Output still buffered in the pty after the process exited.
fn drain(master: &OwnedFd, buf: &mut [u8]) {
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        match nix::unistd::read(master, buf) {
            Ok(n) if n > 0 => write_all(1, &buf[..n]),
            _ => return,
        }
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a valid slice to an fd we hold.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}
