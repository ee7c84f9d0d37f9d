//! `hako run` and the container lifecycle with real containers (needs root):
//! busybox imported at test time, a temp root per test.

mod common;
mod engine_common;
mod registry_peers;

use std::fs;

use engine_common::{pid_alive, wait_for, Root};

#[test]
fn run_rm_prints_output_and_propagates_exit_codes() {
    let r = Root::new();
    let out = r.run(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(out.status.code(), Some(0));

    let out = r.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");

    // --rm removed both, and `run` returned only after removal.
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());

    // An engine error is 125, a missing command 127.
    let out = r.run(&["run", "--rm", "no-such-image", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let out = r.run(&["run", "--rm", "busybox", "/no/such/command"]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());
}

#[test]
fn detached_lifecycle_ps_logs_stop_rm() {
    let r = Root::new();
    let id = r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let (state, status) = r.state_of("web").unwrap();
    assert_eq!(state, "running");
    assert!(status.starts_with("Up"), "{status}");
    assert!(r.ok(&["ps", "-q"]).contains(&id[..12]));
    wait_for("the container's output in its log", || {
        r.ok(&["logs", "web"]).contains("ready")
    });
    let stamped = r.ok(&["logs", "-t", "--tail", "1", "web"]);
    assert!(
        stamped.ends_with(" ready\n") && stamped.contains('T'),
        "{stamped}"
    );

    // A second container may not take the name.
    let out = r.run(&["run", "-d", "--name", "web", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));

    // The stop signal reaches the trap; the exit code is the container's.
    r.ok(&["stop", "web"]);
    let v = r.inspect("web");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 7);
    assert_eq!(r.state_of("web").unwrap().0, "exited");
    assert!(!r.ok(&["ps"]).contains("web"));
    assert!(r.ok(&["logs", "web"]).contains("bye"));
    assert_eq!(r.ok(&["wait", "web"]).trim(), "7");

    r.ok(&["rm", "web"]);
    assert!(r.state_of("web").is_none());
    assert!(!r.root().join("containers").join(id).exists());
}

#[test]
fn stop_kills_after_the_timeout_and_rm_needs_force_while_running() {
    let r = Root::new();
    // sleep as pid 1 ignores SIGTERM: only SIGKILL ends it.
    r.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "1000"]);
    let out = r.run(&["rm", "sleeper"]);
    // docker's rm exits 1 (125 is run's).
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    r.ok(&["stop", "-t", "1", "sleeper"]);
    assert_eq!(r.inspect("sleeper")["State"]["ExitCode"], 137);

    r.ok(&["start", "sleeper"]);
    assert_eq!(r.state_of("sleeper").unwrap().0, "running");
    r.ok(&["rm", "-f", "sleeper"]);
    assert!(r.ps_all().is_empty());
}

