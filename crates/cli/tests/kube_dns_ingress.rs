//! Cluster DNS, Services and Ingress with real pods: `hako kube up` (API server, CRI,
//! kubelet, scheduler, controllers, kube-proxy, cluster DNS) in a temp root, images from
//! a `hako registry` on 127.0.0.1, the real kubectl. Each cluster gets a service range
//! of its own (so its `kube-dns` address is its own while other clusters run on the
//! host); everything it started is torn down on drop, also when a test fails.

mod engine_common;
mod kube_cluster;
mod kube_common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube_common::{condition, hako, wait_for};
use serde_json::Value;

/// A cluster with a service range of its own (so its `kube-dns` address is its own);
/// drop removes the workloads through the kubelet first.
struct Cluster {
    c: kube_cluster::Cluster,
    /// The first two octets of the cluster's service range (`10.X`).
    net: String,
}

impl std::ops::Deref for Cluster {
    type Target = kube_cluster::Cluster;
    fn deref(&self) -> &kube_cluster::Cluster {
        &self.c
    }
}

impl Cluster {
    fn up(args: &[&str]) -> Cluster {
        let (root, reg, image) = kube_cluster::prepare();
        // A service range of this cluster's own (10.150-10.249: not the pod networks).
        let mut b = [0u8; 1];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut b)
            .unwrap();
        let net = format!("10.{}", 150 + u32::from(b[0]) % 100);
        let range = format!("{net}.0.0/16");
        let mut all = vec!["--service-cluster-ip-range", &range];
        all.extend_from_slice(args);
        let mut c = kube_cluster::Cluster::start(root, reg, image, &all);
        c.delete_on_drop = Some("deploy,sts,pods,svc,ingress".into());
        Cluster { c, net }
    }

    fn dns_ip(&self) -> String {
        format!("{}.0.10", self.net)
    }

    /// `kubectl exec POD -- ARGS`: stdout (and stderr when it failed), and whether it
    /// succeeded.
    fn exec(&self, pod: &str, args: &[&str]) -> (String, bool) {
        let mut a = vec!["exec", pod, "--"];
        a.extend_from_slice(args);
        let out = self.run(&a, None);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            text.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        (text, out.status.success())
    }

    /// The ready addresses of the Endpoints object `svc`.
    fn ready_endpoints(&self, svc: &str) -> usize {
        self.try_json(&["get", "endpoints", svc]).map_or(0, |e| {
            e["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["addresses"].as_array().map_or(0, Vec::len))
                .sum()
        })
    }

    fn pod_ready(&self, name: &str) -> bool {
        condition(&self.pod(name), "Ready")["status"] == "True"
    }

    /// Fetch `url` from `pod` until every one of `want` answered (pages are pod names).
    fn answers_from_all(&self, pod: &str, url: &str, want: &BTreeSet<String>) {
        let mut seen = BTreeSet::new();
        wait_for(&format!("{url} from {pod} to reach {want:?}"), || {
            let (page, ok) = self.exec(pod, &["wget", "-qO-", url]);
            if ok {
                seen.insert(page.trim().to_string());
            }
            want.is_subset(&seen)
        });
        assert!(seen.is_subset(want), "{url}: unexpected answers {seen:?}");
    }

    fn pod_names(&self, selector: &str) -> BTreeSet<String> {
        let pods = self.json(&["get", "pods", "-l", selector]);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }
}

/// An httpd answering with its pod's name on the named port `http` (8080).
fn web_deployment(name: &str, image: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {image}
        command: ["sh", "-c", "mkdir -p /www/beta && for f in index.html beta/index.html exact betamax; do hostname > /www/$f; done && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: web, port: 80, targetPort: http}}]
"#
    )
}

fn client_pod(image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: sh, image: {image}, command: ["sleep", "100000"]}}
"#
    )
}

/// A DNS query for the A record of `name`, over TCP (two-byte length prefix).
fn tcp_query_a(server: &str, name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut s = std::net::TcpStream::connect((server, 53)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&q);
    s.write_all(&msg).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    reply
}

fn iptables_lines(net: &str) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["nat", "filter"] {
        let o = Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .unwrap();
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(&format!("{net}.")))
                .map(str::to_string),
        );
    }
    out
}

fn listening(port: u16) -> bool {
    let o = Command::new("ss")
        .args(["-Hlntu", &format!("sport = :{port}")])
        .output()
        .unwrap();
    !String::from_utf8_lossy(&o.stdout).trim().is_empty()
}

