//! `hako kube`: the API server driven by the real kubectl. Each test starts
//! `hako --root TMP kube up --addr 127.0.0.1:0` as a process (killed on drop,
//! also when the test fails) and runs /usr/bin/kubectl against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod kube_common;

use kube_common::{Kube, API_ONLY};

/// The API server alone (`kube up` with every other component disabled): no node
/// heartbeats move the revisions these tests compare, the tests play the
/// controllers' part, and need no kube-proxy rules on the host.
fn api(extra: &[&str]) -> Kube {
    api_env(extra, &[])
}

fn api_env(extra: &[&str], env: &[(&str, &str)]) -> Kube {
    let mut args = API_ONLY.to_vec();
    args.extend(extra);
    Kube::up_env(&args, env)
}

/// The API server on a test-owned etcd.
fn api_etcd() -> Kube {
    api_etcd_env(&[])
}

fn api_etcd_env(env: &[(&str, &str)]) -> Kube {
    let etcd = Etcd::start();
    let mut k = api_env(&["--store", "etcd", "--etcd-endpoints", &etcd.url], env);
    k.after.push(Box::new(etcd));
    k
}

impl Kube {
    /// The store's current revision, as a list reports it.
    fn revision(&self) -> String {
        let list: serde_json::Value =
            serde_json::from_str(&self.ok(&["get", "--raw", "/api/v1/configmaps"])).unwrap();
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn one_line(s: &str) {
    assert_eq!(s.trim_end().lines().count(), 1, "not one line: {s:?}");
}

const APP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
";

fn kubectl_apply_multi_doc_get_and_reapply_edit(k: Kube) {
    let out = k.ok_in(&["apply", "-f", "-"], Some(APP));
    assert_eq!(
        out,
        "configmap/settings created\ndeployment.apps/web created\nservice/web created\n"
    );
    // Table output with kubectl's usual columns.
    let cm = k.ok(&["get", "configmaps", "settings"]);
    let mut lines = cm.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    assert!(lines.next().unwrap().starts_with("settings   1 "));
    let wide = k.ok(&["get", "deployments", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(
        wide.contains("nginx:1.25") && wide.contains("app=web"),
        "{wide}"
    );
    let svc = k.ok(&["get", "service", "web"]);
    assert!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");
    // -o json / yaml carry server-set metadata and defaults.
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(json["metadata"]["generation"], 1);
    assert_eq!(json["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(json["metadata"]["uid"].as_str().unwrap().len(), 36);
    let yaml = k.ok(&["get", "configmap", "settings", "-o", "yaml"]);
    assert!(
        yaml.contains("mode: fast") && yaml.contains("creationTimestamp:"),
        "{yaml}"
    );
    // Someone else's annotation must survive a re-apply of an edited file.
    k.ok(&["annotate", "deployment", "web", "owner=ops"]);
    let edited = APP.replace("nginx:1.25", "nginx:1.26");
    let out = k.ok_in(&["apply", "-f", "-"], Some(&edited));
    assert_eq!(
        out,
        "configmap/settings unchanged\ndeployment.apps/web configured\nservice/web unchanged\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(
        json["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(
        json["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert_eq!(json["metadata"]["annotations"]["owner"], "ops");
    assert_eq!(json["metadata"]["generation"], 2);
    assert_eq!(json["spec"]["replicas"], 2);
}

fn kubectl_label_annotate_and_each_patch_type(k: Kube) {
    k.ok_in(&["apply", "-f", "-"], Some(APP));
    assert_eq!(
        k.ok(&["label", "configmap", "settings", "tier=front"]),
        "configmap/settings labeled\n"
    );
    assert_eq!(
        k.ok(&["annotate", "configmap", "settings", "note=hi"]),
        "configmap/settings annotated\n"
    );
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ]);
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/data/mode"}]"#,
    ]);
    // Strategic (kubectl's default): containers merge by name.
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#,
    ]);
    let got = k.ok(&[
        "get",
        "configmap",
        "settings",
        "-o",
        "jsonpath={.metadata.labels.tier} {.metadata.annotations.note} {.data}",
    ]);
    assert_eq!(got, r#"front hi {"extra":"1"}"#);
    let names = k.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ]);
    assert_eq!(names, "nginx side");
    // Selectors and the scale subresource.
    assert_eq!(
        k.ok(&["get", "configmaps", "-l", "tier=front", "-o", "name"]),
        "configmap/settings\n"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "configmaps",
            "-l",
            "tier notin (front)",
            "-o",
            "name"
        ]),
        ""
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deployments",
            "--field-selector",
            "metadata.name=web",
            "-o",
            "name"
        ]),
        "deployment.apps/web\n"
    );
    assert_eq!(
        k.ok(&["scale", "deployment", "web", "--replicas=4"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "4"
    );
}

fn kubectl_get_watch_sees_added_modified_deleted(k: Kube) {
    let mut watch = k
        .kubectl_cmd(&["get", "configmaps", "--watch", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = watch.stdout.take().unwrap();
    let _guard = KillOnDrop(watch);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // "EVENT NAME DATA AGE" rows: the event and the name.
    let next = || {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("watch output");
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cm = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    k.ok_in(&["create", "-f", "-"], Some(&cm("first")));
    assert_eq!(next(), "EVENT NAME");
    assert_eq!(next(), "ADDED first");
    k.ok(&["label", "configmap", "first", "x=y"]);
    assert_eq!(next(), "MODIFIED first");
    k.ok(&["delete", "configmap", "first"]);
    assert_eq!(next(), "DELETED first");
}

fn bad_input_gets_one_line_errors_and_changes_nothing(k: Kube) {
    k.ok_in(&["apply", "-f", "-"], Some(APP));
    let before = k.revision();
    let stale = k.ok(&["get", "configmap", "settings", "-o", "json"]);
    k.ok(&["label", "configmap", "settings", "moved=yes"]);
    let before_bad = k.revision();
    assert_ne!(before, before_bad);

    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: [name: x\n"),
    );
    one_line(&err);
    assert!(err.contains("error"), "{err}");

    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n"),
    );
    one_line(&err);
    assert!(err.contains(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#), "{err}");

    let err = k.fails_in(&["replace", "-f", "-"], Some(&stale));
    one_line(&err);
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("the object has been modified"),
        "{err}"
    );

    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndatta:\n  a: b\n"),
    );
    one_line(&err);
    assert!(err.contains(r#"unknown field "datta""#), "{err}");

    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typed\ndata:\n  a: [1]\n"),
    );
    one_line(&err);
    assert!(
        err.contains("Error from server (BadRequest)") && err.contains("ConfigMap"),
        "{err}"
    );

    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nowhere\n  namespace: missing\n"),
    );
    one_line(&err);
    assert!(err.contains(r#"namespaces "missing" not found"#), "{err}");

    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Nonsense\nmetadata:\n  name: x\n"),
    );
    assert!(
        err.contains(r#"no matches for kind "Nonsense" in version "v1""#),
        "{err}"
    );

    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: \"{}\"\n",
        "x".repeat(10 << 20)
    );
    let err = k.fails_in(&["create", "-f", "-"], Some(&big));
    assert!(err.contains("too large"), "{err}");

    assert_eq!(
        k.revision(),
        before_bad,
        "a refused request changed the store"
    );
}

#[test]
fn anonymous_and_wrong_token_requests_are_refused() {
    let k = api(&[]);
    let err = k.fails_in(&["--token", "wrong", "get", "configmaps"], None);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: You must be logged in to the server ("),
        "{err}"
    );
    let out = Command::new("curl")
        .args(["-sk", &format!("https://{}/api/v1/namespaces", k.addr)])
        .output();
    if let Ok(out) = out {
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            body.contains(r#""reason":"Unauthorized""#) && body.contains(r#""code":401"#),
            "{body}"
        );
    }
    // The kubeconfig's own credentials work, and `hako kube kubeconfig` prints them.
    let printed = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(k.root())
        .args(["kube", "kubeconfig"])
        .output()
        .unwrap();
    assert_eq!(printed.stdout, std::fs::read(k.kubeconfig()).unwrap());
    assert!(k
        .ok(&["get", "namespaces", "-o", "name"])
        .contains("namespace/default"));
}

fn dry_run_server_generate_name_pagination_and_namespace_termination(k: Kube) {
    let rev = k.revision();
    let out = k.ok_in(&["apply", "--dry-run=server", "-f", "-"], Some(APP));
    assert!(
        out.contains("configmap/settings created (server dry run)"),
        "{out}"
    );
    assert_eq!(k.revision(), rev);
    assert_eq!(k.ok(&["get", "configmaps", "-o", "name"]), "");

    let out = k.ok_in(
        &["create", "-f", "-", "-o", "name"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n"),
    );
    assert!(
        out.starts_with("configmap/gen-") && out.trim().len() == "configmap/gen-".len() + 5,
        "{out}"
    );

    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n";
    k.ok_in(&["apply", "-f", "-"], Some(ns));
    for n in 0..5 {
        k.ok_in(
            &["create", "-n", "team", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{n}\n"
            )),
        );
    }
    let all = k.ok(&[
        "get",
        "configmaps",
        "-n",
        "team",
        "--chunk-size=2",
        "-o",
        "name",
    ]);
    assert_eq!(
        all,
        "configmap/c0\nconfigmap/c1\nconfigmap/c2\nconfigmap/c3\nconfigmap/c4\n"
    );
    // Deleting a namespace makes it Terminating; its contents stay for the
    // namespace controller, which the test plays: delete them, PUT
    // `finalize` without the "kubernetes" finalizer, delete again.
    assert_eq!(
        k.ok(&["delete", "namespace", "team", "--wait=false"]),
        "namespace \"team\" deleted\n"
    );
    let nsj: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "namespace", "team", "-o", "json"])).unwrap();
    assert_eq!(nsj["status"]["phase"], "Terminating");
    assert_eq!(nsj["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
    assert!(nsj["metadata"]["deletionTimestamp"].is_string());
    let err = k.fails_in(
        &[
            "create",
            "configmap",
            "late",
            "-n",
            "team",
            "--from-literal=a=b",
        ],
        None,
    );
    one_line(&err);
    assert!(
        err.contains("configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"),
        "{err}"
    );
    assert_eq!(
        k.ok(&["get", "configmaps", "-n", "team", "-o", "name"])
            .lines()
            .count(),
        5
    );
    k.ok(&["delete", "configmaps", "--all", "-n", "team"]);
    // A second delete while spec.finalizers remain changes nothing.
    k.ok(&["delete", "namespace", "team", "--wait=false"]);
    k.ok(&["get", "namespace", "team"]);
    let mut fin = nsj.clone();
    fin["spec"]["finalizers"] = serde_json::json!([]);
    let out = k.ok_in(
        &[
            "replace",
            "--raw",
            "/api/v1/namespaces/team/finalize",
            "-f",
            "-",
        ],
        Some(&fin.to_string()),
    );
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["spec"], serde_json::json!({}));
    assert_eq!(out["status"]["phase"], "Terminating");
    k.ok(&["delete", "namespace", "team", "--wait=false"]);
    let err = k.fails_in(&["get", "namespace", "team"], None);
    assert!(err.contains(r#"namespaces "team" not found"#), "{err}");
}

fn killed_server_keeps_acknowledged_writes(mut k: Kube) {
    k.ok_in(&["apply", "-f", "-"], Some(APP));
    k.ok(&["label", "configmap", "settings", "last=write"]);
    let rev = k.revision();
    k.kill_and_restart();
    assert_eq!(k.revision(), rev);
    assert_eq!(
        k.ok(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.metadata.labels.last}"
        ]),
        "write"
    );
    assert_eq!(
        k.ok(&["get", "deployment", "web", "-o", "name"]),
        "deployment.apps/web\n"
    );
}

fn kubectl_create_generators_send_protobuf(k: Kube) {
    assert_eq!(
        k.ok(&["create", "namespace", "team"]),
        "namespace/team created\n"
    );
    k.ok(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "team",
        "--from-literal=a=b",
        "--from-literal=c=d",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "configmap",
            "c1",
            "-n",
            "team",
            "-o",
            "jsonpath={.data}"
        ]),
        r#"{"a":"b","c":"d"}"#
    );
    k.ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=pw=secret",
    ]);
    assert_eq!(
        k.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.pw} {.type}"]),
        "c2VjcmV0 Opaque"
    );
    k.ok(&["create", "serviceaccount", "robot"]);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--port=80",
        "--replicas=2",
    ]);
    let d: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (c["name"].as_str(), c["image"].as_str()),
        (Some("nginx"), Some("nginx:1.25"))
    );
    assert_eq!(
        c["ports"],
        serde_json::json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    k.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ports = k.ok(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].port}:{.spec.ports[0].targetPort}",
    ]);
    assert_eq!(ports, "80:8080");
    // A generator's invalid name is refused like any other create.
    let rev = k.revision();
    let err = k.fails_in(&["create", "configmap", "Bad_Name"], None);
    one_line(&err);
    assert!(
        err.contains(r#"ConfigMap "Bad_Name" is invalid: metadata.name"#),
        "{err}"
    );
    assert_eq!(k.revision(), rev);
}