#[test]
fn containers_outlive_the_cli_and_take_exec() {
    let r = Root::new();
    r.ok(&["run", "-d", "--name", "bg", "busybox", "sleep", "1000"]);
    // The `hako run` process has exited; its container still runs under
    // its monitor, which is not a child of any hako command.
    let v = r.inspect("bg");
    let pid = v["State"]["Pid"].as_i64().unwrap();
    let monitor = v["State"]["MonitorPid"].as_i64().unwrap();
    assert!(pid_alive(pid) && pid_alive(monitor));
    let ppid_of = |p: i64| -> i64 {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(ppid_of(pid), monitor, "the monitor reaps the container");
    assert_ne!(ppid_of(monitor), std::process::id() as i64);

    let out = r.run(&[
        "exec",
        "-e",
        "X=1",
        "bg",
        "sh",
        "-c",
        "echo exec $X; exit 4",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec 1\n");
    assert_eq!(out.status.code(), Some(4));
    r.ok(&["kill", "bg"]);
    assert_eq!(r.ok(&["wait", "bg"]).trim(), "137");
}

#[test]
fn ps_stays_truthful_after_sigkill_of_monitor_and_container() {
    let r = Root::new();
    // Container killed, monitor alive: the monitor records 137.
    r.ok(&["run", "-d", "--name", "a", "busybox", "sleep", "1000"]);
    let pid = r.inspect("a")["State"]["Pid"].as_i64().unwrap();
    nix::sys::signal::kill(positive_pid(pid), nix::sys::signal::SIGKILL).unwrap();
    assert_eq!(r.ok(&["wait", "a"]).trim(), "137");
    let (state, status) = r.state_of("a").unwrap();
    assert_eq!(state, "exited");
    assert!(status.starts_with("Exited (137)"), "{status}");

    // Monitor killed: the container still runs and is shown running...
    r.ok(&["run", "-d", "--name", "b", "busybox", "sleep", "1000"]);
    let v = r.inspect("b");
    let pid = v["State"]["Pid"].as_i64().unwrap();
    let monitor = v["State"]["MonitorPid"].as_i64().unwrap();
    nix::sys::signal::kill(positive_pid(monitor), nix::sys::signal::SIGKILL).unwrap();
    wait_for("the monitor to die", || !pid_alive(monitor));
    assert_eq!(r.state_of("b").unwrap().0, "running");
    // ...and once it is killed too, exited with docker's unknown status.
    nix::sys::signal::kill(positive_pid(pid), nix::sys::signal::SIGKILL).unwrap();
    wait_for("the container to die", || !pid_alive(pid));
    let (state, status) = r.state_of("b").unwrap();
    assert_eq!(state, "exited");
    assert!(status.starts_with("Exited (255)"), "{status}");
    let v = r.inspect("b");
    assert_eq!(v["State"]["Running"], false);
    assert!(v["State"]["Error"].as_str().unwrap().contains("monitor"));
    r.ok(&["rm", "a", "b"]);
}

#[test]
fn read_only_rootfs_with_tmpfs() {
    let r = Root::new();
    let out = r.run(&["run", "--rm", "--read-only", "busybox", "touch", "/file"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    r.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "busybox",
        "touch",
        "/tmp/file",
    ]);
    r.ok(&["run", "--rm", "busybox", "touch", "/file"]);
}

/// The capability bounding set of the container's process.
fn cap_bnd(r: &Root, extra: &[&str]) -> u64 {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "grep", "CapBnd", "/proc/self/status"]);
    let out = r.ok(&args);
    u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn capabilities_default_drop_add() {
    let r = Root::new();
    const CHOWN: u64 = 1 << 0;
    const NET_ADMIN: u64 = 1 << 12;
    const NET_RAW: u64 = 1 << 13;
    const SYS_ADMIN: u64 = 1 << 21;
    let default = cap_bnd(&r, &[]);
    assert!(
        default & CHOWN != 0 && default & NET_RAW != 0,
        "{default:x}"
    );
    assert!(
        default & SYS_ADMIN == 0 && default & NET_ADMIN == 0,
        "{default:x}"
    );
    let dropped = cap_bnd(&r, &["--cap-drop", "NET_RAW"]);
    assert_eq!(dropped, default & !NET_RAW);
    let added = cap_bnd(&r, &["--cap-add", "cap_net_admin"]);
    assert_eq!(added, default | NET_ADMIN);
    assert!(cap_bnd(&r, &["--privileged"]) & SYS_ADMIN != 0);
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    let r = Root::new();
    let host = r.dir().join("shared");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "from host\n").unwrap();
    let spec = format!("{}:/data", host.display());
    let out = r.ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /data/in; echo back > /data/out",
    ]);
    assert_eq!(out, "from host\n");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "back\n");
    let ro = format!("{}:/data:ro", host.display());
    let out = r.run(&["run", "--rm", "-v", &ro, "busybox", "touch", "/data/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!host.join("x").exists());
}

#[test]
fn memory_limit_reaches_the_cgroup() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "m",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = r.inspect("m")["State"]["Pid"].as_i64().unwrap();
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let limit = if let Some(line) = cgroups
        .lines()
        .find(|l| l.split(':').nth(1) == Some("memory"))
    {
        let path = line.splitn(3, ':').nth(2).unwrap();
        fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")).unwrap()
    } else {
        let path = cgroups.lines().find(|l| l.starts_with("0::")).unwrap()[3..].to_string();
        fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).unwrap()
    };
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    r.ok(&["rm", "-f", "m"]);
}

#[test]
fn config_merge_env_workdir_user_hostname() {
    let r = Root::new();
    let env_file = r.dir().join("env");
    fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let out = r.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/tmp",
        "-u",
        "user",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $A $FROM_FILE $(pwd) $(id -u) $(hostname)",
    ]);
    assert_eq!(out, "1 yes /tmp 1000 box\n");
    let out = r.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "via",
        "entrypoint",
    ]);
    assert_eq!(out, "via entrypoint\n");
}

