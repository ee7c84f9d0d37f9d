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
//! It holds the container's stdin (`--stdin 1`: a pipe, else /dev/null) or,
//! with `--tty 1`, the pty master the runtime sends to a console socket,
//! and serves clients on `attach.sock` in the bundle ([`attach`]): live
//! output, stdin, window sizes.
//!
//! Progress goes to the engine over an inherited pipe (`--sync-fd`), one
//! line per event:
//!   `attach-ready`         (`--attach-wait 1`) created; the first client is
//!                          awaited before the start, so it misses nothing;
//!   `started PID MONITOR`  the container runs (its pid, the monitor's pid);
//!   `error CODE MESSAGE`   it could not be started (CODE as docker: 125/126/127);
//!   `exited CODE`          it exited and its status is recorded (or, with a
//!                          restart policy, it exited the first time).
//! The pipe is closed when the monitor is done (after the exit command), so
//! a foreground `hako run` knows when cleanup (e.g. `--rm`) has finished.

mod args;
mod attach;
mod clock;
mod events;
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

/// Signals the engine was started with ignored (a `cmd &` in a script without job
/// control ignores SIGINT and SIGQUIT) would stay ignored through the runtime into
/// the container, where a non-interactive shell then cannot even trap them. Docker's
/// containers descend from its daemon, not from the shell that typed `docker run`:
/// reset them so a container's signals do not depend on how the CLI was started.
/// (SIGPIPE stays as Rust set it; spawned children get it back at its default.)
fn default_ignored_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE) {
            continue;
        }
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installs the default disposition, no handler code runs.
        if let Ok(old) = unsafe { sigaction(sig, &dfl) } {
            if !matches!(old.handler(), SigHandler::SigIgn) {
                // Not ignored: put back what was there.
                // SAFETY: restores the disposition just read.
                let _ = unsafe { sigaction(sig, &old) };
            }
        }
    }
}

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

    default_ignored_signals();

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
    // SIGCHLD (children), SIGUSR1 (the engine: "the user stopped it, do
    // not restart") and SIGHUP (reopen the log) are taken from a signalfd, blocked before any child
    // exists so that none is lost.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGUSR1);
    // SIGHUP: reopen the log by its path (after kubelet rotated it).
    mask.add(Signal::SIGHUP);
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
    let opened = match args.log_format {
        jsonlog::Format::None => Ok(jsonlog::Log::discard()),
        format => jsonlog::Log::open(args.log.clone(), args.log_max_size, args.log_max_files)
            .map(|l| l.cri_format(format == jsonlog::Format::Cri)),
    };
    let mut log = match opened {
        Ok(l) => l,
        Err(e) => {
            report(
                &sync,
                &format!("error 125 opening log {}: {e}", args.log.display()),
            );
            return 125;
        }
    };
    let mut server = match attach::Server::new(&args.bundle) {
        Ok(s) => s,
        Err(e) => {
            report(
                &sync,
                &format!(
                    "error 125 serving the attach socket in {}: {e}",
                    args.bundle.display()
                ),
            );
            return 125;
        }
    };
    let memory = args.cgroup.as_deref().and_then(oom::MemoryCgroup::find);
    let mut health = args
        .health
        .clone()
        .map(|h| health::Checker::new(h, args.events.clone()));
    let mut sync = Some(sync);
    let mut restarts: u32 = 0;
    let mut backoff = restart::Backoff::default();
    let mut last = Exit::default();
    loop {
        let first = restarts == 0;
        let wait_for = if first && args.attach_wait {
            sync.as_ref()
        } else {
            None
        };
        let mut io = match run_container(args, &mut server, wait_for, restarts) {
            Ok(r) => r,
            Err(f) => {
                runtime::delete(args);
                let _ = fs::remove_file(args.bundle.join("attach.sock"));
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
        if let Some(e) = &args.events {
            e.emit("start", &[]);
        }
        if first {
            if let Some(s) = &sync {
                report(s, &format!("started {} {}", io.pid, std::process::id()));
            }
        } else if stop_requested(args) {
            // Stopped while it was being restarted: the engine's signal may
            // have found no container, so it is ended here.
            let _ = runtime::kill(args, "KILL");
        }
        if let Some(path) = &args.state_file {
            let started_at = clock::now_rfc3339_nano();
            files::write_state(path, io.pid.as_raw(), &started_at, restarts, false, &last);
        }
        if let Some(h) = health.as_mut() {
            h.reset(args);
        }

        let code = pump(
            &mut log,
            &sigfd,
            &mut io,
            &mut server,
            health.as_mut(),
            args,
        );
        // Attached clients learn how this run ended; a restart is a new run.
        server.finish(code);
        if let Some(h) = health.as_mut() {
            h.abandon(args);
        }
        // The cgroup goes with `delete`: its OOM kills are read first.
        let oom_killed = memory.as_ref().is_some_and(|m| m.kills() > 0);
        runtime::delete(args);
        if let Some(e) = &args.events {
            if oom_killed {
                e.emit("oom", &[]);
            }
            e.emit("die", &[("exitCode", &code.to_string())]);
        }
        last = Exit {
            code,
            finished_at: clock::now_rfc3339_nano(),
            oom_killed,
            error: String::new(),
        };
        // `hako update --restart` may have changed the policy since we started.
        let policy = restart::Policy::from_file(&args.bundle.join("restart-policy"))
            .unwrap_or_else(|| args.restart.clone());
        if !policy.should_restart(code, restarts, stop_requested(args)) {
            drop(server);
            let _ = fs::remove_file(args.bundle.join("attach.sock"));
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

/// A run of the container: its pid and the monitor's ends of its stdio.
struct Io {
    pid: Pid,
    /// Output to read, with its stream name (a pty is one "stdout").
    outputs: Vec<(Option<File>, Stream)>,
    /// Where attached clients' input goes (`-i`): a pipe or the pty master.
    stdin: Option<File>,
    /// The pty master, for window sizes.
    master: Option<OwnedFd>,
}

/// Create and start the container with fresh stdio (pipes, or a pty whose
/// master the runtime sends us). `wait_for`: the sync pipe of a foreground
/// client that attaches between create and start.
fn run_container(
    args: &Args,
    server: &mut attach::Server,
    wait_for: Option<&File>,
    run: u32,
) -> Result<Io, runtime::Failure> {
    let fail = |what: &str, e: std::io::Error| runtime::Failure {
        code: 125,
        message: format!("{what}: {e}"),
    };
    let pipe = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| fail("creating stdio pipes", std::io::Error::from(e)))
    };
    let _ = fs::remove_file(&args.pid_file);
    let mut io = if args.tty {
        // A short path of our own: the runtime connects to it by name.
        let path =
            std::env::temp_dir().join(format!("hako-monitor-{}-{run}.console", std::process::id()));
        let _ = fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| fail(&format!("binding console socket {}", path.display()), e))?;
        // In a shared directory: nobody else may hand us a terminal.
        let _ = fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let child = runtime::spawn_create(args, runtime::Stdio3::Console(path.clone()));
        let got = child.map(|mut child| (attach::receive_master(&listener, &mut child), child));
        let _ = fs::remove_file(&path);
        let (master, child) = got?;
        runtime::wait(args, child, "create")?;
        let master = master.ok_or_else(|| runtime::Failure {
            code: 125,
            message: "the runtime sent no pty master on the console socket".into(),
        })?;
        let _ = fcntl(master.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        let dup = |m: &OwnedFd| {
            m.try_clone()
                .map_err(|e| fail("duplicating the pty master", e))
        };
        Io {
            pid: Pid::from_raw(0),
            outputs: vec![(Some(File::from(dup(&master)?)), Stream::new("stdout"))],
            stdin: if args.stdin {
                Some(File::from(dup(&master)?))
            } else {
                None
            },
            master: Some(master),
        }
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (in_r, in_w) = if args.stdin {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        // The container's ends move into the runtime's stdio (Command dups
        // them without close-on-exec) and are dropped here when create
        // returns, so EOF on our ends means every container process closed them.
        let child = runtime::spawn_create(
            args,
            runtime::Stdio3::Pipes {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
            },
        )?;
        runtime::wait(args, child, "create")?;
        for fd in [&out_r, &err_r].into_iter().chain(in_w.as_ref()) {
            let _ = fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
        Io {
            pid: Pid::from_raw(0),
            outputs: vec![
                (Some(File::from(out_r)), Stream::new("stdout")),
                (Some(File::from(err_r)), Stream::new("stderr")),
            ],
            stdin: in_w.map(File::from),
            master: None,
        }
    };
    if let Some(s) = wait_for {
        report(s, "attach-ready");
        let size = server.wait_first(Duration::from_secs(60));
        if let (Some(m), Some((rows, cols))) = (&io.master, size) {
            if rows > 0 && cols > 0 {
                attach::resize(m.as_fd(), rows, cols);
            }
        }
    }
    runtime::start(args)?;
    let pid = fs::read_to_string(&args.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| runtime::Failure {
            code: 125,
            message: format!("the runtime wrote no pid to {}", args.pid_file.display()),
        })?;
    io.pid = Pid::from_raw(pid);
    Ok(io)
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

/// Copy the container's output into the log and to attached clients until
/// its init process exits, feeding it their input and running health
/// checks meanwhile; returns its exit code (128 + signal when killed, as
/// shells report).
fn pump(
    log: &mut jsonlog::Log,
    sigfd: &SignalFd,
    io: &mut Io,
    server: &mut attach::Server,
    mut health: Option<&mut health::Checker>,
    args: &Args,
) -> i32 {
    let mut buf = vec![0u8; 32 * 1024];
    // Client input not yet taken by the container, and whether its stdin is
    // to be closed once that is written.
    let mut pending: Vec<u8> = Vec::new();
    let mut close_stdin = false;
    let mut requests = Vec::new();
    let exit = loop {
        let timeout = match health.as_deref() {
            Some(h) => timeout_until(h.deadline()),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(server.listener_fd(), PollFlags::POLLIN),
        ];
        let mut which = Vec::new();
        for (i, (f, _)) in io.outputs.iter().enumerate() {
            if let Some(f) = f {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        let stdin_at = match &io.stdin {
            Some(f) if !pending.is_empty() => {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let clients_at = fds.len();
        // Backpressure: no more client input while the container's stdin is full.
        for (fd, ev) in server.poll_fds(pending.len() < 64 * 1024) {
            fds.push(PollFd::new(fd, ev));
        }
        let probe_at = match health.as_deref().and_then(|h| h.fd()) {
            Some(fd) => {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            None => None,
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
        let clients = ready.len() - clients_at - usize::from(probe_at.is_some());
        drop(fds);
        for (k, &i) in which.iter().enumerate() {
            if ready[k + 2] {
                drain(log, &mut io.outputs[i], &mut buf, server);
            }
        }
        // Descending: serving may drop a client (swap_remove), which only
        // moves one already served.
        for c in (0..clients).rev() {
            if ready[clients_at + c] {
                server.serve(c, &mut requests);
            }
        }
        if ready[1] {
            server.accept();
        }
        for r in requests.drain(..) {
            match r {
                attach::Request::Resize(rows, cols) => {
                    if let Some(m) = &io.master {
                        attach::resize(m.as_fd(), rows, cols);
                    }
                }
                attach::Request::Stdin(data) if io.stdin.is_some() => {
                    pending.extend_from_slice(&data)
                }
                // A pty has no end of input to give: its master carries
                // the output too.
                attach::Request::CloseStdin if io.master.is_none() => close_stdin = true,
                _ => {}
            }
        }
        if stdin_at.is_none_or(|i| ready[i]) {
            feed_stdin(&mut io.stdin, &mut pending);
        }
        if close_stdin && pending.is_empty() {
            io.stdin = None;
        }
        if let Some(h) = health.as_deref_mut() {
            if probe_at.is_some_and(|i| ready[i]) {
                h.read_output();
            }
        }
        let mut code = None;
        if ready[0] {
            while let Ok(Some(si)) = sigfd.read_signal() {
                if si.ssi_signo == Signal::SIGHUP as u32 {
                    log.reopen();
                }
            }
            reap(|p, c| {
                if p == io.pid {
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
    for i in 0..io.outputs.len() {
        drain(log, &mut io.outputs[i], &mut buf, server);
        io.outputs[i].1.flush(log);
    }
    exit
}

/// Write what the container's stdin takes now; a stdin it closed drops
/// the input.
fn feed_stdin(stdin: &mut Option<File>, pending: &mut Vec<u8>) {
    let Some(f) = stdin else {
        pending.clear();
        return;
    };
    while !pending.is_empty() {
        match f.write(pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                *stdin = None;
                pending.clear();
                return;
            }
        }
    }
}

/// Read what a pipe (or the pty) holds now into the log and to the
/// clients; close it at EOF (a pty master reports EIO once no process holds
/// the terminal).
fn drain(
    log: &mut jsonlog::Log,
    (file, stream): &mut (Option<File>, Stream),
    buf: &mut [u8],
    server: &mut attach::Server,
) {
    let Some(f) = file else { return };
    let kind = if stream.name == "stderr" {
        attach::STDERR
    } else {
        attach::STDOUT
    };
    loop {
        match f.read(buf) {
            Ok(0) => {
                stream.flush(log);
                *file = None;
                return;
            }
            Ok(n) => {
                stream.feed(log, &buf[..n]);
                server.broadcast(kind, &buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                stream.flush(log);
                *file = None;
                return;
            }
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
