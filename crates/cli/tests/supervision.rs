//! What the monitor does beyond running a container once, with real
//! containers (needs root): restart policies, OOM kills, health checks.

mod engine_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use engine_common::{pid_alive, wait_for, Root};

fn restart_count(r: &Root, name: &str) -> i64 {
    r.inspect(name)["RestartCount"].as_i64().unwrap()
}

fn status(r: &Root, name: &str) -> String {
    r.inspect(name)["State"]["Status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The container ended for good: exited, and its monitor is gone (so
/// nothing can restart it any more).
fn ended(r: &Root, name: &str) -> bool {
    let v = r.inspect(name);
    v["State"]["Status"] == "exited" && v["State"]["MonitorPid"] == 0
}

#[test]
fn no_policy_is_the_default_and_never_restarts() {
    let r = Root::new();
    r.ok(&[
        "run", "-d", "--name", "once", "busybox", "sh", "-c", "exit 3",
    ]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "no",
        "--restart",
        "no",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    for name in ["once", "no"] {
        wait_for("the exit", || ended(&r, name));
        let v = r.inspect(name);
        assert_eq!(v["State"]["ExitCode"], 3);
        assert_eq!(v["RestartCount"], 0);
        assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "no");
    }
}

#[test]
fn on_failure_retries_n_times_and_appends_to_the_log() {
    let r = Root::new();
    // The foreground run returns at the first exit, as docker's does.
    let out = r.run(&[
        "run",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo attempt; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the retries to end", || ended(&r, "flaky"));
    let v = r.inspect("flaky");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["RestartCount"], 2);
    assert_eq!(v["State"]["Restarting"], false);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    // Three runs, one log.
    assert_eq!(r.ok(&["logs", "flaky"]), "attempt\n".repeat(3));
    let (state, st) = r.state_of("flaky").unwrap();
    assert_eq!(state, "exited");
    assert!(st.starts_with("Exited (3)"), "{st}");

    // A success is not a failure: no retry.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    wait_for("the exit", || ended(&r, "fine"));
    assert_eq!(restart_count(&r, "fine"), 0);
}

#[test]
fn always_restarts_after_exit_0_until_stopped() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo run; sleep 0.2",
    ]);
    wait_for("two restarts", || restart_count(&r, "loop") >= 2);
    // Between runs it is "restarting" or running, never exited, and ps
    // lists it without -a.
    let s = status(&r, "loop");
    assert!(s == "running" || s == "restarting", "{s}");
    assert!(r.ok(&["ps"]).contains("loop"));
    r.ok(&["stop", "loop"]);
    assert!(ended(&r, "loop"), "{}", r.inspect("loop"));
    let count = restart_count(&r, "loop");
    assert!(count >= 2);
    // Every run appended to the one log (the last may have been stopped
    // before it wrote anything).
    let runs = r.ok(&["logs", "loop"]).lines().count() as i64;
    assert!(runs >= count, "{runs} log lines for {count} restarts");
    assert_eq!(r.inspect("loop")["State"]["Restarting"], false);

    // A start by the user supervises it again, with a fresh count.
    r.ok(&["start", "loop"]);
    wait_for("a restart after start", || restart_count(&r, "loop") >= 1);
    r.ok(&["rm", "-f", "loop"]);
    assert!(r.state_of("loop").is_none());
}

#[test]
fn unless_stopped_restarts_until_killed() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--restart",
        "unless-stopped",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    wait_for("a restart", || restart_count(&r, "svc") >= 1);
    // A kill by the user counts as a stop: no restart after it, whether it
    // hit a running container or one waiting to restart.
    let _ = r.run(&["kill", "svc"]);
    wait_for("the end after kill", || ended(&r, "svc"));
    assert_eq!(r.inspect("svc")["State"]["Restarting"], false);
}

#[test]
fn rm_and_restart_are_refused_together() {
    let r = Root::new();
    let out = r.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("restart policy") && err.contains("--rm"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = r.run(&["create", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid restart policy"));
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());
}

fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[test]
fn published_ports_keep_working_across_a_restart() {
    let r = Root::new();
    let www = r.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "still here\n").unwrap();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--restart",
        "on-failure",
        "-v",
        &format!("{}:/www:ro", www.display()),
        "-p",
        "127.0.0.1::80",
        "busybox",
        "sh",
        "-c",
        "httpd -f -p 80 -h /www; exit 1",
    ]);
    let addr = r.ok(&["port", "web", "80"]).trim().to_string();
    wait_for("httpd", || {
        http_get(&addr).as_deref() == Some("still here\n")
    });
    let sandbox = r.inspect("web")["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap()
        .to_string();
    // httpd dies, sh exits 1, the monitor restarts it in the same network.
    r.ok(&["exec", "web", "sh", "-c", "kill $(pidof httpd)"]);
    wait_for("the restart", || {
        restart_count(&r, "web") == 1 && status(&r, "web") == "running"
    });
    assert_eq!(r.ok(&["port", "web", "80"]).trim(), addr);
    wait_for("httpd after the restart", || {
        http_get(&addr).as_deref() == Some("still here\n")
    });
    r.ok(&["rm", "-f", "web"]);
    assert!(!std::path::Path::new(&sandbox).exists());
    assert!(http_get(&addr).is_none());
}