fn kubectl_apply_server_side_conflict_and_force(k: Kube) {
    let out = k.ok_in(&["apply", "--server-side", "-f", "-"], Some(APP));
    assert_eq!(
        out,
        "configmap/settings serverside-applied\ndeployment.apps/web serverside-applied\nservice/web serverside-applied\n"
    );
    let fields = k.ok(&[
        "get",
        "deployment",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}",
    ]);
    assert_eq!(fields, "kubectl Apply");
    // Another manager takes spec.replicas; applying a different value conflicts.
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "--field-manager",
        "ops",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":7}}"#,
    ]);
    let rev = k.revision();
    let err = k.fails_in(&["apply", "--server-side", "-f", "-"], Some(APP));
    assert!(
        err.starts_with(r#"error: Apply failed with 1 conflict: conflict with "ops" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    assert_eq!(k.revision(), rev);
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "7"
    );
    // Forced, the applier takes the field back; a field it stops applying goes.
    k.ok_in(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(APP),
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    let fewer = APP.replace("data:\n  mode: fast\n", "data:\n  other: x\n");
    k.ok_in(&["apply", "--server-side", "-f", "-"], Some(&fewer));
    assert_eq!(
        k.ok(&["get", "configmap", "settings", "-o", "jsonpath={.data}"]),
        r#"{"other":"x"}"#
    );
    // Service ports are keyed by number and protocol: 53/UDP and 53/TCP are
    // two ports, and dropping one from the configuration removes only it.
    let dns = |ports: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\nspec:\n  selector:\n    app: dns\n  ports:\n{ports}"
        )
    };
    let udp = "  - name: dns\n    port: 53\n    protocol: UDP\n";
    let tcp = "  - name: dns-tcp\n    port: 53\n";
    let ports = |k: &Kube| {
        k.ok(&[
            "get",
            "service",
            "dns",
            "-o",
            "jsonpath={range .spec.ports[*]}{.name}/{.port}/{.protocol} {end}",
        ])
    };
    k.ok_in(
        &["apply", "--server-side", "-f", "-"],
        Some(&dns(&format!("{udp}{tcp}"))),
    );
    assert_eq!(ports(&k), "dns/53/UDP dns-tcp/53/TCP ");
    k.ok_in(&["apply", "--server-side", "-f", "-"], Some(&dns(tcp)));
    assert_eq!(ports(&k), "dns-tcp/53/TCP ");
}