fn run_with_runtime(runtime: &str) {
    let r = Root::new();
    let out = r.run(&[
        "run",
        "--rm",
        "--runtime",
        runtime,
        "busybox",
        "sh",
        "-c",
        "echo hi; exit 5",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(5));
    r.ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--runtime",
        runtime,
        "--cap-drop",
        "NET_RAW",
        "busybox",
        "sleep",
        "1000",
    ]);
    let v = r.inspect("s");
    assert_eq!(v["HostConfig"]["Runtime"], runtime);
    r.ok(&["stop", "-t", "1", "s"]);
    assert_eq!(r.inspect("s")["State"]["ExitCode"], 137);
    r.ok(&["rm", "s"]);
}

#[test]
fn runc_as_runtime() {
    run_with_runtime("/usr/sbin/runc");
}

/// Debian's crun 1.8 refuses a hybrid cgroup layout (v1 controllers with a v2
/// mount carrying none) unless a v1 hugetlb hierarchy is mounted too (benchmark
/// setups mount one). The test probes the layout and checks what crun does there:
/// the whole lifecycle where it works, its refusal reaching the user as an engine
/// error where it does not.
#[test]
fn crun_as_runtime() {
    if crun_works_here() {
        return run_with_runtime("crun");
    }
    let r = Root::new();
    let out = r.run(&["run", "--rm", "--runtime", "crun", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OCI runtime create failed") && err.contains("hybrid"),
        "{err}"
    );
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());
}