#[test]
fn oom_kill_is_reported() {
    let r = Root::new();
    // The shell collects `yes` forever: the OOM killer ends it.
    let out = r.run(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(yes 2>/dev/null)",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = r.inspect("hog");
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["State"]["OOMKilled"], true);

    // A kill that is not the OOM killer's, and a normal exit, are not OOM.
    r.ok(&[
        "run", "--name", "calm", "--memory", "32m", "busybox", "true",
    ]);
    assert_eq!(r.inspect("calm")["State"]["OOMKilled"], false);
    r.ok(&["run", "-d", "--name", "victim", "busybox", "sleep", "1000"]);
    r.ok(&["kill", "victim"]);
    wait_for("the kill", || ended(&r, "victim"));
    let v = r.inspect("victim");
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["State"]["OOMKilled"], false);
}

fn health(r: &Root, name: &str) -> serde_json::Value {
    r.inspect(name)["State"]["Health"].clone()
}

fn ps_status(r: &Root, name: &str) -> String {
    r.state_of(name).unwrap().1
}

#[test]
fn health_checks_report_healthy_and_unhealthy() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "echo fine",
        "--health-interval",
        "100ms",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo broken; exit 1",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    // A long first interval: it is still starting when looked at.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "busybox",
        "sleep",
        "1000",
    ]);
    // The same long interval with a start period and a short start interval:
    // checks run at the start interval until the period is over.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "eager",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "--health-start-period",
        "1h",
        "--health-start-interval",
        "100ms",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "busybox",
        "sleep",
        "1000",
    ]);

    wait_for("healthy", || health(&r, "good")["Status"] == "healthy");
    let h = health(&r, "good");
    assert_eq!(h["FailingStreak"], 0);
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 0);
    assert_eq!(last["Output"], "fine\n");
    assert!(ps_status(&r, "good").ends_with("(healthy)"));

    wait_for("unhealthy", || health(&r, "bad")["Status"] == "unhealthy");
    let h = health(&r, "bad");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    assert_eq!(h["Log"][0]["Output"], "broken\n");
    assert_eq!(h["Log"][0]["ExitCode"], 1);
    assert!(ps_status(&r, "bad").ends_with("(unhealthy)"));
    // Only the last five results are kept.
    wait_for("more checks", || {
        health(&r, "bad")["FailingStreak"].as_i64().unwrap() >= 6
    });
    assert_eq!(health(&r, "bad")["Log"].as_array().unwrap().len(), 5);

    wait_for("start-interval checks", || {
        health(&r, "eager")["Status"] == "healthy"
    });
    assert_eq!(
        r.inspect("eager")["Config"]["Healthcheck"]["StartInterval"],
        100_000_000
    );
    assert_eq!(health(&r, "slow")["Status"], "starting");
    assert!(ps_status(&r, "slow").ends_with("(health: starting)"));

    assert!(health(&r, "none").is_null());
    let v = r.inspect("none");
    assert_eq!(v["Config"]["Healthcheck"]["Test"][0], "NONE");
    assert!(!ps_status(&r, "none").contains("health"));
}

#[test]
fn a_health_check_past_its_timeout_fails_and_is_killed() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "stuck",
        "--health-cmd",
        "sleep 1000",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "999",
    ]);
    wait_for("unhealthy by timeout", || {
        health(&r, "stuck")["Status"] == "unhealthy"
    });
    let h = health(&r, "stuck");
    assert_eq!(h["Log"][0]["ExitCode"], -1);
    assert_eq!(
        h["Log"][0]["Output"],
        "Health check exceeded timeout (200ms)"
    );
    // The timed-out checks do not pile up in the container.
    let pid = r.inspect("stuck")["State"]["Pid"].as_i64().unwrap();
    assert!(pid_alive(pid));
    let procs = r.ok(&["exec", "stuck", "ps"]);
    let checks = procs.lines().filter(|l| l.contains("sleep 1000")).count();
    assert!(checks <= 1, "{procs}");
}