fn kubectl_describe_columns_finalizers_and_delete_policies(k: Kube) {
    k.ok_in(&["apply", "-f", "-"], Some(APP));
    // An event about the deployment shows in describe (events listed by
    // involvedObject field selectors).
    let uid = k.ok(&["get", "deployment", "web", "-o", "jsonpath={.metadata.uid}"]);
    let event = format!(
        "apiVersion: v1
kind: Event
metadata:
  name: web.1
involvedObject:
  apiVersion: apps/v1
  kind: Deployment
  name: web
  namespace: default
  uid: {uid}
reason: ScalingReplicaSet
message: Scaled up replica set web-1 to 2
type: Normal
"
    );
    k.ok_in(&["create", "-f", "-"], Some(&event));
    let d = k.ok(&["describe", "deployment", "web"]);
    assert!(d.contains("Name:                   web"), "{d}");
    assert!(d.contains("nginx:1.25"), "{d}");
    assert!(
        d.contains("ScalingReplicaSet") && d.contains("Scaled up replica set web-1 to 2"),
        "{d}"
    );
    let ev = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Deployment",
    ]);
    let header: Vec<&str> = ev.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(ev.contains("deployment/web"), "{ev}");
    let cols = k.ok(&["get", "deployments", "-o", "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,IMAGE:.spec.template.spec.containers[0].image"]);
    assert_eq!(
        cols.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["web", "2", "nginx:1.25"]
    );

    // kubectl edit: GET, the editor, then a strategic merge patch.
    let out = k
        .kubectl_cmd(&["edit", "configmap", "settings"])
        .env("KUBE_EDITOR", "sed -i 's/mode: fast/mode: slow/'")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/settings edited\n"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "slow"
    );

    // A finalizer holds the object: deletion only marks it, until the
    // finalizer is removed.
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n";
    k.ok_in(&["create", "-f", "-"], Some(held));
    k.ok(&["delete", "configmap", "held", "--wait=false"]);
    let ts = k.ok(&[
        "get",
        "configmap",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty());
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let err = k.fails_in(&["get", "configmap", "held"], None);
    assert!(err.contains(r#"configmaps "held" not found"#), "{err}");

    // Background deletes at once (the garbage collector takes the
    // dependents); foreground and orphan leave the object with the
    // finalizer the garbage collector acts on.
    for (n, policy) in ["background", "foreground", "orphan"].iter().enumerate() {
        let name = format!("p{n}");
        k.ok_in(
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
            )),
        );
        let out = k.ok(&[
            "delete",
            "configmap",
            &name,
            &format!("--cascade={policy}"),
            "--wait=false",
        ]);
        assert_eq!(out, format!("configmap \"{name}\" deleted\n"));
    }
    assert_eq!(
        k.ok(&["get", "configmaps", "-o", "name"]),
        "configmap/p1\nconfigmap/p2\nconfigmap/settings\n"
    );
    let fins = k.ok(&[
        "get",
        "configmaps",
        "p1",
        "p2",
        "-o",
        "jsonpath={range .items[*]}{.metadata.finalizers} {.metadata.deletionGracePeriodSeconds}{\"\\n\"}{end}",
    ]);
    assert_eq!(fins, "[\"foregroundDeletion\"] 0\n[\"orphan\"] 0\n");
    // No new finalizers on an object being deleted.
    let err = k.fails_in(
        &[
            "patch",
            "configmap",
            "p1",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":["foregroundDeletion","example.com/late"]}}"#,
        ],
        None,
    );
    one_line(&err);
    assert!(
        err.contains("no new finalizers can be added if the object is being deleted"),
        "{err}"
    );
    // What the garbage collector does once dependents are handled.
    for name in ["p1", "p2"] {
        k.ok(&[
            "patch",
            "configmap",
            name,
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ]);
    }
    assert_eq!(
        k.ok(&["get", "configmaps", "-o", "name"]),
        "configmap/settings\n"
    );
    // Without a policy, batch/v1 Jobs orphan (upstream's default for them);
    // kubectl sends Background, which deletes at once.
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: NAME\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n";
    k.ok_in(&["create", "-f", "-"], Some(&job.replace("NAME", "j1")));
    k.ok_in(&["create", "-f", "-"], Some(&job.replace("NAME", "j2")));
    k.ok(&[
        "delete",
        "--raw",
        "/apis/batch/v1/namespaces/default/jobs/j1",
    ]);
    assert_eq!(
        k.ok(&["get", "job", "j1", "-o", "jsonpath={.metadata.finalizers}"]),
        "[\"orphan\"]"
    );
    k.ok(&["delete", "job", "j2"]);
    let err = k.fails_in(&["get", "job", "j2"], None);
    assert!(err.contains("not found"), "{err}");
}

