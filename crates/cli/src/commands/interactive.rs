//! The caller's side of interactive containers: the terminal in raw mode,
//! its size (and SIGWINCH), stdin forwarded, output written as it comes, and
//! the detach keys. Used by `run -i/-t`, `attach`, `start -a` (through the
//! container's monitor) and `exec -i/-t` (a pty master of our own).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use anyhow::{Context, Result};
use hako_engine::{Attachment, DetachMatcher, Event};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The container (or process) exited with this code.
    Exited(i32),
    /// The monitor closed the connection without a code.
    Closed,
    /// The user typed the detach keys; it goes on running.
    Detached,
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Whether fd is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// The size (rows, cols) of the terminal on fd.
pub fn term_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain integers; all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills `ws`, which outlives the call.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The caller's terminal size: stdin's, else stdout's.
pub fn caller_size() -> Option<(u16, u16)> {
    term_size(0).or_else(|| term_size(1))
}

/// The terminal on stdin in raw mode until dropped, so keys (ctrl-c too)
/// go to the container's terminal as typed; or, for `-t` without `-i`,
/// the terminal on stdout without its own newline translation.
pub struct RawMode(Option<(BorrowedFd<'static>, Termios)>);

impl RawMode {
    pub fn enable(wanted: bool) -> Result<RawMode> {
        if !wanted || !is_tty(0) {
            return Ok(RawMode(None));
        }
        let orig = tcgetattr(stdin_fd()).context("reading the terminal mode")?;
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin_fd(), SetArg::TCSANOW, &raw).context("setting the terminal to raw mode")?;
        Ok(RawMode(Some((stdin_fd(), orig))))
    }

    /// The container's terminal already ends its lines with "\r\n": the
    /// caller's terminal on stdout must not add another "\r" (lines as
    /// podman prints them, "a\r\n" rather than "a\r\r\n"). Input is left
    /// as it is (nothing reads it without `-i`).
    pub fn output(wanted: bool) -> Result<RawMode> {
        if !wanted || !is_tty(1) {
            return Ok(RawMode(None));
        }
        // SAFETY: fd 1 stays open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(1) };
        let orig = tcgetattr(fd).context("reading the terminal mode")?;
        let mut plain = orig.clone();
        plain
            .output_flags
            .remove(nix::sys::termios::OutputFlags::ONLCR);
        tcsetattr(fd, SetArg::TCSANOW, &plain)
            .context("turning off the terminal's newline translation")?;
        Ok(RawMode(Some((fd, orig))))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some((fd, t)) = &self.0 {
            let _ = tcsetattr(fd, SetArg::TCSADRAIN, t);
        }
    }
}

/// SIGWINCH as a descriptor (blocked first: before any thread is spawned,
/// so no thread takes it instead).
pub fn winch_fd() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("blocking SIGWINCH")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("creating a signalfd for SIGWINCH")
}

fn write_all(fd: RawFd, data: &[u8]) {
    let mut out = match fd {
        2 => Box::new(std::io::stderr().lock()) as Box<dyn Write>,
        _ => Box::new(std::io::stdout().lock()),
    };
    let _ = out.write_all(data);
    let _ = out.flush();
}

/// What to do with the caller's side of an attach.
pub struct Relay {
    /// Forward stdin to the container.
    pub stdin: bool,
    /// Close the container's stdin when ours ends (docker's StdinOnce).
    pub close_stdin: bool,
    /// The container has a terminal: follow our window size.
    pub tty: bool,
    /// The detach sequence (empty: none).
    pub detach_keys: Vec<u8>,
}

