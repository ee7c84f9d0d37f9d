//! `hako-monitor`: one per container, like conmon. The engine starts it; it
//! detaches from the engine (fork + setsid) so the container outlives the
//! `hako` command, creates and starts the container with the OCI runtime
//! while holding its stdout/stderr pipes, writes them to a docker json-file
//! log, becomes the container's reaper (PR_SET_CHILD_SUBREAPER), records the
//! exit status atomically, deletes the container from the runtime and runs
//! the engine's exit command.
//!
//! It also applies the restart policy (the container is created and started
//! again from the same bundle, its output appended to the same log, its
//! network namespace kept: see [`restart`]), runs health checks
//! ([`health`]) and tells whether the OOM killer ended a run ([`oom`]).
//! A stop or kill by the user is marked by the engine with a file
//! (`--stop-marker`) and a SIGUSR1 to wake us; a marked exit is final.
//!
//! Progress goes to the engine over an inherited pipe (`--sync-fd`), one
//! line per event:
//!   `started PID MONITOR`  the container runs (its pid, the monitor's pid);
//!   `error CODE MESSAGE`   it could not be started (CODE as docker: 125/126/127);
//!   `exited CODE`          it exited and its status is recorded (or, with a
//!                          restart policy, it exited the first time).
//! The pipe is closed when the monitor is done (after the exit command), so
//! a foreground `hako run` knows when cleanup (e.g. `--rm`) has finished.

mod args;
mod clock;
mod files;
mod health;
mod jsonlog;
mod oom;
mod restart;
mod runtime;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use args::Args;
use files::Exit;
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
    // SIGCHLD (children) and SIGUSR1 (the engine: "the user stopped it, do
    // not restart") are taken from a signalfd, blocked before any child
    // exists so that none is lost.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGUSR1);
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None) {
        report(&sync, &format!("error 125 blocking signals: {e}"));
        return 125;
    }
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            report(&sync, &format!("error 125 creating a signalfd: {e}"));
            return 125;
        }
    };
    // One log for every run: a restarted container's output is appended.
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
    let memory = args.cgroup.as_deref().and_then(oom::MemoryCgroup::find);
    let mut health = args.health.clone().map(health::Checker::new);
    let mut sync = Some(sync);
    let mut restarts: u32 = 0;
    let mut backoff = restart::Backoff::default();
    let mut last = Exit::default();
    loop {
        let first = restarts == 0;
        let (pid, out_r, err_r) = match run_container(args) {
            Ok(r) => r,
            Err(f) => {
                runtime::delete(args);
                if first {
                    if let Some(s) = &sync {
                        report(s, &format!("error {} {}", f.code, f.message));
                    }
                    return f.code;
                }
                // A restart that cannot start ends the supervision, with
                // the reason recorded.
                let exit = Exit {
                    code: f.code,
                    finished_at: clock::now_rfc3339_nano(),
                    oom_killed: false,
                    error: f.message,
                };
                finish(args, sync.take(), &exit, restarts);
                return 0;
            }
        };
        let started = Instant::now();
        if first {
            if let Some(s) = &sync {
                report(s, &format!("started {pid} {}", std::process::id()));
            }
        } else if stop_requested(args) {
            // Stopped while it was being restarted: the engine's signal may
            // have found no container, so it is ended here.
            let _ = runtime::kill(args, "KILL");
        }
        if let Some(path) = &args.state_file {
            let started_at = clock::now_rfc3339_nano();
            files::write_state(path, pid.as_raw(), &started_at, restarts, false, &last);
        }
        if let Some(h) = health.as_mut() {
            h.reset(args);
        }

        let code = pump(&mut log, &sigfd, out_r, err_r, pid, health.as_mut(), args);
        if let Some(h) = health.as_mut() {
            h.abandon(args);
        }
        // The cgroup goes with `delete`: its OOM kills are read first.
        let oom_killed = memory.as_ref().is_some_and(|m| m.kills() > 0);
        runtime::delete(args);
        last = Exit {
            code,
            finished_at: clock::now_rfc3339_nano(),
            oom_killed,
            error: String::new(),
        };
        if !args
            .restart
            .should_restart(code, restarts, stop_requested(args))
        {
            finish(args, sync.take(), &last, restarts);
            return 0;
        }
        restarts += 1;
        let delay = backoff.next(started.elapsed());
        if let Some(path) = &args.state_file {
            files::write_state(path, 0, "", restarts, true, &last);
        }
        // A foreground `run` returns at the first exit (docker's
        // "next-exit"); the restarts go on without it.
        if let Some(s) = sync.take() {
            report(&s, &format!("exited {code}"));
        }
        if !wait_before_restart(&sigfd, delay, args) {
            finish(args, None, &last, restarts);
            return 0;
        }
    }
}

