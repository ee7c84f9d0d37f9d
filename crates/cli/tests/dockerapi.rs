//! The Docker Engine API (issue 19, part 1): `hako system service` on a temp
//! root and socket, driven by the real docker CLI 28 and docker-py — the
//! system endpoints, containers, exec, attach, docker cp — and by raw HTTP
//! for bad input (malformed bodies, unknown containers, a client hanging up
//! in the middle of an attach).

mod common;
mod dockerapi_common;
mod engine_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine_common::Root;

use dockerapi_common::{text, Service, DOCKER};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` until it holds (every 100 ms, for at most 30 s).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn docker_cli_version_info_ping_and_api_versions() {
    let r = Root::new();
    let s = Service::start(&r);
    let v = s.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(v.trim(), "1.47 linux");
    let info = s.ok(&["info", "--format", "{{.Images}} {{.OSType}} {{.Driver}}"]);
    assert_eq!(info.trim(), "1 linux overlay");
    // HEAD and GET /_ping, prefixed and not; the headers docker clients read.
    let (st, head, body) = s.http("GET", "/_ping", None);
    assert_eq!((st, body.as_str()), (200, "OK"));
    assert!(
        head.to_ascii_lowercase().contains("api-version: 1.47"),
        "{head}"
    );
    let (st, _, body) = s.http("HEAD", "/v1.41/_ping", None);
    assert_eq!((st, body.as_str()), (200, ""));
    // Out of range: docker's 400 naming the versions.
    let (st, _, body) = s.http("GET", "/v1.99/version", None);
    assert_eq!(st, 400);
    assert!(body.contains("client version 1.99 is too new"), "{body}");
    let (st, _, body) = s.http("GET", "/v1.12/version", None);
    assert_eq!(st, 400);
    assert!(
        body.contains("Minimum supported API version is 1.24"),
        "{body}"
    );
    let df = s.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Images 1"), "{df}");
}

#[test]
fn docker_cli_runs_publishes_logs_execs_copies_and_stops() {
    let r = Root::new();
    let s = Service::start(&r);
    let port = free_port();
    let publish = format!("{port}:80");
    let id = s.ok(&[
        "run", "-d", "--name", "web", "-p", &publish, "-l", "tier=front", "-e", "GREETING=hello-api",
        "busybox", "sh", "-c",
        "mkdir -p /tmp/www && echo $GREETING > /tmp/www/index.html && echo started && exec httpd -f -p 80 -h /tmp/www",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let mut page = String::new();
    eventually("the published port answers", || {
        page = std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| http_get(port))
            .unwrap_or_default();
        page.contains("hello-api")
    });
    // inspect in docker's shape, through Go templates.
    let insp = s.ok(&[
        "inspect", "-f",
        "{{.State.Status}} {{.Config.Labels.tier}} {{(index (index .HostConfig.PortBindings \"80/tcp\") 0).HostPort}}",
        "web",
    ]);
    assert_eq!(insp.trim(), format!("running front {port}"));
    // ps with filters.
    let names = |f: &str| s.ok(&["ps", "-a", "--filter", f, "--format", "{{.Names}}"]);
    assert_eq!(names("label=tier=front").trim(), "web");
    assert_eq!(names("name=^web$").trim(), "web");
    assert_eq!(names("status=exited").trim(), "");
    assert!(s
        .ok(&["ps", "--format", "{{.Ports}}"])
        .contains(&format!("{port}->80/tcp")));

    // exec without a terminal: stdout and stderr apart, the exit code.
    let out = s.docker(&["exec", "web", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    // exec -i reads stdin.
    let mut child = s
        .docker_cmd(&["exec", "-i", "web", "sh", "-c", "read x; echo got-$x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"line\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "got-line\n");
    // exec -it on a pty (script gives docker a terminal).
    let cmd = format!(
        "DOCKER_HOST={} DOCKER_CONFIG={} {DOCKER} exec -it web sh -c 'tty; exit 4'",
        s.host(),
        s.config.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );

    // docker cp both ways.
    let local = r.dir().join("to-ctr.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    s.ok(&["cp", local.to_str().unwrap(), "web:/tmp/"]);
    assert_eq!(
        s.ok(&["exec", "web", "cat", "/tmp/to-ctr.txt"]),
        "copied in\n"
    );
    let back = r.dir().join("back");
    s.ok(&["cp", "web:/tmp/www", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(back.join("index.html")).unwrap(),
        "hello-api\n"
    );
    let out = s.docker(&["cp", "web:/nonexistent", r.dir().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Could not find the file /nonexistent"),
        "{}",
        text(&out.stderr)
    );

    // stats --no-stream prints numbers.
    let st = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
        "web",
    ]);
    let f: Vec<&str> = st.split_whitespace().collect();
    assert_eq!(f[0], "web", "{st}");
    assert!(
        f[1].ends_with('%') && f[1].trim_end_matches('%').parse::<f64>().is_ok(),
        "{st}"
    );
    assert!(f[2].ends_with("iB") || f[2].ends_with('B'), "{st}");
    assert!(f.last().unwrap().parse::<u32>().unwrap() >= 1, "{st}");

    // logs -f follows until the container ends.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done; echo bye >&2",
    ]);
    let out = s.docker(&["logs", "-f", "talker"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "line1\nline2\nline3\n");
    assert_eq!(text(&out.stderr), "bye\n");
    // The tail counts both streams' lines, as docker's.
    let out = s.docker(&["logs", "--tail", "2", "talker"]);
    assert_eq!(
        (text(&out.stdout).as_str(), text(&out.stderr).as_str()),
        ("line3\n", "bye\n")
    );
    // timestamps, since and until.
    let stamped = s.ok(&["logs", "-t", "talker"]);
    for (l, want) in stamped.lines().zip(["line1", "line2", "line3"]) {
        let (t, rest) = l.split_once(' ').unwrap();
        assert!(t.ends_with('Z') && t.contains('T'), "{l}");
        assert_eq!(rest, want);
    }
    let second = stamped.lines().nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(
        s.ok(&["logs", "--since", second, "talker"]),
        "line2\nline3\n"
    );
    assert_eq!(s.ok(&["logs", "--until", second, "talker"]), "line1\n");
    assert_eq!(s.ok(&["logs", "--until", "1", "talker"]), "");
    assert_eq!(s.ok(&["wait", "talker"]).trim(), "0");

    // A foreground run: output from the first byte, its exit code.
    let out = s.docker(&[
        "run",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        "echo first; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(text(&out.stdout), "first\n");
    assert_eq!(names("exited=5").trim(), "fg");
    let out = s.docker(&["run", "--rm", "busybox", "echo", "gone-after"]);
    assert_eq!(text(&out.stdout), "gone-after\n");

    // stop, kill, rm, and what docker answers for each state.
    s.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Running}}", "web"]).trim(),
        "false"
    );
    let out = s.docker(&["kill", "web"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );
    s.ok(&["start", "web"]);
    s.ok(&["kill", "web"]);
    assert_eq!(s.ok(&["wait", "web"]).trim(), "137");
    s.ok(&["rm", "web", "talker", "fg"]);
    let out = s.docker(&["inspect", "web"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No such object: web")
            || text(&out.stderr).contains("No such container: web"),
        "{}",
        text(&out.stderr)
    );

    // events: what happened, filtered.
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1
    );
    let ev = s.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "container=talker",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = ev.lines().collect();
    for a in ["create", "start", "die", "destroy"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(!ev.contains("exec_"), "{ev}");
}

#[test]
fn docker_py_runs_streams_logs_and_copies_archives() {
    let probe = Command::new("python3")
        .args(["-c", "import docker"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "python3-docker must be installed (scripts/install-deps.sh)"
    );
    let r = Root::new();
    let s = Service::start(&r);
    let script = r#"
import io, sys, tarfile, docker
c = docker.DockerClient(base_url=sys.argv[1], version="1.47")
assert c.ping()
ctr = c.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo py$i; sleep 0.2; done"], detach=True, name="py")
lines = b"".join(ctr.logs(stream=True, follow=True)).decode()
assert lines == "py1\npy2\npy3\n", repr(lines)
assert ctr.wait()["StatusCode"] == 0
ctr2 = c.containers.run("busybox", ["sleep", "300"], detach=True)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    data = b"from docker-py\n"
    info = tarfile.TarInfo("pyfile.txt"); info.size = len(data)
    t.addfile(info, io.BytesIO(data))
assert ctr2.put_archive("/tmp", buf.getvalue())
out = ctr2.exec_run(["cat", "/tmp/pyfile.txt"])
assert out.exit_code == 0 and out.output == b"from docker-py\n", out
stream, stat = ctr2.get_archive("/tmp/pyfile.txt")
assert stat["name"] == "pyfile.txt" and stat["size"] == 15, stat
with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
    assert t.extractfile("pyfile.txt").read() == b"from docker-py\n"
try:
    c.containers.get("no-such-ctr")
    raise SystemExit("found a missing container")
except docker.errors.NotFound as e:
    assert "No such container: no-such-ctr" in str(e), str(e)
ctr2.remove(force=True)
ctr.remove()
assert c.containers.list(all=True) == []
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &s.host()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "ok");
}

/// Open a hijacked attach to `id` and read until `want` arrives.
fn attach_raw(sock: &Path, id: &str, want: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).unwrap();
    write!(
        s,
        "POST /v1.47/containers/{id}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&got).contains(want) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the attach ended: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(text(&got).starts_with("HTTP/1.1 101"), "{}", text(&got));
    s
}

#[test]
fn bad_input_gets_docker_errors_and_the_service_keeps_serving() {
    let r = Root::new();
    let s = Service::start(&r);
    // Malformed JSON: 400 with docker's message body, no container made.
    let (st, _, body) = s.http(
        "POST",
        "/v1.47/containers/create",
        Some("{\"Image\": \"busybox\", "),
    );
    assert_eq!(st, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    let (st, _, body) = s.http("POST", "/containers/create", Some("[1, 2]"));
    assert_eq!(st, 400, "{body}");
    // A missing image: 404, nothing half-created.
    let (st, _, body) = s.http(
        "POST",
        "/containers/create",
        Some(r#"{"Image": "nope:latest", "Cmd": ["true"]}"#),
    );
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("No such image: nope:latest"), "{body}");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    // Unknown containers: docker's 404 words; control bytes never echoed raw.
    let (st, _, body) = s.http("GET", "/containers/nope/json", None);
    assert_eq!(
        (st, body.trim()),
        (404, r#"{"message":"No such container: nope"}"#)
    );
    let (st, _, body) = s.http("POST", "/containers/%1b%5b31mX/start", None);
    assert_eq!(st, 404);
    assert!(!body.contains('\u{1b}'), "{body}");
    let (st, _, _) = s.http("DELETE", "/containers/nope", None);
    assert_eq!(st, 404);
    // 304 for starting a running container, 409 for removing it.
    let id = s.ok(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    ]);
    let id = id.trim();
    let (st, _, _) = s.http("POST", &format!("/containers/{id}/start"), None);
    assert_eq!(st, 304);
    let (st, _, body) = s.http("DELETE", &format!("/containers/{id}"), None);
    assert_eq!(st, 409, "{body}");

    // A client hanging up in the middle of an attach: the service lets go
    // of everything it held for it and keeps serving.
    let warm = attach_raw(&s.sock, id, "tick");
    drop(warm);
    let (fds, threads) = (s.open_fds(), s.threads());
    for _ in 0..3 {
        let a = attach_raw(&s.sock, id, "tick");
        drop(a);
    }
    eventually("the service closes what the hung-up attaches held", || {
        s.open_fds() <= fds && s.threads() <= threads
    });
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Running}}", id]).trim(),
        "true"
    );
    s.ok(&["rm", "-f", id]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
}

#[test]
fn docker_cli_lifecycle_verbs_top_diff_commit_export_and_prune() {
    let r = Root::new();
    let s = Service::start(&r);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo data > /tmp/made; rm -f /etc/group; exec sleep 300",
    ]);
    // top, pause/unpause, rename, update, restart.
    let top = s.ok(&["top", "box"]);
    assert!(top.contains("sleep 300"), "{top}");
    s.ok(&["pause", "box"]);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Status}}", "box"]).trim(),
        "paused"
    );
    assert!(s
        .ok(&["ps", "--filter", "status=paused", "--format", "{{.Names}}"])
        .contains("box"));
    s.ok(&["unpause", "box"]);
    s.ok(&["rename", "box", "box2"]);
    s.ok(&["update", "--memory", "64m", "--restart", "always", "box2"]);
    let h = s.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
        "box2",
    ]);
    assert_eq!(h.trim(), "67108864 always");
    let before = s.ok(&["inspect", "-f", "{{.State.StartedAt}}", "box2"]);
    s.ok(&["restart", "-t", "1", "box2"]);
    assert_ne!(
        s.ok(&["inspect", "-f", "{{.State.StartedAt}}", "box2"]),
        before
    );
    // diff, commit, export.
    let diff = s.ok(&["diff", "box2"]);
    assert!(diff.lines().any(|l| l == "A /tmp/made"), "{diff}");
    assert!(diff.lines().any(|l| l == "D /etc/group"), "{diff}");
    let id = s.ok(&["commit", "-m", "snap", "box2", "snap:one"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .args(["run", "--rm", "snap:one", "cat", "/tmp/made"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "data\n", "{}", text(&out.stderr));
    let tarfile = r.dir().join("export.tar");
    s.ok(&["export", "-o", tarfile.to_str().unwrap(), "box2"]);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&tarfile)
        .output()
        .unwrap();
    assert!(text(&list.stdout)
        .lines()
        .any(|l| l.trim_start_matches("./") == "tmp/made"));
    // docker run -i: stdin through the attach, closed at its end.
    let mut child = s
        .docker_cmd(&["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "through stdin\nend\n");
    // docker run -it on a pty: a terminal in the container, its exit code.
    let cmd = format!(
        "DOCKER_HOST={} DOCKER_CONFIG={} {DOCKER} run -it --rm busybox sh -c 'tty; exit 2'",
        s.host(),
        s.config.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    // wait with a condition; prune removes the stopped, not the running.
    s.ok(&["create", "--name", "later", "busybox", "sh", "-c", "exit 7"]);
    // next-exit on a created container waits for the run that follows
    // (docker run's wait); not-running answers at once.
    let (st, _, body) = s.http("POST", "/containers/later/wait", Some(""));
    assert_eq!(st, 200);
    assert!(body.contains(r#"{"StatusCode":0,"Error":null}"#), "{body}");
    let sock = s.sock.clone();
    let (headers_tx, headers_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut c = UnixStream::connect(&sock).unwrap();
        c.write_all(b"POST /v1.47/containers/later/wait?condition=next-exit HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            .unwrap();
        // The wait's headers come at once (as docker's): the start follows them.
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(c.read(&mut b).unwrap(), 1);
            got.push(b[0]);
        }
        headers_tx.send(()).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    });
    headers_rx.recv().unwrap();
    s.ok(&["start", "later"]);
    let out = waiter.join().unwrap();
    assert!(out.contains(r#""StatusCode":7"#), "{out}");
    let pruned = s.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(s.ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(), "box2");
    s.ok(&["rm", "-f", "box2"]);
}

#[test]
fn service_socket_mode_idle_exit_plain_tcp_refusal_and_live_events() {
    use std::os::unix::fs::PermissionsExt;
    let r = Root::new();
    let hako = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hako"));
        c.arg("--root").arg(r.root()).args(args);
        c
    };
    // Plain --tcp beyond loopback is refused in one line, naming the address
    // and what to give instead (dockerd's TLS flags).
    let out = hako(&["system", "service", "--tcp", "0.0.0.0:2376"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("0.0.0.0:2376") && err.contains("without TLS") && err.contains("--tlsverify"),
        "{err}"
    );
    // TLS flags without --tcp, and --tlsverify without its CA, are refused too.
    let out = hako(&["system", "service", "--tlsverify"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--tcp"), "{}", text(&out.stderr));
    let out = hako(&[
        "system",
        "service",
        "--tcp",
        "127.0.0.1:1",
        "--tlsverify",
        "--tlscert",
        "c",
        "--tlskey",
        "k",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--tlscacert"),
        "{}",
        text(&out.stderr)
    );
    // --time 1: the service ends by itself once idle, and removes its socket.
    let sock = r.dir().join("idle.sock");
    let mut child = hako(&["system", "service", "--time", "1", "--socket"])
        .arg(&sock)
        .spawn()
        .unwrap();
    eventually("the idle service listens", || {
        UnixStream::connect(&sock).is_ok()
    });
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}");
    assert!(!sock.exists());

    // Events followed live, with a filter.
    let s = Service::start(&r);
    // --since: the follower sees the start even if it connects after it.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut ev = s
        .docker_cmd(&[
            "events",
            "--since",
            &since,
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = ev.stdout.take().unwrap();
    s.ok(&["run", "--rm", "--name", "ev1", "busybox", "true"]);
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let mut b = [0u8; 1];
        assert_eq!(stdout.read(&mut b).unwrap(), 1, "the events stream ended");
        line.push(b[0]);
    }
    // And the stream stays open for what comes next.
    s.ok(&["run", "--rm", "--name", "ev2", "busybox", "true"]);
    let mut more = Vec::new();
    while !more.ends_with(b"\n") {
        let mut b = [0u8; 1];
        assert_eq!(stdout.read(&mut b).unwrap(), 1, "the events stream ended");
        more.push(b[0]);
    }
    assert_eq!(text(&more), "ev2\n");
    assert_eq!(text(&line), "ev1\n");
    let _ = ev.kill();
    let _ = ev.wait();
}

#[test]
fn docker_run_flags_reach_the_container_through_the_create_body() {
    let r = Root::new();
    let s = Service::start(&r);
    let data = r.dir().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "bound\n").unwrap();
    let bind = format!("{}:/data:ro", data.display());
    let out = s.ok(&[
        "run", "--rm", "-v", &bind, "--mount", "type=volume,source=vol1,target=/vol",
        "--tmpfs", "/scratch:size=8m", "--add-host", "foo:10.1.2.3", "--dns", "10.9.9.9",
        "-m", "64m", "--cap-drop", "ALL", "--init", "-w", "/data", "-u", "1000",
        "-e", "A=1", "--entrypoint", "sh", "busybox", "-c",
        "cat /data/f; grep -c ' /scratch ' /proc/mounts; grep foo /etc/hosts | cut -f1; grep nameserver /etc/resolv.conf; id -u; pwd; echo $A; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; touch /data/x 2>/dev/null || echo read-only; ls -d /vol",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "bound",
            "1",
            "10.1.2.3",
            "nameserver 10.9.9.9",
            "1000",
            "/data",
            "1",
            "67108864",
            "read-only",
            "/vol"
        ],
        "{out}"
    );
    // A health check from the create body: healthy, and ps filters on it.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -e /tmp",
        "--health-interval",
        "1s",
        "--restart",
        "unless-stopped",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "3",
        "busybox",
        "sleep",
        "300",
    ]);
    eventually("the container is healthy", || {
        s.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])
            .trim()
            == "healthy"
    });
    assert_eq!(
        s.ok(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"])
            .trim(),
        "hc"
    );
    let cfg = s.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}} {{.Config.StopSignal}} {{.Config.StopTimeout}}",
        "hc",
    ]);
    assert_eq!(cfg.trim(), "unless-stopped SIGUSR1 3");
    s.ok(&["rm", "-f", "hc"]);
}

/// PEM files of a CA, a server certificate for 127.0.0.1 and a client
/// certificate signed by that CA, written in `dir`; and a client
/// certificate of another CA (which the service must refuse).
fn tls_files(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        (p.self_signed(&key).unwrap(), key)
    };
    let leaf = |ca: &(rcgen::Certificate, KeyPair), server: bool, file: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        if server {
            p.subject_alt_names
                .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.distinguished_name.push(DnType::CommonName, "client");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let c = p.signed_by(&key, &ca.0, &ca.1).unwrap();
        std::fs::write(dir.join(format!("{file}-cert.pem")), c.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}-key.pem")), key.serialize_pem()).unwrap();
    };
    let good = ca("hako test CA");
    std::fs::write(dir.join("ca.pem"), good.0.pem()).unwrap();
    leaf(&good, true, "server");
    leaf(&good, false, "client");
    let rogue = ca("another CA");
    leaf(&rogue, false, "rogue");
}

#[test]
fn docker_cli_over_tcp_with_tlsverify_refuses_clients_without_a_signed_certificate() {
    let r = Root::new();
    let dir = r.dir().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    tls_files(&dir);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let f = |n: &str| dir.join(n).to_str().unwrap().to_string();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _service = Kill(
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(r.root())
            .args([
                "system",
                "service",
                "--time",
                "0",
                "--tcp",
                &addr,
                "--tlsverify",
            ])
            .args(["--tlscacert", &f("ca.pem")])
            .args(["--tlscert", &f("server-cert.pem")])
            .args(["--tlskey", &f("server-key.pem")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(r.dir().join("service.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    eventually("the TLS service listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let config = tempfile::tempdir().unwrap();
    let host = format!("tcp://{addr}");
    let docker = |tls: &[String], args: &[&str]| {
        Command::new(DOCKER)
            .env("DOCKER_CONFIG", config.path())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .args(["-H", &host])
            .args(tls)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let with = |name: &str| {
        vec![
            "--tlsverify".to_string(),
            format!("--tlscacert={}", f("ca.pem")),
            format!("--tlscert={}", f(&format!("{name}-cert.pem"))),
            format!("--tlskey={}", f(&format!("{name}-key.pem"))),
        ]
    };
    let ok = |args: &[&str]| {
        let out = docker(&with("client"), args);
        assert!(
            out.status.success(),
            "docker {args:?} over TLS: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    // A client with a certificate the CA signed: the whole API.
    assert_eq!(
        ok(&["version", "--format", "{{.Server.APIVersion}}"]).trim(),
        "1.47"
    );
    assert_eq!(
        ok(&["run", "--rm", "--name", "tls1", "busybox", "echo", "over tls"]).trim(),
        "over tls"
    );
    ok(&["run", "-d", "--name", "tls2", "busybox", "sleep", "600"]);
    assert!(ok(&["ps", "--format", "{{.Names}}"]).contains("tls2"));
    ok(&["rm", "-f", "tls2"]);
    // No client certificate, one of another CA, or plain HTTP: refused.
    let no_cert = docker(
        &[
            "--tlsverify".to_string(),
            format!("--tlscacert={}", f("ca.pem")),
        ],
        &["version", "--format", "{{.Server.APIVersion}}"],
    );
    assert!(!no_cert.status.success(), "{}", text(&no_cert.stdout));
    assert!(
        text(&no_cert.stderr).contains("certificate"),
        "{}",
        text(&no_cert.stderr)
    );
    let rogue = docker(&with("rogue"), &["ps"]);
    assert!(!rogue.status.success(), "{}", text(&rogue.stdout));
    let plain = docker(&[], &["ps"]);
    assert!(!plain.status.success(), "{}", text(&plain.stdout));
    // The service still serves signed clients after refusing the others.
    assert!(ok(&["ps", "-a", "--format", "{{.Names}}"])
        .trim()
        .is_empty());
}

/// A hijacked attach with `query`: the connection and what came after the
/// 101's head, read until `want` (or to the end without it).
fn attach_query(sock: &Path, id: &str, query: &str, want: Option<&str>) -> (UnixStream, Vec<u8>) {
    let mut s = UnixStream::connect(sock).unwrap();
    // A stream that never ends fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /v1.47/containers/{id}/attach?{query} HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "no answer: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
    };
    assert!(text(&got).starts_with("HTTP/1.1 101"), "{}", text(&got));
    let mut body = got.split_off(head_end);
    match want {
        Some(w) => {
            while !text(&body).contains(w) {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the attach ended: {}", text(&body));
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            s.read_to_end(&mut body).unwrap();
        }
    }
    (s, body)
}

/// docker's multiplexed frames: (stream, payload) each.
fn frames(mut b: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        out.push((b[0], text(&b[8..8 + n])));
        b = &b[8 + n..];
    }
    assert!(b.is_empty(), "a partial frame: {b:?}");
    out
}

/// Debian's python3 with python3-docker (the `python3` in PATH may be another).
fn docker_py(script: &str, host: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, host])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn attach_logs_replay_detach_keys_leave_it_running_and_execs_go_with_their_container() {
    let r = Root::new();
    let s = Service::start(&r);
    // attach?logs=1 (docker-py's attach(logs=True); the docker CLI never
    // asks for it). Raw HTTP: docker-py reads the hijacked socket past the
    // buffered reader that took the 101, so bytes arriving with it — a
    // replay comes at once — are lost to it with any server.
    s.ok(&[
        "run",
        "--name",
        "replay",
        "busybox",
        "sh",
        "-c",
        "echo first; echo second >&2",
    ]);
    let (_, got) = attach_query(&s.sock, "replay", "logs=1&stream=0&stdout=1&stderr=1", None);
    assert_eq!(
        frames(&got),
        vec![(1, "first\n".to_string()), (2, "second\n".to_string())]
    );
    let (_, got) = attach_query(&s.sock, "replay", "logs=1&stream=0&stdout=1", None);
    assert_eq!(frames(&got), vec![(1, "first\n".to_string())]);
    // logs=1&stream=1 on a running container: the log so far, then live.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo one; while [ ! -f /tmp/go ]; do sleep 0.1; done; echo two",
    ]);
    eventually("the first line is logged", || {
        s.ok(&["logs", "live"]).contains("one")
    });
    let (mut conn, mut got) = attach_query(
        &s.sock,
        "live",
        "logs=1&stream=1&stdout=1&stderr=1",
        Some("one"),
    );
    s.ok(&["exec", "live", "touch", "/tmp/go"]);
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(
        frames(&got),
        vec![(1, "one\n".to_string()), (1, "two\n".to_string())]
    );
    s.ok(&["rm", "-f", "replay", "live"]);
    let script = r#"
import sys, time, docker
api = docker.APIClient(base_url=sys.argv[1], version="1.47")
c = docker.DockerClient(base_url=sys.argv[1], version="1.47")

def read_until(sock, want):
    got = b""
    while want not in got:
        b = sock.recv(4096)
        assert b, "the stream ended before %r: %r" % (want, got)
        got += b
    return got

def read_to_end(sock):
    got = b""
    while True:
        b = sock.recv(4096)
        if not b:
            return got
        got += b

# A terminal attach with detachKeys=ctrl-x: input reaches the shell, the
# sequence ends the session, the container keeps running.
ctr = api.create_container("busybox", ["sh"], tty=True, stdin_open=True, name="det")
api.start(ctr)
att = api.attach_socket(ctr, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1, "detachKeys": "ctrl-x"})
sock = att._sock
sock.settimeout(60)
sock.sendall(b"echo hi-$((1+1))\n")
read_until(sock, b"hi-2")
sock.sendall(b"\x18")
read_to_end(sock)
assert api.inspect_container(ctr)["State"]["Running"], "detaching stopped the container"

# A bad sequence is docker's 400.
try:
    api.attach_socket(ctr, params={"stdin": 1, "stream": 1, "detachKeys": "ctrl-pp"})
    raise SystemExit("bad detach keys accepted")
except docker.errors.APIError as e:
    assert e.status_code == 400 and "Invalid detach keys" in str(e), str(e)

# An exec with a terminal: docker's default ctrl-p ctrl-q detaches, the
# process goes on.
ex = api.exec_create(ctr, ["sh"], stdin=True, tty=True)["Id"]
esock = api.exec_start(ex, tty=True, socket=True)._sock
esock.settimeout(60)
esock.sendall(b"echo ex-$((2+3))\n")
read_until(esock, b"ex-5")
esock.sendall(b"\x10\x11")
read_to_end(esock)
assert api.exec_inspect(ex)["Running"], "detaching ended the exec"

# Removing the container forgets its execs: docker's 404.
api.remove_container(ctr, force=True)
try:
    api.exec_inspect(ex)
    raise SystemExit("the exec of a removed container is still there")
except docker.errors.NotFound as e:
    assert "No such exec instance" in str(e), str(e)
# An exec whose container another front end removes: printed for the caller.
other = c.containers.run("busybox", ["sleep", "300"], detach=True, name="other")
print(api.exec_create(other.id, ["true"])["Id"])
"#;
    let exec_id = docker_py(script, &s.host());
    let exec_id = exec_id.trim();
    let (st, _, _) = s.http("GET", &format!("/exec/{exec_id}/json"), None);
    assert_eq!(st, 200);
    r.ok(&["rm", "-f", "other"]);
    let (st, _, body) = s.http("GET", &format!("/exec/{exec_id}/json"), None);
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("No such exec instance"), "{body}");
    let (st, _, _) = s.http("POST", &format!("/exec/{exec_id}/start"), Some("{}"));
    assert_eq!(st, 404);
}

/// The malloc arenas of a process besides the main heap: glibc reserves
/// each in a 64 MiB-aligned anonymous region of 64 MiB (its used part
/// read-write, the rest inaccessible).
fn malloc_arenas(pid: u32) -> usize {
    const HEAP_MAX: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let rows: Vec<(u64, u64, String, bool)> = maps
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (a, b) = f[0].split_once('-').unwrap();
            (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
                f[1].to_string(),
                f.len() < 6,
            )
        })
        .collect();
    rows.iter()
        .enumerate()
        .filter(|(i, (start, end, perm, anon))| {
            let whole = match rows.get(i + 1) {
                Some((s2, e2, p2, a2)) if *s2 == *end && p2.starts_with("---") && *a2 => *e2,
                _ => *end,
            };
            *anon && perm.starts_with("rw") && start % HEAP_MAX == 0 && whole - start == HEAP_MAX
        })
        .count()
}

#[test]
fn service_runs_as_its_own_executable_with_two_malloc_arenas() {
    let r = Root::new();
    let s = Service::start(&r);
    // `hako system service` execs hako-service (beside hako): same process,
    // none of the whole CLI's code mapped.
    let pid = s.child.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe.file_name().unwrap(),
        "hako-service",
        "{}",
        exe.display()
    );
    let hako = Path::new(env!("CARGO_BIN_EXE_hako"))
        .canonicalize()
        .unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        !maps.contains(&format!("{}\n", hako.display())),
        "the service maps {}",
        hako.display()
    );
    // Requests at once run on several blocking threads; glibc would give
    // each its own arena (up to 8 per core): the service allows two, the
    // main heap and one more.
    let runs: Vec<_> = (0..6)
        .map(|i| {
            s.docker_cmd(&["run", "--rm", "busybox", "echo", &format!("n{i}")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in runs.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "run {i} failed");
        assert_eq!(text(&out.stdout).trim(), format!("n{i}"));
    }
    assert_eq!(s.ok(&["ps", "-aq"]).trim(), "");
    let arenas = malloc_arenas(pid);
    assert!(arenas <= 1, "{arenas} malloc arenas besides the main heap");
    s.alive();
}
