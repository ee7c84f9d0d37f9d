//! The Docker Engine API's images, build, networks and volumes (issue 19,
//! part 2), driven through `hako system service` by the real docker CLI 28,
//! docker-compose 1.29 and docker-py, with loopback registries.

mod common;
mod dockerapi_common;
mod engine_common;
mod registry_peers;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use engine_common::Root;
use registry_peers::Server;

use dockerapi_common::{text, Service};

/// An error a client prints is one line naming the problem, no Rust in it.
fn one_line(e: &str) {
    // docker CLI 28 adds "exit status N" after the daemon's message.
    let e = e.trim();
    let e = e
        .strip_suffix(|c: char| c.is_ascii_digit())
        .map_or(e, |s| s.trim_end_matches(|c: char| c.is_ascii_digit()))
        .trim_end_matches("exit status ")
        .trim();
    assert!(!e.is_empty() && !e.contains('\n'), "{e:?}");
    assert!(
        !e.contains("Error {") && !e.contains("Os {") && !e.contains("kind:"),
        "{e}"
    );
}

#[test]
fn images_inspect_history_tag_rmi_prune_save_load() {
    let r = Root::new();
    let svc = Service::start(&r);
    let listed = svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(listed.contains("busybox:latest"), "{listed}");
    let id = svc.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let history = svc.ok(&["history", "--no-trunc", "busybox"]);
    assert!(history.lines().count() >= 2, "{history}");

    svc.ok(&["tag", "busybox", "example.test/tools/box:1"]);
    let names = svc.ok(&[
        "images",
        "--filter",
        "reference=example.test/tools/*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(names.trim(), "example.test/tools/box:1");
    let tags = svc.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoTags}}",
        "busybox",
    ]);
    assert!(tags.contains("example.test/tools/box:1"), "{tags}");
    // Two names: removing one untags it only.
    let out = svc.ok(&["rmi", "example.test/tools/box:1"]);
    assert!(out.contains("Untagged: example.test/tools/box:1"), "{out}");
    assert!(!out.contains("Deleted"), "{out}");

    // Unknown and malformed names: docker's 404 and 400, one line each.
    let e = svc.fails(&["image", "inspect", "no-such-image:9"]);
    assert!(e.contains("No such image"), "{e}");
    one_line(&e);
    let e = svc.fails(&["rmi", "no-such-image:9"]);
    assert!(e.contains("No such image"), "{e}");
    let (code, body) = svc.request("GET", "/v1.47/images/no-such-image:9/json", b"");
    assert_eq!(code, 404, "{body}");
    let (code, body) = svc.request(
        "POST",
        "/v1.47/images/create?fromImage=Bad%20Ref!!&tag=latest",
        b"",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid reference format"), "{body}");
    one_line(&body);
    let e = svc.fails(&["search", "busybox"]);
    assert!(e.contains("not supported"), "{e}");
    one_line(&e);

    // save | load into another root through its own service.
    let tar = r.dir().join("busybox.tar");
    svc.ok(&["save", "-o", tar.to_str().unwrap(), "busybox"]);
    let other = Root::new();
    other.ok(&["rmi", "busybox"]);
    let svc2 = Service::start(&other);
    let loaded = svc2.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: busybox:latest"), "{loaded}");
    let id2 = svc2.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    assert_eq!(id.trim(), id2.trim());
    // A broken archive is refused, nothing stored, the service keeps serving.
    let (code, body) = svc2.request(
        "POST",
        "/v1.47/images/load?quiet=1",
        b"this is not a tar archive at all",
    );
    assert!(code == 400 || body.contains("errorDetail"), "{code} {body}");
    svc2.alive();

    // rmi of the last name deletes; prune -a takes what no container uses.
    svc2.ok(&["tag", "busybox", "spare:1"]);
    svc2.ok(&["rmi", "busybox"]);
    let out = svc2.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(svc2.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn pull_and_push_with_and_without_auth() {
    let r = Root::new();
    let svc = Service::start(&r);
    let open = Server::hako_registry(None);
    let dest = format!("{}/tools/busybox:1", open.host());
    svc.ok(&["tag", "busybox", &dest]);
    let out = svc.ok(&["push", &dest]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    svc.ok(&["rmi", &dest]);
    svc.ok(&["rmi", "busybox"]);
    let out = svc.ok(&["pull", &dest]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let names = svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(names.contains(&dest), "{names}");
    let e = svc.fails(&["pull", &format!("{}/tools/nothing:1", open.host())]);
    one_line(e.lines().last().unwrap_or(""));

    // A registry with credentials: refused without, accepted after login.
    let locked = Server::hako_registry(Some(("alice", "s3cret")));
    let dest = format!("{}/team/busybox:2", locked.host());
    svc.ok(&["tag", &format!("{}/tools/busybox:1", open.host()), &dest]);
    let e = svc.fails(&["push", &dest]);
    assert!(e.contains("authentication required"), "{e}");
    one_line(&e);
    let e = svc.fails(&["login", "-u", "alice", "-p", "wrong", &locked.host()]);
    one_line(e.lines().last().unwrap_or(""));
    svc.ok(&["login", "-u", "alice", "-p", "s3cret", &locked.host()]);
    svc.ok(&["push", &dest]);
    svc.ok(&["rmi", &dest]);
    svc.ok(&["pull", &dest]);
    svc.ok(&["image", "inspect", &dest]);
}

#[test]
fn classic_build_with_args_target_and_labels() {
    let r = Root::new();
    let svc = Service::start(&r);
    let ctx = r.dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS base\nARG GREETING=hi\nENV GREETING=$GREETING\nCOPY hello.txt /hello.txt\nRUN echo \"$GREETING\" > /greeting\n\nFROM base AS extra\nRUN false\n",
    )
    .unwrap();
    let out = svc.ok(&[
        "build",
        "--build-arg",
        "GREETING=hey",
        "--target",
        "base",
        "--label",
        "team=infra",
        "-t",
        "built:1",
        "-t",
        "built:alias",
        ctx.to_str().unwrap(),
    ]);
    assert!(out.contains("Step "), "{out}");
    assert!(out.contains("Successfully built"), "{out}");
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    let env = svc.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        "built:alias",
    ]);
    assert!(env.contains("GREETING=hey"), "{env}");
    let labels = svc.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        "built:1",
    ]);
    assert!(labels.contains("\"team\":\"infra\""), "{labels}");
    let mounted = r.ok(&["run", "--rm", "built:1", "cat", "/greeting", "/hello.txt"]);
    assert_eq!(mounted, "hey\nhello from the context\n");
    // -q prints the id only.
    let q = svc.ok(&["build", "-q", "--target", "base", ctx.to_str().unwrap()]);
    assert!(q.trim().starts_with("sha256:"), "{q}");
    // The failing stage: docker's error, the build's step named.
    let e = svc.fails(&["build", "-t", "broken", ctx.to_str().unwrap()]);
    assert!(e.contains("false") || e.contains("non-zero"), "{e}");
    // A context that is not a tar, and BuildKit: clean refusals; still serving.
    let (code, body) = svc.request("POST", "/v1.47/build?t=x", b"garbage, not a tar");
    assert!(code == 400, "{code} {body}");
    one_line(&body);
    let (code, body) = svc.request("POST", "/v1.47/build?version=2", b"");
    assert_eq!(code, 501, "{body}");
    assert!(body.contains("DOCKER_BUILDKIT=0"), "{body}");
    svc.alive();
}