fn watch_resumes_from_a_resource_version_and_ends_with_a_bookmark(k: Kube) {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n";
    let created = k.ok_in(
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
        Some(cm),
    );
    k.ok(&["label", "configmap", "w", "step=2"]);
    k.ok(&["delete", "configmap", "w"]);
    let last = k.revision();
    // History after `created`, in order, then the stream ends at its timeout
    // with a bookmark at the newest revision.
    let url = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={created}&allowWatchBookmarks=true&timeoutSeconds=1"
    );
    let out = k.ok(&["get", "--raw", &url]);
    let events: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["resourceVersion"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 3, "{out}");
    assert_eq!((seen[0].0, seen[1].0), ("MODIFIED", "DELETED"));
    assert_eq!(events[0]["object"]["metadata"]["labels"]["step"], "2");
    assert_eq!(seen[1].1, last);
    assert_eq!(seen[2], ("BOOKMARK", last.as_str()));
    // A resourceVersion that is not a number is refused.
    let err = k.fails_in(
        &[
            "get",
            "--raw",
            "/api/v1/configmaps?watch=1&resourceVersion=abc",
        ],
        None,
    );
    assert!(err.contains("must be a valid resource version"), "{err}");

    // Streaming list (sendInitialEvents): the current state as ADDED, a
    // BOOKMARK marking the end of it, then the stream goes on.
    k.ok_in(&["create", "-f", "-"], Some(cm));
    let now = k.revision();
    let url = "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1";
    let out = k.ok(&["get", "--raw", url]);
    let events: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events.len(), 3, "{out}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "w");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["resourceVersion"],
        now.as_str()
    );
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(events[2]["type"], "BOOKMARK");
    let err = k.fails_in(
        &[
            "get",
            "--raw",
            "/api/v1/configmaps?watch=1&sendInitialEvents=true",
        ],
        None,
    );
    assert!(
        err.contains("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
        "{err}"
    );
}

/// An etcd server of the test's own (Debian's etcd-server), killed on drop.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    fn start() -> Etcd {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{}", free());
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", free()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd (Debian's etcd-server)");
        let etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        // Ready once its client port accepts connections (a minute at most).
        let addr = etcd.url.trim_start_matches("http://").to_string();
        for _ in 0..600 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return etcd;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd at {} did not start", etcd.url);
    }
}

#[test]
fn compacted_history_is_410_gone_for_watches() {
    let k = api(&["--compaction-interval", "1"]);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old\n";
    let created = k.ok_in(
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
        Some(cm),
    );
    k.ok(&["label", "configmap", "old", "a=b"]);
    let url = format!("/api/v1/configmaps?watch=1&resourceVersion={created}&timeoutSeconds=1");
    // Compaction runs every second and forgets what is older than the
    // previous run's revision: poll (bounded) until the watch is refused.
    let mut last = String::new();
    for _ in 0..120 {
        let out = k.run(&["get", "--raw", &url], None);
        if !out.status.success() {
            last = String::from_utf8_lossy(&out.stderr).to_string();
            break;
        }
        // Writes move the revision on, so there is history to compact.
        k.ok(&["label", "configmap", "old", "a=c", "--overwrite"]);
        k.ok(&["label", "configmap", "old", "a=b", "--overwrite"]);
    }
    one_line(&last);
    assert!(
        last.starts_with(&format!(
            "Error from server (Expired): too old resource version: {created} ("
        )),
        "{last}"
    );
    // The current state is intact and a fresh watch works.
    assert_eq!(
        k.ok(&[
            "get",
            "configmap",
            "old",
            "-o",
            "jsonpath={.metadata.labels.a}"
        ]),
        "b"
    );
    k.ok(&[
        "get",
        "--raw",
        "/api/v1/configmaps?watch=1&timeoutSeconds=1",
    ]);
}

