//! RBAC of `hako kube up`, driven by the real kubectl: users from client
//! certificates signed by the cluster CA (`hako kube kubeconfig --user
//! --group`), 403s worded as upstream, Roles and bindings, `kubectl auth
//! can-i` (`--list`, `--as`), `kubectl auth whoami`, impersonation,
//! escalation prevention and the identities of the control plane's
//! components. No node runs: the API server alone is exercised.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod kube_common;
use kube_common::Kube;

/// The API server and the controllers (whose identity one test checks).
const FLAGS: &[&str] = &[
    "--disable-proxy",
    "--disable-agent",
    "--disable-scheduler",
    "--disable-ingress",
];

fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache.join("kube-cache"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A user of the cluster with a client certificate from `hako kube kubeconfig`.
struct User<'a> {
    k: &'a Kube,
    kubeconfig: PathBuf,
}

impl<'a> User<'a> {
    fn new(k: &'a Kube, name: &str, groups: &[&str]) -> User<'a> {
        let mut cmd = Command::new(kube_common::hako());
        cmd.arg("--root")
            .arg(k.root())
            .args(["kube", "kubeconfig", "--user", name]);
        for g in groups {
            cmd.args(["--group", g]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "hako kube kubeconfig --user {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = k.dir().join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, &out.stdout).unwrap();
        User { k, kubeconfig }
    }

    fn component(k: &'a Kube, name: &str) -> User<'a> {
        User {
            k,
            kubeconfig: k.root().join(format!("kube/{name}.kubeconfig")),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl(&self.kubeconfig, self.k.dir(), args, stdin)
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.run(args, None), args)
    }

    /// The one-line error of a refused command.
    fn refused(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have been refused: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    }

    /// `kubectl auth can-i` (exit 0 "yes", 1 "no").
    fn can_i(&self, args: &[&str]) -> bool {
        let mut a = vec!["auth", "can-i"];
        a.extend(args);
        let out = self.run(&a, None);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match (out.status.code(), text.as_str()) {
            (Some(0), "yes") => true,
            (Some(1), "no") => false,
            _ => panic!(
                "kubectl {a:?}: unexpected answer {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    fn whoami(&self) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["auth", "whoami", "-o", "json"])).unwrap();
        v["status"]["userInfo"].clone()
    }
}

const TEAM: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team}
rules:
- apiGroups: ['']
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: ['']
  resources: [configmaps]
  verbs: [create, get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: team}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
roleRef: {kind: Role, name: pod-reader, apiGroup: rbac.authorization.k8s.io}
";

#[test]
fn a_certificate_user_is_forbidden_until_a_role_binding_allows_one_namespace() {
    let k = Kube::up(FLAGS);
    let alice = User::new(&k, "alice", &["devs"]);
    let who = alice.whoami();
    assert_eq!(who["username"], "alice");
    assert_eq!(
        who["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    let admin_who: Value = serde_json::from_str(&k.ok(&["auth", "whoami", "-o", "json"])).unwrap();
    assert!(admin_who["status"]["userInfo"]["groups"]
        .as_array()
        .unwrap()
        .contains(&"system:masters".into()));

    // Before any binding: discovery works (system:discovery), pods do not.
    let err = alice.refused(&["get", "pods", "-n", "team"], None);
    assert!(
        err.ends_with(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team""#
        ),
        "{err}"
    );
    let err = alice.refused(&["get", "nodes"], None);
    assert!(
        err.ends_with(
            r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
        ),
        "{err}"
    );

    k.apply(TEAM);
    let out = alice.run(&["get", "pods", "-n", "team"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("No resources found in team namespace"));
    let err = alice.refused(&["get", "pods", "-n", "other"], None);
    assert!(err.contains(r#"in the namespace "other""#), "{err}");
    alice.ok(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "team",
        "--from-literal=a=b",
    ]);
    let err = alice.refused(&["delete", "configmap", "c1", "-n", "team"], None);
    assert!(
        err.ends_with(
            r#"configmaps "c1" is forbidden: User "alice" cannot delete resource "configmaps" in API group "" in the namespace "team""#
        ),
        "{err}"
    );
    k.ok(&["get", "configmap", "c1", "-n", "team"]);

    // can-i, for herself and (admin) --as her.
    assert!(alice.can_i(&["list", "pods", "-n", "team"]));
    assert!(alice.can_i(&["create", "configmaps", "-n", "team"]));
    assert!(!alice.can_i(&["delete", "pods", "-n", "team"]));
    assert!(!alice.can_i(&["list", "pods", "-n", "other"]));
    assert!(!alice.can_i(&["get", "pods", "--subresource=log", "-n", "team"]));
    let list = alice.ok(&["auth", "can-i", "--list", "-n", "team"]);
    let pods = list
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods line in {list}"));
    assert!(pods.contains("[get list watch]"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("selfsubjectaccessreviews.authorization.k8s.io")),
        "{list}"
    );
    assert!(list.lines().any(|l| l.contains("/version")), "{list}");
    assert!(!k
        .ok(&["auth", "can-i", "--list", "-n", "other", "--as", "alice"])
        .contains("pods "));
    let admin = User {
        k: &k,
        kubeconfig: k.kubeconfig(),
    };
    assert!(admin.can_i(&["list", "pods", "-n", "team", "--as", "alice"]));
    assert!(!admin.can_i(&["list", "pods", "-n", "team", "--as", "bob"]));
    assert!(admin.can_i(&["delete", "nodes"]));

    // Impersonation needs the impersonate verb.
    let err = alice.refused(&["get", "pods", "-n", "team", "--as", "bob"], None);
    assert!(
        err.ends_with(
            r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
        "{err}"
    );
    let bob_sees: Value = serde_json::from_str(&k.ok(&[
        "auth",
        "whoami",
        "-o",
        "json",
        "--as",
        "bob",
        "--as-group",
        "devs",
    ]))
    .unwrap();
    assert_eq!(bob_sees["status"]["userInfo"]["username"], "bob");
    assert_eq!(
        bob_sees["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
}

#[test]
fn role_and_binding_writes_cannot_escalate() {
    let k = Kube::up(FLAGS);
    let alice = User::new(&k, "alice", &[]);
    k.apply(TEAM);
    // alice may manage roles and bindings in team, and bind the view role.
    k.apply(
        "
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rbac-manager, namespace: team}
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, get, list, update, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  verbs: [bind]
  resourceNames: [view]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-manages, namespace: team}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
roleRef: {kind: Role, name: rbac-manager, apiGroup: rbac.authorization.k8s.io}
",
    );
    let role = |name: &str, verbs: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}, namespace: team}}
rules:
- apiGroups: ['']
  resources: [pods]
  verbs: [{verbs}]
"
        )
    };
    // A role within what she holds is fine; one beyond it is refused.
    alice.ok(&["auth", "can-i", "create", "roles", "-n", "team"]);
    let out = alice.run(&["apply", "-f", "-"], Some(&role("readers", "get, list")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = alice.refused(
        &["apply", "-f", "-"],
        Some(&role("deleters", "get, delete")),
    );
    assert!(
        err.contains(r#"roles.rbac.authorization.k8s.io "deleters" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held: {APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#),
        "{err}"
    );
    assert!(!k.ok(&["get", "roles", "-n", "team"]).contains("deleters"));
    // Binding cluster-admin is refused; view is allowed by the bind verb
    // although she does not hold its rules; her own role's rules she may grant.
    let bind = |name: &str, kind: &str, role: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}, namespace: team}}
subjects:
- {{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}}
roleRef: {{kind: {kind}, name: {role}, apiGroup: rbac.authorization.k8s.io}}
"
        )
    };
    let err = alice.refused(
        &["apply", "-f", "-"],
        Some(&bind("bob-admin", "ClusterRole", "cluster-admin")),
    );
    assert!(
        err.contains(
            r#"rolebindings.rbac.authorization.k8s.io "bob-admin" is forbidden: user "alice""#
        ) && err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let out = alice.run(
        &["apply", "-f", "-"],
        Some(&bind("bob-views", "ClusterRole", "view")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = alice.run(
        &["apply", "-f", "-"],
        Some(&bind("bob-reads", "Role", "readers")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = User {
        k: &k,
        kubeconfig: k.kubeconfig(),
    };
    assert!(admin.can_i(&["list", "deployments.apps", "-n", "team", "--as", "bob"]));
    assert!(!admin.can_i(&["list", "secrets", "-n", "team", "--as", "bob"]));
    assert!(!admin.can_i(&["list", "deployments.apps", "-n", "other", "--as", "bob"]));
}

#[test]
fn bootstrap_roles_exist_and_components_run_as_their_own_users() {
    let k = Kube::up(FLAGS);
    let names = k.ok(&["get", "clusterroles", "-o", "name"]);
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node-proxier",
    ] {
        assert!(
            names
                .lines()
                .any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{r}")),
            "no ClusterRole {r} in {names}"
        );
    }
    let bindings = k.ok(&["get", "clusterrolebindings", "-o", "name"]);
    assert!(bindings.contains("clusterrolebinding.rbac.authorization.k8s.io/cluster-admin"));
    let proxy = User::component(&k, "kube-proxy");
    assert_eq!(proxy.whoami()["username"], "system:kube-proxy");
    assert!(proxy.can_i(&["watch", "endpointslices.discovery.k8s.io", "-A"]));
    assert!(!proxy.can_i(&["get", "secrets", "-n", "default"]));
    let cm = User::component(&k, "controller-manager");
    assert_eq!(cm.whoami()["username"], "system:kube-controller-manager");
    assert!(cm.can_i(&["delete", "pods", "-n", "default"]));
    let sched = User::component(&k, "scheduler");
    assert_eq!(sched.whoami()["username"], "system:kube-scheduler");
    assert!(sched.can_i(&["create", "pods", "--subresource=binding", "-n", "default"]));
    assert!(!sched.can_i(&["create", "secrets", "-n", "default"]));
    // view aggregates the roles labelled aggregate-to-view.
    let view = k.ok(&["get", "clusterrole", "view", "-o", "json"]);
    assert!(view.contains("aggregationRule"), "{view}");
}

const NODE_OBJECTS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: s-mine}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: s-env}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: s-other}
stringData: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-mine}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-other}
data: {k: v}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim-mine}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim-other}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: p1}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox
    env:
    - name: X
      valueFrom: {secretKeyRef: {name: s-env, key: k}}
  volumes:
  - {name: s, secret: {secretName: s-mine}}
  - name: p
    projected: {sources: [{configMap: {name: cm-mine}}]}
  - {name: d, persistentVolumeClaim: {claimName: claim-mine}}