#[test]
fn networks_and_volumes() {
    let r = Root::new();
    let svc = Service::start(&r);
    let net = common::unique("apinet");
    let id = svc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.231.7.0/24",
        "--label",
        "team=db",
        &net,
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = svc.ok(&[
        "network",
        "ls",
        "--filter",
        "label=team=db",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(ls.trim(), net);
    let all = svc.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(all.contains("host") && all.contains("none"), "{all}");
    let subnet = svc.ok(&[
        "network",
        "inspect",
        "--format",
        "{{(index .IPAM.Config 0).Subnet}}",
        &net,
    ]);
    assert_eq!(subnet.trim(), "10.231.7.0/24");
    let e = svc.fails(&["network", "create", &net]);
    assert!(e.contains("already exists"), "{e}");
    let e = svc.fails(&["network", "inspect", "no-such-net"]);
    one_line(&e);

    // connect/disconnect a container made by the CLI on the same root.
    let c = common::unique("apic");
    r.ok(&["create", "--name", &c, "busybox", "sleep", "60"]);
    svc.ok(&["network", "connect", "--alias", "db", &net, &c]);
    let nets = r.inspect(&c)["NetworkSettings"]["Networks"].clone();
    assert!(nets.get(&net).is_some(), "{nets}");
    svc.ok(&["network", "disconnect", &net, &c]);
    let nets = r.inspect(&c)["NetworkSettings"]["Networks"].clone();
    assert!(nets.get(&net).is_none(), "{nets}");
    let e = svc.fails(&["network", "connect", &net, "no-such-container"]);
    assert!(e.contains("No such container"), "{e}");
    r.ok(&["rm", &c]);
    svc.ok(&["network", "rm", &net]);
    let e = svc.fails(&["network", "rm", &net]);
    one_line(&e);
    let spare = common::unique("apispare");
    svc.ok(&["network", "create", &spare]);
    let out = svc.ok(&["network", "prune", "-f"]);
    assert!(out.contains(&spare), "{out}");

    let vol = common::unique("apivol");
    svc.ok(&["volume", "create", "--label", "tier=cold", &vol]);
    let ls = svc.ok(&[
        "volume",
        "ls",
        "--filter",
        "label=tier=cold",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(ls.trim(), vol);
    let mp = svc.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &vol]);
    assert!(Path::new(mp.trim()).is_dir(), "{mp}");
    let e = svc.fails(&["volume", "inspect", "no-such-volume"]);
    one_line(&e);
    svc.ok(&["volume", "rm", &vol]);
    let anon = svc.ok(&["volume", "create"]);
    let named = common::unique("apikeep");
    svc.ok(&["volume", "create", &named]);
    let out = svc.ok(&["volume", "prune", "-f"]);
    assert!(out.contains(anon.trim()) && !out.contains(&named), "{out}");
    let out = svc.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains(&named), "{out}");
}

/// A client hanging up in the middle of a pull: the pull stops, no image
/// is stored half-way, and the service keeps serving.
#[test]
fn client_hanging_up_mid_pull() {
    let r = Root::new();
    let svc = Service::start(&r);
    let reg = Server::hako_registry(None);
    // An image with a large incompressible layer, so the pull takes a while.
    let big = r.dir().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let mut f = std::fs::File::create(big.join("blob")).unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..192 {
        for b in chunk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    std::fs::write(big.join("Dockerfile"), "FROM busybox\nCOPY blob /blob\n").unwrap();
    let dest = format!("{}/big/image:1", reg.host());
    svc.ok(&["build", "-t", &dest, big.to_str().unwrap()]);
    svc.ok(&["push", &dest]);
    svc.ok(&["rmi", &dest]);

    // Ask for the pull, read the first progress line, hang up.
    let mut s = UnixStream::connect(&svc.sock).unwrap();
    write!(
        s,
        "POST /v1.47/images/create?fromImage={}&tag=1 HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n",
        dest.rsplit_once(':').unwrap().0
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(text(&buf[..n]).contains("200"), "{}", text(&buf[..n]));
    drop(s);
    // The service stopped the pull: no image of that name appears, however
    // long one waits (an uncancelled pull of it ends well within this).
    for _ in 0..60 {
        let names = svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(!names.contains("big/image"), "{names}");
        std::thread::sleep(Duration::from_secs(1));
    }
    svc.alive();
    // And a full pull afterwards works.
    svc.ok(&["pull", &dest]);
    svc.ok(&["image", "inspect", &dest]);
}

#[test]
fn docker_py_pulls_and_builds() {
    let r = Root::new();
    let svc = Service::start(&r);
    let reg = Server::hako_registry(None);
    let dest = format!("{}/py/busybox", reg.host());
    svc.ok(&["tag", "busybox", &format!("{dest}:1")]);
    svc.ok(&["push", &format!("{dest}:1")]);
    svc.ok(&["rmi", &format!("{dest}:1")]);
    let ctx = r.dir().join("pyctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG V=0\nLABEL v=$V\n",
    )
    .unwrap();
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="{host}")
img = c.images.pull("{dest}", tag="1")
assert "{dest}:1" in img.tags, img.tags
built, logs = c.images.build(path="{ctx}", tag="pybuilt:1", buildargs={{"V": "7"}})
assert built.labels.get("v") == "7", built.labels
print("ok", built.id)
"#,
        host = svc.host(),
        dest = dest,
        ctx = ctx.display()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).starts_with("ok sha256:"));
}