/// Create and start the container with fresh stdout/stderr pipes; its pid
/// and the read ends.
fn run_container(args: &Args) -> Result<(Pid, OwnedFd, OwnedFd), runtime::Failure> {
    let fail = |what: &str, e: nix::Error| runtime::Failure {
        code: 125,
        message: format!("{what}: {e}"),
    };
    let (out_r, out_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("creating stdio pipes", e))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("creating stdio pipes", e))?;
    let _ = fs::remove_file(&args.pid_file);
    // The write ends move into the runtime's stdio (Command dups them
    // without close-on-exec) and are dropped here when create returns, so
    // EOF on the read ends means every container process closed them.
    runtime::create(args, out_w, err_w)?;
    runtime::start(args)?;
    let pid = fs::read_to_string(&args.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| runtime::Failure {
            code: 125,
            message: format!("the runtime wrote no pid to {}", args.pid_file.display()),
        })?;
    Ok((Pid::from_raw(pid), out_r, err_r))
}

/// Whether the user stopped or killed the container (the engine's marker).
fn stop_requested(args: &Args) -> bool {
    args.stop_marker.as_ref().is_some_and(|m| m.exists())
}

/// Record the final exit, tell a foreground engine, run the exit command.
fn finish(args: &Args, sync: Option<File>, exit: &Exit, restarts: u32) {
    files::write_exit(&args.exit_file, exit, restarts);
    if let Some(s) = &sync {
        report(s, &format!("exited {}", exit.code));
    }
    if let Some((prog, rest)) = args.exit_command.split_first() {
        let _ = Command::new(prog).args(rest).stdin(Stdio::null()).status();
    }
    drop(sync);
}

/// Sleep out the restart delay, reaping orphans; false when the user
/// stopped the container meanwhile (SIGUSR1 wakes us for that).
fn wait_before_restart(sigfd: &SignalFd, delay: Duration, args: &Args) -> bool {
    let until = Instant::now() + delay;
    loop {
        if stop_requested(args) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, timeout_until(until));
        while let Ok(Some(_)) = sigfd.read_signal() {}
        reap(|_, _| {});
    }
}

/// A poll timeout ending at `t` (rounded up to whole milliseconds).
fn timeout_until(t: Instant) -> PollTimeout {
    let left = t.saturating_duration_since(Instant::now());
    let ms = left.as_millis() + u128::from(!left.subsec_nanos().is_multiple_of(1_000_000));
    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
}

/// Copy the container's output into the log until its init process exits,
/// running health checks meanwhile; returns its exit code (128 + signal
/// when killed, as shells report).
fn pump(
    log: &mut File,
    sigfd: &SignalFd,
    out_r: OwnedFd,
    err_r: OwnedFd,
    pid: Pid,
    mut health: Option<&mut health::Checker>,
    args: &Args,
) -> i32 {
    for fd in [&out_r, &err_r] {
        let _ = fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    let mut streams = [
        (Some(File::from(out_r)), Stream::new("stdout")),
        (Some(File::from(err_r)), Stream::new("stderr")),
    ];
    let mut buf = vec![0u8; 32 * 1024];
    let exit = loop {
        let timeout = match health.as_deref() {
            Some(h) => timeout_until(h.deadline()),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, (f, _)) in streams.iter().enumerate() {
            if let Some(f) = f {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        let probing = match health.as_deref().and_then(|h| h.fd()) {
            Some(fd) => {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                true
            }
            None => false,
        };
        if let Err(e) = poll(&mut fds, timeout) {
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
        if let Some(h) = health.as_deref_mut() {
            if probing && ready[which.len() + 1] {
                h.read_output();
            }
        }
        let mut code = None;
        if ready[0] {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            reap(|p, c| {
                if p == pid {
                    code = Some(c);
                } else if let Some(h) = health.as_deref_mut() {
                    h.on_exit(p, c);
                }
            });
        }
        if let Some(c) = code {
            break c;
        }
        if let Some(h) = health.as_deref_mut() {
            h.tick(args);
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

/// Reap every exited child (we are the subreaper, orphans land here),
/// telling `on_exit` each pid and exit code (128 + signal when killed).
fn reap(mut on_exit: impl FnMut(Pid, i32)) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) => on_exit(p, code),
            Ok(WaitStatus::Signaled(p, sig, _)) => on_exit(p, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