/// Relay between the caller and an attached container until it exits, the
/// monitor hangs up, or the user detaches.
pub fn relay_attachment(att: &mut Attachment, r: &Relay) -> Result<Outcome> {
    let winch = if r.tty { Some(winch_fd()?) } else { None };
    let mut matcher = DetachMatcher::new(r.detach_keys.clone());
    let mut stdin_open = r.stdin;
    let mut code = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (att_ready, in_ready, winch_ready) = {
            let mut fds = vec![PollFd::new(att.fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(stdin_fd(), PollFlags::POLLIN));
            }
            if let Some(w) = &winch {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r.context("waiting for the container's output")?,
            };
            let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let a = ready(it.next().expect("attach fd"));
            let i = stdin_open && it.next().is_some_and(ready);
            let w = winch.is_some() && it.next().is_some_and(ready);
            (a, i, w)
        };
        if att_ready {
            match att.read()? {
                None => break,
                Some(events) => {
                    for e in events {
                        match e {
                            Event::Stdout(d) => write_all(1, &d),
                            Event::Stderr(d) => write_all(2, &d),
                            Event::Exit(c) => code = Some(c),
                        }
                    }
                }
            }
        }
        if in_ready {
            match nix::unistd::read(stdin_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    if r.close_stdin {
                        // The container may be gone already: its exit is
                        // what matters then.
                        let _ = att.close_stdin();
                    }
                }
                Ok(n) => {
                    let (pass, detach) = matcher.feed(&buf[..n]);
                    if !pass.is_empty() {
                        let _ = att.send_stdin(&pass);
                    }
                    if detach {
                        return Ok(Outcome::Detached);
                    }
                }
            }
        }
        if winch_ready {
            if let Some(w) = &winch {
                while let Ok(Some(_)) = w.read_signal() {}
            }
            if let Some((rows, cols)) = caller_size() {
                let _ = att.resize(rows, cols);
            }
        }
    }
    Ok(code.map_or(Outcome::Closed, Outcome::Exited))
}

/// Set the window size of a pty master.
fn set_size(master: BorrowedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// Relay between the caller and the pty master of an `exec -t` process
/// until its terminal is closed (every process holding it exited) or the
/// user detaches.
pub fn relay_pty(master: &OwnedFd, stdin: bool, detach_keys: Vec<u8>) -> Result<Outcome> {
    let winch = winch_fd()?;
    let mut matcher = DetachMatcher::new(detach_keys);
    let mut stdin_open = stdin;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (m_ready, in_ready, w_ready) = {
            let mut fds = vec![
                PollFd::new(master.as_fd(), PollFlags::POLLIN),
                PollFd::new(winch.as_fd(), PollFlags::POLLIN),
            ];
            if stdin_open {
                fds.push(PollFd::new(stdin_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r.context("waiting for the process's output")?,
            };
            let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), stdin_open && ready(&fds[2]), ready(&fds[1]))
        };
        if m_ready {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) => return Ok(Outcome::Closed),
                Ok(n) => write_all(1, &buf[..n]),
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                // EIO: no process holds the terminal any more.
                Err(_) => return Ok(Outcome::Closed),
            }
        }
        if in_ready {
            match nix::unistd::read(stdin_fd(), &mut buf) {
                // A terminal has no end of input to pass on.
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let (pass, detach) = matcher.feed(&buf[..n]);
                    if !pass.is_empty() {
                        write_fd(master.as_fd(), &pass);
                    }
                    if detach {
                        return Ok(Outcome::Detached);
                    }
                }
            }
        }
        if w_ready {
            while let Ok(Some(_)) = winch.read_signal() {}
            if let Some((rows, cols)) = caller_size() {
                set_size(master.as_fd(), rows, cols);
            }
        }
    }
}

fn write_fd(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Keep an exec'd process's terminal open after we go (`exec -d -t`, or
/// detaching from `exec -it`): a forked child of ours holds the pty master,
/// discarding its output, until no process uses the terminal. Without it
/// the process would get SIGHUP when we exit.
pub fn hold_in_background(master: &OwnedFd) -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    let (m, n) = (master.as_raw_fd(), null.as_raw_fd());
    // Inherited by the child: the hangup sent when our terminal's session
    // ends may come before the child is in a session of its own.
    // SAFETY: setting SIG_IGN has no handler to race with; we exit soon.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    // SAFETY: the child only makes async-signal-safe calls (setsid, dup2,
    // read, _exit) on descriptors it owns, with a stack buffer.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("forking a terminal holder"),
        // SAFETY: as above; this is the child, which never returns.
        0 => unsafe {
            libc::setsid();
            // Let go of the caller's terminal and pipes.
            for fd in 0..3 {
                libc::dup2(n, fd);
            }
            let mut buf = [0u8; 4096];
            loop {
                let r = libc::read(m, buf.as_mut_ptr().cast(), buf.len());
                if r == 0 || (r < 0 && *libc::__errno_location() != libc::EINTR) {
                    libc::_exit(0);
                }
            }
        },
        _ => Ok(()),
    }
}