/// Whether crun 1.8 accepts this machine's cgroup layout: pure v1 or pure v2,
/// or hybrid with hugetlb mounted as a v1 hierarchy.
fn crun_works_here() -> bool {
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
    if !hybrid {
        return true;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts.lines().any(|l| {
        let Some((_, tail)) = l.split_once(" - ") else {
            return false;
        };
        let mut f = tail.split_whitespace();
        f.next() == Some("cgroup")
            && f.nth(1)
                .is_some_and(|o| o.split(',').any(|o| o == "hugetlb"))
    })
}

/// A pid to signal; 0 or -1 would signal this test's process group or everything.
fn positive_pid(pid: i64) -> nix::unistd::Pid {
    assert!(pid > 0, "refusing to signal pid {pid}");
    nix::unistd::Pid::from_raw(pid as i32)
}

#[test]
fn twenty_parallel_detached_runs_keep_the_records_consistent() {
    let r = Root::new();
    let bin = env!("CARGO_BIN_EXE_hako");
    let children: Vec<std::process::Child> = (0..20)
        .map(|i| {
            std::process::Command::new(bin)
                .arg("--root")
                .arg(r.root())
                .args([
                    "run",
                    "-d",
                    "--network",
                    "none",
                    "--name",
                    &format!("p{i}"),
                    "busybox",
                    "sleep",
                    "1000",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = r.ps_all();
    assert_eq!(rows.len(), 20, "{rows:?}");
    let mut names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20);
    assert!(rows.iter().all(|r| r.1 == "running"), "{rows:?}");
    // And as many removals at once.
    let children: Vec<std::process::Child> = (0..20)
        .map(|i| {
            std::process::Command::new(bin)
                .arg("--root")
                .arg(r.root())
                .args(["rm", "-f", &format!("p{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(r.ps_all().is_empty());
}

#[test]
fn run_pulls_a_missing_image_as_pull_says() {
    let reg = registry_peers::Server::hako_registry(None);
    let r = Root::new();
    let name = format!("{}/demo/bb:1", reg.host());
    r.ok(&["tag", "busybox", &name]);
    r.ok(&["push", &name]);
    r.ok(&["rmi", &name]);
    // missing (the default): pulled first, said on stderr; stdout is the container's.
    let out = r.run(&["run", "--rm", "--network", "none", &name, "echo", "hi"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Unable to find image '{name}' locally")),
        "{err}"
    );
    assert!(err.contains("Status: Downloaded newer image for"), "{err}");
    // Now stored: no pull.
    let out = r.run(&["run", "--rm", "--network", "none", &name, "true"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Unable to find"));
    // always: pulled even so; never: a missing image is an error.
    let out = r.run(&[
        "create",
        "--pull",
        "always",
        "--network",
        "none",
        &name,
        "true",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Downloaded newer image"));
    r.ok(&["rm", String::from_utf8_lossy(&out.stdout).trim()]);
    r.ok(&["rmi", &name]);
    for (args, want) in [
        (
            vec!["run", "--rm", "--pull", "never", &name, "true"],
            "not found",
        ),
        (
            vec!["run", "--rm", "--pull", "sometimes", "busybox", "true"],
            "invalid --pull",
        ),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().count() == 1 && err.contains(want),
            "{args:?}: {err}"
        );
    }
    // A registry that is not there: the pull's error, in one line.
    let gone = "127.0.0.1:9/demo/bb:1";
    let out = r.run(&["run", "--rm", gone, "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("pulling 127.0.0.1:9/demo/bb:1"),
        "{err}"
    );
}

#[test]
fn shm_size_and_sysctls_reach_the_container() {
    let r = Root::new();
    let out = r.ok(&[
        "run", "--rm", "--network", "none", "--shm-size", "8m", "--sysctl",
        "net.ipv4.ip_forward=1", "--sysctl", "kernel.msgmax=12345", "busybox", "sh", "-c",
        "df -k /dev/shm | tail -1 | awk '{print $2}'; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax",
    ]);
    assert_eq!(out, "8192\n1\n12345\n");
    // The default, as docker's: 64 MiB.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "df -k /dev/shm | tail -1 | awk '{print $2}'",
    ]);
    assert_eq!(out, "65536\n");
    r.ok(&[
        "create",
        "--name",
        "k",
        "--shm-size",
        "1g",
        "--sysctl",
        "net.core.somaxconn=1024",
        "busybox",
        "true",
    ]);
    let v = r.inspect("k");
    assert_eq!(v["HostConfig"]["ShmSize"], 1i64 << 30);
    assert_eq!(v["HostConfig"]["Sysctls"]["net.core.somaxconn"], "1024");
    for (args, want) in [
        (
            vec!["run", "--rm", "--sysctl", "noequals", "busybox", "true"],
            "invalid --sysctl",
        ),
        (
            vec!["run", "--rm", "--shm-size", "lots", "busybox", "true"],
            "invalid size",
        ),
        // Not namespaced: it would change the host.
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "--sysctl",
                "vm.swappiness=1",
                "busybox",
                "true",
            ],
            "vm.swappiness",
        ),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().count() == 1 && err.contains(want),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn pid_and_ipc_container_join_another_containers_namespaces() {
    let r = Root::new();
    let name = common::unique("nsowner");
    r.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]);
    let ns = |what: &str| r.ok(&["exec", &name, "readlink", &format!("/proc/self/ns/{what}")]);
    let (ipc, pid) = (ns("ipc"), ns("pid"));
    let joined = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "busybox",
            "sh",
            "-c",
            "readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid; pidof sleep || echo none",
        ]);
        r.ok(&args)
    };
    let target = format!("container:{name}");
    let out = joined(&["--ipc", &target, "--pid", &target]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], ipc.trim());
    assert_eq!(lines[1], pid.trim());
    // The other's processes are visible in its PID namespace.
    assert_ne!(lines[2], "none", "{out}");
    // Not joined: namespaces of its own.
    let out = joined(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], ipc.trim());
    assert_eq!(lines[2], "none", "{out}");
    // Joining a container that does not run is refused in one line.
    r.ok(&["stop", "-t", "0", &name]);
    let out = r.run(&["run", "--rm", "--ipc", &target, "busybox", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() == 1 && err.contains("non running container"),
        "{err}"
    );
}

#[test]
fn ipc_shareable_private_and_none_as_docker() {
    let r = Root::new();
    let donor = common::unique("shm-donor");
    let private = common::unique("shm-private");
    for (name, mode) in [(&donor, "shareable"), (&private, "private")] {
        r.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--ipc",
            mode,
            "busybox",
            "sleep",
            "600",
        ]);
    }
    r.ok(&["exec", &donor, "sh", "-c", "echo shared > /dev/shm/note"]);
    // A joiner of a shareable container shares its IPC namespace and /dev/shm.
    let target = format!("container:{donor}");
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ipc",
        &target,
        "busybox",
        "sh",
        "-c",
        "cat /dev/shm/note; echo back > /dev/shm/reply",
    ]);
    assert_eq!(out, "shared\n");
    assert_eq!(r.ok(&["exec", &donor, "cat", "/dev/shm/reply"]), "back\n");
    // A private one cannot be joined.
    let out = r.run(&[
        "run",
        "--rm",
        "--ipc",
        &format!("container:{private}"),
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() == 1 && err.contains("non-shareable IPC"),
        "{err}"
    );
    // none: no /dev/shm at all.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ipc",
        "none",
        "busybox",
        "sh",
        "-c",
        "grep -c ' /dev/shm ' /proc/mounts || true",
    ]);
    assert_eq!(out.trim(), "0");
    assert_eq!(r.inspect(&donor)["HostConfig"]["IpcMode"], "shareable");
    r.ok(&["rm", "-f", &donor, &private]);
}

#[test]
fn pid_and_ipc_host_share_the_hosts_namespaces() {
    let r = Root::new();
    let me = std::process::id();
    // --pid host: the test process is visible; otherwise it is not.
    let script = format!("test -d /proc/{me} && echo seen || echo hidden");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sh", "-c", &script]);
        r.ok(&args)
    };
    assert_eq!(run(&["--pid", "host"]), "seen\n");
    assert_eq!(run(&[]), "hidden\n");
    // --ipc host: the host's IPC namespace and its /dev/shm.
    let host_ipc = fs::read_link("/proc/self/ns/ipc").unwrap();
    let marker = format!("/dev/shm/hako-test-{me}");
    fs::write(&marker, "shared").unwrap();
    // Removed even if the test fails.
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _gone = Gone(marker.clone());
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ipc",
        "host",
        "busybox",
        "sh",
        "-c",
        &format!("readlink /proc/self/ns/ipc; cat {marker}"),
    ]);
    assert_eq!(out, format!("{}\nshared", host_ipc.display()));
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ipc",
        "private",
        "busybox",
        "readlink",
        "/proc/self/ns/ipc",
    ]);
    assert_ne!(out.trim(), host_ipc.display().to_string());
    let v = {
        r.ok(&[
            "create", "--name", "h", "--pid", "host", "--ipc", "host", "busybox", "true",
        ]);
        r.inspect("h")
    };
    assert_eq!(
        (
            v["HostConfig"]["PidMode"].as_str(),
            v["HostConfig"]["IpcMode"].as_str()
        ),
        (Some("host"), Some("host"))
    );
    for (args, want) in [
        (
            vec!["run", "--rm", "--pid", "container:", "busybox", "true"],
            "invalid --pid",
        ),
        (
            vec!["run", "--rm", "--ipc", "sharable", "busybox", "true"],
            "invalid --ipc",
        ),
        (
            vec![
                "run",
                "--rm",
                "--ipc",
                "host",
                "--shm-size",
                "8m",
                "busybox",
                "true",
            ],
            "conflicting options",
        ),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().count() == 1 && err.contains(want),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn group_add_gives_the_process_more_groups() {
    let r = Root::new();
    // busybox's image has group "user" (1000); 4321 is a bare gid.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--group-add",
        "user",
        "--group-add",
        "4321",
        "busybox",
        "sh",
        "-c",
        "grep ^Groups: /proc/self/status",
    ]);
    let groups: Vec<&str> = out
        .trim()
        .trim_start_matches("Groups:")
        .split_whitespace()
        .collect();
    assert!(
        groups.contains(&"1000") && groups.contains(&"4321"),
        "{out}"
    );
    let out = r.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--group-add",
        "nosuchgroup",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() == 1 && err.contains("unable to find group nosuchgroup"),
        "{err}"
    );
}