/// A watcher that stops reading (a kubectl whose output is not read) is ended
/// with a 410 Expired once more than the store's watch queue
/// (`HAKO_KUBE_WATCH_QUEUE`, 16 here) waits for it, after the events that
/// fitted, in order; the server's memory does not grow with it, and another
/// watcher of the same writes sees all of them.
fn slow_watcher_is_expired_and_others_keep_up(k: Kube) {
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let from = k.revision();
    let url = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={from}");
    let spawn = || {
        k.kubectl_cmd(&["get", "--raw", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut slow = KillOnDrop(spawn());
    let mut fast = KillOnDrop(spawn());
    // The resourceVersions of the first `n` events a watch prints.
    let revisions = |out: std::process::ChildStdout, n: usize| {
        let mut revs = Vec::new();
        for line in BufReader::new(out).lines().take(n) {
            let ev: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let rv = ev["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap();
            revs.push(rv.parse::<u64>().unwrap());
        }
        revs
    };
    let fast_out = fast.0.stdout.take().unwrap();
    let objects = 64;
    let reader = std::thread::spawn(move || revisions(fast_out, objects));
    // ~38 MiB of events: more than kubectl's HTTP/2 window, the socket
    // buffers and the pipe hold, so the slow watcher's queue fills.
    let big = "x".repeat(600 * 1024);
    let docs: Vec<String> = (0..objects)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-{i}\ndata:\n  v: {big}\n"
            )
        })
        .collect();
    k.ok_in(
        &["create", "-f", "-", "-o", "name"],
        Some(&docs.join("---\n")),
    );
    let revs = reader.join().unwrap();
    assert_eq!(revs.len(), objects);
    assert!(revs.windows(2).all(|w| w[0] < w[1]));
    // The slow watcher: what fitted, in order, then the error, then the end.
    let mut out = String::new();
    std::io::Read::read_to_string(&mut slow.0.stdout.take().unwrap(), &mut out).unwrap();
    assert!(slow.0.wait().unwrap().success());
    let events: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let (last, before) = events.split_last().unwrap();
    assert_eq!(
        last["type"],
        "ERROR",
        "{}",
        &out[out.len().saturating_sub(500)..]
    );
    assert_eq!(
        (&last["object"]["code"], &last["object"]["reason"]),
        (&serde_json::json!(410), &serde_json::json!("Expired"))
    );
    assert!(
        before.len() < objects,
        "{} events before the error",
        before.len()
    );
    let seen: Vec<u64> = before
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(seen, revs[..seen.len()]);
    // The server goes on serving: a watch from there sees the rest.
    let url = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={}",
        seen.last().copied().unwrap_or(from.parse().unwrap())
    );
    let mut again = KillOnDrop(
        k.kubectl_cmd(&["get", "--raw", &url])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rest = revisions(again.0.stdout.take().unwrap(), objects - seen.len());
    assert_eq!(rest, revs[seen.len()..]);
}

#[test]
fn slow_watcher_is_expired_and_others_keep_up_sqlite() {
    slow_watcher_is_expired_and_others_keep_up(api_env(&[], &[("HAKO_KUBE_WATCH_QUEUE", "16")]));
}

#[test]
fn slow_watcher_is_expired_and_others_keep_up_etcd() {
    slow_watcher_is_expired_and_others_keep_up(api_etcd_env(&[("HAKO_KUBE_WATCH_QUEUE", "16")]));
}

/// The Python `kubernetes` client (Debian's python3-kubernetes) lists and
/// watches: another client library than kubectl's accepts the server.
#[test]
fn python_kubernetes_client_watch() {
    let k = api(&[]);
    let script = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
rv = v1.list_namespaced_config_map("default").metadata.resource_version
print("LISTED", flush=True)
for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=120):
    print(ev["type"], ev["object"].metadata.name, ev["object"].data, flush=True)
    if ev["type"] == "DELETED":
        break
"#;
    let mut py = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(k.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running /usr/bin/python3 (python3-kubernetes)");
    let stdout = py.stdout.take().unwrap();
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut py = KillOnDrop(py);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().map(|l| l.unwrap_or_default());
    if first.as_deref() != Some("LISTED") {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut py.0.stderr.take().unwrap(), &mut err);
        panic!("the Python client failed: {first:?} {err}");
    }
    k.ok_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: py\ndata:\n  a: \"1\"\n"),
    );
    k.ok(&[
        "patch",
        "configmap",
        "py",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    k.ok(&["delete", "configmap", "py"]);
    let got: Vec<String> = lines.take(3).map(|l| l.unwrap()).collect();
    assert_eq!(
        got,
        [
            "ADDED py {'a': '1'}",
            "MODIFIED py {'a': '2'}",
            "DELETED py {'a': '2'}"
        ]
    );
}

#[test]
fn pod_log_exec_portforward() {
    pod_log_exec_portforward_reach_the_kubelet(api(&[]));
}

/// `--service-cluster-ip-range`: a /29 has five addresses to hand out
/// (not the network, broadcast or first address); the allocations survive
/// a restart.
#[test]
fn service_cidr_flag_fills_and_survives_restart() {
    let mut k = api(&["--service-cluster-ip-range", "10.99.0.0/29"]);
    for n in 0..5 {
        k.ok_in(&["create", "-f", "-"], Some(&service(&format!("s{n}"), "")));
    }
    let ips = k.ok(&[
        "get",
        "services",
        "-o",
        "jsonpath={.items[*].spec.clusterIP}",
    ]);
    let mut ips: Vec<&str> = ips.split(' ').collect();
    ips.sort();
    assert_eq!(
        ips,
        [
            "10.99.0.2",
            "10.99.0.3",
            "10.99.0.4",
            "10.99.0.5",
            "10.99.0.6"
        ]
    );
    let err = k.fails_in(&["create", "-f", "-"], Some(&service("s5", "")));
    one_line(&err);
    assert!(
        err.contains("Internal error occurred: failed to allocate a serviceIP: range is full"),
        "{err}"
    );
    let freed = k.ok(&["get", "service", "s3", "-o", "jsonpath={.spec.clusterIP}"]);
    k.ok(&["delete", "service", "s3"]);
    k.kill_and_restart();
    k.ok_in(&["create", "-f", "-"], Some(&service("s5", "")));
    assert_eq!(
        k.ok(&["get", "service", "s5", "-o", "jsonpath={.spec.clusterIP}"]),
        freed
    );
    let err = k.fails_in(&["create", "-f", "-"], Some(&service("s6", "")));
    assert!(err.contains("range is full"), "{err}");
}

/// `hako kube kubeconfig --user --group`: a client certificate signed by
/// the cluster CA authenticates kubectl; one from another CA does not.
#[test]
fn client_certificates_authenticate() {
    let k = api(&[]);
    let hako = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(k.root())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let kc = hako(&[
        "kube",
        "kubeconfig",
        "--user",
        "jane",
        "--group",
        "devs",
        "--group",
        "ops",
    ]);
    assert!(
        kc.contains("client-certificate-data:") && !kc.contains("token:"),
        "{kc}"
    );
    let path = k.dir().join("jane.kubeconfig");
    std::fs::write(&path, &kc).unwrap();
    let run = |kubeconfig: &Path| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(k.dir().join("jane-cache"))
            .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo}"])
            .output()
            .unwrap()
    };
    // Any authenticated user may ask who it is (RBAC's system:basic-user).
    let out = run(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"groups":["devs","ops","system:authenticated"],"username":"jane"}"#
    );
    // The same user's certificate from another CA is refused.
    let other = k.dir().join("other-pki");
    hako_kube_apiserver::certs::Pki::load_or_create(&other).unwrap();
    let (cert, key) =
        hako_kube_apiserver::certs::issue_client_cert(&other, "jane", &["devs".to_string()])
            .unwrap();
    let ca = std::fs::read_to_string(k.root().join("kube/pki/ca.crt")).unwrap();
    let server = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap();
    let rogue = k.dir().join("rogue.kubeconfig");
    std::fs::write(
        &rogue,
        hako_kube_apiserver::certs::client_cert_kubeconfig(&ca, server, "jane", &cert, &key),
    )
    .unwrap();
    let out = run(&rogue);
    assert!(!out.status.success());
    // Another CA of the same name: its signature does not verify, the TLS
    // handshake fails (kubectl reports the alert or the closed connection).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unable to connect to the server"), "{err}");
    // --group needs --user.
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(k.root())
        .args(["kube", "kubeconfig", "--group", "devs"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// kubectl reads the aggregated discovery document (apidiscovery.k8s.io/v2)
/// from /api and /apis and needs no per-group-version request.
#[test]
fn aggregated_discovery_serves_kubectl_in_two_requests() {
    let k = api(&[]);
    let out = k.run(&["get", "deployments,pods,leases", "-A", "-v=6"], None);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let discovery: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"Response\" verb=\"GET\""))
        .filter_map(|l| l.split("url=\"").nth(1)?.split('"').next())
        .filter(|u| !u.contains("limit="))
        .collect();
    assert_eq!(discovery.len(), 2, "{log}");
    assert!(
        discovery[0].contains("/api?") && discovery[1].contains("/apis?"),
        "{log}"
    );
    // The legacy documents stay for clients that do not ask for v2.
    let legacy: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "--raw", "/apis"])).unwrap();
    assert_eq!(legacy["kind"], "APIGroupList");
}

