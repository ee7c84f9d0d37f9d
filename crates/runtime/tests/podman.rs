//! Interop: podman (with conmon) drives hako-runtime through the runc command
//! line. Each test imports a busybox image into its own podman store (vfs
//! driver, cgroupfs manager, no events, own tmpdir) and runs the scenarios issue
//! 2 names: a plain run, `-d` + `podman stop`, `podman exec`, `-t`, `--memory`,
//! and `podman ps`/`podman logs`. Where the behaviour is observable, the same
//! command also runs under runc and the outputs are compared.
//!
//! Run as root: `cargo test -p hako-runtime --test podman`.

mod common;
use common::{kill_processes_mentioning, unmount_under};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const HAKO: &str = env!("CARGO_BIN_EXE_hako-runtime");
const RUNC: &str = "/usr/sbin/runc";

/// Podman (as root) raises nofile and nproc to 1048576 in every container it
/// creates, and lowers its own nproc limit before starting conmon; without
/// CAP_SYS_RESOURCE the runtime could not raise them back. Lowering is always
/// allowed, so every container gets these (the same for runc and hako).
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An isolated podman store with one imported busybox image. Dropping it
/// removes every container (through the runtime, so its state and cgroups go
/// too), kills anything still running from the store, unmounts what podman
/// left mounted under it, and deletes the directories.
struct Store {
    dir: tempfile::TempDir,
    image: String,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::Builder::new()
            .prefix("hako-podman-")
            .tempdir()
            .expect("creating the podman store directory");
        let image = unique("hako-busybox");
        let store = Store { dir, image };
        let tar = store.build_rootfs_tar();
        let out = store.podman(RUNC, &["import", tar.to_str().unwrap(), &store.image]);
        assert!(
            out.status.success(),
            "podman import {} as {}: {}",
            tar.display(),
            store.image,
            text(&out.stderr)
        );
        store
    }

    /// A busybox rootfs (Debian's busybox-static and its applet symlinks) as a tar.
    fn build_rootfs_tar(&self) -> PathBuf {
        let rootfs = self.dir.path().join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("creating rootfs dirs");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("copying /bin/busybox (install busybox-static)");
        let list = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("running busybox --list");
        for applet in text(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                    .unwrap_or_else(|e| panic!("linking applet {applet}: {e}"));
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
        )
        .expect("writing etc/passwd");
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")
            .expect("writing etc/group");
        // Content under /run, which `--read-only` covers with a tmpfs that must
        // start as a copy (the "tmpcopyup" mount option).
        let run = rootfs.join("run/hako");
        std::fs::create_dir_all(&run).expect("creating run/hako");
        std::fs::write(run.join("file"), "copied up\n").expect("writing run/hako/file");
        std::os::unix::fs::symlink("/etc/passwd", run.join("link")).expect("linking run/hako/link");
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o775))
            .expect("chmod run/hako");
        let tar = self.dir.path().join("rootfs.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .expect("running tar");
        assert!(out.status.success(), "tar: {}", text(&out.stderr));
        tar
    }

    fn command(&self, runtime: &str) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .args(["--runtime", runtime])
            .stdin(Stdio::null());
        c
    }

    fn podman(&self, runtime: &str, args: &[&str]) -> Output {
        self.command(runtime)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running podman {args:?}: {e}"))
    }

    /// podman that must succeed; returns its stdout.
    fn ok(&self, runtime: &str, args: &[&str]) -> String {
        let out = self.podman(runtime, args);
        assert!(
            out.status.success(),
            "podman --runtime {runtime} {args:?} exited {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `podman run` with the sandbox's ulimits, no network, and `flags` before
    /// the image and `cmd` after it.
    fn run(&self, runtime: &str, flags: &[&str], cmd: &[&str]) -> Output {
        let mut args: Vec<&str> = vec!["run", "--network", "none"];
        args.extend(ULIMITS);
        args.extend(flags);
        args.push(&self.image);
        args.extend(cmd);
        self.podman(runtime, &args)
    }

    /// Starts a detached container under hako-runtime and returns its name.
    fn run_detached(&self, script: &str) -> String {
        let name = unique("hako-pm");
        let out = self.run(HAKO, &["-d", "--name", &name], &["sh", "-c", script]);
        assert!(
            out.status.success(),
            "podman run -d {name}: {}",
            text(&out.stderr)
        );
        name
    }

    /// Polls `podman logs` until it contains `needle` (fails after 30 s, which
    /// only bounds a hang; nothing here measures time).
    fn wait_for_log(&self, name: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = self.podman(HAKO, &["logs", name]);
            let all = text(&logs.stdout) + &text(&logs.stderr);
            if all.contains(needle) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "container {name} never logged {needle:?}; logs so far: {all}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(HAKO, &["inspect", "--format", format, name])
            .trim()
            .to_string()
    }

    /// Ids of every container this store ever created (directory names in vfs).
    fn container_ids(&self) -> Vec<String> {
        let dir = self.dir.path().join("root/vfs-containers");
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.podman(HAKO, &["rm", "--all", "--force", "--time", "0"]);
        // Whatever podman could not remove: delete through each runtime
        // directly (a container id unknown to one of them is simply an error).
        for id in self.container_ids() {
            for rt in [HAKO, RUNC] {
                let _ = Command::new(rt)
                    .args(["delete", "--force", &id])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        kill_processes_mentioning(self.dir.path());
        unmount_under(self.dir.path());
        // TempDir's own drop removes the directories.
    }
}

/// stdout of a successful `podman run --rm` under `runtime`.
fn run_rm(store: &Store, runtime: &str, flags: &[&str], cmd: &[&str]) -> String {
    let mut all = vec!["--rm"];
    all.extend(flags);
    let out = store.run(runtime, &all, cmd);
    assert!(
        out.status.success(),
        "podman --runtime {runtime} run {flags:?} {cmd:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn plain_run_matches_runc() {
    let s = Store::new();
    assert_eq!(
        run_rm(&s, HAKO, &[], &["echo", "hello from hako"]),
        "hello from hako\n"
    );

    // What the process sees of itself: identity, capabilities, limits, cwd,
    // root filesystem, namespaces count: the same under both runtimes.
    let probe = "id; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; \
                 ulimit -n; ulimit -u; pwd; ls /; ls /proc/self/ns | wc -l; \
                 grep -c . /proc/mounts >/dev/null && echo mounts-ok; \
                 ls -ln /run/hako | cut -c1-10,40-; cat /run/hako/file; \
                 touch /run/hako/new /tmp/new 2>&1 && echo writable || echo not-writable";
    for flags in [
        &[][..],
        &["--user", "1234:1234"][..],
        &[
            "--workdir",
            "/tmp",
            "--cap-drop",
            "all",
            "--cap-add",
            "net_raw",
        ][..],
        &["--read-only"][..],
    ] {
        let hako = run_rm(&s, HAKO, flags, &["sh", "-c", probe]);
        let runc = run_rm(&s, RUNC, flags, &["sh", "-c", probe]);
        assert_eq!(hako, runc, "hako vs runc with {flags:?}");
    }
    assert!(run_rm(&s, HAKO, &["--user", "1234:1234"], &["id"]).contains("uid=1234"));

    // Exit codes reach podman: the process's own, and 127 for a missing binary.
    let out = s.run(HAKO, &["--rm"], &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let out = s.run(HAKO, &["--rm"], &["/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/no/such/binary"),
        "the runtime's error names the binary: {}",
        text(&out.stderr)
    );
    // --rm removed them all.
    assert_eq!(s.ok(HAKO, &["ps", "-a", "-q"]).trim(), "");
}

#[test]
fn detached_run_and_stop() {
    let s = Store::new();
    // A handler for SIGTERM: `podman stop` should end it cleanly.
    let name = s
        .run_detached("trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done");
    s.wait_for_log(&name, "ready");
    assert_eq!(s.inspect(&name, "{{.State.Status}}"), "running");
    assert!(s.inspect(&name, "{{.State.Pid}}").parse::<u32>().unwrap() > 0);
    s.ok(HAKO, &["stop", "--time", "20", &name]);
    assert_eq!(s.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(s.inspect(&name, "{{.State.ExitCode}}"), "0");
    assert!(s.ok(HAKO, &["logs", &name]).contains("got-term"));

    // Without a handler pid 1 ignores SIGTERM: stop escalates to SIGKILL.
    let stubborn = s.run_detached("echo ready; while :; do sleep 0.1; done");
    s.wait_for_log(&stubborn, "ready");
    s.ok(HAKO, &["stop", "--time", "1", &stubborn]);
    assert_eq!(s.inspect(&stubborn, "{{.State.ExitCode}}"), "137");

    // A stopped container starts again under the same runtime.
    s.ok(HAKO, &["start", &name]);
    s.wait_for_log(&name, "ready\ngot-term\nready");
    assert_eq!(s.inspect(&name, "{{.State.Status}}"), "running");
    s.ok(HAKO, &["rm", "--force", "--time", "0", &name, &stubborn]);
    assert_eq!(s.ok(HAKO, &["ps", "-a", "-q"]).trim(), "");
}

#[test]
fn exec_into_running_container() {
    let s = Store::new();
    let name = s.run_detached("echo ready; exec sleep 1000");
    s.wait_for_log(&name, "ready");

    let out = s.ok(
        HAKO,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '",
        ],
    );
    assert_eq!(out, "sleep 1000 ");
    let out = s.podman(HAKO, &["exec", &name, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = s.podman(HAKO, &["exec", &name, "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert_eq!(
        s.ok(HAKO, &["exec", "--user", "1234:5678", &name, "id"]),
        "uid=1234 gid=5678\n"
    );
    assert_eq!(
        s.ok(HAKO, &["exec", "--workdir", "/tmp", &name, "pwd"]),
        "/tmp\n"
    );
    assert_eq!(
        s.ok(
            HAKO,
            &[
                "exec",
                "--env",
                "GREETING=hi",
                &name,
                "sh",
                "-c",
                "echo $GREETING"
            ]
        ),
        "hi\n"
    );
    // The exec'd process is in the container's namespaces and cgroup.
    let pid1 = s.inspect(&name, "{{.State.Pid}}");
    let exec_ns = s.ok(
        HAKO,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt",
        ],
    );
    let host_ns: String = ["pid", "mnt"]
        .iter()
        .map(|n| {
            let l = std::fs::read_link(format!("/proc/{pid1}/ns/{n}")).unwrap();
            format!("{}\n", l.display())
        })
        .collect();
    assert_eq!(exec_ns, host_ns);
    let exec_cg = s.ok(HAKO, &["exec", &name, "cat", "/proc/self/cgroup"]);
    assert_eq!(
        exec_cg,
        s.ok(HAKO, &["exec", &name, "cat", "/proc/1/cgroup"])
    );

    // Detached exec: the process keeps running inside after podman returns.
    s.ok(HAKO, &["exec", "--detach", &name, "sleep", "777"]);
    let top = s.ok(HAKO, &["top", &name, "args"]);
    assert!(top.contains("sleep 777"), "podman top: {top}");
    s.ok(HAKO, &["rm", "--force", "--time", "0", &name]);
}

#[test]
fn terminal() {
    let s = Store::new();
    let script = "tty; test -t 0 && echo stdin-tty; test -t 1 && echo stdout-tty; echo TERM=$TERM";
    let hako = run_rm(&s, HAKO, &["-t"], &["sh", "-c", script]);
    let runc = run_rm(&s, RUNC, &["-t"], &["sh", "-c", script]);
    // Output passes through the pty, so lines end in \r\n.
    assert_eq!(
        hako,
        "/dev/pts/0\r\nstdin-tty\r\nstdout-tty\r\nTERM=xterm\r\n"
    );
    assert_eq!(hako, runc);
    // Without -t the same script sees no terminal.
    let plain = run_rm(&s, HAKO, &[], &["sh", "-c", "tty; true"]);
    assert_eq!(plain, "not a tty\n");

    // exec -t into a container that itself has no terminal.
    let name = s.run_detached("echo ready; exec sleep 1000");
    s.wait_for_log(&name, "ready");
    let out = s.podman(HAKO, &["exec", "-t", &name, "sh", "-c", "tty; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    s.ok(HAKO, &["rm", "--force", "--time", "0", &name]);
}

#[test]
fn memory_limit() {
    let s = Store::new();
    // The container sees its own cgroup (cgroup namespace) with the limit,
    // on cgroup v1 (memory controller) or v2 (memory.max).
    let read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";
    let hako = run_rm(&s, HAKO, &["--memory", "64m"], &["sh", "-c", read]);
    assert_eq!(hako, "67108864\n");
    assert_eq!(
        hako,
        run_rm(&s, RUNC, &["--memory", "64m"], &["sh", "-c", read])
    );

    // Over the limit (no swap allowed) the kernel kills the process.
    let name = unique("hako-oom");
    let out = s.run(
        HAKO,
        &["--name", &name, "--memory", "32m", "--memory-swap", "32m"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert_eq!(s.inspect(&name, "{{.State.ExitCode}}"), "137");
    s.ok(HAKO, &["rm", &name]);
}

#[test]
fn ps_and_logs() {
    let s = Store::new();
    let name = s
        .run_detached("for i in 1 2 3; do echo line-$i; done; echo to-stderr >&2; exec sleep 1000");
    let logs = s.wait_for_log(&name, "to-stderr");
    assert!(
        logs.contains("line-1\nline-2\nline-3\n"),
        "podman logs: {logs}"
    );
    let err = s.podman(HAKO, &["logs", &name]);
    assert_eq!(text(&err.stderr), "to-stderr\n");

    let ps = s.ok(HAKO, &["ps", "--format", "{{.Names}} {{.Status}}"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from podman ps: {ps}"));
    assert!(line.contains(" Up "), "{line}");
    let pid = s.inspect(&name, "{{.State.Pid}}");
    // Our state agrees with podman's: the runtime reports the same pid.
    let id = s.inspect(&name, "{{.Id}}");
    let state = Command::new(HAKO).args(["state", &id]).output().unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout)
        .unwrap_or_else(|e| panic!("hako-runtime state {id}: {e}: {}", text(&state.stderr)));
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"].to_string(), pid);

    // Pause/unpause go through the runtime's freezer and show in ps.
    s.ok(HAKO, &["pause", &name]);
    assert_eq!(s.inspect(&name, "{{.State.Status}}"), "paused");
    s.ok(HAKO, &["unpause", &name]);
    assert_eq!(s.inspect(&name, "{{.State.Status}}"), "running");

    s.ok(HAKO, &["kill", &name]);
    s.ok(HAKO, &["wait", &name]);
    let ps = s.ok(HAKO, &["ps", "--format", "{{.Names}}"]);
    assert!(!ps.lines().any(|l| l == name), "{name} still in ps: {ps}");
    let ps_all = s.ok(HAKO, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps_all
            .lines()
            .any(|l| l.starts_with(&format!("{name} Exited (137)"))),
        "{ps_all}"
    );
    // Logs survive the container's exit.
    assert!(s.ok(HAKO, &["logs", &name]).contains("line-3"));
    s.ok(HAKO, &["rm", &name]);
}

#[test]
fn seccomp_profile_written_by_podman_with_masked_eq() {
    // podman (Go) writes the profile's arguments with the runtime-spec's Go
    // types, which leave out a valueTwo of 0: the config hako-runtime gets has
    // SCMP_CMP_MASKED_EQ without valueTwo. kill is denied for signals 0-15.
    let s = Store::new();
    let profile = s.dir.path().join("masked-eq.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
             "args":[{"index":1,"value":240,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
    )
    .expect("writing the seccomp profile");
    let name = unique("hako-pm-seccomp");
    let seccomp = format!("seccomp={}", profile.display());
    let mut args = vec![
        "create",
        "--network",
        "none",
        "--name",
        &name,
        "--security-opt",
        &seccomp,
    ];
    args.extend(ULIMITS);
    args.extend([
        s.image.as_str(),
        "sh",
        "-c",
        "kill -0 $$ 2>/dev/null; echo a=$?; kill -CONT $$; echo b=$?",
    ]);
    let id = s.ok(HAKO, &args).trim().to_string();
    let out = s.ok(HAKO, &["start", "--attach", &name]);
    assert_eq!(out, "a=1\nb=0\n");
    // The bundle podman wrote (at start) stays until the container is removed.
    let config_path = s
        .dir
        .path()
        .join(format!("root/vfs-containers/{id}/userdata/config.json"));
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&config_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", config_path.display())),
    )
    .expect("podman's config.json");
    let kill_rules: Vec<&serde_json::Value> = config["linux"]["seccomp"]["syscalls"]
        .as_array()
        .expect("syscalls in podman's profile")
        .iter()
        .filter(|r| {
            r["names"]
                .as_array()
                .is_some_and(|n| n.contains(&"kill".into()))
        })
        .collect();
    assert_eq!(kill_rules.len(), 1, "{kill_rules:?}");
    let arg = &kill_rules[0]["args"][0];
    assert_eq!(arg["op"], "SCMP_CMP_MASKED_EQ", "{arg}");
    assert!(
        arg.get("valueTwo").is_none(),
        "podman wrote valueTwo: {arg}"
    );
}
