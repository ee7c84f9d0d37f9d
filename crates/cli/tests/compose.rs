//! `hako compose` with real containers, networks and volumes (needs root):
//! a three-service application checked from the host, scaling, selective
//! recreation, teardown; and `config` for merging and interpolation.

mod engine_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use engine_common::{wait_for, Root};

fn compose(r: &Root, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .arg("compose")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(r: &Root, dir: &Path, args: &[&str]) -> String {
    let out = compose(r, dir, args);
    assert!(
        out.status.success(),
        "compose {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr.trim()).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

const APP: &str = r#"
name: shop
services:
  init:
    image: busybox
    command: ["sh", "-c", "echo ${GREETING:-hello} > /data/index.html"]
    volumes: [data:/data]
  api:
    image: busybox
    command: httpd -f -p 80 -h /data
    volumes:
      - type: volume
        source: data
        target: /data
        read_only: true
    depends_on:
      init: {condition: service_completed_successfully}
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1/ >/dev/null"]
      interval: 200ms
      retries: 50
    environment:
      MODE: one
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www; while :; do wget -qO /www/index.html.new http://api/ && mv /www/index.html.new /www/index.html; sleep 0.2; done & exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1::80"]
    depends_on:
      api: {condition: service_healthy}
volumes:
  data: {}
"#;

#[test]
fn a_three_service_app_up_scale_recreate_down() {
    let r = Root::new();
    let dir = r.dir().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), APP).unwrap();
    std::fs::write(dir.join(".env"), "GREETING=from-the-volume\n").unwrap();

    let out = compose(&r, &dir, &["up", "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = ok(&r, &dir, &["port", "web", "80"]);
    wait_for("the web service to serve the api's answer", || {
        http_get(&addr).as_deref() == Some("from-the-volume\n")
    });
    let ps = ok(&r, &dir, &["ps", "-a", "--format", "json"]);
    let rows: Vec<serde_json::Value> = ps
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let state = |name: &str| {
        rows.iter()
            .find(|v| v["Name"] == name)
            .map(|v| {
                (
                    v["State"].as_str().unwrap().to_string(),
                    v["ExitCode"].as_i64().unwrap(),
                )
            })
            .unwrap_or_else(|| panic!("{name} missing: {ps}"))
    };
    assert_eq!(state("shop-init-1"), ("exited".into(), 0));
    assert_eq!(state("shop-api-1").0, "running");
    assert_eq!(state("shop-web-1").0, "running");
    let id_of = |name: &str| r.inspect(name)["Id"].as_str().unwrap().to_string();
    let (api1, web1) = (id_of("shop-api-1"), id_of("shop-web-1"));

    // Scale: a second web container; nothing else touched.
    ok(&r, &dir, &["up", "-d", "--scale", "web=2"]);
    assert_eq!(id_of("shop-web-1"), web1);
    assert_eq!(id_of("shop-api-1"), api1);
    let addr2 = ok(&r, &dir, &["port", "--index", "2", "web", "80"]);
    wait_for("the second web container", || http_get(&addr2).is_some());

    // Change one service: only it is recreated.
    std::fs::write(
        dir.join("compose.yaml"),
        APP.replace("MODE: one", "MODE: two"),
    )
    .unwrap();
    let out = compose(&r, &dir, &["up", "-d", "--scale", "web=2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Container shop-api-1  Recreated"));
    assert_ne!(id_of("shop-api-1"), api1);
    assert_eq!(id_of("shop-web-1"), web1);
    assert_eq!(
        r.inspect("shop-api-1")["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| *e == "MODE=two")
            .count(),
        1
    );
    // Logs carry each container's prefix.
    let logs = ok(&r, &dir, &["logs", "init"]);
    assert_eq!(logs, "");
    let out = ok(&r, &dir, &["exec", "api", "cat", "/data/index.html"]);
    assert_eq!(out, "from-the-volume\n");

    // Down: containers and the network go; the named volume stays without -v.
    ok(&r, &dir, &["down"]);
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());
    let nets = r.ok(&["network", "ls", "--format", "json"]);
    assert!(!nets.contains("shop_default"), "{nets}");
    assert!(r.ok(&["volume", "ls", "-q"]).contains("shop_data"));
    ok(&r, &dir, &["up", "-d", "init"]);
    ok(&r, &dir, &["down", "-v"]);
    assert!(!r.ok(&["volume", "ls", "-q"]).contains("shop_data"));
    assert!(r.ps_all().is_empty());
}

#[test]
fn config_merges_files_and_interpolates() {
    let r = Root::new();
    let dir = r.dir().join("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  web:\n    image: ${IMAGE:-busybox}\n    ports: [\"8080:80\"]\n    command: [\"a\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("override.yaml"),
        "services:\n  web:\n    ports: [\"8443:443\"]\n    command: [\"b\"]\n    environment:\n      TAG: ${TAG:?set TAG}\n",
    )
    .unwrap();
    std::fs::write(dir.join(".env"), "TAG=v1\n").unwrap();
    let out = ok(
        &r,
        &dir,
        &[
            "-f",
            "compose.yaml",
            "-f",
            "override.yaml",
            "config",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "cfg");
    let web = &v["services"]["web"];
    assert_eq!(web["image"], "busybox");
    assert_eq!(web["command"], serde_json::json!(["b"]));
    assert_eq!(web["ports"].as_array().unwrap().len(), 2);
    assert_eq!(web["environment"]["TAG"], "v1");
    // YAML output parses and says the same.
    let yaml = ok(
        &r,
        &dir,
        &["-f", "compose.yaml", "-f", "override.yaml", "config"],
    );
    assert!(
        yaml.contains("TAG: v1") || yaml.contains("TAG: 'v1'") || yaml.contains("TAG: \"v1\""),
        "{yaml}"
    );
    assert_eq!(ok(&r, &dir, &["config", "--services"]), "web\n");
    // A missing required variable and a bad field are one-line errors with the path.
    std::fs::remove_file(dir.join(".env")).unwrap();
    let out = compose(
        &r,
        &dir,
        &["-f", "compose.yaml", "-f", "override.yaml", "config"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "services.web.environment.TAG: required variable TAG is missing a value: set TAG"
        ),
        "{err}"
    );
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  web:\n    image: busybox\n    ports: [\"80:http\"]\n",
    )
    .unwrap();
    let out = compose(&r, &dir, &["config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("services.web.ports[0]"), "{err}");
    std::fs::write(dir.join("compose.yaml"), "services:\n  a:\n    image: busybox\n    depends_on: [b]\n  b:\n    image: busybox\n    depends_on: [a]\n").unwrap();
    let out = compose(&r, &dir, &["up", "-d"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dependency cycle"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(r.ps_all().is_empty());
}

#[test]
fn services_with_build_sections_are_built_and_run() {
    let r = Root::new();
    let dir = r.dir().join("built");
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(
        dir.join("ctx/Dockerfile.app"),
        "FROM busybox\nARG WORD\nRUN echo \"built $WORD\" > /msg\nCMD [\"cat\", \"/msg\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  app:\n    build:\n      context: ./ctx\n      dockerfile: Dockerfile.app\n      args:\n        WORD: here\n",
    )
    .unwrap();
    // Missing image: up builds it, named PROJECT-SERVICE.
    ok(&r, &dir, &["up", "-d"]);
    assert!(
        r.ok(&["images", "--format", "json"]).contains("built-app"),
        "{}",
        r.ok(&["images"])
    );
    wait_for("the one-shot to finish", || {
        r.state_of("built-app-1").is_some_and(|s| s.0 == "exited")
    });
    assert_eq!(
        ok(&r, &dir, &["logs", "--no-color", "app"]),
        "built-app-1 | built here\n"
    );
    // `build` rebuilds (from the cache) and `run` uses the image.
    ok(&r, &dir, &["build"]);
    let out = compose(&r, &dir, &["run", "--rm", "app"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built here\n");
    let out = compose(
        &r,
        &dir,
        &[
            "run",
            "--rm",
            "-e",
            "GREET=hi",
            "app",
            "sh",
            "-c",
            "echo $GREET; exit 3",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(out.status.code(), Some(3));
    ok(&r, &dir, &["down"]);
}

#[test]
fn configs_secrets_and_conditions_that_hold_on_every_start() {
    let r = Root::new();
    let dir = r.dir().join("cond");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.conf"), "level=debug\n").unwrap();
    std::fs::write(dir.join("token.txt"), "s3cret\n").unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        r#"
services:
  init:
    image: busybox
    command: ["sh", "-c", "rm -f /data/flag; sleep 1; echo done > /data/flag"]
    volumes: [data:/data]
  app:
    image: busybox
    command: ["sh", "-c", "cat /data/flag 2>/dev/null || echo missing; cat /run/secrets/token /etc/app.conf; exec sleep 1000"]
    volumes: [data:/data]
    configs:
      - source: conf
        target: /etc/app.conf
    secrets: [token]
    depends_on:
      init: {condition: service_completed_successfully}
configs:
  conf: {file: ./app.conf}
secrets:
  token: {file: ./token.txt}
volumes:
  data: {}
"#,
    )
    .unwrap();
    ok(&r, &dir, &["up", "-d"]);
    let logs = || ok(&r, &dir, &["logs", "--no-color", "app"]);
    wait_for("app's output", || logs().contains("level=debug"));
    assert_eq!(
        logs(),
        "cond-app-1 | done\ncond-app-1 | s3cret\ncond-app-1 | level=debug\n"
    );
    // The secret is read-only in the container.
    let out = compose(
        &r,
        &dir,
        &["exec", "app", "sh", "-c", "echo x > /run/secrets/token"],
    );
    assert!(!out.status.success());
    // Stop and start again: init runs again and app waits for it to complete.
    ok(&r, &dir, &["stop", "-t", "1"]);
    ok(&r, &dir, &["start"]);
    wait_for("app's second run", || {
        logs().matches("level=debug").count() == 2
    });
    let l = logs();
    assert_eq!(l.matches("| done").count(), 2, "{l}");
    assert!(!l.contains("missing"), "{l}");
    ok(&r, &dir, &["down", "-v"]);
    // An undefined secret is refused with its path.
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  a:\n    image: busybox\n    secrets: [nope]\n",
    )
    .unwrap();
    let out = compose(&r, &dir, &["config"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("services.a.secrets[0]: refers to undefined secret nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_other_commands_and_up_flags() {
    use std::io::BufRead;
    let r = Root::new();
    let dir = r.dir().join("ops");
    std::fs::create_dir_all(&dir).unwrap();
    // A registry on loopback for pull and push.
    let reg_root = r.dir().join("registry");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(&reg_root)
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Kill(child);
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    let image = format!("{addr}/ops/busybox:1");
    r.ok(&["tag", "busybox", &image]);
    let file = format!(
        r#"
services:
  db:
    image: {image}
    command: ["sh", "-c", "echo db-up; exec sleep 1000"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 100ms
  web:
    image: {image}
    command: ["sh", "-c", "echo web-up; exec sleep 1000"]
    depends_on: [db]
  debug:
    image: {image}
    command: ["sleep", "1000"]
    profiles: [debug]
"#
    );
    std::fs::write(dir.join("compose.yaml"), &file).unwrap();
    // push, then pull into a store that lost the image.
    ok(&r, &dir, &["push"]);
    r.ok(&["rmi", &image]);
    ok(&r, &dir, &["pull"]);
    assert!(r.ok(&["images"]).contains(&format!("{addr}/ops/busybox")));

    // --no-deps starts only web; --wait waits for db's health.
    ok(&r, &dir, &["up", "-d", "--no-deps", "web"]);
    let names = |all: bool| -> Vec<String> {
        let mut a = vec!["ps", "--format", "json"];
        if all {
            a.push("-a");
        }
        let mut v: Vec<String> = ok(&r, &dir, &a)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["Name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(false), vec!["ops-web-1"]);
    ok(&r, &dir, &["up", "-d", "--wait"]);
    assert_eq!(names(false), vec!["ops-db-1", "ops-web-1"]);
    let ps = ok(&r, &dir, &["ps", "--format", "json", "db"]);
    assert!(ps.contains("\"Health\":\"healthy\""), "{ps}");
    // Profiles: the debug service only with its profile.
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .args(["compose", "--profile", "debug", "up", "-d"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names(false), vec!["ops-db-1", "ops-debug-1", "ops-web-1"]);
    // --force-recreate replaces even unchanged containers.
    let id = |n: &str| r.inspect(n)["Id"].as_str().unwrap().to_string();
    let web = id("ops-web-1");
    ok(&r, &dir, &["up", "-d", "--force-recreate", "web"]);
    assert_ne!(id("ops-web-1"), web);
    // top and images name each container.
    let top = ok(&r, &dir, &["top", "web"]);
    assert!(
        top.starts_with("ops-web-1\n") && top.contains("sleep 1000"),
        "{top}"
    );
    let imgs = ok(&r, &dir, &["images", "web"]);
    assert!(
        imgs.contains("ops-web-1") && imgs.contains(&image),
        "{imgs}"
    );
    // restart gives new processes; kill stops; rm -s removes.
    let pid = r.inspect("ops-web-1")["State"]["Pid"].as_i64().unwrap();
    ok(&r, &dir, &["restart", "-t", "1", "web"]);
    assert_ne!(
        r.inspect("ops-web-1")["State"]["Pid"].as_i64().unwrap(),
        pid
    );
    ok(&r, &dir, &["kill", "web"]);
    wait_for("web to be killed", || {
        r.state_of("ops-web-1").is_some_and(|s| s.0 == "exited")
    });
    // logs -f returns once every selected container has stopped.
    let logs = ok(&r, &dir, &["logs", "-f", "--no-color", "web"]);
    assert!(logs.contains("ops-web-1 | web-up"), "{logs}");
    ok(&r, &dir, &["rm", "-f", "web"]);
    assert!(!names(true).contains(&"ops-web-1".to_string()));
    // --remove-orphans: a service dropped from the file goes.
    std::fs::write(
        dir.join("compose.yaml"),
        file.replace("  debug:\n", "  gone:\n"),
    )
    .unwrap();
    ok(&r, &dir, &["up", "-d", "--remove-orphans", "db"]);
    assert!(
        !names(true).contains(&"ops-debug-1".to_string()),
        "{:?}",
        names(true)
    );
    ok(&r, &dir, &["down"]);
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());
}

#[test]
fn logging_options_reach_the_containers_log() {
    let r = Root::new();
    let dir = r.dir().join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        r#"
name: logsapp
services:
  talk:
    image: busybox
    network_mode: none
    command: ["sh", "-c", "i=0; while [ $$i -lt 200 ]; do echo talk-$$i; i=$$((i+1)); done"]
    logging:
      driver: json-file
      options:
        max-size: 1k
        max-file: 2
"#,
    )
    .unwrap();
    ok(&r, &dir, &["up", "-d"]);
    let id = r.ok(&["ps", "-aq", "--no-trunc", "--filter", "name=logsapp-talk-1"]);
    let id = id.trim();
    let info: serde_json::Value = serde_json::from_str(&r.ok(&["inspect", id])).unwrap();
    assert_eq!(
        info[0]["HostConfig"]["LogConfig"]["Config"]["max-size"],
        "1k"
    );
    assert_eq!(
        info[0]["HostConfig"]["LogConfig"]["Config"]["max-file"],
        "2"
    );
    r.ok(&["wait", id]);
    let log = info[0]["LogPath"].as_str().unwrap();
    assert!(std::fs::metadata(log).unwrap().len() <= 1024);
    assert!(!Path::new(&format!("{log}.2")).exists());
    let logs = ok(&r, &dir, &["logs", "talk"]);
    assert!(logs.trim_end().ends_with("talk-199"), "{logs}");
    ok(&r, &dir, &["down"]);
    // A bad option names its field.
    std::fs::write(
        dir.join("compose.yaml"),
        "name: logsapp\nservices:\n  talk:\n    image: busybox\n    logging:\n      options:\n        max-size: huge\n",
    )
    .unwrap();
    let out = compose(&r, &dir, &["up", "-d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("logging") && err.contains("invalid size"),
        "{err}"
    );
}

#[test]
fn network_mode_service_shares_the_other_services_network() {
    let r = Root::new();
    let dir = r.dir().join("sidecar");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        r#"
name: sidecar
services:
  probe:
    image: busybox
    network_mode: "service:web"
    command: ["sh", "-c", "wget -qO- http://127.0.0.1:8080/ > /tmp/got; sleep 1000"]
  web:
    image: busybox
    command: ["sh", "-c", "mkdir /www && echo next door > /www/index.html && httpd -f -p 8080 -h /www"]
"#,
    )
    .unwrap();
    ok(&r, &dir, &["up", "-d"]);
    // web started first (an implicit dependency); probe reached it on its loopback.
    wait_for(
        "the probe to fetch from web over the shared loopback",
        || {
            r.run(&["exec", "sidecar-probe-1", "cat", "/tmp/got"])
                .stdout
                .starts_with(b"next door")
        },
    );
    let web_id = r.ok(&["inspect", "-f", "{{.Id}}", "sidecar-web-1"]);
    let mode = r.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.NetworkMode}}",
        "sidecar-probe-1",
    ]);
    assert_eq!(mode.trim(), format!("container:{}", web_id.trim()));
    ok(&r, &dir, &["down", "-t", "1"]);
    assert!(r.ps_all().is_empty());
}

#[test]
fn fixed_addresses_from_ipv4_address_and_mac_address() {
    let r = Root::new();
    let dir = r.dir().join("fixedip");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        r#"
name: fixedip
services:
  db:
    image: busybox
    command: ["sleep", "1000"]
    mac_address: "02:42:0a:fd:07:0a"
    networks:
      private:
        ipv4_address: 10.253.7.10
  app:
    image: busybox
    command: ["sleep", "1000"]
    networks:
      front:
      private:
        ipv4_address: 10.253.7.20
        aliases: [api]
networks:
  front:
  private:
    ipam:
      config:
        - subnet: 10.253.7.0/24
"#,
    )
    .unwrap();
    ok(&r, &dir, &["up", "-d"]);
    let addr = r.ok(&[
        "exec",
        "fixedip-db-1",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(addr.contains("10.253.7.10/24"), "{addr}");
    let link = r.ok(&["exec", "fixedip-db-1", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:42:0a:fd:07:0a"), "{link}");
    // app's second network ("private" sorts after "front": connected after
    // create) has the address asked for.
    let v = r.inspect("fixedip-app-1");
    assert_eq!(
        v["NetworkSettings"]["Networks"]["fixedip_private"]["IPAddress"],
        "10.253.7.20"
    );
    let out = r.ok(&["exec", "fixedip-db-1", "ping", "-c1", "-W5", "api"]);
    assert!(out.contains("10.253.7.20"), "{out}");
    ok(&r, &dir, &["down", "-t", "1"]);
    assert!(r.ps_all().is_empty());
    // A malformed address is named by its field.
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  s:\n    image: busybox\n    networks:\n      n:\n        ipv4_address: 10.1\nnetworks:\n  n:\n",
    )
    .unwrap();
    let out = compose(&r, &dir, &["up", "-d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.s.networks.n.ipv4_address") && err.contains("not an IPv4"),
        "{err}"
    );
}

/// Whether process `pid` holds an inotify descriptor (a follower is watching).
fn watching(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten().any(|f| {
                std::fs::read_link(f.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify"))
            })
        })
        .unwrap_or(false)
}

#[test]
fn compose_events_follow_the_projects_containers() {
    let r = Root::new();
    let dir = r.dir().join("evproj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "name: evproj\nservices:\n  web:\n    image: busybox\n    network_mode: none\n    command: [\"sleep\", \"1000\"]\n    shm_size: 16m\n    sysctls:\n      net.ipv4.ip_forward: 1\n",
    )
    .unwrap();
    ok(&r, &dir, &["up", "-d"]);
    // shm_size and sysctls reach the container.
    let out = r.ok(&[
        "exec",
        "evproj-web-1",
        "sh",
        "-c",
        "df -k /dev/shm | tail -1 | awk '{print $2}'; cat /proc/sys/net/ipv4/ip_forward",
    ]);
    assert_eq!(out, "16384\n1\n");
    let mut follower = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.root())
        .args(["compose", "events", "--json"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = follower.id();
    wait_for("the follower to watch the event log", || watching(pid));
    // Another container's events are not the project's.
    r.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    ok(&r, &dir, &["stop", "-t", "0"]);
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let stop = v["action"] == "stop";
            seen.push(v);
            if stop {
                break;
            }
        }
        seen
    });
    wait_for("the stop event", || reader.is_finished());
    let _ = follower.kill();
    let _ = follower.wait();
    let seen = reader.join().unwrap();
    let actions: Vec<&str> = seen.iter().map(|v| v["action"].as_str().unwrap()).collect();
    // -t 0: the stop signal, then KILL at once (as docker).
    assert_eq!(actions, ["kill", "kill", "die", "stop"], "{seen:?}");
    for v in &seen {
        assert_eq!(v["service"], "web");
        assert_eq!(v["type"], "container");
        assert_eq!(v["attributes"]["name"], "evproj-web-1");
    }
    ok(&r, &dir, &["down", "-t", "0"]);
}

/// Issue 13 point 9: `container_name` names the service's container (it was
/// accepted and ignored), `service:` network modes find it, and more than one
/// replica of it is refused.
#[test]
fn container_name_is_honoured_and_refused_with_replicas() {
    let r = Root::new();
    let dir = r.dir().join("named");
    std::fs::create_dir_all(&dir).unwrap();
    let cname = format!(
        "hk-cn-{}",
        r.dir()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "");
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"
name: named
services:
  web:
    image: busybox
    container_name: {cname}
    command: ["sh", "-c", "mkdir /www && echo named > /www/index.html && httpd -f -p 8080 -h /www"]
  probe:
    image: busybox
    network_mode: "service:web"
    command: ["sh", "-c", "wget -qO- http://127.0.0.1:8080/ > /tmp/got; sleep 1000"]
"#
        ),
    )
    .unwrap();
    ok(&r, &dir, &["up", "-d"]);
    let names: Vec<String> = r.ps_all().into_iter().map(|(n, _, _)| n).collect();
    assert!(names.contains(&cname), "{names:?}");
    assert!(!names.iter().any(|n| n == "named-web-1"), "{names:?}");
    assert_eq!(
        r.inspect(&cname)["Config"]["Labels"]["com.docker.compose.service"],
        "web"
    );
    wait_for("the probe to reach the named container's loopback", || {
        r.run(&["exec", "named-probe-1", "cat", "/tmp/got"])
            .stdout
            .starts_with(b"named")
    });
    // exec and a second up find it by its name (no recreation).
    assert_eq!(ok(&r, &dir, &["exec", "web", "echo", "hi"]).trim(), "hi");
    let id = r.inspect(&cname)["Id"].as_str().unwrap().to_string();
    let out = compose(&r, &dir, &["up", "-d"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("Container {cname}  Running")));
    assert_eq!(r.inspect(&cname)["Id"].as_str().unwrap(), id);
    // Two replicas of one name: refused, nothing changed.
    let out = compose(&r, &dir, &["up", "-d", "--scale", "web=2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--scale web=2: service web has a container_name"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::write(
        dir.join("compose.yaml"),
        format!("name: named\nservices:\n  web:\n    image: busybox\n    container_name: {cname}\n    scale: 2\n"),
    )
    .unwrap();
    let out = compose(&r, &dir, &["up", "-d"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("services.web.container_name: cannot be used with 2 replicas"));
    assert_eq!(r.inspect(&cname)["Id"].as_str().unwrap(), id);
    std::fs::write(
        dir.join("compose.yaml"),
        format!("name: named\nservices:\n  web:\n    image: busybox\n    container_name: {cname}\n  probe:\n    image: busybox\n    network_mode: \"service:web\"\n"),
    )
    .unwrap();
    ok(&r, &dir, &["down", "-t", "1"]);
    assert!(r.ps_all().is_empty());
}

/// Issue 13 points 3, 8 and 10 through the command: hostile or out-of-range
/// input fails in one line that names the file or field and carries none of
/// the input's bytes.
#[test]
fn hostile_compose_input_fails_in_one_line() {
    let r = Root::new();
    let dir = r.dir().join("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("shadow");
    std::fs::write(&secret, "root:$6$TOPSECRET\x1b[31m:19000::::::\n").unwrap();
    for (file, want) in [
        (
            "services:\n  web:\n    image: busybox\n    env_file: /dev/zero\n".to_string(),
            "services.web.env_file[0]: /dev/zero: is a device, not a regular file".to_string(),
        ),
        (
            format!(
                "services:\n  web:\n    image: busybox\n    env_file: {}\n",
                secret.display()
            ),
            format!(
                "services.web.env_file[0]: {}:1: expected KEY=VALUE",
                secret.display()
            ),
        ),
        (
            format!(
                "include: [{}]\nservices:\n  web:\n    image: busybox\n",
                secret.display()
            ),
            format!("{}: not a compose file: ", secret.display()),
        ),
        (
            "services:\n  web:\n    image: busybox\n    deploy: {replicas: 4294967296}\n"
                .to_string(),
            "services.web.deploy.replicas: must be a whole number from 0 to 10000".to_string(),
        ),
        (
            "services:\n  ~:\n    image: busybox\n".to_string(),
            "line 2, column 3: a mapping key is null: keys must be strings".to_string(),
        ),
        (
            "services:\n  \"\\e[31mweb\":\n    image: busybox\n    bogus: 1\n".to_string(),
            "services.\\u{1b}[31mweb: is not a valid name: use letters, digits, '.', '_' and '-'"
                .to_string(),
        ),
    ] {
        std::fs::write(dir.join("compose.yaml"), &file).unwrap();
        let out = compose(&r, &dir, &["config"]);
        assert!(!out.status.success(), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&want), "{file}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            !err.contains("TOPSECRET") && !err.contains("Option<"),
            "{err}"
        );
        assert!(!out.stderr.contains(&0x1b), "{err}");
    }
}

/// A `hako registry serve` on 127.0.0.1 (an ephemeral port) for the test's
/// life: its address, and a guard that stops it.
fn registry(r: &Root) -> (String, impl Drop) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(r.dir().join("registry"))
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let guard = Kill(child);
    (line.trim().rsplit(' ').next().unwrap().to_string(), guard)
}

/// Issue 12 point 9: `compose up`/`create` pull images missing from the
/// store (they failed "image not found"), as `pull_policy` and `--pull`
/// say, with progress unless `--quiet-pull`; `run --pull` shares the path.
#[test]
fn up_and_create_pull_missing_images_by_policy() {
    let r = Root::new();
    let dir = r.dir().join("pulling");
    std::fs::create_dir_all(&dir).unwrap();
    let (addr, _registry) = registry(&r);
    let image = format!("{addr}/pulling/busybox:1");
    r.ok(&["tag", "busybox", &image]);
    r.ok(&["push", &image]);
    r.ok(&["rmi", &image]);
    let has_image = || {
        r.ok(&["images"])
            .contains(&format!("{addr}/pulling/busybox"))
    };
    assert!(!has_image());
    let write = |policy: &str| {
        std::fs::write(
            dir.join("compose.yaml"),
            format!(
                "name: pulling\nservices:\n  web:\n    image: {image}\n    command: [\"sleep\", \"1000\"]\n{policy}"
            ),
        )
        .unwrap()
    };

    // pull_policy: never, missing image: refused, nothing pulled or created.
    write("    pull_policy: never\n");
    let out = compose(&r, &dir, &["up", "-d"]);
    assert!(!out.status.success());
    assert!(!has_image());
    assert!(r.ps_all().is_empty());

    // The default (missing): `create` pulls with progress, creates, starts nothing.
    write("");
    let out = compose(&r, &dir, &["create"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("Image {image}  Pulling")), "{err}");
    assert!(err.contains(&format!("Image {image}  Pulled")), "{err}");
    assert!(err.contains("Container pulling-web-1  Created"), "{err}");
    assert!(has_image());
    assert_eq!(r.state_of("pulling-web-1").unwrap().0, "created");
    // Present now: `up` pulls nothing and starts it.
    let out = compose(&r, &dir, &["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("Pulling"), "{err}");
    assert_eq!(r.state_of("pulling-web-1").unwrap().0, "running");
    // `--pull always` pulls what is present.
    let out = compose(&r, &dir, &["up", "-d", "--pull", "always"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("Image {image}  Pulled")), "{err}");
    ok(&r, &dir, &["down", "-t", "0"]);

    // `up --pull missing --quiet-pull` after the image went: pulled, silently.
    r.ok(&["rmi", &image]);
    write("    pull_policy: never\n");
    let out = compose(&r, &dir, &["up", "-d", "--pull", "missing", "--quiet-pull"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("Pulling") && !err.contains("Download"),
        "{err}"
    );
    assert!(has_image());
    assert_eq!(r.state_of("pulling-web-1").unwrap().0, "running");
    ok(&r, &dir, &["down", "-t", "0"]);

    // A policy that does not exist: the field's path, before anything runs.
    write("    pull_policy: sometimes\n");
    let out = compose(&r, &dir, &["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.web.pull_policy: invalid pull policy \"sometimes\""),
        "{err}"
    );
    let out = compose(&r, &dir, &["up", "-d", "--pull", "sometimes"]);
    assert!(!out.status.success());

    // `hako run --pull missing` goes through the same library path.
    r.ok(&["rmi", &image]);
    let out = r.run(&["run", "--rm", &image, "echo", "ran"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("Unable to find image '{image}' locally")),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ran");
    assert!(r.ps_all().is_empty());
}