/// docker-compose 1.29 (docker-py underneath): a service built from a
/// Dockerfile, another depending on it, a named volume; `down -v` removes
/// containers, network and volume.
#[test]
fn docker_compose_builds_starts_in_order_and_tears_down() {
    let r = Root::new();
    let svc = Service::start(&r);
    let project = common::unique("proj").replace('-', "");
    let dir = r.dir().join("compose");
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("app/Dockerfile"),
        "FROM busybox\nRUN mkdir -p /www && echo served > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"
services:
  web:
    build: ./app
    volumes:
      - data:/data
  client:
    image: busybox
    command: ["sleep", "300"]
    depends_on:
      - web
volumes:
  data: {}
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| -> Output {
        Command::new("docker-compose")
            .current_dir(&dir)
            .env("DOCKER_HOST", svc.host())
            .env("DOCKER_CONFIG", svc.config.path())
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .args(["-p", &project])
            .args(args)
            .output()
            .unwrap()
    };
    let out = compose(&["up", "-d", "--build"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let state = svc.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}}",
        &format!("{project}_web_1"),
    ]);
    assert_eq!(state.trim(), "running");
    let running = svc.ok(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        running.contains(&format!("{project}_client_1")),
        "{running}"
    );
    let vols = svc.ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(vols.contains(&format!("{project}_data")), "{vols}");

    let out = compose(&["down", "-v"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let left = svc.ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    assert_eq!(left.trim(), "");
    assert!(!svc
        .ok(&["volume", "ls", "--format", "{{.Name}}"])
        .contains(&project));
    assert!(!svc
        .ok(&["network", "ls", "--format", "{{.Name}}"])
        .contains(&project));
}

/// docker-compose 1.29 (docker-py underneath): a service built from a
/// Dockerfile with a healthcheck, another depending on it being healthy,
/// a named volume; `down -v` removes containers, network and volume.
#[test]
fn docker_compose_builds_waits_for_health_and_tears_down() {
    let r = Root::new();
    let svc = Service::start(&r);
    let project = common::unique("proj").replace('-', "");
    let dir = r.dir().join("compose");
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("app/Dockerfile"),
        "FROM busybox\nRUN mkdir -p /www && echo served > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"
services:
  web:
    build: ./app
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 20
  client:
    image: busybox
    command: ["sleep", "300"]
    depends_on:
      web:
        condition: service_healthy
volumes:
  data: {}
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| -> Output {
        Command::new("docker-compose")
            .current_dir(&dir)
            .env("DOCKER_HOST", svc.host())
            .env("DOCKER_CONFIG", svc.config.path())
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .args(["-p", &project])
            .args(args)
            .output()
            .unwrap()
    };
    let out = compose(&["up", "-d", "--build"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let health = svc.ok(&[
        "inspect",
        "--format",
        "{{.State.Health.Status}}",
        &format!("{project}_web_1"),
    ]);
    assert_eq!(health.trim(), "healthy");
    let running = svc.ok(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        running.contains(&format!("{project}_client_1")),
        "{running}"
    );
    let vols = svc.ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(vols.contains(&format!("{project}_data")), "{vols}");

    let out = compose(&["down", "-v"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let left = svc.ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    assert_eq!(left.trim(), "");
    assert!(!svc
        .ok(&["volume", "ls", "--format", "{{.Name}}"])
        .contains(&project));
    assert!(!svc
        .ok(&["network", "ls", "--format", "{{.Name}}"])
        .contains(&project));
}

/// `docker system df` and `docker system prune` through the service.
#[test]
fn system_df_and_prune() {
    let r = Root::new();
    let svc = Service::start(&r);
    svc.ok(&["tag", "busybox", "spare:1"]);
    let df = svc.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Images 1"), "{df}");
    let net = common::unique("prunenet");
    svc.ok(&["network", "create", &net]);
    let out = svc.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains(&net), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(svc.ok(&["images", "-q"]).trim(), "");
}