#[test]
fn pods_resolve_services_statefulset_pods_and_external_names_through_cluster_dns() {
    let c = Cluster::up(&["--disable-ingress"]);
    let dns = c.dns_ip();
    // Published as CoreDNS is: kube-system/kube-dns at the 10th address, 53 UDP+TCP.
    let mut svc = Value::Null;
    wait_for("the kube-dns Service", || {
        svc = c
            .try_json(&["-n", "kube-system", "get", "svc", "kube-dns"])
            .unwrap_or(Value::Null);
        !svc.is_null()
    });
    assert_eq!(svc["spec"]["clusterIP"], dns.as_str(), "{svc}");
    let protos: BTreeSet<(i64, &str)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_i64().unwrap(), p["protocol"].as_str().unwrap()))
        .collect();
    assert_eq!(protos, BTreeSet::from([(53, "TCP"), (53, "UDP")]));
    let eps = c.json(&["-n", "kube-system", "get", "endpoints", "kube-dns"]);
    let dns_port = eps["subsets"][0]["ports"][0]["port"].as_u64().unwrap() as u16;
    assert!(listening(dns_port), "nothing answers on port {dns_port}");

    c.apply(&web_deployment("web", &c.image, 3));
    c.apply(&client_pod(&c.image));
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 2
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {img}
        command: ["sh", "-c", "mkdir /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: alias}}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
"#,
        img = c.image
    ));
    wait_for("3 ready web endpoints", || c.ready_endpoints("web") == 3);
    wait_for("the client pod", || c.pod_ready("client"));

    // The kubelet's resolv.conf for a ClusterFirst pod.
    let (conf, ok) = c.exec("client", &["cat", "/etc/resolv.conf"]);
    assert!(ok, "{conf}");
    assert!(conf.contains(&format!("nameserver {dns}\n")), "{conf}");
    assert!(
        !conf
            .lines()
            .any(|l| l.starts_with("nameserver") && !l.ends_with(&dns)),
        "{conf}"
    );
    let search = conf.lines().find(|l| l.starts_with("search ")).unwrap();
    assert!(
        search.starts_with("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{conf}"
    );
    assert!(conf.contains("options ndots:5"), "{conf}");

    // Every replica answers through the full name, the short name (search path) and
    // the ExternalName alias (a CNAME with the target's address).
    let web = c.pod_names("app=web");
    assert_eq!(web.len(), 3);
    c.answers_from_all("client", "http://web.default.svc.cluster.local/", &web);
    c.answers_from_all("client", "http://web/", &web);
    c.answers_from_all("client", "http://alias/", &web);

    // StatefulSet pods by their stable names (hostname.subdomain).
    wait_for("db-0 and db-1 ready", || c.ready_endpoints("db") == 2);
    for p in ["db-0", "db-1"] {
        let (page, ok) = c.exec("client", &["wget", "-qO-", &format!("http://{p}.db:8080/")]);
        assert!(ok && page.trim() == p, "{p}: {page}");
        let ip = c.json(&["get", "pod", p])["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_string();
        let (out, ok) = c.exec(
            "client",
            &["nslookup", &format!("{p}.db.default.svc.cluster.local")],
        );
        assert!(ok && out.contains(&ip), "{p} ({ip}): {out}");
    }
    // A Service that does not exist: the cluster's NXDOMAIN.
    let (out, ok) = c.exec("client", &["nslookup", "nope.default.svc.cluster.local"]);
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");

    // TCP on the cluster IP, from the host (kube-proxy's OUTPUT DNAT).
    let web_ip = c.json(&["get", "svc", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = tcp_query_a(&dns, "web.default.svc.cluster.local");
    let octets: Vec<u8> = web_ip.split('.').map(|o| o.parse().unwrap()).collect();
    assert!(
        reply.windows(4).any(|w| w == octets.as_slice()),
        "no {web_ip} in {reply:?}"
    );

    // The NodePort from the host, on 127.0.0.1.
    let np = c.json(&["get", "svc", "web-np"])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap();
    let mut seen = BTreeSet::new();
    wait_for("every web pod through the NodePort", || {
        let o = Command::new("curl")
            .args(["-sf", "--max-time", "5", &format!("http://127.0.0.1:{np}/")])
            .output()
            .unwrap();
        if o.status.success() {
            seen.insert(String::from_utf8_lossy(&o.stdout).trim().to_string());
        }
        web.is_subset(&seen)
    });

    // Deleting everything, then the control plane: no rule, no listener left.
    c.ok(&[
        "delete",
        "deploy,sts,svc,pods",
        "--all",
        "--wait=true",
        "--timeout=60s",
    ]);
    wait_for("the Services' rules to go", || {
        iptables_lines(&c.net)
            .iter()
            .all(|l| l.contains(&format!("{dns}/32")))
    });
    let out = Command::new(hako())
        .arg("--root")
        .arg(c.root.root())
        .args(["kube", "down"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = iptables_lines(&c.net);
    assert!(left.is_empty(), "rules left: {left:?}");
    assert!(
        !listening(dns_port),
        "cluster DNS still listens on {dns_port}"
    );
    assert!(!listening(np as u16));
}

/// A free TCP port on the host, below the ephemeral range (so the control plane's own
/// `:0` listeners cannot take it between this check and `up`).
fn free_port() -> u16 {
    loop {
        let mut b = [0u8; 2];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut b)
            .unwrap();
        let port = 20000 + u16::from_be_bytes(b) % 10000;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// A self-signed certificate for `host` (and its key) written under `dir`.
fn self_signed(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{host}.crt")),
        dir.join(format!("{host}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .args([
            "-subj",
            &format!("/CN={host}"),
            "-addext",
            &format!("subjectAltName=DNS:{host}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (crt, key)
}

/// curl `url` with `host:port` resolved to 127.0.0.1: (status, body).
fn curl(url: &str, resolve: &str, cacert: Option<&Path>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "--resolve",
        resolve,
        url,
    ]);
    if let Some(ca) = cacert {
        cmd.arg("--cacert").arg(ca);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.trim().to_string())
}

#[test]
fn ingress_routes_hosts_paths_and_tls_by_sni_to_services() {
    let (http, https) = (free_port(), free_port());
    let (hs, hss) = (http.to_string(), https.to_string());
    let c = Cluster::up(&[
        "--disable-dns",
        "--ingress-http-port",
        &hs,
        "--ingress-https-port",
        &hss,
    ]);
    // The default IngressClass up installs, as k3s installs traefik's.
    let mut class = None;
    wait_for("the IngressClass hako", || {
        class = c.try_json(&["get", "ingressclass", "hako"]);
        class.is_some()
    });
    let class = class.unwrap();
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    c.apply(&web_deployment("alpha", &c.image, 1));
    c.apply(&web_deployment("beta", &c.image, 1));
    let dir = c.root.dir().to_path_buf();
    let (a_crt, a_key) = self_signed(&dir, "a.example.test");
    let (b_crt, b_key) = self_signed(&dir, "b.example.test");
    for (name, crt, key) in [("a-tls", &a_crt, &a_key), ("b-tls", &b_crt, &b_key)] {
        c.ok(&[
            "create",
            "secret",
            "tls",
            name,
            &format!("--cert={}", crt.display()),
            &format!("--key={}", key.display()),
        ]);
    }
    c.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: sites}
spec:
  tls:
  - {hosts: [a.example.test], secretName: a-tls}
  - {hosts: [b.example.test], secretName: b-tls}
  defaultBackend:
    service: {name: beta, port: {name: web}}
  rules:
  - host: a.example.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
      - {path: /beta, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: beta, port: {name: web}}}}
  - host: b.example.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {name: web}}}}
  - host: "*.wild.test"
    http:
      paths:
      - {path: /, pathType: ImplementationSpecific, backend: {service: {name: alpha, port: {number: 80}}}}
"#,
    );
    wait_for("ready endpoints", || {
        c.ready_endpoints("alpha") == 1 && c.ready_endpoints("beta") == 1
    });
    let alpha = c.pod_names("app=alpha").into_iter().next().unwrap();
    let beta = c.pod_names("app=beta").into_iter().next().unwrap();
    let a = format!("a.example.test:{http}:127.0.0.1");
    let get = |host: &str, path: &str| {
        curl(
            &format!("http://{host}:{http}{path}"),
            &format!("{host}:{http}:127.0.0.1"),
            None,
        )
    };
    wait_for("alpha through the ingress", || {
        curl(&format!("http://a.example.test:{http}/"), &a, None) == ("200".into(), alpha.clone())
    });
    // Host rules, element-wise prefixes, Exact, wildcard hosts, the default backend.
    assert_eq!(get("b.example.test", "/"), ("200".into(), beta.clone()));
    assert_eq!(
        get("a.example.test", "/beta/index.html"),
        ("200".into(), beta.clone())
    );
    let not_beta = get("a.example.test", "/betamax");
    assert_eq!(
        not_beta,
        ("200".into(), alpha.clone()),
        "/betamax is not under /beta"
    );
    assert_eq!(
        get("a.example.test", "/exact"),
        ("200".into(), beta.clone())
    );
    assert_eq!(get("x.wild.test", "/"), ("200".into(), alpha.clone()));
    assert_eq!(get("other.test", "/"), ("200".into(), beta.clone()));
    assert_eq!(
        get("x.y.wild.test", "/"),
        ("200".into(), beta.clone()),
        "a wildcard is one label"
    );

    // TLS: each host gets its own certificate by SNI (curl checks it against the CA).
    for (host, ca, want) in [
        ("a.example.test", &a_crt, &alpha),
        ("b.example.test", &b_crt, &beta),
    ] {
        let (code, body) = curl(
            &format!("https://{host}:{https}/"),
            &format!("{host}:{https}:127.0.0.1"),
            Some(ca),
        );
        assert_eq!(
            (code.as_str(), body.as_str()),
            ("200", want.as_str()),
            "{host}"
        );
    }
    // b's certificate is not a's: curl refuses it for a.example.test.
    let (code, _) = curl(
        &format!("https://a.example.test:{https}/"),
        &format!("a.example.test:{https}:127.0.0.1"),
        Some(&b_crt),
    );
    assert_eq!(code, "000");

    // The address is published, as traefik's ServiceLB does.
    wait_for("status.loadBalancer of the Ingress", || {
        c.try_json(&["get", "ingress", "sites"]).is_some_and(|i| {
            i["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .is_some_and(|ip| !ip.is_empty())
        })
    });
    // A backend without ready endpoints is 503; a bad Ingress is refused.
    c.ok(&["scale", "deploy/beta", "--replicas=0"]);
    wait_for("beta without endpoints", || c.ready_endpoints("beta") == 0);
    wait_for("503 for beta", || get("b.example.test", "/").0 == "503");
    let out = c.run(
        &["apply", "-f", "-"],
        Some("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad}\nspec:\n  rules:\n  - http:\n      paths:\n      - {path: nope, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must be an absolute path"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Deleted and stopped: nothing listens any more.
    c.ok(&["delete", "ingress", "sites"]);
    wait_for("404 once the Ingress is gone", || {
        get("a.example.test", "/").0 == "404"
    });
    let out = Command::new(hako())
        .arg("--root")
        .arg(c.root.root())
        .args(["kube", "down"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!listening(http) && !listening(https));
}

#[test]
fn services_follow_readiness_and_scale_and_pods_reach_their_own_service() {
    let c = Cluster::up(&["--disable-ingress"]);
    c.apply(&web_deployment("web", &c.image, 2));
    c.apply(&client_pod(&c.image));
    // A pod that never gets ready, behind a Service that publishes it anyway and one
    // that does not.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: lazy, labels: {{app: lazy}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {img}
    command: ["sh", "-c", "mkdir /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      exec: {{command: ["false"]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: lazy}}
spec:
  selector: {{app: lazy}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: lazy-pub}}
spec:
  publishNotReadyAddresses: true
  selector: {{app: lazy}}
  ports: [{{port: 80, targetPort: http}}]
"#,
        img = c.image
    ));
    wait_for("2 ready web endpoints", || c.ready_endpoints("web") == 2);
    wait_for("the client pod", || c.pod_ready("client"));
    let web = c.pod_names("app=web");
    // The named target port `http` resolves to 8080 on every replica.
    c.answers_from_all("client", "http://web/", &web);
    // Hairpin: each replica reaches its own Service, and through it itself.
    for p in &web {
        c.answers_from_all(p, "http://web/", &web);
    }
    // publishNotReadyAddresses: the not-ready pod answers through lazy-pub only.
    c.answers_from_all(
        "client",
        "http://lazy-pub/",
        &BTreeSet::from(["lazy".to_string()]),
    );
    assert!(!c.pod_ready("lazy"));
    let (out, ok) = c.exec("client", &["wget", "-qO-", "http://lazy/"]);
    assert!(!ok && out.contains("refused"), "{out}");

    // Scaled to 0, the Service refuses; scaled to 3, every new replica answers.
    c.ok(&["scale", "deploy/web", "--replicas=0"]);
    wait_for("no web endpoint", || c.ready_endpoints("web") == 0);
    wait_for("the Service to refuse", || {
        let (out, ok) = c.exec("client", &["wget", "-qO-", "http://web/"]);
        !ok && out.contains("refused")
    });
    c.ok(&["scale", "deploy/web", "--replicas=3"]);
    wait_for("3 ready web endpoints", || c.ready_endpoints("web") == 3);
    let again = c.pod_names("app=web");
    assert_eq!(again.len(), 3);
    assert!(again.is_disjoint(&web));
    c.answers_from_all("client", "http://web/", &again);
}
