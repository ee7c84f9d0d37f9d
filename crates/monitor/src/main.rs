//! `hako-monitor`: one per container, like conmon. The engine starts it; it
//! detaches from the engine (fork + setsid) so the container outlives the
//! `hako` command, creates and starts the container with the OCI runtime
//! while holding its stdout/stderr pipes, writes them to a docker json-file
//! log, becomes the container's reaper (PR_SET_CHILD_SUBREAPER), records the
//! exit status atomically, deletes the container from the runtime and runs
//! the engine's exit command.
//!
//! Progress goes to the engine over an inherited pipe (`--sync-fd`), one
//! line per event:
//!   `started PID MONITOR`  the container runs (its pid, the monitor's pid);
//!   `error CODE MESSAGE`   it could not be started (CODE as docker: 125/126/127);
//!   `exited CODE`          it exited and its status is recorded.
//! The pipe is closed when the monitor is done (after the exit command), so
//! a foreground `hako run` knows when cleanup (e.g. `--rm`) has finished.

mod args;
mod clock;
mod jsonlog;
mod runtime;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use args::Args;
use jsonlog::Stream;

fn main() {
    let args = match Args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hako-monitor: {e}");
            std::process::exit(125);
        }
    };
    // SAFETY: the engine handed us this descriptor (`--sync-fd`) and nothing
    // else in this process owns it.
    let sync = unsafe { File::from_raw_fd(args.sync_fd) };
    // The runtime and the container must not inherit the sync pipe, or the
    // engine would wait for its end as long as the container lives.
    let _ = fcntl(sync.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));

    // SAFETY: single-threaded here; the child only continues this program.
    match unsafe { fork() } {
        // The engine waits for this process; exiting now lets it go on while
        // the child, reparented away from the engine, supervises.
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            report(&sync, &format!("error 125 forking the monitor: {e}"));
            std::process::exit(125);
        }
    }
    // A session of its own: no terminal signals from the engine's session.
    let _ = nix::unistd::setsid();
    detach_stdio(&args.bundle.join("monitor.log"));
    // SIGPIPE would kill us when a foreground engine went away mid-report.
    // SAFETY: setting a signal disposition to SIG_IGN has no handler to race with.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    std::process::exit(supervise(&args, sync));
}

/// stdin from /dev/null, stdout and stderr to the monitor's own log: the
/// engine's terminal may be gone long before the container.
fn detach_stdio(log: &Path) {
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    if let Ok(f) = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
    {
        let _ = nix::unistd::dup2_stdout(&f);
        let _ = nix::unistd::dup2_stderr(&f);
    }
}

fn report(mut sync: &File, line: &str) {
    let one_line = line.replace('\n', " ");
    let _ = sync.write_all(format!("{one_line}\n").as_bytes());
}

fn supervise(args: &Args, sync: File) -> i32 {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        report(
            &sync,
            &format!("error 125 becoming the container's reaper: {e}"),
        );
        return 125;
    }
    // SIGCHLD is taken from a signalfd, blocked before any child exists so
    // that none is lost.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None) {
        report(&sync, &format!("error 125 blocking SIGCHLD: {e}"));
        return 125;
    }
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            report(&sync, &format!("error 125 creating a signalfd: {e}"));
            return 125;
        }
    };
    let mut log = match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&args.log)
    {
        Ok(f) => f,
        Err(e) => {
            report(
                &sync,
                &format!("error 125 opening log {}: {e}", args.log.display()),
            );
            return 125;
        }
    };
    let pipes = (|| -> nix::Result<_> {
        let out = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let err = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        Ok((out, err))
    })();
    let ((out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => {
            report(&sync, &format!("error 125 creating stdio pipes: {e}"));
            return 125;
        }
    };
    // The write ends move into the runtime's stdio (Command dups them
    // without close-on-exec) and are dropped here when create returns, so
    // EOF on the read ends means every container process closed them.
    let started = runtime::create(args, out_w, err_w).and_then(|()| runtime::start(args));
    if let Err(f) = started {
        runtime::delete(args);
        report(&sync, &format!("error {} {}", f.code, f.message));
        return f.code;
    }
    let pid = match fs::read_to_string(&args.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        Some(p) => Pid::from_raw(p),
        None => {
            runtime::delete(args);
            report(
                &sync,
                &format!(
                    "error 125 the runtime wrote no pid to {}",
                    args.pid_file.display()
                ),
            );
            return 125;
        }
    };
    report(&sync, &format!("started {pid} {}", std::process::id()));

    let code = pump(&mut log, &sigfd, out_r, err_r, pid);
    write_exit_file(&args.exit_file, code);
    runtime::delete(args);
    report(&sync, &format!("exited {code}"));
    if let Some((prog, rest)) = args.exit_command.split_first() {
        let _ = Command::new(prog).args(rest).stdin(Stdio::null()).status();
    }
    drop(sync);
    0
}

/// Copy the container's output into the log until its init process exits;
/// returns its exit code (128 + signal when killed, as shells report).
fn pump(log: &mut File, sigfd: &SignalFd, out_r: OwnedFd, err_r: OwnedFd, pid: Pid) -> i32 {
    for fd in [&out_r, &err_r] {
        let _ = fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    let mut streams = [
        (Some(File::from(out_r)), Stream::new("stdout")),
        (Some(File::from(err_r)), Stream::new("stderr")),
    ];
    let mut buf = vec![0u8; 32 * 1024];
    let exit = loop {
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, (f, _)) in streams.iter().enumerate() {
            if let Some(f) = f {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            eprintln!("hako-monitor: poll: {e}");
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (k, &i) in which.iter().enumerate() {
            if ready[k + 1] {
                drain(log, &mut streams[i], &mut buf);
            }
        }
        if ready[0] {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            if let Some(code) = reap(pid) {
                break code;
            }
        }
    };
    // Whatever the container wrote before exiting is in the pipes now; a
    // process it left behind may keep them open, so read only what is there.
    for s in streams.iter_mut() {
        drain(log, s, &mut buf);
        s.1.flush(log);
    }
    let _ = log.sync_data();
    exit
}

/// Read what a pipe holds now; close it at EOF.
fn drain(log: &mut File, (file, stream): &mut (Option<File>, Stream), buf: &mut [u8]) {
    let Some(f) = file else { return };
    loop {
        match f.read(buf) {
            Ok(0) => {
                stream.flush(log);
                *file = None;
                return;
            }
            Ok(n) => stream.feed(log, &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return, // EAGAIN: nothing more for now
        }
    }
}

/// Reap every exited child (we are the subreaper, orphans land here); the
/// container's exit code once its init is among them.
fn reap(pid: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => found = Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => found = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

/// `{"exit_code":N,"finished_at":"..."}`, written to a temp name, synced and
/// renamed into place so a reader never sees half of it.
fn write_exit_file(path: &Path, code: i32) {
    let tmp = path.with_extension("tmp");
    let body = format!(
        "{{\"exit_code\":{code},\"finished_at\":\"{}\"}}\n",
        clock::now_rfc3339_nano()
    );
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        eprintln!("hako-monitor: writing exit status {}: {e}", path.display());
    }
}
