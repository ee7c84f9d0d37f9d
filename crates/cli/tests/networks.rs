//! Container networking with real CNI plugins (Debian's
//! containernetworking-plugins), real network namespaces, bridges and
//! iptables rules (needs root). Each test's root gets its own bridges and
//! subnets, and its guard removes them.

mod engine_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use engine_common::{wait_for, Root};

/// GET / from host:port; the body, or None if nothing answers.
fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn host_ipv4() -> String {
    // The address of the interface holding the default route.
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "get", "192.0.2.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == "src")
        .expect("a source address");
    words[i + 1].to_string()
}

/// A directory with an index.html for busybox httpd.
fn www(r: &Root, body: &str) -> String {
    let dir = r.dir().join("www");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), body).unwrap();
    dir.display().to_string()
}

fn iptables_mentions(id: &str) -> bool {
    ["nat", "filter"].iter().any(|t| {
        let out = std::process::Command::new("iptables-save")
            .args(["-t", t])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(id)
    })
}

#[test]
fn published_ports_reach_httpd_from_the_host_and_go_away_with_the_container() {
    let r = Root::new();
    let www = www(&r, "hello from httpd\n");
    let id = r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-v",
        &format!("{www}:/www:ro"),
        "-p",
        "127.0.0.1::80",
        "-p",
        "80",
        "--expose",
        "8080",
        "-P",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let id = id.trim().to_string();
    // `port` lists each binding; the loopback one and the any-address one.
    let ports = r.ok(&["port", "web"]);
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 3, "{ports}");
    assert!(lines[0].starts_with("80/tcp -> 127.0.0.1:"), "{ports}");
    assert!(lines[1].starts_with("80/tcp -> 0.0.0.0:"), "{ports}");
    assert!(lines[2].starts_with("8080/tcp -> 0.0.0.0:"), "{ports}");
    let local = r
        .ok(&["port", "web", "80"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let any_port = lines[1].rsplit(':').next().unwrap().to_string();
    wait_for("httpd on the published loopback port", || {
        http_get(&local).as_deref() == Some("hello from httpd\n")
    });
    // The other binding answers on the host's own address too.
    assert_eq!(
        http_get(&format!("{}:{any_port}", host_ipv4())).as_deref(),
        Some("hello from httpd\n")
    );
    // A container on another network reaches it through the published port
    // (isolation between networks lets published ports through).
    r.ok(&["network", "create", "other"]);
    let url = format!("http://{}:{any_port}/", host_ipv4());
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "wget",
        "-qO-",
        &url,
    ]);
    assert_eq!(out, "hello from httpd\n");
    // ps and inspect agree with port.
    let ps = r.ok(&["ps", "--format", "json"]);
    assert!(ps.contains(&format!("{local}->80/tcp")), "{ps}");
    let v = r.inspect("web");
    let ns = &v["NetworkSettings"];
    assert_eq!(ns["Ports"]["80/tcp"][0]["HostIp"], "127.0.0.1");
    assert!(ns["IPAddress"].as_str().unwrap().starts_with("10."), "{ns}");
    assert_eq!(ns["Networks"]["bridge"]["IPAddress"], ns["IPAddress"]);
    let sandbox = ns["SandboxKey"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&sandbox).exists());
    assert!(iptables_mentions(&id), "no CNI rules for {id}");

    // Stopped: the port, the namespace and the rules are gone.
    r.ok(&["stop", "-t", "1", "web"]);
    wait_for("the network teardown", || {
        !std::path::Path::new(&sandbox).exists() && !iptables_mentions(&id)
    });
    assert!(http_get(&local).is_none());
    assert_eq!(r.ok(&["port", "web"]), "");
    // Started again: a fresh namespace and ports that work.
    r.ok(&["start", "web"]);
    let local = r
        .ok(&["port", "web", "80"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    wait_for("httpd after restart", || {
        http_get(&local).as_deref() == Some("hello from httpd\n")
    });
    r.ok(&["rm", "-f", "web"]);
    wait_for("teardown on rm -f", || !iptables_mentions(&id));
    assert!(!std::path::Path::new(&sandbox).exists());
}

#[test]
fn containers_on_a_user_network_resolve_each_other_by_name_and_alias() {
    let r = Root::new();
    r.ok(&["network", "create", "backend"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "backend",
        "--network-alias",
        "database",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "backend",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W5 db >/dev/null && ping -c1 -W5 database >/dev/null && echo both",
    ]);
    assert_eq!(out, "both\n");
    // The longer-running container learns of a newcomer too.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "backend",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = r.ok(&["exec", "db", "ping", "-c1", "-W5", "app"]);
    assert!(out.contains("1 packets received"), "{out}");
    // The default bridge has no name resolution, as docker's.
    r.ok(&["run", "-d", "--name", "lonely", "busybox", "sleep", "1000"]);
    let out = r.run(&["exec", "lonely", "ping", "-c1", "-W2", "db"]);
    assert!(!out.status.success());
    // Removing a container takes its name off the others' hosts.
    r.ok(&["rm", "-f", "app"]);
    let hosts = r.ok(&["exec", "db", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("\tapp "), "{hosts}");

    // A network in use cannot go; once unused it can, with its bridge.
    let info: serde_json::Value =
        serde_json::from_str(&r.ok(&["network", "inspect", "backend"])).unwrap();
    let bridge = info[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(info[0]["Containers"].as_object().unwrap().len(), 1);
    let out = r.run(&["network", "rm", "backend"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("active endpoints (containers db)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.ok(&["rm", "-f", "db"]);
    r.ok(&["network", "rm", "backend"]);
    assert!(!std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let r = Root::new();
    r.ok(&["network", "create", "--subnet", "10.250.77.0/24", "front"]);
    r.ok(&["network", "create", "back"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "front",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        "back",
        "busybox",
        "sleep",
        "1000",
    ]);
    let ip_a = r.inspect("a")["NetworkSettings"]["Networks"]["front"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip_a.starts_with("10.250.77."), "{ip_a}");
    // Not on the same network: b cannot name a.
    assert!(!r
        .run(&["exec", "b", "ping", "-c1", "-W2", "a"])
        .status
        .success());
    // Nor reach it by address: traffic between networks is dropped.
    let out = r.run(&["exec", "b", "ping", "-c1", "-W2", &ip_a]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    r.ok(&["network", "connect", "--alias", "web", "front", "b"]);
    let links = r.ok(&["exec", "b", "ip", "-o", "link"]);
    assert!(links.contains("eth1"), "{links}");
    let out = r.ok(&["exec", "b", "ping", "-c1", "-W5", "a"]);
    assert!(out.contains("1 packets received"), "{out}");
    let out = r.ok(&["exec", "a", "ping", "-c1", "-W5", "web"]);
    assert!(out.contains("1 packets received"), "{out}");
    let v = r.inspect("b");
    assert_eq!(
        v["NetworkSettings"]["Networks"]["front"]["Aliases"][0],
        "web"
    );
    // Connecting twice is refused; disconnecting takes the interface away.
    let out = r.run(&["network", "connect", "front", "b"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists in network front"));
    r.ok(&["network", "disconnect", "front", "b"]);
    let links = r.ok(&["exec", "b", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
    assert!(!r
        .run(&["exec", "b", "ping", "-c1", "-W2", "a"])
        .status
        .success());
    // Prune keeps networks that containers refer to.
    r.ok(&["network", "create", "unused"]);
    let pruned = r.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\nunused\n");
}

#[test]
fn none_host_add_host_and_dns() {
    let r = Root::new();
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
    // Loopback is up, as docker's: servers on 127.0.0.1 work.
    assert!(out.contains(": lo: <LOOPBACK,UP"), "{out}");
    // Host networking: the host's own network namespace.
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(out.trim(), host_ns.to_str().unwrap());
    let out = r.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db.local:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf; ip route",
    ]);
    assert!(out.contains("10.1.2.3\tdb.local\n"), "{out}");
    assert!(
        out.contains("nameserver 10.9.9.9\nsearch example.test\n"),
        "{out}"
    );
    // host-gateway is the bridge's address, which is the default route.
    let gw = out
        .lines()
        .find(|l| l.ends_with("\tgw"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap();
    assert!(out.contains(&format!("default via {gw} ")), "{out}");
}

#[test]
fn bad_network_options_get_one_line_errors() {
    let r = Root::new();
    for (args, want) in [
        (
            vec!["run", "--rm", "-p", "80:x", "busybox", "true"],
            "invalid port specification",
        ),
        (
            vec!["run", "--rm", "--network", "nosuch", "busybox", "true"],
            "no such network: nosuch",
        ),
        (
            vec!["run", "--rm", "--network-alias", "x", "busybox", "true"],
            "user-defined networks",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "-p",
                "80",
                "busybox",
                "true",
            ],
            "--network none",
        ),
        (
            vec!["run", "--rm", "--add-host", "nocolon", "busybox", "true"],
            "invalid --add-host",
        ),
        (
            vec!["network", "create", "--subnet", "10.1.0.1/16", "n1"],
            "host bits are set",
        ),
        (
            vec!["network", "create", "bad name"],
            "invalid network name",
        ),
        (vec!["network", "create", "bridge"], "reserved"),
        (vec!["network", "rm", "bridge"], "pre-defined network"),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    r.ok(&["network", "create", "--subnet", "10.251.0.0/24", "n2"]);
    let out = r.run(&["network", "create", "--subnet", "10.251.0.128/25", "n3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlaps with n2"));
    assert!(r.ps_all().is_empty());
}

#[test]
fn containers_join_another_containers_network() {
    let r = Root::new();
    let www = www(&r, "served next door\n");
    r.ok(&["network", "create", "joinnet"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "webhost",
        "--network",
        "joinnet",
        "--add-host",
        "extra.test:10.7.7.7",
        "-v",
        &format!("{www}:/www:ro"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    let web_ip = r
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.joinnet.IPAddress}}",
            "web",
        ])
        .trim()
        .to_string();
    assert!(web_ip.starts_with("10."), "{web_ip}");
    // The joiner reaches the server on its loopback, has the same address, the other's
    // hostname and /etc/hosts.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        "wget -qO- http://127.0.0.1:8080/; hostname; ip -4 -o addr show eth0; cat /etc/hosts",
    ]);
    assert!(out.starts_with("served next door\nwebhost\n"), "{out}");
    assert!(out.contains(&format!("inet {web_ip}/")), "{out}");
    assert!(out.contains("10.7.7.7\textra.test"), "{out}");
    // Recorded by id, with no networks of its own.
    r.ok(&[
        "create",
        "--name",
        "side",
        "--network",
        "container:web",
        "busybox",
        "sleep",
        "1000",
    ]);
    let web_id = r
        .ok(&["inspect", "-f", "{{.Id}}", "web"])
        .trim()
        .to_string();
    let mode = r.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "side"]);
    assert_eq!(mode.trim(), format!("container:{web_id}"));
    r.ok(&["start", "side"]);
    let nets = r.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        "side",
    ]);
    assert_eq!(nets.trim(), "{}");
    let out = r.ok(&["exec", "side", "wget", "-qO-", "http://127.0.0.1:8080/"]);
    assert_eq!(out, "served next door\n");
    r.ok(&["rm", "-f", "side"]);

    // A target without a network of its own: the joiner shares its loopback.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "lonely",
        "--network",
        "none",
        "-v",
        &format!("{www}:/www:ro"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:9090",
        "-h",
        "/www",
    ]);
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "container:lonely",
        "busybox",
        "sh",
        "-c",
        "wget -qO- http://127.0.0.1:9090/ && ip -o link | wc -l",
    ]);
    assert_eq!(out, "served next door\n1\n");

    // A stopped target cannot be joined; conflicting options are refused up front.
    r.ok(&["stop", "-t", "1", "lonely"]);
    let out = r.run(&[
        "run",
        "--rm",
        "--network",
        "container:lonely",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("non running container: lonely"), "{err}");
    for (extra, want) in [
        (vec!["-p", "80:80"], "port publishing"),
        (vec!["--hostname", "x"], "hostname"),
        (vec!["--dns", "10.0.0.1"], "dns"),
        (
            vec!["--add-host", "a:10.0.0.1"],
            "custom host-to-IP mapping",
        ),
    ] {
        let mut args = vec!["run", "--rm", "--network", "container:web"];
        args.extend(extra);
        args.extend(["busybox", "true"]);
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!("conflicting options: {want}")),
            "{args:?}: {err}"
        );
    }
    let out = r.run(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    r.ok(&["rm", "-f", "web", "lonely"]);
    r.ok(&["network", "rm", "joinnet"]);
}

/// The bridge's ports (veth host ends) of a network of this root.
fn bridge_ports(r: &Root, network: &str) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&r.ok(&["network", "inspect", network])).unwrap();
    let bridge = v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn fixed_addresses_and_macs() {
    let r = Root::new();
    r.ok(&["network", "create", "--subnet", "10.252.33.0/24", "fixed"]);
    r.ok(&["network", "create", "--subnet", "10.252.34.0/24", "other"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "fixed",
        "--ip",
        "10.252.33.50",
        "--mac-address",
        "02:42:0A:FC:21:32",
        "busybox",
        "sleep",
        "1000",
    ]);
    let addr = r.ok(&["exec", "a", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("10.252.33.50/24"), "{addr}");
    let link = r.ok(&["exec", "a", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:42:0a:fc:21:32"), "{link}");
    let v = r.inspect("a");
    let net = &v["NetworkSettings"]["Networks"]["fixed"];
    assert_eq!(net["IPAddress"], "10.252.33.50");
    assert_eq!(net["IPAMConfig"]["IPv4Address"], "10.252.33.50");
    assert_eq!(net["MacAddress"], "02:42:0a:fc:21:32");
    // Another container asking for the same address is refused in one line
    // and leaves no interface on the bridge.
    let out = r.run(&[
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        "fixed",
        "--ip",
        "10.252.33.50",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("address 10.252.33.50 already in use"), "{err}");
    assert_eq!(bridge_ports(&r, "fixed"), 1);
    // The address stays the container's across a restart.
    r.ok(&["restart", "-t", "0", "a"]);
    let addr = r.ok(&["exec", "a", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("10.252.33.50/24"), "{addr}");
    // network connect --ip, and the other container reaches it there.
    r.ok(&["network", "connect", "--ip", "10.252.34.9", "other", "a"]);
    let addr = r.ok(&["exec", "a", "ip", "-o", "-4", "addr", "show", "eth1"]);
    assert!(addr.contains("10.252.34.9/24"), "{addr}");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "other",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = r.ok(&["exec", "c", "ping", "-c1", "-W5", "10.252.34.9"]);
    assert!(out.contains("1 packets received"), "{out}");
    // Bad requests, each a one-line error before anything is made.
    for (args, want) in [
        (
            vec!["run", "--rm", "--ip", "10.88.0.9", "busybox", "true"],
            "user defined networks only",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "fixed",
                "--ip",
                "10.9.0.5",
                "busybox",
                "true",
            ],
            "not in the subnet 10.252.33.0/24 of network fixed",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "fixed",
                "--ip",
                "10.252.33.1",
                "busybox",
                "true",
            ],
            "gateway of network fixed",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "fixed",
                "--ip",
                "10.252.33.255",
                "busybox",
                "true",
            ],
            "broadcast address",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "fixed",
                "--ip",
                "10.252.33",
                "busybox",
                "true",
            ],
            "not an IPv4 address",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "--ip",
                "10.252.33.7",
                "busybox",
                "true",
            ],
            "not supported with network mode none",
        ),
        (
            vec![
                "run",
                "--rm",
                "--mac-address",
                "01:00:5e:00:00:01",
                "busybox",
                "true",
            ],
            "multicast",
        ),
        (
            vec!["network", "connect", "--ip", "10.9.9.9", "fixed", "c"],
            "not in the subnet",
        ),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// The pid of network `net`'s name server, if it runs.
fn dns_server(r: &Root, net: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(r.root().join("run/dns").join(format!("{net}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

#[test]
fn the_network_name_server_answers_container_names() {
    let r = Root::new();
    r.ok(&["network", "create", "--subnet", "10.252.40.0/24", "named"]);
    r.ok(&["network", "create", "--subnet", "10.252.41.0/24", "other"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "named",
        "--network-alias",
        "database",
        "--ip",
        "10.252.40.30",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = dns_server(&r, "named").expect("a name server for the network");
    // The container asks the network's server (its gateway).
    let resolv = r.ok(&["exec", "db", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.252.40.1"), "{resolv}");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "named",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(dns_server(&r, "named"), Some(pid), "one server per network");
    // nslookup queries DNS, not /etc/hosts.
    for name in ["db", "database", "DB"] {
        let out = r.ok(&["exec", "app", "nslookup", name]);
        assert!(out.contains("10.252.40.30"), "{name}: {out}");
    }
    let out = r.run(&["exec", "app", "nslookup", "nosuch"]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Reverse lookups (PTR) of a container's address.
    let out = r.ok(&["exec", "app", "nslookup", "10.252.40.30"]);
    assert!(out.contains("db"), "{out}");
    // DNS over TCP, asked from the host (no container there: NXDOMAIN).
    let mut s = TcpStream::connect("10.252.40.1:53").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = [
        0x12u8, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, b'd', b'b', 0, 0, 1, 0, 1,
    ];
    s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut a = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut a).unwrap();
    assert_eq!((&a[..2], a[3] & 0x0f), (&[0x12u8, 0x34][..], 3));
    // A container on another network is not named to this one.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "elsewhere",
        "--network",
        "other",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(!r
        .run(&["exec", "app", "nslookup", "elsewhere"])
        .status
        .success());
    // A newcomer is answered at once; a removed container is not.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "named",
        "busybox",
        "sleep",
        "1000",
    ]);
    let late_ip = r.inspect("late")["NetworkSettings"]["Networks"]["named"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let out = r.ok(&["exec", "db", "nslookup", "late"]);
    assert!(out.contains(&late_ip), "{out}");
    r.ok(&["rm", "-f", "late"]);
    assert!(!r.run(&["exec", "db", "nslookup", "late"]).status.success());
    // --dns keeps the user's servers; the default bridge has no name server.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "own",
        "--network",
        "named",
        "--dns",
        "10.9.9.9",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(r
        .ok(&["exec", "own", "cat", "/etc/resolv.conf"])
        .contains("nameserver 10.9.9.9"));
    r.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "1000"]);
    assert!(!r
        .ok(&["exec", "plain", "cat", "/etc/resolv.conf"])
        .contains("nameserver 10.88."));
    // The server ends once no container is left on the network.
    r.ok(&["rm", "-f", "db", "app", "own"]);
    wait_for("the name server to end", || {
        dns_server(&r, "named").is_none()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    });
}

#[test]
fn dns_options_reach_resolv_conf() {
    let r = Root::new();
    let out = r.ok(&[
        "run",
        "--rm",
        "--dns",
        "10.9.9.9",
        "--dns-option",
        "ndots:3",
        "--dns-option",
        "timeout:2",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(out, "nameserver 10.9.9.9\noptions ndots:3 timeout:2\n");
    r.ok(&[
        "create",
        "--name",
        "opts",
        "--dns-option",
        "attempts:4",
        "busybox",
        "true",
    ]);
    assert_eq!(
        r.inspect("opts")["HostConfig"]["DnsOptions"],
        serde_json::json!(["attempts:4"])
    );
}

#[test]
fn network_create_ip_range_and_bridge_options() {
    let r = Root::new();
    let bridge = format!("hkr{}", std::process::id() % 1_000_000);
    let name_opt = format!("com.docker.network.bridge.name={bridge}");
    r.ok(&[
        "network",
        "create",
        "--subnet",
        "10.252.61.0/24",
        "--ip-range",
        "10.252.61.128/25",
        "-o",
        &name_opt,
        "--opt",
        "com.docker.network.driver.mtu=1400",
        "ranged",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&r.ok(&["network", "inspect", "ranged"])).unwrap();
    let n = &v[0];
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], "10.252.61.128/25", "{n}");
    assert_eq!(
        n["Options"]["com.docker.network.bridge.name"],
        bridge.as_str()
    );
    assert_eq!(n["Options"]["com.docker.network.driver.mtu"], "1400");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "ranged",
        "busybox",
        "sleep",
        "1000",
    ]);
    let addr = r.ok(&["exec", "a", "ip", "-o", "-4", "addr", "show", "eth0"]);
    let ip = addr
        .split_whitespace()
        .find(|w| w.starts_with("10.252.61."))
        .unwrap_or_else(|| panic!("{addr}"));
    let last: u8 = ip
        .trim_end_matches("/24")
        .rsplit('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((128..=254).contains(&last), "{addr}");
    assert_eq!(
        r.ok(&["exec", "a", "cat", "/sys/class/net/eth0/mtu"])
            .trim(),
        "1400"
    );
    assert!(std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
    for (args, want) in [
        (
            vec!["network", "create", "--ip-range", "10.252.62.0/25", "x1"],
            "--ip-range needs --subnet",
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.252.62.0/24",
                "--ip-range",
                "10.252.63.0/25",
                "x2",
            ],
            "not inside subnet 10.252.62.0/24",
        ),
        (
            vec![
                "network",
                "create",
                "-o",
                "com.docker.network.driver.mtu=9",
                "x3",
            ],
            "an MTU of 68 to 65535",
        ),
        (
            vec![
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.enable_icc=false",
                "x4",
            ],
            "is not supported",
        ),
        (
            vec!["network", "create", "-o", &name_opt, "x5"],
            "already used by network ranged",
        ),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    r.ok(&["rm", "-f", "a"]);
    r.ok(&["network", "rm", "ranged"]);
    assert!(!std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
}