#[test]
fn kube_down_stops_the_server() {
    let mut k = api(&[]);
    k.ok(&["get", "namespaces"]);
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(k.root())
        .args(["kube", "down"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The `up` process has exited (down waits for it) and removed its pid file.
    let status = k.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(!k.root().join("kube/apiserver.pid").exists());
    // Nothing running any more: a clear one-line error.
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(k.root())
        .args(["kube", "down"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    one_line(&err);
    assert!(err.contains("none is running"), "{err}");
}

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 45\n  containers:\n  - name: c\n    image: busybox\n"
    )
}

/// pods/binding as a scheduler uses it, graceful deletion as the kubelet
/// finishes it, pods/eviction.
fn pod_binding_graceful_deletion_and_eviction(k: Kube) {
    for p in ["a", "b", "c", "d"] {
        k.ok_in(&["create", "-f", "-"], Some(&pod(p)));
    }
    let bind = |pod: &str, node: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{pod}"}},"target":{{"kind":"Node","name":"{node}"}}}}"#
        )
    };
    let out = k.ok_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/a/binding",
            "-f",
            "-",
        ],
        Some(&bind("a", "n1")),
    );
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["status"], "Success");
    let got = k.ok(&[
        "get",
        "pod",
        "a",
        "-o",
        "jsonpath={.spec.nodeName} {.status.conditions[?(@.type==\"PodScheduled\")].status}",
    ]);
    assert_eq!(got, "n1 True");
    // Bound once: a second binding is a conflict, the pod keeps its node.
    let err = k.fails_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/a/binding",
            "-f",
            "-",
        ],
        Some(&bind("a", "n2")),
    );
    one_line(&err);
    assert!(
        err.contains(r#"Error from server (Conflict): Operation cannot be fulfilled on pods/binding "a": pod a is already assigned to node "n1""#),
        "{err}"
    );
    let err = k.fails_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/b/binding",
            "-f",
            "-",
        ],
        Some(&bind("a", "n2")),
    );
    assert!(
        err.contains("name in URL does not match name in Binding object"),
        "{err}"
    );
    let err = k.fails_in(
        &["create", "--raw", "/api/v1/namespaces/default/pods/b/binding", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"b"},"target":{"kind":"Node"}}"#),
    );
    assert!(err.contains("target.name: Required value"), "{err}");
    k.ok_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/c/binding",
            "-f",
            "-",
        ],
        Some(&bind("c", "n1")),
    );

    // A bound pod is deleted gracefully: it stays with deletionTimestamp
    // and the grace period (the request's, else the pod's own).
    let out = k.ok(&["delete", "pod", "a", "--grace-period=20", "--wait=false"]);
    assert_eq!(out, "pod \"a\" deleted\n");
    let grace = |p: &str| {
        k.ok(&[
            "get",
            "pod",
            p,
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds} {.metadata.deletionTimestamp}",
        ])
    };
    let g = grace("a");
    assert!(g.starts_with("20 20"), "{g}");
    // A longer period changes nothing; a shorter one shortens.
    k.ok(&["delete", "pod", "a", "--grace-period=40", "--wait=false"]);
    assert_eq!(grace("a"), g);
    k.ok(&["delete", "pod", "a", "--grace-period=5", "--wait=false"]);
    assert!(grace("a").starts_with("5 "), "{}", grace("a"));
    // Being deleted, it cannot be bound elsewhere.
    // The kubelet's final delete: grace period 0.
    k.ok(&[
        "delete",
        "pod",
        "a",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    let err = k.fails_in(&["get", "pod", "a"], None);
    assert!(err.contains(r#"pods "a" not found"#), "{err}");
    // An unbound pod goes at once, whatever the period.
    k.ok(&["delete", "pod", "b", "--grace-period=30", "--wait=false"]);
    let err = k.fails_in(&["get", "pod", "b"], None);
    assert!(err.contains(r#"pods "b" not found"#), "{err}");

    // Eviction: a delete with the eviction's options (no disruption
    // budgets: always allowed).
    let evict = |p: &str| {
        format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{p}"}}}}"#)
    };
    let out = k.ok_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/c/eviction",
            "-f",
            "-",
        ],
        Some(&evict("c")),
    );
    assert!(out.contains("Success"), "{out}");
    assert!(grace("c").starts_with("45 "), "{}", grace("c"));
    let err = k.fails_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/c/binding",
            "-f",
            "-",
        ],
        Some(&bind("c", "n2")),
    );
    assert!(
        err.contains("pod c is being deleted, cannot be assigned to a host"),
        "{err}"
    );
    k.ok_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/d/eviction",
            "-f",
            "-",
        ],
        Some(&evict("d")),
    );
    let err = k.fails_in(&["get", "pod", "d"], None);
    assert!(err.contains(r#"pods "d" not found"#), "{err}");
    let err = k.fails_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/zz/eviction",
            "-f",
            "-",
        ],
        Some(&evict("zz")),
    );
    assert!(err.contains(r#"pods "zz" not found"#), "{err}");
    assert_eq!(k.ok(&["get", "pods", "-o", "name"]), "pod/c\n");
}

/// A fake kubelet (tests/kube/fake_kubelet.py) serving with `cert`/`key`;
/// killed on drop.
struct FakeKubelet {
    child: Child,
    port: u16,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FAKE_KUBELET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kube/fake_kubelet.py");

impl FakeKubelet {
    fn start(dir: &Path, cert: &str, key: &str, token_file: &Path) -> FakeKubelet {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("kubelet.crt"), cert).unwrap();
        std::fs::write(dir.join("kubelet.key"), key).unwrap();
        let mut child = Command::new("python3")
            .args([FAKE_KUBELET, "serve"])
            .arg(dir.join("kubelet.crt"))
            .arg(dir.join("kubelet.key"))
            .arg(token_file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the fake kubelet");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the fake kubelet's port");
        FakeKubelet { child, port }
    }
}

impl Kube {
    /// A node whose kubelet listens on 127.0.0.1:`port`.
    fn node(&self, name: &str, port: u16) {
        self.ok_in(
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"
            )),
        );
        let status = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"{name}"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
        );
        self.ok(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
    }

    fn bound_pod(&self, yaml: &str, name: &str, node: &str) {
        self.ok_in(&["create", "-f", "-"], Some(yaml));
        let b = format!(
            r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{name}"}},"target":{{"kind":"Node","name":"{node}"}}}}"#
        );
        self.ok_in(
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{name}/binding"),
                "-f",
                "-",
            ],
            Some(&b),
        );
    }
}

