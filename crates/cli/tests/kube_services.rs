//! Services of `hako kube up`: the EndpointSlice/Endpoints controller and
//! kube-proxy, driven by the real kubectl. No kubelet runs here: the tests
//! stand in for it by writing pod status (podIP, Ready) through the status
//! subresource; pods carry a nodeSelector no node matches.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

mod kube_common;

use kube_common::Kube;

impl Kube {
    /// Play the kubelet for one pod: Running, an IP and the Ready condition.
    fn set_pod_status(&self, name: &str, ip: &str, ready: bool) {
        let status = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
        }});
        self.ok(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }

    fn slices(&self, svc: &str) -> Vec<Value> {
        self.items(&[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ])
    }
}

/// A pod with a named container port `http` on `port`.
fn pod(name: &str, app: &str, port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  nodeSelector: {{hako.test/no-such-node: \"true\"}}
  containers:
  - name: c
    image: busybox:1.36
    ports: [{{name: http, containerPort: {port}}}]
"
    )
}

/// (ip, ready, serving, terminating) of every endpoint of a Service's slices.
fn endpoints_of(k: &Kube, svc: &str) -> Vec<(String, bool, bool, bool)> {
    let mut v: Vec<_> = k
        .slices(svc)
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let c = &e["conditions"];
            (
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                c["ready"] == true,
                c["serving"] == true,
                c["terminating"] == true,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn endpointslices_and_endpoints_follow_pod_readiness() {
    let k = Kube::up(&["--disable-proxy"]);
    k.apply(&pod("web-a", "web", 8080));
    k.apply(&pod("web-b", "web", 8081));
    k.apply(&pod("other", "other", 8080));
    k.set_pod_status("web-a", "10.99.0.11", true);
    k.set_pod_status("web-b", "10.99.0.12", false);
    k.set_pod_status("other", "10.99.0.13", true);
    k.apply(
        "apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: front}}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
",
    );
    let svc = k.json(&["get", "svc", "web"]);
    let uid = svc["metadata"]["uid"].as_str().unwrap().to_string();
    // Two pods with different resolved ports: two slices.
    let slices = k.wait("two slices", || {
        let s = k.slices("web");
        (s.len() == 2
            && s.iter()
                .all(|s| s["endpoints"].as_array().is_some_and(|e| e.len() == 1)))
        .then_some(s)
    });
    for s in &slices {
        assert_eq!(s["addressType"], "IPv4");
        let l = &s["metadata"]["labels"];
        assert_eq!(l["kubernetes.io/service-name"], "web");
        assert_eq!(
            l["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(l["tier"], "front");
        let o = &s["metadata"]["ownerReferences"][0];
        assert_eq!(
            (o["kind"].as_str(), o["uid"].as_str()),
            (Some("Service"), Some(uid.as_str()))
        );
        assert_eq!(o["controller"], true);
        let e = &s["endpoints"][0];
        let port = s["ports"][0]["port"].as_i64().unwrap();
        assert_eq!(s["ports"][0]["name"], "web");
        match e["addresses"][0].as_str().unwrap() {
            "10.99.0.11" => assert_eq!(port, 8080),
            "10.99.0.12" => assert_eq!(port, 8081),
            other => panic!("unexpected endpoint {other}"),
        }
        assert_eq!(e["targetRef"]["kind"], "Pod");
    }
    assert_eq!(
        endpoints_of(&k, "web"),
        vec![
            ("10.99.0.11".into(), true, true, false),
            ("10.99.0.12".into(), false, false, false)
        ]
    );
    // The Endpoints object: ready and not-ready addresses.
    let ep = k.wait("Endpoints web", || {
        let o = k.run(&["get", "endpoints", "web", "-o", "json"], None);
        o.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&o.stdout).unwrap())
    });
    let ready: Vec<&str> = ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| if a["ip"] == "10.99.0.11" { "a" } else { "?" })
        .collect();
    assert_eq!(ready, vec!["a"], "{ep}");
    // Readiness changes are followed.
    k.set_pod_status("web-b", "10.99.0.12", true);
    k.set_pod_status("web-a", "10.99.0.11", false);
    k.wait("b ready, a not", || {
        (endpoints_of(&k, "web")
            == vec![
                ("10.99.0.11".into(), false, false, false),
                ("10.99.0.12".into(), true, true, false),
            ])
        .then_some(())
    });
    // publishNotReadyAddresses makes every endpoint ready.
    k.ok(&[
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"publishNotReadyAddresses":true}}"#,
    ]);
    k.wait("all published", || {
        endpoints_of(&k, "web")
            .iter()
            .all(|e| e.1 && e.2)
            .then_some(())
    });
    // A deleted pod leaves; a Service without pods keeps one empty slice.
    k.ok(&[
        "delete",
        "pod",
        "web-a",
        "web-b",
        "--grace-period=0",
        "--force",
    ]);
    k.wait("no endpoints", || {
        let s = k.slices("web");
        (s.len() == 1 && s[0]["endpoints"].as_array().is_none_or(|e| e.is_empty())).then_some(())
    });
    // Deleting the Service removes its slices and Endpoints.
    k.ok(&["delete", "svc", "web"]);
    k.wait("slices gone", || k.slices("web").is_empty().then_some(()));
    k.wait("Endpoints gone", || {
        (!k.run(&["get", "endpoints", "web"], None).status.success()).then_some(())
    });
}

