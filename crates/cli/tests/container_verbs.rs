//! pause/unpause, restart, rename, top, stats, ps filters and templates,
//! logs --since/--until and container prune, with real containers (root).

mod engine_common;

use engine_common::{wait_for, Root};

fn ticks(r: &Root, name: &str) -> usize {
    r.ok(&["logs", name]).lines().count()
}

#[test]
fn pause_freezes_and_unpause_thaws() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "tick",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while :; do echo t; sleep 0.05; done",
    ]);
    wait_for("output", || ticks(&r, "tick") > 2);
    r.ok(&["pause", "tick"]);
    assert_eq!(r.inspect("tick")["State"]["Status"], "paused");
    assert_eq!(r.inspect("tick")["State"]["Paused"], true);
    assert_eq!(
        r.ok(&[
            "ps",
            "--filter",
            "status=paused",
            "--format",
            "{{.Names}} {{.State}}"
        ]),
        "tick paused\n"
    );
    // Frozen: the log stops growing (several of its periods pass).
    let before = ticks(&r, "tick");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(ticks(&r, "tick"), before);
    let again = r.run(&["pause", "tick"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already paused"));
    r.ok(&["unpause", "tick"]);
    assert_eq!(r.inspect("tick")["State"]["Status"], "running");
    wait_for("output after unpause", || ticks(&r, "tick") > before);
    // A paused container still stops.
    r.ok(&["pause", "tick"]);
    r.ok(&["stop", "-t", "1", "tick"]);
    assert_eq!(r.inspect("tick")["State"]["Status"], "exited");
    assert!(!r.run(&["unpause", "tick"]).status.success());
}

#[test]
fn restart_rename_top_and_stats() {
    let r = Root::new();
    r.ok(&["run", "-d", "--name", "svc", "busybox", "sleep", "1000"]);
    let pid1 = r.inspect("svc")["State"]["Pid"].as_i64().unwrap();
    r.ok(&["restart", "-t", "1", "svc"]);
    let v = r.inspect("svc");
    assert_eq!(v["State"]["Status"], "running");
    assert_ne!(v["State"]["Pid"].as_i64().unwrap(), pid1);

    r.ok(&["rename", "svc", "svc2"]);
    assert_eq!(r.inspect("svc2")["Name"], "/svc2");
    assert!(!r.run(&["inspect", "svc"]).status.success());
    r.ok(&["run", "-d", "--name", "other", "busybox", "sleep", "1000"]);
    let out = r.run(&["rename", "other", "svc2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));

    let top = r.ok(&["top", "svc2"]);
    let lines: Vec<&str> = top.lines().collect();
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{top}"
    );
    assert_eq!(lines.len(), 2, "{top}");
    assert!(lines[1].ends_with("sleep 1000"), "{top}");
    let top = r.ok(&["top", "svc2", "-o", "pid,comm"]);
    assert!(top.lines().nth(1).unwrap().ends_with("sleep"), "{top}");

    let stats = r.ok(&["stats", "--no-stream", "--format", "json", "svc2"]);
    let v: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
    assert_eq!(v["Name"], "svc2");
    assert_eq!(v["PIDs"], "1");
    assert!(v["MemUsage"].as_str().unwrap().contains(" / "), "{v}");
    assert!(v["CPUPerc"].as_str().unwrap().ends_with('%'), "{v}");
    let table = r.ok(&["stats", "--no-stream"]);
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    r.ok(&["stop", "-t", "1", "other"]);
    assert!(!r.run(&["stats", "--no-stream", "other"]).status.success());
}

#[test]
fn ps_filters_templates_and_prune() {
    let r = Root::new();
    r.ok(&[
        "run", "-d", "--name", "up1", "--label", "tier=web", "busybox", "sleep", "1000",
    ]);
    let out = r.run(&[
        "run",
        "--name",
        "done3",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    r.ok(&[
        "create",
        "--name",
        "fresh",
        "-v",
        "psvol:/data",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "busybox",
        "true",
    ]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = r.ok(&a).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), vec!["up1"]);
    assert_eq!(names(&["-a"]), vec!["done3", "fresh", "up1"]);
    assert_eq!(names(&["--filter", "status=exited"]), vec!["done3"]);
    assert_eq!(names(&["--filter", "exited=3"]), vec!["done3"]);
    assert_eq!(names(&["-a", "--filter", "label=tier=web"]), vec!["up1"]);
    assert_eq!(names(&["-a", "--filter", "label=tier"]), vec!["up1"]);
    assert_eq!(names(&["-a", "--filter", "name=do"]), vec!["done3"]);
    assert_eq!(
        names(&[
            "-a",
            "--filter",
            "ancestor=busybox",
            "--filter",
            "status=created"
        ]),
        vec!["fresh"]
    );
    assert_eq!(names(&["-a", "--filter", "network=none"]), vec!["done3"]);
    assert_eq!(names(&["-l"]), vec!["fresh"]);
    assert_eq!(
        names(&["-a", "--filter", "before=fresh"]),
        vec!["done3", "up1"]
    );
    assert_eq!(
        names(&["-a", "--filter", "since=up1"]),
        vec!["done3", "fresh"]
    );
    assert_eq!(names(&["--filter", "since=up1"]), Vec::<String>::new());
    assert_eq!(names(&["-a", "--filter", "volume=psvol"]), vec!["fresh"]);
    assert_eq!(names(&["-a", "--filter", "volume=/data"]), vec!["fresh"]);
    assert_eq!(names(&["-a", "--filter", "health=starting"]), vec!["fresh"]);
    assert_eq!(
        names(&["-a", "--filter", "health=none"]),
        vec!["done3", "up1"]
    );
    let out = r.run(&["ps", "--filter", "before=nosuch"]);
    assert!(!out.status.success());
    let out = r.run(&["ps", "--filter", "health=sick"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("health is starting"));
    let table = r.ok(&["ps", "-a", "--format", "table {{.Names}}\\t{{.State}}"]);
    let first: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, vec!["NAMES", "STATE"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    let out = r.run(&["ps", "--filter", "colour=red"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid filter"));

    let pruned = r.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert_eq!(pruned.lines().count(), 3, "{pruned}");
    assert_eq!(names(&["-a"]), vec!["up1"]);
}

#[test]
fn logs_since_and_until() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "l",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo early; sleep 1; echo late; sleep 1000",
    ]);
    wait_for("both lines", || r.ok(&["logs", "l"]).contains("late"));
    let stamped = r.ok(&["logs", "-t", "l"]);
    let late_time = stamped
        .lines()
        .find(|l| l.ends_with(" late"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(r.ok(&["logs", "--since", &late_time, "l"]), "late\n");
    assert_eq!(r.ok(&["logs", "--until", &late_time, "l"]), "early\n");
    assert_eq!(r.ok(&["logs", "--since", "10m", "l"]), "early\nlate\n");
    assert_eq!(r.ok(&["logs", "--until", "10m", "l"]), "");
    let out = r.run(&["logs", "--since", "yesterday-ish", "l"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --since"));
}

#[test]
fn a_foreground_run_forwards_signals_to_the_container() {
    use std::io::{BufRead, BufReader};
    let r = Root::new();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-term\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    assert!(r.ps_all().is_empty());
}

/// The numbers of `PREFIX-N` lines in order.
fn numbered_lines(text: &str, prefix: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix)?.parse().ok())
        .collect()
}

#[test]
fn log_rotation_with_max_size_and_max_file() {
    let r = Root::new();
    r.ok(&[
        "run",
        "--name",
        "rot",
        "--network",
        "none",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let info: serde_json::Value = serde_json::from_str(&r.ok(&["inspect", "rot"])).unwrap();
    assert_eq!(info[0]["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(
        info[0]["HostConfig"]["LogConfig"]["Config"]["max-size"],
        "2k"
    );
    let log = std::path::PathBuf::from(info[0]["LogPath"].as_str().unwrap());
    let with = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    for p in [log.clone(), with(1), with(2)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 0 && len <= 2048, "{} is {len} bytes", p.display());
    }
    assert!(!with(3).exists(), "max-file=3 keeps three files");
    // logs shows the rotated files oldest first, then the current one: the
    // newest lines, contiguous, the oldest dropped.
    let nums = numbered_lines(&r.ok(&["logs", "rot"]), "line-");
    assert_eq!(nums.last(), Some(&299));
    assert!(nums[0] > 0, "nothing was dropped: {nums:?}");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    let tail = numbered_lines(&r.ok(&["logs", "--tail", "3", "rot"]), "line-");
    assert_eq!(tail, vec![297, 298, 299]);

    // logs -f follows the log across rotations.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--network",
        "none",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 60 ]; do echo slow-$i; i=$((i+1)); sleep 0.05; done",
    ]);
    let nums = numbered_lines(&r.ok(&["logs", "-f", "slow"]), "slow-");
    assert_eq!(nums.last(), Some(&59), "{nums:?}");
    assert!(nums[0] <= 10, "{nums:?}");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");

    // Bad options are one-line errors before anything runs.
    for (args, want) in [
        (vec!["--log-opt", "max-size=lots"], "invalid size"),
        (vec!["--log-opt", "max-file=2"], "needs max-size"),
        (vec!["--log-opt", "compress=true"], "unknown log opt"),
        (vec!["--log-driver", "syslog"], "not supported"),
    ] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        let out = r.run(&a);
        assert_eq!(out.status.code(), Some(125));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}

fn now_secs() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Each of `want` appears in `got`, in this order (others may come between).
fn in_order(got: &[String], want: &[&str]) {
    let mut at = 0;
    for w in want {
        match got[at..].iter().position(|g| g == w) {
            Some(i) => at += i + 1,
            None => panic!("{w:?} missing (in order) from {got:?}"),
        }
    }
}

#[test]
fn events_of_containers_images_networks_and_volumes() {
    let r = Root::new();
    let t0 = now_secs();
    let id = r
        .ok(&[
            "run",
            "-d",
            "--name",
            "ev",
            "-l",
            "app=x",
            "--network",
            "none",
            "--health-cmd",
            "true",
            "--health-interval",
            "300ms",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    wait_for("healthy", || {
        r.inspect("ev")["State"]["Health"]["Status"] == "healthy"
    });
    r.ok(&["exec", "ev", "true"]);
    r.ok(&["pause", "ev"]);
    r.ok(&["unpause", "ev"]);
    r.ok(&["rename", "ev", "ev2"]);
    r.ok(&["restart", "-t", "1", "ev2"]);
    r.ok(&["kill", "ev2"]);
    wait_for("the exit", || {
        r.state_of("ev2").is_some_and(|s| s.0 == "exited")
    });
    r.ok(&["rm", "ev2"]);
    r.ok(&["network", "create", "evnet"]);
    r.ok(&["network", "rm", "evnet"]);
    r.ok(&["volume", "create", "evvol"]);
    r.ok(&["volume", "rm", "evvol"]);
    r.ok(&["tag", "busybox", "busybox:again"]);
    r.ok(&["rmi", "busybox:again"]);

    let lines = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["events", "--since", &t0, "--until", "0s"];
        a.extend_from_slice(args);
        r.ok(&a).lines().map(str::to_string).collect()
    };
    let actions = lines(&[
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}}",
    ]);
    in_order(
        &actions,
        &[
            "create",
            "start",
            "health_status: healthy",
            "exec_create: true",
            "exec_start: true",
            "exec_die",
            "pause",
            "unpause",
            "rename",
            "kill",
            "die",
            "stop",
            "start",
            "restart",
            "kill",
            "die",
            "destroy",
        ],
    );
    // docker's JSON: attributes with the labels, name and image; die has the code.
    let json: Vec<serde_json::Value> = lines(&["--filter", "event=die", "--format", "json"])
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2, "{json:?}");
    assert_eq!(json[1]["status"], "die");
    assert_eq!(json[1]["id"], id.as_str());
    assert_eq!(json[1]["from"], "busybox");
    assert_eq!(json[1]["Actor"]["Attributes"]["name"], "ev2");
    assert_eq!(json[1]["Actor"]["Attributes"]["app"], "x");
    assert_eq!(json[1]["Actor"]["Attributes"]["exitCode"], "137");
    // The text form, and filters by label, type and name.
    let text = lines(&["--filter", "event=create", "--filter", "label=app=x"]);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].ends_with(&format!(
            "Z container create {id} (app=x, image=busybox, name=ev)"
        )),
        "{}",
        text[0]
    );
    let kills = lines(&[
        "--filter",
        "event=kill",
        "--format",
        "{{.Actor.Attributes.signal}}",
    ]);
    // restart: TERM, which sleep as pid 1 ignores, then KILL after -t 1; kill: KILL.
    assert_eq!(kills, ["15", "9", "9"]);
    assert_eq!(
        lines(&[
            "--filter",
            "type=network",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}"
        ]),
        ["create evnet", "destroy evnet"]
    );
    assert_eq!(
        lines(&[
            "--filter",
            "volume=evvol",
            "--format",
            "{{.Action}} {{.Actor.ID}}"
        ]),
        ["create evvol", "destroy evvol"]
    );
    let images = lines(&[
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    in_order(&images, &["tag busybox:again", "untag busybox:again"]);

    // Following: a die reported as it happens, to a reader started before it.
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .args([
            "events",
            "--since",
            &now_secs(),
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = r.run(&[
        "run",
        "--name",
        "quick",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let mut first = String::new();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).unwrap();
        first
    });
    wait_for("the follower to print", || reader.is_finished());
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(reader.join().unwrap(), "quick 3\n");

    for (args, want) in [
        (
            vec!["events", "--filter", "bogus=1", "--until", "0s"],
            "bogus",
        ),
        (
            vec!["events", "--since", "yesterday", "--until", "0s"],
            "invalid --since",
        ),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn commit_diff_and_export() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo hi > /new.txt && mkdir -p /srv/app && echo x > /srv/app/f && rm /bin/vi \
         && echo extra >> /etc/group && touch /ready && sleep 1000",
    ]);
    wait_for("the changes", || {
        r.run(&["exec", "src", "test", "-e", "/ready"])
            .status
            .success()
    });
    // The runtime's mount points (/proc, /dev, /etc/hosts, …) are not changes.
    let diff = r.ok(&["diff", "src"]);
    assert_eq!(
        diff,
        "C /bin\nD /bin/vi\nC /etc\nC /etc/group\nA /new.txt\nA /ready\nA /srv\nA /srv/app\nA /srv/app/f\n"
    );
    let id = r.ok(&[
        "commit",
        "-m",
        "snapshot one",
        "-a",
        "Ann <ann@example.com>",
        "-c",
        "ENV MODE=prod",
        "-c",
        "CMD [\"cat\", \"/new.txt\"]",
        "src",
        "snap:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // Paused for the commit, running again after it.
    let v = r.inspect("src");
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["State"]["Paused"], false);
    assert_eq!(
        r.ok(&["run", "--rm", "--network", "none", "snap:v1"]),
        "hi\n"
    );
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "snap:v1",
        "sh",
        "-c",
        "echo $MODE; cat /srv/app/f; test -e /bin/vi || echo gone; tail -1 /etc/group; test -e /etc/hosts && echo hosts",
    ]);
    assert_eq!(out, "prod\nx\ngone\nextra\nhosts\n");
    let img: serde_json::Value =
        serde_json::from_str(&r.ok(&["image", "inspect", "snap:v1"])).unwrap();
    assert_eq!(img[0]["Author"], "Ann <ann@example.com>");
    let base: serde_json::Value =
        serde_json::from_str(&r.ok(&["image", "inspect", "busybox"])).unwrap();
    assert_eq!(
        img[0]["RootFS"]["Layers"].as_array().unwrap().len(),
        base[0]["RootFS"]["Layers"].as_array().unwrap().len() + 1
    );
    let history = r.ok(&["image", "history", "--no-trunc", "snap:v1"]);
    assert!(history.contains("snapshot one"), "{history}");
    // A commit of the committed image's container stacks another layer.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "second",
        "--network",
        "none",
        "snap:v1",
        "sleep",
        "1000",
    ]);
    r.ok(&["exec", "second", "rm", "/new.txt"]);
    assert_eq!(r.ok(&["diff", "second"]), "D /new.txt\n");
    r.ok(&["commit", "--pause=false", "second", "snap:v2"]);
    let out = r.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "snap:v2",
        "cat",
        "/new.txt",
    ]);
    assert!(!out.status.success());
    // export: the merged root filesystem, through a temporary name.
    let tar = r.dir().join("src.tar");
    r.ok(&["export", "-o", tar.to_str().unwrap(), "src"]);
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let has = |p: &str| list.lines().any(|l| l.trim_start_matches("./") == p);
    assert!(
        has("new.txt") && has("srv/app/f") && has("bin/sh"),
        "{list}"
    );
    assert!(!has("bin/vi"), "{list}");
    let events = r.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "event=commit",
        "--format",
        "{{.Actor.Attributes.name}} {{.Actor.Attributes.comment}}",
    ]);
    assert_eq!(events, "src snapshot one\nsecond \n");
    for (args, want) in [
        (vec!["commit", "nosuch"], "no such container"),
        (vec!["commit", "-c", "RUN echo", "src"], "cannot be changed"),
        (vec!["diff", "nosuch"], "no such container"),
        (vec!["export", "nosuch"], "no such container"),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// A cgroup file of the container, v1 or v2 name.
fn cgroup_value(r: &Root, name: &str, v1: &str, v2: &str) -> String {
    r.ok(&[
        "exec",
        name,
        "sh",
        "-c",
        &format!("cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}"),
    ])
    .trim()
    .to_string()
}

#[test]
fn update_changes_limits_live_and_the_restart_policy() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "up",
        "--network",
        "none",
        "-m",
        "64m",
        "--pids-limit",
        "40",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        cgroup_value(&r, "up", "memory/memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        r.ok(&[
            "update",
            "-m",
            "96m",
            "--pids-limit",
            "77",
            "--cpus",
            "0.5",
            "up"
        ]),
        "up\n"
    );
    assert_eq!(
        cgroup_value(&r, "up", "memory/memory.limit_in_bytes", "memory.max"),
        (96u64 << 20).to_string()
    );
    assert_eq!(cgroup_value(&r, "up", "pids/pids.max", "pids.max"), "77");
    let quota = cgroup_value(&r, "up", "cpu/cpu.cfs_quota_us", "cpu.max");
    assert!(quota == "50000" || quota.starts_with("50000 "), "{quota}");
    let v = r.inspect("up");
    assert_eq!(v["HostConfig"]["Memory"], 96i64 << 20);
    assert_eq!(v["HostConfig"]["PidsLimit"], 77);
    // Kept across a restart (the bundle changed too).
    r.ok(&["restart", "-t", "0", "up"]);
    assert_eq!(cgroup_value(&r, "up", "pids/pids.max", "pids.max"), "77");

    // A new restart policy reaches the running container's monitor.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "crashy",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; exit 3",
    ]);
    r.ok(&["update", "--restart", "on-failure:2", "crashy"]);
    assert_eq!(
        r.inspect("crashy")["HostConfig"]["RestartPolicy"]["Name"],
        "on-failure"
    );
    wait_for("two restarts, then the end", || {
        let v = r.inspect("crashy");
        v["RestartCount"] == 2 && v["State"]["Status"] == "exited"
    });
    assert_eq!(r.inspect("crashy")["State"]["ExitCode"], 3);

    for (args, want) in [
        (vec!["update", "up"], "at least one option"),
        (vec!["update", "-m", "1m", "up"], "minimum memory limit"),
        (vec!["update", "--memory-swap", "10m", "up"], "memoryswap"),
        (vec!["update", "--restart", "sometimes", "up"], "restart"),
        (vec!["update", "-m", "64m", "nosuch"], "no such container"),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    r.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = r.run(&["update", "--restart", "always", "gone"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("AutoRemove"));
}