/// Unmounts a mount point on drop (a test's own mount, even when it fails).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The optional fields (shared:N, master:N) of the mount at `point` in a
/// mountinfo text; None if nothing is mounted there.
fn propagation_fields(mountinfo: &str, point: &str) -> Option<String> {
    mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&point)).then(|| {
            f[6..]
                .iter()
                .take_while(|x| **x != "-")
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        })
    })
}

#[test]
fn volume_propagation_options_are_honoured() {
    let r = Root::new();
    // A shared mount on the host as the source, so that propagation can be seen.
    let src = r.dir().join("shared-src");
    fs::create_dir(&src).unwrap();
    let flags = nix::mount::MsFlags::MS_BIND;
    nix::mount::mount(Some(&src), &src, None::<&str>, flags, None::<&str>).unwrap();
    let _src_mount = Unmount(src.clone());
    nix::mount::mount(
        None::<&str>,
        &src,
        None::<&str>,
        nix::mount::MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    let s = src.to_str().unwrap();
    let run = |name: &str, opt: &str| {
        let v = format!("{s}:/m{opt}");
        r.ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            "-v",
            &v,
            "busybox",
            "sleep",
            "600",
        ]);
    };
    run("slave", ":rslave");
    run("shared", ":ro,rshared");
    run("private", "");
    let fields = |name: &str| {
        propagation_fields(&r.ok(&["exec", name, "cat", "/proc/self/mountinfo"]), "/m")
            .unwrap_or_else(|| panic!("{name}: nothing mounted at /m"))
    };
    assert!(fields("slave").contains("master:"), "{}", fields("slave"));
    assert!(!fields("slave").contains("shared:"), "{}", fields("slave"));
    assert!(fields("shared").contains("shared:"), "{}", fields("shared"));
    assert_eq!(fields("private"), "");
    // A mount made on the host afterwards reaches the slave, not the private one.
    let sub = src.join("sub");
    fs::create_dir(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _sub_mount = Unmount(sub.clone());
    fs::write(sub.join("hello"), "from the host").unwrap();
    assert_eq!(
        r.ok(&["exec", "slave", "cat", "/m/sub/hello"]),
        "from the host"
    );
    assert!(!r
        .run(&["exec", "private", "cat", "/m/sub/hello"])
        .status
        .success());
    // Inspect says which.
    let m = &r.inspect("slave")["Mounts"][0];
    assert_eq!(m["Propagation"], "rslave");
    for name in ["slave", "shared", "private"] {
        r.ok(&["rm", "-f", name]);
    }
}

