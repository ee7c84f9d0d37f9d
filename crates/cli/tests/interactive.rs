//! Interactive containers with real containers (root): `run -i` with piped
//! stdin, `run -it` in a pty playing the user's terminal (tty, window size
//! and its changes, typed input, exit code), detach keys and `attach`,
//! `exec -i/-it/-d`, `start -a/-ai`, and the log of a tty container.

mod engine_common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use engine_common::{wait_for, Root};

fn hako_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hako"))
}

/// `hako` with piped stdin; (stdout, stderr, exit code).
fn with_stdin(r: &Root, args: &[&str], input: &[u8]) -> (String, String, i32) {
    let mut child = Command::new(hako_bin())
        .arg("--root")
        .arg(r.root())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
    assert_eq!(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
}

/// `hako` on a pty of its own, as a user at a terminal runs it: the slave
/// is its controlling terminal and stdio; the test holds the master.
struct Term {
    child: Child,
    master: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Term {
    fn spawn(r: &Root, args: &[&str], rows: u16, cols: u16) -> Term {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_size(&pty.master, rows, cols);
        let slave = pty.slave;
        let mut cmd = Command::new(hako_bin());
        cmd.arg("--root").arg(r.root()).args(args);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let master = std::fs::File::from(pty.master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once hako and everything on the terminal has gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term {
            child,
            master,
            seen,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn expect(&self, what: &str) {
        wait_for(&format!("{what:?} on the terminal"), || {
            self.text().contains(what)
        });
    }

    fn type_in(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// hako's exit code (bounded wait).
    fn exit_code(&mut self) -> i32 {
        let mut code = None;
        wait_for("hako to exit", || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code.unwrap()
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn run_i_forwards_piped_stdin_and_its_end() {
    let r = Root::new();
    let (out, err, code) = with_stdin(
        &r,
        &["run", "--rm", "-i", "--network", "none", "busybox", "cat"],
        b"hi\n",
    );
    assert_eq!((out.as_str(), code), ("hi\n", 0), "{err}");
    // Without -i the container's stdin is empty.
    let (out, _, code) = with_stdin(
        &r,
        &["run", "--rm", "--network", "none", "busybox", "cat"],
        b"hidden\n",
    );
    assert_eq!((out.as_str(), code), ("", 0));
    // Several lines and an exit code after the input ends.
    let (out, _, code) = with_stdin(
        &r,
        &[
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "wc -l; exit 4",
        ],
        b"a\nb\nc\n",
    );
    assert_eq!((out.trim(), code), ("3", 4));
    // -t without a terminal is allowed; -it is not.
    let (out, _, code) = with_stdin(
        &r,
        &["run", "--rm", "-t", "--network", "none", "busybox", "tty"],
        b"",
    );
    assert_eq!((out.as_str(), code), ("/dev/pts/0\r\n", 0));
    let (_, err, code) = with_stdin(&r, &["run", "--rm", "-it", "busybox", "sh"], b"");
    assert_eq!(code, 125);
    assert_eq!(err.trim(), "Error: the input device is not a TTY");
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());
}

#[test]
fn run_it_in_a_terminal() {
    let r = Root::new();
    let mut t = Term::spawn(
        &r,
        &["run", "--rm", "-it", "--network", "none", "busybox", "sh"],
        33,
        101,
    );
    t.expect("# ");
    t.type_in(b"tty; stty size; echo typed-$((6*7))\r");
    t.expect("typed-42\r\n");
    let text = t.text();
    assert!(text.contains("/dev/pts/0\r\n33 101\r\n"), "{text}");
    // The window grows: hako gets SIGWINCH and passes the size on.
    set_size(&t.master.try_clone().unwrap().into(), 40, 120);
    t.type_in(b"stty size\r");
    t.expect("40 120\r\n");
    // Ctrl-C reaches the container's terminal (raw mode): it stops sleep.
    t.type_in(b"sleep 1000\r");
    wait_for("sleep to run", || {
        r.ok(&["ps", "-q"]).lines().count() == 1
            && r.ok(&["top", r.ok(&["ps", "-q"]).trim()]).contains("sleep")
    });
    t.type_in(b"\x03");
    t.type_in(b"echo after-$((1+1))\r");
    t.expect("after-2");
    t.type_in(b"exit 5\r");
    assert_eq!(t.exit_code(), 5);
    wait_for("--rm to remove it", || r.ps_all().is_empty());
}

#[test]
fn detach_keys_attach_and_the_log_of_a_tty_container() {
    let r = Root::new();
    let mut t = Term::spawn(
        &r,
        &[
            "run",
            "-it",
            "--name",
            "box",
            "--network",
            "none",
            "busybox",
            "sh",
        ],
        24,
        80,
    );
    t.expect("# ");
    t.type_in(b"echo one-$((0+1))\r");
    t.expect("one-1");
    t.type_in(b"\x10\x11");
    assert_eq!(t.exit_code(), 0);
    assert_eq!(r.inspect("box")["State"]["Status"], "running");
    let config = &r.inspect("box")["Config"];
    for (k, v) in [
        ("Tty", true),
        ("OpenStdin", true),
        ("StdinOnce", true),
        ("AttachStdin", true),
        ("AttachStdout", true),
    ] {
        assert_eq!(config[k], v, "{k}");
    }

    // attach: new output is seen, input reaches the shell.
    let mut a = Term::spawn(&r, &["attach", "box"], 24, 80);
    a.type_in(b"echo two-$((1+1))\r");
    a.expect("two-2");
    assert!(!a.text().contains("one-1"), "old output is not replayed");
    a.type_in(b"\x10\x11");
    assert_eq!(a.exit_code(), 0);

    // Other detach keys; the default then is ordinary input.
    let mut a = Term::spawn(&r, &["attach", "--detach-keys", "ctrl-x,x", "box"], 24, 80);
    a.type_in(b"echo three-$((1+2))\r");
    a.expect("three-3");
    a.type_in(b"\x18x");
    assert_eq!(a.exit_code(), 0);
    assert_eq!(r.inspect("box")["State"]["Status"], "running");

    // The log holds the terminal's output as stdout, with its \r\n.
    let logs = r.run(&["logs", "box"]);
    let out = String::from_utf8_lossy(&logs.stdout);
    assert!(out.contains("one-1\r\n") && out.contains("two-2\r\n") && out.contains("three-3\r\n"));
    assert!(logs.stderr.is_empty());
    let raw = std::fs::read_to_string(
        r.root()
            .join("containers")
            .join(r.inspect("box")["Id"].as_str().unwrap())
            .join("container.log"),
    )
    .unwrap();
    assert!(!raw.contains("\"stderr\""), "{raw}");

    // attach ends with the container and takes its exit code.
    let mut a = Term::spawn(&r, &["attach", "box"], 24, 80);
    a.type_in(b"exit 3\r");
    assert_eq!(a.exit_code(), 3);
    wait_for("the exit to be recorded", || {
        r.inspect("box")["State"]["Status"] == "exited"
    });
    assert_eq!(r.inspect("box")["State"]["ExitCode"], 3);
    let out = r.run(&["attach", "box"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"));
}

#[test]
fn attach_to_a_container_without_a_terminal() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "echoer",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo got-$l; echo err-$l >&2; done; echo stdin-closed",
    ]);
    let config = &r.inspect("echoer")["Config"];
    assert_eq!(
        (
            &config["Tty"],
            &config["OpenStdin"],
            &config["StdinOnce"],
            &config["AttachStdout"]
        ),
        (&false.into(), &true.into(), &false.into(), &false.into())
    );
    // Two clients at once: one with stdin, one output only (--no-stdin).
    let mut a = Term::spawn(&r, &["attach", "echoer"], 24, 80);
    let mut b = Term::spawn(&r, &["attach", "--no-stdin", "echoer"], 24, 80);
    // Both are connected once the first one's input is echoed to both.
    wait_for("both clients", || {
        a.type_in(b"x\n");
        std::thread::sleep(std::time::Duration::from_millis(100));
        b.text().contains("got-x")
    });
    a.expect("err-x");
    b.type_in(b"y\n");
    a.type_in(b"z\n");
    b.expect("got-z");
    // Without a terminal the detach keys would wait in the line discipline
    // (and ctrl-q is flow control), as with docker: the clients end with
    // the container, and take its exit code.
    r.ok(&["kill", "echoer"]);
    assert_eq!(a.exit_code(), 137);
    assert_eq!(b.exit_code(), 137);
    // stdout and stderr stay apart in the log; y never reached stdin.
    let logs = r.run(&["logs", "echoer"]);
    let out = String::from_utf8_lossy(&logs.stdout);
    assert!(out.contains("got-x\n") && out.contains("got-z\n"), "{out}");
    assert!(!out.contains("got-y"), "{out}");
    assert!(String::from_utf8_lossy(&logs.stderr).contains("err-x\n"));
}

#[test]
fn exec_with_and_without_a_terminal() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let (out, _, code) = with_stdin(&r, &["exec", "-i", "svc", "cat"], b"hello\n");
    assert_eq!((out.as_str(), code), ("hello\n", 0));
    let (out, _, code) = with_stdin(&r, &["exec", "svc", "cat"], b"hidden\n");
    assert_eq!((out.as_str(), code), ("", 0));

    let mut t = Term::spawn(&r, &["exec", "-it", "svc", "sh"], 30, 90);
    t.expect("# ");
    t.type_in(b"tty; stty size; exit 4\r");
    assert_eq!(t.exit_code(), 4);
    assert!(
        t.text().contains("/dev/pts/") && t.text().contains("30 90\r\n"),
        "{}",
        t.text()
    );

    // A command that is not there: docker's 127 and the runtime's reason.
    let out = r.run(&["exec", "-t", "svc", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exec in container svc:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // -it without a terminal is refused; -d returns at once.
    let (_, err, code) = with_stdin(&r, &["exec", "-it", "svc", "sh"], b"");
    assert_eq!(
        (err.trim(), code),
        ("Error: the input device is not a TTY", 1)
    );
    r.ok(&[
        "exec",
        "-d",
        "svc",
        "sh",
        "-c",
        "sleep 0.2; echo later > /tmp/f",
    ]);
    wait_for("the detached exec", || {
        r.run(&["exec", "svc", "cat", "/tmp/f"]).stdout == b"later\n"
    });

    // -dt: a terminal nobody reads; hako returns at once and holds no pipe
    // of ours open (this `ok` reads our stdout and stderr to their end).
    r.ok(&[
        "exec",
        "-d",
        "-t",
        "svc",
        "sh",
        "-c",
        "tty > /tmp/t; sleep 1000",
    ]);
    wait_for("the detached terminal exec", || {
        String::from_utf8_lossy(&r.run(&["exec", "svc", "cat", "/tmp/t"]).stdout)
            .starts_with("/dev/pts/")
    });

    // Detaching from exec -it leaves the shell running.
    let mut t = Term::spawn(&r, &["exec", "-it", "svc", "sh"], 24, 80);
    t.expect("# ");
    t.type_in(b"echo $$ > /tmp/shell; echo saved\r");
    t.expect("saved");
    t.type_in(b"\x10\x11");
    assert_eq!(t.exit_code(), 0);
    let pid = r.ok(&["exec", "svc", "cat", "/tmp/shell"]);
    let pid = pid.trim();
    assert_eq!(
        r.run(&["exec", "svc", "kill", "-0", pid]).status.code(),
        Some(0),
        "the detached shell {pid} is gone"
    );
}

#[test]
fn start_attached() {
    let r = Root::new();
    r.ok(&[
        "create",
        "--name",
        "once",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo started; echo oops >&2; exit 6",
    ]);
    let out = r.run(&["start", "-a", "once"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(6));

    r.ok(&[
        "create",
        "-i",
        "--name",
        "upper",
        "--network",
        "none",
        "busybox",
        "tr",
        "a-z",
        "A-Z",
    ]);
    let (out, _, code) = with_stdin(&r, &["start", "-ai", "upper"], b"shout\n");
    assert_eq!((out.as_str(), code), ("SHOUT\n", 0));

    // A terminal container started attached in a pty.
    r.ok(&[
        "create",
        "-it",
        "--name",
        "shell",
        "--network",
        "none",
        "busybox",
        "sh",
    ]);
    let mut t = Term::spawn(&r, &["start", "-ai", "shell"], 25, 70);
    t.expect("# ");
    t.type_in(b"stty size; exit 2\r");
    assert_eq!(t.exit_code(), 2);
    assert!(t.text().contains("25 70\r\n"), "{}", t.text());
}

/// runc speaks the same console-socket protocol: its pty master reaches
/// the monitor too, and piped stdin works the same.
#[test]
fn runc_terminal_and_stdin() {
    let r = Root::new();
    let mut t = Term::spawn(
        &r,
        &[
            "run",
            "--rm",
            "-it",
            "--runtime",
            "/usr/sbin/runc",
            "--network",
            "none",
            "busybox",
            "sh",
        ],
        20,
        60,
    );
    t.expect("# ");
    t.type_in(b"tty; stty size; exit 9\r");
    assert_eq!(t.exit_code(), 9);
    assert!(t.text().contains("/dev/pts/0\r\n20 60\r\n"), "{}", t.text());
    let (out, _, code) = with_stdin(
        &r,
        &[
            "run",
            "--rm",
            "-i",
            "--runtime",
            "/usr/sbin/runc",
            "--network",
            "none",
            "busybox",
            "cat",
        ],
        b"via runc\n",
    );
    assert_eq!((out.as_str(), code), ("via runc\n", 0));
}

/// A foreground `run -i` (no terminal) still forwards the signals it gets
/// to the container (--sig-proxy), while stdin stays open.
#[test]
fn run_i_proxies_signals() {
    use std::io::BufRead;
    let r = Root::new();
    let mut child = Command::new(hako_bin())
        .arg("--root")
        .arg(r.root())
        .args([
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "trap 'echo trapped; exit 7' INT; echo ready; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "trapped");
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

/// Started from a shell without job control (`hako run ... &` in a script), the
/// CLI has SIGINT and SIGQUIT ignored; the container must not inherit that, or a
/// shell in it could not even trap them.
#[test]
fn signals_ignored_by_the_caller_are_not_ignored_in_the_container() {
    let r = Root::new();
    let mut cmd = Command::new(hako_bin());
    cmd.arg("--root").arg(r.root()).args([
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "grep",
        "SigIgn",
        "/proc/self/status",
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mask = u64::from_str_radix(text.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    let bit = |sig: i32| 1u64 << (sig - 1);
    assert_eq!(mask & (bit(libc::SIGINT) | bit(libc::SIGQUIT)), 0, "{text}");
}

/// A plain foreground `run` is attached too: output comes as written, an
/// unfinished line included (the log holds it until its newline).
#[test]
fn foreground_run_shows_unfinished_lines_at_once() {
    let r = Root::new();
    let mut child = Command::new(hako_bin())
        .arg("--root")
        .arg(r.root())
        .args([
            "run",
            "--name",
            "partial",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "printf 'no newline yet'; exec sleep 1000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mut out, sink) = (child.stdout.take().unwrap(), seen.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    wait_for("the unfinished line", || {
        seen.lock().unwrap().as_slice() == b"no newline yet"
    });
    assert_eq!(r.ok(&["logs", "partial"]), "");
    r.ok(&["kill", "partial"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_eq!(r.ok(&["logs", "partial"]), "no newline yet");
}

#[test]
fn bad_interactive_requests_are_one_line_errors() {
    let r = Root::new();
    // docker's codes: 125 for run's own errors, 1 for the other commands'.
    let err = |args: &[&str]| {
        let out = r.run(args);
        let want = if args[0] == "run" { 125 } else { 1 };
        assert_eq!(out.status.code(), Some(want), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        e
    };
    let e = err(&["run", "--detach-keys", "meta-x", "busybox", "true"]);
    assert!(e.contains("invalid detach keys \"meta-x\""), "{e}");
    assert!(r.ps_all().is_empty(), "nothing was created");
    let e = err(&["attach", "nothere"]);
    assert!(e.contains("nothere"), "{e}");
    r.ok(&["create", "--name", "a", "busybox", "true"]);
    r.ok(&["create", "--name", "b", "busybox", "true"]);
    let e = err(&["start", "-a", "a", "b"]);
    assert!(
        e.contains("cannot start and attach multiple containers"),
        "{e}"
    );
    let e = err(&["attach", "a"]);
    assert!(
        e.contains("cannot attach to container a: it is not running"),
        "{e}"
    );
}

/// `attach` to a terminal container passes its size on, nudging it so a
/// full-screen program redraws (as docker), and follows its changes.
#[test]
fn attach_sets_and_follows_the_window_size() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "win",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'echo winch-$(stty size | tr \" \" x)' WINCH; while :; do sleep 0.1; done",
    ]);
    let t = Term::spawn(&r, &["attach", "--no-stdin", "win"], 31, 91);
    // The nudge's two changes may reach the shell as one signal; its size
    // is the caller's in the end.
    t.expect("winch-31x91");
    set_size(&t.master.try_clone().unwrap().into(), 50, 150);
    t.expect("winch-50x150");
}

/// docker's `run -dit` idiom: a shell that waits on its terminal in the
/// background until someone attaches.
#[test]
fn run_dit_then_attach() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-dit",
        "--name",
        "bg",
        "--network",
        "none",
        "busybox",
        "sh",
    ]);
    assert_eq!(r.inspect("bg")["State"]["Status"], "running");
    // Its input is a terminal's: a pipe cannot stand in (--no-stdin can).
    let out = r.run(&["attach", "bg"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error: the input device is not a TTY"
    );
    let mut a = Term::spawn(&r, &["attach", "bg"], 24, 80);
    a.type_in(b"echo hello-$((40+2))\r");
    a.expect("hello-42");
    a.type_in(b"exit 0\r");
    assert_eq!(a.exit_code(), 0);
    wait_for("the exit to be recorded", || {
        r.inspect("bg")["State"]["Status"] == "exited"
    });
}

#[test]
fn run_and_exec_t_without_i_print_clean_lines() {
    let r = Root::new();
    // The container's terminal ends lines with "\r\n"; the caller's must
    // not add its own "\r" (podman's output; "a\r\r\n" before).
    let mut t = Term::spawn(
        &r,
        &[
            "run",
            "--rm",
            "-t",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo a; echo b",
        ],
        24,
        80,
    );
    assert_eq!(t.exit_code(), 0);
    t.expect("b\r\n");
    assert_eq!(t.text(), "a\r\nb\r\n");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "cl",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    let mut t = Term::spawn(
        &r,
        &["exec", "-t", "cl", "sh", "-c", "echo c; echo d"],
        24,
        80,
    );
    assert_eq!(t.exit_code(), 0);
    t.expect("d\r\n");
    assert_eq!(t.text(), "c\r\nd\r\n");
}