// --- kube-proxy ---

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().expect(cmd)
}

fn must(cmd: &str, args: &[&str]) {
    let o = sh(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A stand-in pod: a network namespace joined to the host by a veth pair,
/// serving its own name with busybox httpd. Dropping it kills the server and
/// removes the namespace (which removes the veth pair).
struct NetPod {
    netns: String,
    ip: String,
    httpd: Option<Child>,
    _www: tempfile::TempDir,
}

impl NetPod {
    fn new(idx: u8, body: &str, port: u16) -> NetPod {
        let pid = std::process::id();
        let netns = format!("hkp{pid}-{idx}");
        let host = format!("hkp{}{idx}", pid % 100_000);
        let third = (pid % 250) as u8;
        let host_ip = format!("10.201.{third}.{}", idx * 4 + 1);
        let ip = format!("10.201.{third}.{}", idx * 4 + 2);
        let www = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join("index.html"), body).unwrap();
        let mut p = NetPod {
            netns: netns.clone(),
            ip: ip.clone(),
            httpd: None,
            _www: www,
        };
        must("ip", &["netns", "add", &netns]);
        must(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        );
        must(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", &host],
        );
        must("ip", &["link", "set", &host, "up"]);
        let inns = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &netns];
            a.extend_from_slice(args);
            must("ip", &a);
        };
        inns(&["ip", "link", "set", "lo", "up"]);
        inns(&["ip", "addr", "add", &format!("{ip}/30"), "dev", "eth0"]);
        inns(&["ip", "link", "set", "eth0", "up"]);
        inns(&["ip", "route", "add", "default", "via", &host_ip]);
        p.httpd = Some(
            Command::new("ip")
                .args(["netns", "exec", &netns, "busybox", "httpd", "-f", "-p"])
                .arg(port.to_string())
                .arg("-h")
                .arg(p._www.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        p
    }
}

impl Drop for NetPod {
    fn drop(&mut self) {
        if let Some(mut c) = self.httpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh("ip", &["netns", "delete", &self.netns]);
    }
}

/// One HTTP GET with curl: the body, or `None` when it failed.
fn get(url: &str) -> Option<String> {
    let o = sh("curl", &["-s", "--max-time", "5", url]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn nat_table() -> String {
    String::from_utf8(sh("iptables-save", &["-t", "nat"]).stdout).unwrap()
}

fn filter_table() -> String {
    String::from_utf8(sh("iptables-save", &["-t", "filter"]).stdout).unwrap()
}

/// The bodies of `n` requests.
fn answers(url: &str, n: usize) -> std::collections::BTreeSet<String> {
    (0..n).filter_map(|_| get(url)).collect()
}

#[test]
fn kube_proxy_routes_cluster_ip_and_node_port_to_ready_pods() {
    let k = Kube::up(&[]);
    let tag = chain_prefix(&k.root());
    let pid = std::process::id();
    // Unique per test process: clusterIP and node port.
    let cip = format!("10.43.{}.{}", 100 + pid % 150, 1 + pid % 250);
    let node_port = 30000 + (pid % 2700) as u16;
    {
        let a = NetPod::new(0, "pod-a", 8080);
        let b = NetPod::new(1, "pod-b", 8080);
        k.apply(&pod("px-a", "px", 8080));
        k.apply(&pod("px-b", "px", 8080));
        k.set_pod_status("px-a", &a.ip, true);
        k.set_pod_status("px-b", &b.ip, true);
        k.apply(&format!(
            "apiVersion: v1
kind: Service
metadata: {{name: px}}
spec:
  type: NodePort
  clusterIP: {cip}
  selector: {{app: px}}
  ports: [{{name: web, port: 80, targetPort: http, nodePort: {node_port}}}]
"
        ));
        let by_cip = format!("http://{cip}/");
        let by_np = format!("http://127.0.0.1:{node_port}/");
        let both: std::collections::BTreeSet<String> =
            ["pod-a".to_string(), "pod-b".to_string()].into();
        // Load-balanced over both pods, through the cluster IP and the node port.
        k.wait("both pods through the cluster IP", || {
            (answers(&by_cip, 20) == both).then_some(())
        });
        assert_eq!(answers(&by_np, 30), both);
        let table = nat_table();
        assert!(table.contains("--probability 0.5"), "{table}");
        // Session affinity: one client sticks to one pod.
        k.ok(&[
            "patch",
            "svc",
            "px",
            "--type=merge",
            "-p",
            r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
        ]);
        k.wait("affinity rules", || {
            nat_table().contains("--rcheck").then_some(())
        });
        assert_eq!(answers(&by_cip, 15).len(), 1);
        k.ok(&[
            "patch",
            "svc",
            "px",
            "--type=merge",
            "-p",
            r#"{"spec":{"sessionAffinity":"None"}}"#,
        ]);
        k.wait("no affinity rules", || {
            (!nat_table().contains("--rcheck")).then_some(())
        });
        // pod-b not ready: the service follows.
        k.set_pod_status("px-b", &b.ip, false);
        k.wait("only pod-a", || {
            let t = nat_table();
            (t.contains(&format!("--to-destination {}:8080", a.ip))
                && !t.contains(&format!("--to-destination {}:8080", b.ip)))
            .then_some(())
        });
        assert_eq!(answers(&by_cip, 15), ["pod-a".to_string()].into());
        assert_eq!(answers(&by_np, 15), ["pod-a".to_string()].into());
        // No ready pod: connections are refused at once (curl's exit 7), on
        // the cluster IP and the node port.
        k.set_pod_status("px-a", &a.ip, false);
        for url in [&by_cip, &by_np] {
            k.wait("connections refused", || {
                (sh("curl", &["-s", "--max-time", "5", url]).status.code() == Some(7)).then_some(())
            });
        }
        // Deleting the Service leaves no rule for it.
        k.ok(&["delete", "svc", "px"]);
        k.wait("the service's rules gone", || {
            let t = nat_table() + &filter_table();
            (!t.contains(&cip) && !t.contains(&format!("--dport {node_port}"))).then_some(())
        });
        // (Off the node, something else may answer for that address: no pod does.)
        assert!(!get(&by_cip).is_some_and(|b| b.starts_with("pod-")));
    }
    // Stopping the control plane removes every chain of its kube-proxy.
    must(
        env!("CARGO_BIN_EXE_hako"),
        &["--root", k.root().to_str().unwrap(), "kube", "down"],
    );
    let t = nat_table() + &filter_table();
    assert!(!t.contains(&tag), "{t}");
}

/// The chain prefix of the kube-proxy of a hako root (as `hako` computes it).
fn chain_prefix(root: &std::path::Path) -> String {
    use sha2::Digest;
    let root = std::fs::canonicalize(root).unwrap();
    let h = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    format!("HK{:02x}{:02x}{:02x}-", h[0], h[1], h[2])
}

#[test]
fn standalone_kube_proxy_cleans_up_after_itself_and_after_a_killed_one() {
    let k = Kube::up(&["--disable-proxy"]);
    let root = k.root();
    let prefix = chain_prefix(&root);
    let pid = std::process::id();
    let cip = format!("10.43.{}.{}", 100 + (pid + 7) % 150, 1 + (pid + 7) % 250);
    k.apply(&pod("solo", "solo", 9090));
    k.set_pod_status("solo", "10.202.0.2", true);
    k.apply(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: solo}}
spec:
  clusterIP: {cip}
  selector: {{app: solo}}
  ports: [{{port: 80, targetPort: http}}]
"
    ));
    let start_proxy = || {
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(&root)
            .args(["kube", "proxy", "--kubeconfig"])
            .arg(k.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let programmed = || {
        let t = nat_table();
        (t.contains(&format!("-d {cip}/32")) && t.contains("--to-destination 10.202.0.2:9090"))
            .then_some(())
    };
    // SIGTERM: the proxy removes its rules itself.
    let mut p = Killed(start_proxy());
    k.wait("the standalone proxy's rules", programmed);
    must("kill", &["-TERM", &p.0.id().to_string()]);
    assert!(p.0.wait().unwrap().success());
    assert!(!nat_table().contains(&prefix));
    // SIGKILL leaves them; the next proxy to start (of another root here)
    // removes the rules of a proxy whose process is gone.
    let mut p = Killed(start_proxy());
    k.wait("the standalone proxy's rules again", programmed);
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    assert!(nat_table().contains(&prefix));
    let other = tempfile::tempdir().unwrap();
    let mut q = Killed(
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(other.path())
            .args(["kube", "proxy", "--kubeconfig"])
            .arg(k.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    k.wait("the killed proxy's rules removed", || {
        (!nat_table().contains(&prefix)).then_some(())
    });
    must("kill", &["-TERM", &q.0.id().to_string()]);
    assert!(q.0.wait().unwrap().success());
    // SIGKILL again: `hako kube down` of the root removes them too.
    let mut p = Killed(start_proxy());
    k.wait("the standalone proxy's rules a third time", programmed);
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    assert!(nat_table().contains(&prefix));
    must(
        env!("CARGO_BIN_EXE_hako"),
        &["--root", root.to_str().unwrap(), "kube", "down"],
    );
    let t = nat_table() + &filter_table();
    assert!(!t.contains(&prefix), "{t}");
}

// --- cluster DNS ---

/// busybox nslookup against `server` (port 53): stdout+stderr and success.
fn nslookup(args: &[&str], server: &str) -> (String, bool) {
    let mut a = vec!["nslookup"];
    a.extend_from_slice(args);
    a.push(server);
    let o = sh("busybox", &a);
    (
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        o.status.success(),
    )
}

#[test]
fn cluster_dns_answers_services_headless_pods_srv_and_ptr() {
    let k = Kube::up(&["--disable-proxy"]);
    let pid = std::process::id();
    let cip = format!("10.43.{}.{}", 100 + (pid + 13) % 150, 1 + (pid + 13) % 250);
    // A loopback address of its own, so tests in parallel each have port 53.
    let server = format!("127.{}.{}.53", 1 + pid % 250, (pid / 250) % 250);
    k.apply(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  clusterIP: {cip}
  selector: {{app: dnsweb}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: pg, port: 5432}}]
"
    ));
    for (i, ip) in [(0, "10.203.0.2"), (1, "10.203.0.3")] {
        k.apply(&format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: db-{i}, labels: {{app: db}}}}
spec:
  hostname: db-{i}
  subdomain: db
  nodeSelector: {{hako.test/no-such-node: \"true\"}}
  containers: [{{name: c, image: busybox:1.36}}]
"
        ));
        k.set_pod_status(&format!("db-{i}"), ip, true);
    }
    k.wait("db's endpoints", || {
        (endpoints_of(&k, "db").iter().filter(|e| e.1).count() == 2).then_some(())
    });
    let mut dns = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(k.root())
        .args(["kube", "dns", "--listen", &format!("{server}:53")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    BufReader::new(dns.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _dns = Killed(dns);
    assert!(line.starts_with("cluster DNS listening on"), "{line:?}");

    let (out, ok) = nslookup(&["web.default.svc.cluster.local"], &server);
    assert!(ok && out.contains(&format!("Address: {cip}")), "{out}");
    // Headless: every ready pod, and each by its hostname.
    let (out, ok) = nslookup(&["db.default.svc.cluster.local"], &server);
    assert!(
        ok && out.contains("Address: 10.203.0.2") && out.contains("Address: 10.203.0.3"),
        "{out}"
    );
    let (out, ok) = nslookup(&["db-1.db.default.svc.cluster.local"], &server);
    assert!(
        ok && out.contains("Address: 10.203.0.3") && !out.contains("10.203.0.2"),
        "{out}"
    );
    // SRV for named ports.
    let (out, ok) = nslookup(
        &["-type=srv", "_http._tcp.web.default.svc.cluster.local"],
        &server,
    );
    assert!(
        ok && out.contains("80 web.default.svc.cluster.local"),
        "{out}"
    );
    let (out, ok) = nslookup(
        &["-type=srv", "_pg._tcp.db.default.svc.cluster.local"],
        &server,
    );
    assert!(
        ok && out.contains("5432 db-0.db.default.svc.cluster.local")
            && out.contains("5432 db-1.db.default.svc.cluster.local"),
        "{out}"
    );
    // PTR: a cluster IP and a headless endpoint.
    let (out, ok) = nslookup(&[&cip], &server);
    assert!(
        ok && out.contains("name = web.default.svc.cluster.local"),
        "{out}"
    );
    let (out, ok) = nslookup(&["10.203.0.3"], &server);
    assert!(
        ok && out.contains("name = db-1.db.default.svc.cluster.local"),
        "{out}"
    );
    // A pod that stops being ready leaves the headless answer.
    k.set_pod_status("db-0", "10.203.0.2", false);
    k.wait("db-0 out of DNS", || {
        let (out, _) = nslookup(&["db.default.svc.cluster.local"], &server);
        (!out.contains("10.203.0.2") && out.contains("10.203.0.3")).then_some(())
    });
    // Other names get the host resolver's answer (whatever it is here).
    let upstream = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("nameserver").map(|s| s.trim().to_string()))
        .unwrap();
    let answer = |server: &str| {
        let (out, _) = nslookup(&["crates.io"], server);
        out.lines()
            .skip_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(answer(&server), answer(&upstream));
    // Unknown names in the cluster zone do not exist.
    let (out, ok) = nslookup(&["nope.default.svc.cluster.local"], &server);
    assert!(!ok || out.contains("NXDOMAIN"), "{out}");
}

#[test]
fn load_balancer_service_answers_on_the_node_and_reports_its_address() {
    let k = Kube::up(&[]);
    let pid = std::process::id();
    let cip = format!("10.43.{}.{}", 100 + (pid + 29) % 150, 1 + (pid + 29) % 250);
    let lb_port = 20000 + (pid % 5000) as u16;
    // The node as a kubelet registers it (its address is the loopback here).
    k.apply("apiVersion: v1\nkind: Node\nmetadata: {name: lb-node}\n");
    k.ok(&[
        "patch",
        "node",
        "lb-node",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}"#,
    ]);
    {
        let p = NetPod::new(2, "pod-lb", 8080);
        k.apply(&pod("lb-a", "lb", 8080));
        k.set_pod_status("lb-a", &p.ip, true);
        k.apply(&format!(
            "apiVersion: v1
kind: Service
metadata: {{name: lb}}
spec:
  type: LoadBalancer
  clusterIP: {cip}
  selector: {{app: lb}}
  ports: [{{name: web, port: {lb_port}, targetPort: http}}]
"
        ));
        let ingress = k.wait("status.loadBalancer", || {
            let s = k.json(&["get", "svc", "lb"]);
            let i = s["status"]["loadBalancer"]["ingress"][0].clone();
            i.is_object().then_some(i)
        });
        assert_eq!(ingress["ip"], "127.0.0.1");
        assert_eq!(ingress["ports"][0]["port"], lb_port);
        let url = format!("http://127.0.0.1:{lb_port}/");
        k.wait("the LoadBalancer port answers", || {
            (get(&url).as_deref() == Some("pod-lb")).then_some(())
        });
        k.ok(&["delete", "svc", "lb"]);
        k.wait("its rules gone", || {
            (!nat_table().contains(&format!("--dport {lb_port}"))).then_some(())
        });
    }
}
