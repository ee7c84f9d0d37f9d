//! Runtime-spec conformance defects of issue 12, each seen from outside with a
//! real container (runc beside it where it behaves as the spec says).

mod common;
use common::*;
use serde_json::json;
use std::process::Stdio;

fn run_ok(rt: &Runtime, b: &Bundle, prefix: &str) -> String {
    let (code, out, err) = rt.run_bundle(b, &unique_id(prefix));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

#[test]
fn masked_eq_without_value_two_compares_with_zero() {
    // kill is denied for signals 0-15, where (sig & 0xf0) == 0: valueTwo is
    // absent, as Go's spec types write it when it is 0.
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": 240, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    });
    b.sh("kill -0 $$ 2>/dev/null; echo a=$?; kill -CONT $$; echo b=$?");
    let out = run_ok(&rt, &b, "maskedeq");
    assert_eq!(out, "a=1\nb=0\n");
    let (code, theirs) = runc_run(&b, &unique_id("runc-maskedeq"));
    assert_eq!((code, theirs.as_str()), (0, out.as_str()));
}

#[test]
fn a_profile_denying_getcwd_still_enters_the_cwd() {
    // Without no_new_privs the filter is loaded early (while CAP_SYS_ADMIN is
    // held); the cwd check, which takes getcwd, must come before it.
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["process"]["cwd"] = json!("/tmp");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    std::fs::write(b.rootfs().join("tmp/here"), "").unwrap();
    b.sh("ls; readlink /proc/self/cwd");
    let out = run_ok(&rt, &b, "nogetcwd");
    assert_eq!(out, "here\n/tmp\n");
}

/// Mount points below `dir` in this (the host's) mount namespace.
fn mounts_below(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| std::path::Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_config_without_a_mount_namespace_shares_the_hosts() {
    // As runc and crun: the mounts are made in the host's mount namespace
    // under the rootfs, the process is chrooted into it, and `delete` takes
    // the mounts down (runc leaves them).
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "mount");
    let linux = b.config["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    b.config["root"]["readonly"] = json!(false);
    b.sh("readlink /proc/self/ns/mnt; ls /dev/null; cat /tmp/marker");
    std::fs::write(b.rootfs().join("tmp/marker"), "in the rootfs\n").unwrap();
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let id = unique_id("nomntns");
    let out = rt.create(&b, &id);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().unwrap() > 0, "{st}");
    let rootfs = b.rootfs().canonicalize().unwrap();
    assert!(!mounts_below(&rootfs).is_empty(), "no mounts on the host");
    rt.ok(&["start", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rt.state(&id)["status"] != "stopped" {
        assert!(std::time::Instant::now() < deadline, "never stopped");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        rt.container_stdout(&b, &id),
        format!("{}\n/dev/null\nin the rootfs\n", host_ns.display())
    );
    rt.ok(&["delete", &id]);
    assert_eq!(mounts_below(&rootfs), Vec::<String>::new());

    // What would change mounts the host uses is refused, with one line.
    b.config["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    let out = rt.create(&b, &unique_id("nomntns-masked"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("linux.maskedPaths") && err.contains("mount namespace"),
        "{err}"
    );
    assert_eq!(rt.ok(&["list", "-q"]), "");
    assert_eq!(mounts_below(&rootfs), Vec::<String>::new());
}

#[test]
fn rootfs_propagation_unbindable_applies_to_the_container_root() {
    for (prop, want) in [("unbindable", "unbindable"), ("runbindable", "unbindable")] {
        let mut b = Bundle::new();
        b.config["linux"]["rootfsPropagation"] = json!(prop);
        b.sh("awk '$5==\"/\" { t=\"\"; for (i=7; $i!=\"-\"; i++) { f=$i; sub(/:.*/, \"\", f); t=t\" \"f }; print \"root:\"t }' /proc/self/mountinfo");
        let out = run_ok(&Runtime::new(), &b, "unbindable");
        assert_eq!(out.trim(), format!("root: {want}"), "{prop}: {out}");
    }
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_the_rest_still_run() {
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let log = b.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {}", log.display())]});
    b.config["hooks"] = json!({
        "poststart": [hook("poststart1"), {"path": "/bin/false"}, hook("poststart2")],
        "poststop": [{"path": "/bin/false"}, hook("poststop1"), {"path": "/no/such/hook"}, hook("poststop2")]
    });
    b.args(&["true"]);
    let (code, _, err) = rt.run_bundle(&b, &unique_id("hookwarn"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "poststart1\npoststart2\npoststop1\npoststop2\n"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 3, "{err}");
    assert!(
        warnings[0].contains("poststart hook #1 (/bin/false)"),
        "{err}"
    );
    assert!(warnings[1].contains("poststop hook #0"), "{err}");
    assert!(
        warnings[2].contains("poststop hook #2 (/no/such/hook)"),
        "{err}"
    );
}

#[test]
fn delete_of_a_created_container_needs_force() {
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let id = unique_id("delcreated");
    assert!(rt.create(&b, &id).status.success());
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let out = rt.run(&["delete", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "delete of a created container succeeded"
    );
    assert!(
        err.contains("not stopped") && err.contains("created"),
        "{err}"
    );
    assert_eq!(rt.state(&id)["status"], "created");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    rt.ok(&["delete", "--force", &id]);
    assert!(!rt.run(&["state", &id]).status.success());
}

#[test]
fn a_config_without_process_is_created_and_start_fails() {
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.config.as_object_mut().unwrap().remove("process");
    let id = unique_id("noproc");
    let out = rt.create(&b, &id);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().unwrap() > 0, "{st}");
    let out = rt.run(&["start", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("has no process") && err.contains(&id), "{err}");
    assert_eq!(rt.state(&id)["status"], "created");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn kill_all_of_a_stopped_container_signals_what_is_left() {
    // Without its own pid namespace a container's other processes outlive its
    // init; containerd's shim then runs `kill --all ID KILL` on the stopped
    // container, as runc allows.
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    let pidfile = "/tmp/left.pid";
    b.config["root"]["readonly"] = json!(false);
    b.sh(&format!(
        "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}"
    ));
    let id = unique_id("killall");
    assert!(rt.create(&b, &id).status.success());
    rt.ok(&["start", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rt.state(&id)["status"] != "stopped" {
        assert!(std::time::Instant::now() < deadline, "init never exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left: i32 = loop {
        if let Ok(s) = std::fs::read_to_string(b.rootfs().join("tmp/left.pid")) {
            if let Ok(p) = s.trim().parse() {
                break p;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no pid written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let alive = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    assert!(alive(left), "the leftover process is already gone");
    // Plain kill of a stopped container is still an error, in runc's words
    // (which containerd's shim reads as "already finished").
    let out = rt.run(&["kill", &id, "KILL"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rt.run(&["kill", "--all", &id, "KILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    while alive(left) {
        assert!(std::time::Instant::now() < deadline, "{left} survived");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    rt.ok(&["delete", &id]);
}

#[test]
fn the_sealed_marker_in_the_callers_environment_does_not_switch_the_guard_off() {
    // Without a new pid namespace the init must run from a protected copy;
    // the caller's environment cannot claim it already does.
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.args(&["sleep", "100"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    b.write();
    for value in ["1", &std::process::id().to_string()] {
        let id = unique_id("marker");
        let status = rt
            .cmd()
            .env("_HAKO_RUNTIME_SEALED", value)
            .args(["create", "--bundle"])
            .arg(b.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let pid = rt.state(&id)["pid"].as_i64().unwrap();
        assert!(
            exe_protected(pid),
            "marker {value}: the init runs the writable host binary"
        );
        rt.ok(&["delete", "--force", &id]);
    }
}

#[test]
fn unsupported_runc_global_options_are_refused() {
    let rt = Runtime::new();
    for (args, needle) in [
        (vec!["--criu", "/usr/sbin/criu", "list"], "--criu"),
        (vec!["--rootless", "true", "list"], "--rootless true"),
        (vec!["--rootless", "maybe", "list"], "--rootless"),
    ] {
        let out = rt.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // What detection finds (root here) and auto are accepted.
    rt.ok(&["--rootless", "auto", "list"]);
    rt.ok(&["--rootless", "false", "list"]);
}

#[test]
fn create_hooks_get_the_created_state() {
    // The hooks of create run after the environment exists (lifecycle step
    // 2), when the status is "created"; poststart sees "running".
    let rt = Runtime::new();
    let mut b = Bundle::new();
    let log = b.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read -r s; echo \"{name} $s\" >> {}", log.display())]});
    b.config["hooks"] = json!({
        "prestart": [hook("prestart")],
        "createRuntime": [hook("createRuntime")],
        "createContainer": [hook("createContainer")],
        "poststart": [hook("poststart")]
    });
    b.args(&["true"]);
    let (code, _, err) = rt.run_bundle(&b, &unique_id("hookstate"));
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let statuses: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (name, state) = l.split_once(' ').unwrap();
            let v: serde_json::Value = serde_json::from_str(state).unwrap();
            (name.to_string(), v["status"].as_str().unwrap().to_string())
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("prestart", "created"),
        ("createRuntime", "created"),
        ("createContainer", "created"),
        ("poststart", "running"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(statuses, want);
}

#[test]
fn oci_version_must_be_semver_1x() {
    let rt = Runtime::new();
    let mut b = Bundle::new();
    b.args(&["true"]);
    for (version, needle) in [
        ("invalid", "is not a SemVer version"),
        ("2.0.0", "only runtime-spec 1.x"),
    ] {
        b.config["ociVersion"] = json!(version);
        let out = rt.create(&b, &unique_id("ociversion"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{version} accepted");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("ociVersion") && err.contains(needle), "{err}");
    }
    assert_eq!(rt.ok(&["list", "-q"]), "");
    b.config["ociVersion"] = json!("1.1.0");
    let (code, _, err) = rt.run_bundle(&b, &unique_id("ociversion-ok"));
    assert_eq!(code, 0, "{err}");
}