---
apiVersion: v1
kind: Pod
metadata: {name: p2}
spec:
  nodeName: n2
  containers: [{name: c, image: busybox, envFrom: [{configMapRef: {name: cm-other}}]}]
  volumes:
  - {name: s, secret: {secretName: s-other}}
  - {name: d, persistentVolumeClaim: {claimName: claim-other}}
"#;

#[test]
fn a_kubelet_reads_only_what_its_nodes_pods_refer_to() {
    let k = Kube::up(kube_common::API_ONLY);
    k.apply(NODE_OBJECTS);
    // The credentials `hako kube node` gives its kubelet.
    let n1 = User::new(&k, "system:node:n1", &["system:nodes"]);
    for (kind, name) in [
        ("secret", "s-mine"),
        ("secret", "s-env"),
        ("configmap", "cm-mine"),
        ("pvc", "claim-mine"),
    ] {
        n1.ok(&["get", kind, name]);
    }
    for (kind, plural, name) in [
        ("secret", "secrets", "s-other"),
        ("configmap", "configmaps", "cm-other"),
        ("pvc", "persistentvolumeclaims", "claim-other"),
    ] {
        assert_eq!(
            n1.refused(&["get", kind, name], None),
            format!(
                r#"Error from server (Forbidden): {plural} "{name}" is forbidden: User "system:node:n1" cannot get resource "{plural}" in API group "" in the namespace "default""#
            )
        );
    }
    // Never all of them at once.
    assert!(n1
        .refused(&["get", "secrets"], None)
        .contains(r#"cannot list resource "secrets""#),);
    // The other node sees its own pod's objects, not n1's.
    let n2 = User::new(&k, "system:node:n2", &["system:nodes"]);
    n2.ok(&["get", "secret", "s-other"]);
    n2.ok(&["get", "configmap", "cm-other"]);
    assert!(n2
        .refused(&["get", "secret", "s-mine"], None)
        .contains("forbidden"));
    // The kubelet's other rights stay RBAC's: its pods and nodes.
    n1.ok(&["get", "pods"]);
    // A pod moving to n1 (deleted on n2, made again on n1) brings its secret.
    k.ok(&["delete", "pod", "p2", "--grace-period=0", "--force"]);
    k.apply(
        &NODE_OBJECTS[NODE_OBJECTS.rfind("---").unwrap()..].replace("nodeName: n2", "nodeName: n1"),
    );
    n1.ok(&["get", "secret", "s-other"]);
    assert!(n2
        .refused(&["get", "secret", "s-other"], None)
        .contains("forbidden"));
    // The name alone does not make a node: without the group, plain RBAC.
    let fake = User::new(&k, "system:node:n3", &[]);
    assert!(fake
        .refused(&["get", "secret", "s-mine"], None)
        .contains("forbidden"));
}