#[test]
fn run_rm_reports_a_failed_removal() {
    let r = Root::new();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--name",
            "stuck",
            "busybox",
            "sh",
            "-c",
            "while [ ! -e /go ]; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the container to run", || {
        r.state_of("stuck").is_some_and(|s| s.0 == "running")
    });
    // A mount in the container's directory makes its removal fail (EBUSY).
    let id = r
        .ok(&["inspect", "-f", "{{.Id}}", "stuck"])
        .trim()
        .to_string();
    let blocker = r.root().join("containers").join(&id).join("blocker");
    fs::create_dir(&blocker).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &blocker,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let guard = Unmount(blocker.clone());
    r.ok(&["exec", "stuck", "touch", "/go"]);
    let out = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The container's own status was 0: the failed removal makes it 125.
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    assert!(
        err.contains("container stuck") && err.contains("--rm"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    drop(guard);
    r.ok(&["rm", "-f", "stuck"]);
}

#[test]
fn stop_signal_and_stop_timeout_are_used_by_stop() {
    let r = Root::new();
    // --stop-signal: stop sends USR1, which this container exits 7 on.
    r.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done",
    ]);
    wait_for("the trap", || r.ok(&["logs", "usr1"]).contains("ready"));
    assert_eq!(r.inspect("usr1")["Config"]["StopSignal"], "USR1");
    r.ok(&["stop", "usr1"]);
    assert!(r.ok(&["logs", "usr1"]).contains("got-usr1"));
    assert_eq!(r.inspect("usr1")["State"]["ExitCode"], 7);

    // --stop-timeout: the time a container gets between SIGTERM and SIGKILL.
    // Each of these cleans up for a second on SIGTERM: with 0 it is killed
    // at once (137, no cleanup), with 120 it finishes its cleanup (0).
    let graceful =
        "trap 'sleep 1; echo cleaned; exit 0' TERM; echo ready; while :; do sleep 0.1; done";
    for (name, timeout) in [("at-once", "0"), ("patient", "120")] {
        r.ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            "--stop-timeout",
            timeout,
            "busybox",
            "sh",
            "-c",
            graceful,
        ]);
        wait_for("the trap", || r.ok(&["logs", name]).contains("ready"));
        assert_eq!(
            r.inspect(name)["Config"]["StopTimeout"],
            timeout.parse::<i64>().unwrap()
        );
        r.ok(&["stop", name]);
    }
    assert_eq!(r.inspect("at-once")["State"]["ExitCode"], 137);
    assert!(!r.ok(&["logs", "at-once"]).contains("cleaned"));
    assert_eq!(r.inspect("patient")["State"]["ExitCode"], 0);
    assert!(r.ok(&["logs", "patient"]).contains("cleaned"));
}
