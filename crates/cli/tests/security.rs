//! Default confinement and the options that change it, with real
//! containers: the default seccomp profile, `--security-opt`, `--ulimit`,
//! `--init`, CPU weight and cpuset (needs root).

mod engine_common;

use engine_common::Root;

fn status_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{key} missing from {out}"))
}

const STATUS: &[&str] = &["cat", "/proc/self/status"];

fn run(r: &Root, opts: &[&str], cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(opts);
    args.push("busybox");
    args.extend_from_slice(cmd);
    r.run(&args)
}

fn ok(r: &Root, opts: &[&str], cmd: &[&str]) -> String {
    let out = run(r, opts, cmd);
    assert!(
        out.status.success(),
        "{opts:?} {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn default_seccomp_profile_confines_and_can_be_lifted() {
    let r = Root::new();
    let out = ok(&r, &[], STATUS);
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
    // A new user namespace needs no capability, but the profile keeps it out.
    let out = run(&r, &[], &["unshare", "-U", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));
    // Ordinary work is unaffected, under runc too.
    assert_eq!(
        ok(
            &r,
            &["--runtime", "runc"],
            &["sh", "-c", "mkdir /tmp/x && echo ok"]
        ),
        "ok\n"
    );
    // unconfined and privileged have no filter.
    let out = ok(&r, &["--security-opt", "seccomp=unconfined"], STATUS);
    assert_eq!(status_field(&out, "Seccomp"), "0");
    ok(
        &r,
        &["--security-opt", "seccomp:unconfined"],
        &["unshare", "-U", "true"],
    );
    let out = ok(&r, &["--privileged"], STATUS);
    assert_eq!(status_field(&out, "Seccomp"), "0");
    // With CAP_SYS_ADMIN the guarded calls come back.
    ok(&r, &["--cap-add", "SYS_ADMIN"], &["unshare", "-U", "true"]);
}

#[test]
fn a_docker_format_profile_file_is_applied() {
    let r = Root::new();
    let profile = r.dir().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = run(&r, &["--security-opt", &opt], &["mkdir", "/tmp/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ok(&r, &["--security-opt", &opt], &["echo", "other"]),
        "other\n"
    );
    std::fs::write(&profile, "{not json").unwrap();
    let out = run(&r, &["--security-opt", &opt], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("seccomp profile {}", profile.display())),
        "{err}"
    );
}

#[test]
fn no_new_privileges_ulimits_and_init() {
    let r = Root::new();
    let out = ok(&r, &["--security-opt", "no-new-privileges"], STATUS);
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    let out = ok(
        &r,
        &["--ulimit", "nofile=1024:2048", "--ulimit", "nproc=300"],
        &["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u"],
    );
    assert_eq!(out, "1024\n2048\n300\n");
    // tini is pid 1; the command's exit code comes through it.
    let out = run(
        &r,
        &["--init"],
        &["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("/sbin/docker-init -- sh -c"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn cpu_shares_and_cpuset_reach_the_cgroup() {
    let r = Root::new();
    // v1 (cpu and cpuset controllers) or v2 (cpu.weight from shares).
    let out = ok(
        &r,
        &["--cpu-shares", "512", "--cpuset-cpus", "0"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null \
             || cat /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpuset.cpus",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0] == "512" || lines[0] == "20", "{out}");
    assert_eq!(lines[1], "0", "{out}");
}

#[test]
fn bad_security_options_get_one_line_errors() {
    let r = Root::new();
    for (opts, want) in [
        (
            vec!["--security-opt", "seccomp=/no/such.json"],
            "no such profile file",
        ),
        (
            vec!["--security-opt", "apparmor=docker-default"],
            "AppArmor",
        ),
        (vec!["--security-opt", "label=type:x"], "SELinux"),
        (vec!["--security-opt", "bogus"], "invalid --security-opt"),
        (vec!["--ulimit", "nofile=10:5"], "invalid --ulimit"),
    ] {
        let out = run(&r, &opts, &["true"]);
        assert_eq!(out.status.code(), Some(125), "{opts:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{opts:?}: {err}");
        assert!(err.contains(want), "{opts:?}: {err}");
    }
    assert!(r.ps_all().is_empty());
}

#[test]
fn privileged_containers_get_the_host_devices() {
    use std::os::unix::fs::FileTypeExt;
    let r = Root::new();
    // Some block device of the host (a disk, a loop device).
    let dev = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        .map(|e| e.path().display().to_string())
        .expect("the host has a block device");
    let out = ok(
        &r,
        &["--privileged"],
        &["sh", "-c", &format!("test -b {dev} && echo yes")],
    );
    assert_eq!(out, "yes\n");
    let out = run(&r, &[], &["test", "-e", &dev]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "{dev} visible without --privileged"
    );
}

/// Import the busybox root filesystem changed by `edit` as image `name`:
/// a hostile image, with whatever links, FIFOs or devices `edit` puts in.
fn import_hostile(r: &Root, name: &str, edit: impl FnOnce(&std::path::Path)) {
    let rootfs = r.dir().join(format!("{name}-rootfs"));
    engine_common::busybox_rootfs(&rootfs);
    edit(&rootfs);
    let tar = r.dir().join(format!("{name}.tar"));
    let st = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    r.ok(&["import", tar.to_str().unwrap(), name]);
}

/// Run hako, killed after a minute if it hangs (a bound so a regression
/// fails instead of hanging the suite, not a timing assertion).
fn run_bounded(r: &Root, args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// One line on stderr, exit 125, the message containing `want`.
fn assert_refused(out: &std::process::Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    assert!(err.contains(want), "{want:?} not in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
}

#[test]
fn user_lookup_never_reads_the_host_through_the_image() {
    let r = Root::new();
    // Host files an image could point its /etc/passwd and /etc/group at.
    let host_passwd = r.dir().join("host-passwd");
    std::fs::write(&host_passwd, "evil:x:4242:4242::/evil:/bin/sh\n").unwrap();
    let host_group = r.dir().join("host-group");
    std::fs::write(&host_group, "evilg:x:4343:\n").unwrap();
    let linked = "linked".to_string();
    import_hostile(&r, &linked, |fs| {
        std::fs::remove_file(fs.join("etc/passwd")).unwrap();
        std::fs::remove_file(fs.join("etc/group")).unwrap();
        std::os::unix::fs::symlink(&host_passwd, fs.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(&host_group, fs.join("etc/group")).unwrap();
    });
    let base = ["run", "--rm", "--network", "none"];
    let with = |opts: &[&str], image: &str| -> Vec<String> {
        base.iter()
            .chain(opts)
            .chain(&[image, "id"])
            .map(|s| s.to_string())
            .collect()
    };
    let args = with(&["-u", "evil"], &linked);
    let out = r.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_refused(&out, "unable to find user evil");
    let args = with(&["--group-add", "evilg"], &linked);
    let out = r.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_refused(&out, "unable to find group evilg");
    // A build's USER goes through the same lookup.
    let ctx = r.dir().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {linked}\nUSER evil\nRUN id\n"),
    )
    .unwrap();
    let out = r.run(&["build", "-t", "evil-user", ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unable to find user evil"));

    // A device node as /etc/passwd (the host's /dev/zero would never end),
    // a FIFO as /etc/group (would block forever): refused in one line.
    let dev = "devpasswd".to_string();
    import_hostile(&r, &dev, |fs| {
        std::fs::remove_file(fs.join("etc/passwd")).unwrap();
        nix::sys::stat::mknod(
            &fs.join("etc/passwd"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
    });
    let out = run_bounded(&r, &["run", "--rm", "--network", "none", &dev, "true"]);
    assert_refused(
        &out,
        "/etc/passwd in the root filesystem is not a regular file",
    );
    let fifo = "fifogroup".to_string();
    import_hostile(&r, &fifo, |fs| {
        std::fs::remove_file(fs.join("etc/group")).unwrap();
        nix::unistd::mkfifo(&fs.join("etc/group"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    });
    let out = run_bounded(&r, &["run", "--rm", "--network", "none", &fifo, "true"]);
    assert_refused(
        &out,
        "/etc/group in the root filesystem is not a regular file",
    );
    // Nothing was left behind by the refused runs.
    assert_eq!(r.ok(&["ps", "-a", "-q"]), "");

    // A running container can swap its /etc/passwd for a link to the host
    // before an `exec -u`: the lookup still stays inside it.
    let c = "swap".to_string();
    r.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &c,
        "busybox",
        "sleep",
        "600",
    ]);
    let link = host_passwd.to_str().unwrap();
    r.ok(&["exec", &c, "ln", "-sf", link, "/etc/passwd"]);
    let out = r.run(&["exec", "-u", "evil", &c, "id"]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unable to find user evil"));
}

#[test]
fn cpuset_mems_reaches_the_cgroup() {
    let r = Root::new();
    // Node 0 exists on every machine.
    let out = ok(
        &r,
        &["--cpuset-mems", "0"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpuset/cpuset.mems 2>/dev/null || cat /sys/fs/cgroup/cpuset.mems",
        ],
    );
    assert_eq!(out.trim(), "0", "{out}");
    r.ok(&[
        "create",
        "--name",
        "mems",
        "--cpuset-mems",
        "0",
        "busybox",
        "true",
    ]);
    assert_eq!(r.inspect("mems")["HostConfig"]["CpusetMems"], "0");
}

/// The five Cap* lines of /proc/self/status.
fn cap_lines(status: &str) -> Vec<String> {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .map(|k| format!("{k}: {}", status_field(status, k)))
        .collect()
}

/// The Cap* lines podman (with runc; crun refuses this host's hybrid
/// cgroups) gives a process of the busybox rootfs run with `opts`.
fn podman_caps(r: &Root, opts: &[&str]) -> Vec<String> {
    let rootfs = r.dir().join("podman-rootfs");
    if !rootfs.exists() {
        engine_common::busybox_rootfs(&rootfs);
    }
    let out = std::process::Command::new("podman")
        .arg("--root")
        .arg(r.dir().join("podman-root"))
        .arg("--runroot")
        .arg(r.dir().join("podman-run"))
        .args(["run", "--rm", "--runtime", "runc", "--network", "none"])
        .args(opts)
        .arg("--rootfs")
        .arg(&rootfs)
        .args(STATUS)
        .output()
        .expect("podman is not installed: run scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "podman {opts:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cap_lines(&String::from_utf8_lossy(&out.stdout))
}

/// Removes podman's storage under the test root (its overlay mounts) on drop.
struct PodmanStore<'a>(&'a Root);

impl Drop for PodmanStore<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .arg("--root")
            .arg(self.0.dir().join("podman-root"))
            .arg("--runroot")
            .arg(self.0.dir().join("podman-run"))
            .args(["system", "reset", "-f"])
            .output();
    }
}

#[test]
fn cap_drop_sets_all_five_capability_sets_as_docker_and_podman() {
    let r = Root::new();
    let _podman = PodmanStore(&r);
    // Flags whose sets docker and podman agree on (their default sets differ,
    // so defaults are compared only where they are empty).
    for opts in [
        &["--cap-drop", "ALL"][..],
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "--cap-add",
            "KILL",
        ],
        &["-u", "65534", "--cap-drop", "ALL"],
    ] {
        for runtime in ["hako-runtime", "runc"] {
            let mut args = vec!["--runtime", runtime];
            args.extend_from_slice(opts);
            let hako = cap_lines(&ok(&r, &args, STATUS));
            assert_eq!(hako, podman_caps(&r, opts), "{args:?}");
        }
    }
    // A non-root user gets nothing but the bounding set: no ambient, no
    // effective (podman agrees).
    let user = cap_lines(&ok(&r, &["-u", "65534"], STATUS));
    let theirs = podman_caps(&r, &["-u", "65534"]);
    for i in [0, 1, 2, 4] {
        assert_eq!(user[i], theirs[i]);
    }
    // docker's rule even for added caps (podman grants those to non-root).
    let added = cap_lines(&ok(&r, &["-u", "65534", "--cap-add", "NET_ADMIN"], STATUS));
    assert_eq!(added[2], "CapEff: 0000000000000000");
    assert_eq!(added[4], "CapAmb: 0000000000000000");
    // Dropping one of the runtime-spec's default inheritable/ambient caps
    // (KILL=5, NET_BIND_SERVICE=10, AUDIT_WRITE=29) works and drops just it.
    let root_default = cap_lines(&ok(&r, &[], STATUS));
    let bits = |line: &str| u64::from_str_radix(line.split(' ').nth(1).unwrap(), 16).unwrap();
    for (cap, bit) in [("KILL", 5), ("NET_BIND_SERVICE", 10), ("AUDIT_WRITE", 29)] {
        for runtime in ["hako-runtime", "runc"] {
            let got = cap_lines(&ok(&r, &["--runtime", runtime, "--cap-drop", cap], STATUS));
            for i in [1, 2, 3] {
                assert_eq!(bits(&got[i]), bits(&root_default[i]) & !(1 << bit), "{cap}");
            }
            assert_eq!(bits(&got[0]) | bits(&got[4]), 0, "{cap}: {got:?}");
        }
    }
    // exec follows the same rule for the exec's user.
    r.ok(&[
        "run", "-d", "--name", "capx", "-u", "65534", "busybox", "sleep", "60",
    ]);
    let as_user = cap_lines(&r.ok(&["exec", "capx", "cat", "/proc/self/status"]));
    assert_eq!(as_user[2], "CapEff: 0000000000000000");
    assert_eq!(as_user[4], "CapAmb: 0000000000000000");
    let as_root = cap_lines(&r.ok(&["exec", "-u", "0", "capx", "cat", "/proc/self/status"]));
    assert_eq!(as_root[1..4], root_default[1..4]);
    assert_eq!(as_root[4], "CapAmb: 0000000000000000");
}