#[test]
fn a_restarted_container_outlives_a_killed_monitor_and_is_found_by_its_new_pid() {
    let r = Root::new();
    // The first run fails, the restarted one stays (the rootfs persists
    // across restarts, so /once tells them apart).
    let id = r.ok(&[
        "run",
        "-d",
        "--name",
        "phoenix",
        "--restart",
        "on-failure",
        "busybox",
        "sh",
        "-c",
        "test -e /once || { touch /once; exit 1; }; exec sleep 1000",
    ]);
    let monitor = r.inspect("phoenix")["State"]["MonitorPid"]
        .as_i64()
        .unwrap();
    // Watch the monitor's own record of the run, not hako's, so that no
    // hako command sees the new pid before the monitor dies.
    let state_file = r
        .root()
        .join("containers")
        .join(id.trim())
        .join("state.json");
    let run = || -> serde_json::Value {
        std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    wait_for("the restarted run", || {
        run()["restart_count"] == 1 && run()["pid"].as_i64().unwrap_or(0) > 0
    });
    let pid = run()["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    wait_for("the monitor to die", || !pid_alive(monitor));
    let v = r.inspect("phoenix");
    assert_eq!(v["State"]["Status"], "running", "{v}");
    assert_eq!(v["State"]["Pid"], pid);
    assert_eq!(v["RestartCount"], 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    wait_for("the container to die", || !pid_alive(pid));
    assert_eq!(r.inspect("phoenix")["State"]["ExitCode"], 255);
}

#[test]
fn stop_ends_a_container_waiting_to_restart() {
    let r = Root::new();
    // Exits at once, so after a few restarts the delay (doubling from
    // 100 ms) is most of its life: stop usually finds it waiting.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "crashy",
        "--restart",
        "always",
        "busybox",
        "true",
    ]);
    wait_for("several restarts", || restart_count(&r, "crashy") >= 4);
    let out = r.run(&["exec", "crashy", "true"]);
    if r.inspect("crashy")["State"]["Restarting"] == true {
        // docker's exec exits 1 for the daemon's refusal.
        assert_eq!(out.status.code(), Some(1));
    }
    r.ok(&["stop", "crashy"]);
    assert!(ended(&r, "crashy"), "{}", r.inspect("crashy"));
    let (state, st) = r.state_of("crashy").unwrap();
    assert_eq!(state, "exited");
    assert!(st.starts_with("Exited (0)"), "{st}");
}

#[test]
fn runc_restarts_checks_health_and_reports_oom_too() {
    let runc = "/usr/sbin/runc";
    assert!(
        std::path::Path::new(runc).exists(),
        "{runc} is not installed: run scripts/install-deps.sh"
    );
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--runtime",
        runc,
        "--name",
        "r1",
        "--restart",
        "on-failure:1",
        "--health-cmd",
        "true",
        "--health-interval",
        "100ms",
        "busybox",
        "sh",
        "-c",
        "echo go; test -e /once && exec sleep 1000; touch /once; exit 2",
    ]);
    wait_for("the restart", || restart_count(&r, "r1") == 1);
    wait_for("healthy under runc", || {
        health(&r, "r1")["Status"] == "healthy"
    });
    assert_eq!(r.ok(&["logs", "r1"]), "go\ngo\n");
    r.ok(&["stop", "-t", "1", "r1"]);
    assert!(ended(&r, "r1"));

    let out = r.run(&[
        "run",
        "--runtime",
        runc,
        "--name",
        "r2",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(yes 2>/dev/null)",
    ]);
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(r.inspect("r2")["State"]["OOMKilled"], true);
}

#[test]
fn system_boot_restarts_what_the_policies_ask_for_after_a_reboot() {
    let r = Root::new();
    for (name, policy) in [
        ("a", "always"),
        ("b", "unless-stopped"),
        ("c", "unless-stopped"),
        ("d", "always"),
        ("e", "no"),
    ] {
        r.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "1000",
        ]);
    }
    r.ok(&["stop", "-t", "1", "c", "d"]);
    // A reboot, as the engine sees it: every monitor and container gone
    // (monitors first, so no restart policy acts), mounts gone.
    for name in ["a", "b", "e"] {
        let v = r.inspect(name);
        for key in ["MonitorPid", "Pid"] {
            let pid = v["State"][key].as_i64().unwrap();
            assert!(pid > 0, "{name} {key} {pid}");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::SIGKILL,
            );
            engine_common::wait_for("the process to die", || !engine_common::pid_alive(pid));
        }
    }
    let out = r.ok(&["system", "boot"]);
    let mut started: Vec<&str> = out.lines().collect();
    started.sort();
    assert_eq!(started, vec!["a", "b", "d"], "{out}");
    for (name, state) in [
        ("a", "running"),
        ("b", "running"),
        ("c", "exited"),
        ("d", "running"),
        ("e", "exited"),
    ] {
        assert_eq!(r.state_of(name).unwrap().0, state, "{name}");
    }
    // Started by boot, they are supervised again: a stop ends them.
    r.ok(&["stop", "-t", "1", "a"]);
    assert_eq!(r.state_of("a").unwrap().0, "exited");
}