/// pods/log, exec and portforward reach the pod's kubelet: its endpoint
/// from the Node, TLS verified against the cluster CA, the kubelet-client
/// token, upstream's kubelet paths; upgrades relayed byte for byte. The
/// kubelet is a stand-in (the real one is another crate): a small HTTPS
/// server that answers with what it received.
fn pod_log_exec_portforward_reach_the_kubelet(k: Kube) {
    let pki = k.root().join("kube/pki");
    let token = pki.join("kubelet-client.token");
    assert_eq!(std::fs::read_to_string(&token).unwrap().trim().len(), 64);
    let ips = ["127.0.0.1".parse().unwrap()];
    let (cert, key) =
        hako_kube_apiserver::certs::issue_kubelet_serving_cert(&pki, "n1", &ips).unwrap();
    let kubelet = FakeKubelet::start(&k.dir().join("n1"), &cert, &key, &token);
    k.node("n1", kubelet.port);
    k.bound_pod(&pod("p").replace("name: c", "name: main"), "p", "n1");

    let logs = k.ok(&["logs", "p", "--tail=3", "--timestamps"]);
    assert_eq!(
        logs,
        "GET /containerLogs/default/p/main?timestamps=true&tailLines=3\nhello from the kubelet\n"
    );
    let out = k.ok(&["exec", "p", "--", "sh", "-c", "echo hi"]);
    assert_eq!(
        out,
        "GET /exec/default/p/main?command=sh&command=-c&command=echo+hi&stdout=true&stderr=true\n"
    );
    // A raw SPDY upgrade (as `kubectl port-forward` starts one): the
    // kubelet's 101 and headers come back, then bytes flow both ways.
    let out = Command::new("python3")
        .args([
            FAKE_KUBELET,
            "upgrade",
            "127.0.0.1",
            k.addr.rsplit_once(':').unwrap().1,
        ])
        .arg(pki.join("ca.crt"))
        .arg(pki.join("token"))
        .arg("/api/v1/namespaces/default/pods/p/portforward?ports=8080&ports=9090")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HTTP/1.1 101 Switching Protocols\nupgrade: SPDY/3.1\nx-stream-protocol-version: portforward.k8s.io\nPOST /portForward/default/p?ports=8080&ports=9090\necho: ping\n"
    );

    // Container choice: several containers need a name (or the
    // default-container annotation); a wrong one is named.
    let two = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: two\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n";
    k.bound_pod(two, "two", "n1");
    let err = k.fails_in(
        &["get", "--raw", "/api/v1/namespaces/default/pods/two/log"],
        None,
    );
    assert!(
        err.contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{err}"
    );
    let err = k.fails_in(&["logs", "two", "-c", "zz"], None);
    one_line(&err);
    assert!(
        err.contains("container zz is not valid for pod two"),
        "{err}"
    );
    k.ok(&[
        "annotate",
        "pod",
        "two",
        "kubectl.kubernetes.io/default-container=b",
    ]);
    let logs = k.ok(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"]);
    assert!(
        logs.starts_with("GET /containerLogs/default/two/b\n"),
        "{logs}"
    );

    // A pod no node runs: no logs yet, nothing to exec in.
    k.ok_in(&["create", "-f", "-"], Some(&pod("idle")));
    assert_eq!(k.ok(&["logs", "idle"]), "");
    let err = k.fails_in(&["exec", "idle", "--", "true"], None);
    assert!(
        err.contains("pod idle does not have a host assigned"),
        "{err}"
    );

    // A kubelet whose certificate another CA signed is not trusted.
    let other = k.dir().join("other-pki");
    hako_kube_apiserver::certs::Pki::load_or_create(&other).unwrap();
    let (cert, key) =
        hako_kube_apiserver::certs::issue_kubelet_serving_cert(&other, "n2", &ips).unwrap();
    let rogue = FakeKubelet::start(&k.dir().join("n2"), &cert, &key, &token);
    k.node("n2", rogue.port);
    k.bound_pod(&pod("q"), "q", "n2");
    let err = k.fails_in(&["logs", "q"], None);
    one_line(&err);
    assert!(
        err.contains("error dialing backend") && err.contains("TLS"),
        "{err}"
    );
}

fn service(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: web}}\n  ports:\n  - port: 80\n{extra}"
    )
}

/// Cluster IPs from the service CIDR without collisions, requested ones
/// checked, released on delete, headless; node ports; immutable clusterIP.
fn service_cluster_ips_and_node_ports(k: Kube) {
    let ip_of = |name: &str| k.ok(&["get", "service", name, "-o", "jsonpath={.spec.clusterIP}"]);
    k.ok_in(&["create", "-f", "-"], Some(&service("s1", "")));
    let ip1 = ip_of("s1");
    assert!(ip1.starts_with("10.43."), "{ip1}");
    // The same IP, asked for by another: refused; outside the range: refused.
    let err = k.fails_in(
        &["create", "-f", "-"],
        Some(&service("s2", &format!("  clusterIP: {ip1}\n"))),
    );
    one_line(&err);
    assert!(
        err.contains(&format!(r#"The Service "s2" is invalid: spec.clusterIPs[0]: Invalid value: "{ip1}": failed to allocate IP {ip1}: provided IP is already allocated"#)),
        "{err}"
    );
    let err = k.fails_in(
        &["create", "-f", "-"],
        Some(&service("s2", "  clusterIP: 10.0.0.9\n")),
    );
    assert!(
        err.contains(
            "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16"
        ),
        "{err}"
    );
    // Once s1 is gone its IP is free again.
    k.ok(&["delete", "service", "s1"]);
    k.ok_in(
        &["create", "-f", "-"],
        Some(&service("s2", &format!("  clusterIP: {ip1}\n"))),
    );
    assert_eq!(ip_of("s2"), ip1);
    // Headless.
    k.ok_in(
        &["create", "-f", "-"],
        Some(&service("h", "  clusterIP: None\n")),
    );
    assert_eq!(
        k.ok(&[
            "get",
            "service",
            "h",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.clusterIPs}"
        ]),
        r#"None ["None"]"#
    );
    // The cluster IP may not change; a replace that leaves it out keeps it.
    let err = k.fails_in(
        &[
            "patch",
            "service",
            "s2",
            "--type=merge",
            "-p",
            r#"{"spec":{"clusterIP":"10.43.9.9","clusterIPs":["10.43.9.9"]}}"#,
        ],
        None,
    );
    one_line(&err);
    assert!(
        err.contains(
            "spec.clusterIPs[0]: Invalid value: []string{\"10.43.9.9\"}: may not change once set"
        ),
        "{err}"
    );
    k.ok_in(
        &["replace", "-f", "-"],
        Some(&service("s2", "  sessionAffinity: ClientIP\n")),
    );
    assert_eq!(ip_of("s2"), ip1);

    // NodePort: allocated in 30000-32767, a taken one refused, kept on
    // update, released on delete.
    k.ok_in(
        &["create", "-f", "-"],
        Some(&service("np", "  type: NodePort\n")),
    );
    let port: u16 = k
        .ok(&[
            "get",
            "service",
            "np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    let fixed = |name: &str, p: u16| {
        service(name, "  type: NodePort\n").replace(
            "  - port: 80\n",
            &format!("  - port: 80\n    nodePort: {p}\n"),
        )
    };
    let err = k.fails_in(&["create", "-f", "-"], Some(&fixed("np2", port)));
    assert!(
        err.contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
        )),
        "{err}"
    );
    let err = k.fails_in(&["create", "-f", "-"], Some(&fixed("np2", 8080)));
    assert!(
        err.contains(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ),
        "{err}"
    );
    k.ok(&["label", "service", "np", "touched=yes"]);
    assert_eq!(
        k.ok(&[
            "get",
            "service",
            "np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        port.to_string()
    );
    k.ok(&["delete", "service", "np"]);
    k.ok_in(&["create", "-f", "-"], Some(&fixed("np2", port)));
    let svc = k.ok(&["get", "service", "np2"]);
    assert!(svc.contains(&format!("80:{port}/TCP")), "{svc}");
}

/// Per-kind validation kubectl users hit, with upstream's messages, and
/// immutable fields; the store is unchanged by a refused write.
fn kind_validation_and_immutable_fields(k: Kube) {
    let rev = k.revision();
    let err = k.fails_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n"),
    );
    one_line(&err);
    assert!(
        err.contains(r#"The Pod "p" is invalid: spec.containers: Required value"#),
        "{err}"
    );
    let err = k.fails_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: a\n  - image: x\n"),
    );
    // kubectl lists several causes one per line.
    assert_eq!(
        err,
        "The Pod \"p\" is invalid: \n* spec.containers[1].name: Duplicate value: \"a\"\n* spec.containers[1].image: Required value\n* spec.containers[2].name: Required value\n"
    );
    let mismatched = APP.split("---\n").nth(1).unwrap().replace(
        "    metadata:\n      labels: {app: web}",
        "    metadata:\n      labels: {app: other}",
    );
    let err = k.fails_in(&["apply", "-f", "-"], Some(&mismatched));
    one_line(&err);
    assert!(
        err.contains(r#"The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#),
        "{err}"
    );
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";
    let err = k.fails_in(&["create", "-f", "-"], Some(job));
    assert!(
        err.contains(r#"The Job "j" is invalid: spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#),
        "{err}"
    );
    assert_eq!(k.revision(), rev);

    // A Job's selector is generated from its uid, its template labelled.
    k.ok_in(
        &["create", "-f", "-"],
        Some(&job.replace(
            "    spec:\n      containers",
            "    spec:\n      restartPolicy: Never\n      containers",
        )),
    );
    let j: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "job", "j", "-o", "json"])).unwrap();
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
    assert_eq!(j["spec"]["backoffLimit"], 6);
    assert_eq!(j["spec"]["completions"], 1);

    // Immutable: a Deployment's selector, a Job's template, an immutable ConfigMap.
    k.ok_in(&["apply", "-f", "-"], Some(APP));
    let err = k.fails_in(
        &["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"web","v":"2"}},"template":{"metadata":{"labels":{"v":"2"}}}}}"#],
        None,
    );
    one_line(&err);
    assert!(
        err.contains(r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#),
        "{err}"
    );
    let err = k.fails_in(&["set", "image", "job/j", "c=busybox:1.36"], None);
    assert!(
        err.contains("spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"),
        "{err}"
    );
    k.ok_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  a: b\n"),
    );
    let err = k.fails_in(
        &[
            "patch",
            "configmap",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"c"}}"#,
        ],
        None,
    );
    one_line(&err);
    assert!(
        err.contains(r#"ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set"#),
        "{err}"
    );
    // Labels of an immutable ConfigMap may still change.
    k.ok(&["label", "configmap", "frozen", "x=y"]);
    // A Secret's stringData is stored as data.
    k.ok_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  user: admin\n"),
    );
    assert_eq!(
        k.ok(&[
            "get",
            "secret",
            "s",
            "-o",
            "jsonpath={.data.user} {.stringData}"
        ]),
        "YWRtaW4= "
    );
}

/// Each of these runs on both stores: `sqlite::NAME` and `etcd::NAME`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::api(&[])) } )*
        }
        mod etcd {
            $( #[test] fn $name() { super::$name(super::api_etcd()) } )*
        }
    };
}

on_both_stores!(
    kubectl_apply_multi_doc_get_and_reapply_edit,
    kubectl_label_annotate_and_each_patch_type,
    kubectl_get_watch_sees_added_modified_deleted,
    bad_input_gets_one_line_errors_and_changes_nothing,
    dry_run_server_generate_name_pagination_and_namespace_termination,
    pod_binding_graceful_deletion_and_eviction,
    service_cluster_ips_and_node_ports,
    kind_validation_and_immutable_fields,
    kubectl_create_generators_send_protobuf,
    kubectl_apply_server_side_conflict_and_force,
    kubectl_describe_columns_finalizers_and_delete_policies,
    watch_resumes_from_a_resource_version_and_ends_with_a_bookmark,
    killed_server_keeps_acknowledged_writes,
);
