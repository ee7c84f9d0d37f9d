//! The workload controllers of `hako kube up`, driven by the real kubectl.
//! Each test starts `hako --root TMP kube up --addr 127.0.0.1:0` (killed on
//! drop, also when the test fails). No kubelet runs pods here: the tests
//! stand in for it by writing pod status through the status subresource, as
//! upstream's controller integration tests do; pods carry a nodeSelector no
//! node matches, so a scheduler (when one runs) leaves them alone.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

mod kube_common;

use kube_common::Kube;

impl Kube {
    /// Play the kubelet for one pod: phase and Ready condition.
    fn set_pod_status(&self, ns: &str, name: &str, phase: &str, ready: bool) {
        let now = chrono_now();
        let status = json!({"status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                             "lastTransitionTime": now}],
        }});
        let out = self.run(
            &[
                "patch",
                "pod",
                name,
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        );
        // The pod may be gone already (a controller deleted it).
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
    }

    /// A background "kubelet" marking every pod of `ns` Running and Ready
    /// (except those labelled `stuck`) and finishing graceful deletions;
    /// stops when dropped.
    fn kubelet(self: &Arc<Self>, ns: &str) -> FakeKubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let (k, s, ns) = (self.clone(), stop.clone(), ns.to_string());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for p in k.items(&["get", "pods", "-n", &ns]) {
                    let ready = p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    let stuck = p["metadata"]["labels"]["stuck"].is_string();
                    let deleting = p["metadata"]["deletionTimestamp"].is_string();
                    if deleting {
                        // What a kubelet does once the containers are stopped
                        // (pods bound to a node are deleted gracefully).
                        let name = p["metadata"]["name"].as_str().unwrap();
                        let _ = k.run(
                            &[
                                "delete",
                                "pod",
                                name,
                                "-n",
                                &ns,
                                "--grace-period=0",
                                "--force",
                                "--wait=false",
                            ],
                            None,
                        );
                    } else if !ready && !stuck {
                        let name = p["metadata"]["name"].as_str().unwrap();
                        k.set_pod_status(&ns, name, "Running", true);
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        FakeKubelet {
            stop,
            handle: Some(handle),
        }
    }
}

struct FakeKubelet {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn chrono_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn name(v: &Value) -> String {
    v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn controller_uid(v: &Value) -> Option<String> {
    v["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
        .map(str::to_string)
}

const UNSCHEDULABLE: &str = "nodeSelector: {hako.test/no-such-node: \"true\"}";

fn replicaset(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      {UNSCHEDULABLE}
      containers: [{{name: c, image: busybox:1.36}}]
"
    )
}

/// Pods of `ns` controlled by the object with `uid`, not being deleted.
fn owned(k: &Kube, ns: &str, uid: &str) -> Vec<Value> {
    k.items(&["get", "pods", "-n", ns])
        .into_iter()
        .filter(|p| controller_uid(p).as_deref() == Some(uid))
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .collect()
}

#[test]
fn replicaset_creates_replaces_adopts_releases_and_reports_status() {
    let k = Arc::new(Kube::up(&[]));
    k.apply(&replicaset("rs1", 3));
    let rs = k.json(&["get", "rs", "rs1"]);
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    let pods = k.wait("3 pods", || {
        let p = owned(&k, "default", &uid);
        (p.len() == 3).then_some(p)
    });
    for p in &pods {
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!(r["kind"], "ReplicaSet");
        assert_eq!(r["name"], "rs1");
        assert_eq!(r["blockOwnerDeletion"], true);
        assert!(name(p).starts_with("rs1-"));
    }
    // Not ready yet: status counts replicas only.
    let st = k.wait("status.replicas 3", || {
        let s = k.json(&["get", "rs", "rs1"])["status"].clone();
        (s["replicas"] == 3).then_some(s)
    });
    assert!(st["readyReplicas"].as_i64().unwrap_or(0) == 0, "{st}");
    for p in &pods {
        k.set_pod_status("default", &name(p), "Running", true);
    }
    k.wait("3 ready and available", || {
        let s = k.json(&["get", "rs", "rs1"])["status"].clone();
        (s["readyReplicas"] == 3 && s["availableReplicas"] == 3 && s["observedGeneration"] == 1)
            .then_some(())
    });
    // A deleted pod is replaced.
    let gone = name(&pods[0]);
    k.ok(&["delete", "pod", &gone]);
    let now = k.wait("a replacement", || {
        let p = owned(&k, "default", &uid);
        (p.len() == 3 && p.iter().all(|p| name(p) != gone)).then_some(p)
    });
    let fresh: Vec<String> = now
        .iter()
        .map(name)
        .filter(|n| pods.iter().all(|p| &name(p) != n))
        .collect();
    assert_eq!(fresh.len(), 1);
    k.set_pod_status("default", &fresh[0], "Running", true);
    k.wait("3 ready again", || {
        (k.json(&["get", "rs", "rs1"])["status"]["readyReplicas"] == 3).then_some(())
    });
    // An orphan that matches is adopted; the set is then one too many and the
    // least valuable pod goes: the adopted one, Pending and not ready.
    k.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: stray, labels: {app: rs1}}
spec:
  nodeSelector: {hako.test/no-such-node: \"true\"}
  containers: [{name: c, image: busybox:1.36}]
",
    );
    k.wait("the stray pod adopted then deleted", || {
        let out = k.run(&["get", "pod", "stray"], None);
        (!out.status.success()).then_some(())
    });
    let after = owned(&k, "default", &uid);
    assert_eq!(after.len(), 3);
    // Relabelling a pod releases it (its owner reference goes) and the set
    // makes a new one.
    let released = name(&after[0]);
    k.ok(&["label", "pod", &released, "app=elsewhere", "--overwrite"]);
    k.wait("the released pod orphaned", || {
        let p = k.json(&["get", "pod", &released]);
        p["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty())
            .then_some(())
    });
    k.wait("3 pods again", || {
        (owned(&k, "default", &uid).len() == 3).then_some(())
    });
    // Scaling down deletes the not-ready pod first.
    let unready: Vec<String> = owned(&k, "default", &uid)
        .iter()
        .filter(|p| p["status"]["phase"] != "Running")
        .map(name)
        .collect();
    assert_eq!(unready.len(), 1, "{unready:?}");
    k.ok(&["scale", "rs", "rs1", "--replicas=2"]);
    let two = k.wait("2 pods", || {
        let p = owned(&k, "default", &uid);
        (p.len() == 2).then_some(p)
    });
    assert!(two.iter().all(|p| name(p) != unready[0]));
    // kubectl describe shows the controller's Events.
    let d = k.ok(&["describe", "rs", "rs1"]);
    assert!(
        d.contains("SuccessfulCreate") && d.contains("SuccessfulDelete"),
        "{d}"
    );
    assert!(d.contains("Created pod: rs1-"), "{d}");
}

fn deployment(name: &str, image: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: {name}}}}}
  {extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      {UNSCHEDULABLE}
      containers: [{{name: web, image: \"{image}\"}}]
"
    )
}

fn replicasets_of(k: &Kube, d: &str) -> Vec<Value> {
    let uid = k.json(&["get", "deployment", d])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    k.items(&["get", "rs"])
        .into_iter()
        .filter(|r| controller_uid(r).as_deref() == Some(uid.as_str()))
        .collect()
}

fn image_of(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn deployment_rolls_one_pod_at_a_time_undo_history_pause_restart() {
    let k = Arc::new(Kube::up(&[]));
    let _kubelet = k.kubelet("default");
    k.apply(&deployment(
        "web",
        "busybox:1.36",
        "strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}",
    ));
    let out = k.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replicasets_of(&k, "web");
    assert_eq!(rss.len(), 1);
    let first = rss[0].clone();
    let hash = first["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(name(&first), format!("web-{hash}"));
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let d = k.json(&["get", "deployment", "web"]);
    let st = &d["status"];
    assert_eq!(
        (
            st["replicas"].as_i64(),
            st["updatedReplicas"].as_i64(),
            st["readyReplicas"].as_i64(),
            st["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3), Some(3), Some(3)),
        "{st}"
    );
    assert_eq!(st["observedGeneration"], d["metadata"]["generation"]);
    let table = k.ok(&["get", "deployment", "web"]);
    assert!(table.contains("3/3"), "{table}");

    // set image: with maxSurge 1 / maxUnavailable 0 the controller moves one
    // pod at a time and never has fewer than 3 ready pods.
    k.ok(&["set", "image", "deployment/web", "web=busybox:1.37"]);
    k.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=to 1.37",
    ]);
    let mut min_ready = usize::MAX;
    let mut max_pods = 0;
    k.wait("the rollout to 1.37", || {
        let pods: Vec<Value> = k
            .items(&["get", "pods"])
            .into_iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
            .collect();
        let ready = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        min_ready = min_ready.min(ready);
        max_pods = max_pods.max(pods.len());
        let d = k.json(&["get", "deployment", "web"]);
        let s = &d["status"];
        (s["updatedReplicas"] == 3
            && s["replicas"] == 3
            && s["availableReplicas"] == 3
            && s["observedGeneration"] == d["metadata"]["generation"])
            .then_some(())
    });
    assert!(min_ready >= 3, "ready pods dropped to {min_ready}");
    assert!(max_pods <= 4, "{max_pods} pods at once with maxSurge 1");
    let out = k.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    // The Events show each step moving one replica.
    let ev = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,reason=ScalingReplicaSet",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    let steps: Vec<&str> = ev.lines().filter(|l| !l.contains("from 0 to 3")).collect();
    assert_eq!(steps.len(), 6, "{ev}");
    for s in &steps {
        let w: Vec<&str> = s.split_whitespace().collect();
        let (from, to): (i64, i64) = (
            w[w.len() - 3].parse().unwrap(),
            w[w.len() - 1].parse().unwrap(),
        );
        assert_eq!((from - to).abs(), 1, "{s}");
    }
    let rss = replicasets_of(&k, "web");
    assert_eq!(rss.len(), 2);
    let new = rss.iter().find(|r| name(r) != name(&first)).unwrap();
    assert_eq!(
        new["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(
        new["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "to 1.37"
    );
    let hist = k.ok(&["rollout", "history", "deployment/web"]);
    assert!(hist.contains("to 1.37"), "{hist}");
    let revs: Vec<&str> = hist
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["1", "2"], "{hist}");

    // undo: back to the first template, on the first ReplicaSet (revision 3).
    k.ok(&["rollout", "undo", "deployment/web"]);
    let out = k.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(
        image_of(&k.json(&["get", "deployment", "web"])),
        "busybox:1.36"
    );
    let back = k.json(&["get", "rs", &name(&first)]);
    assert_eq!(back["spec"]["replicas"], 3);
    assert_eq!(
        back["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(
        k.json(&["get", "deployment", "web"])["metadata"]["annotations"]
            ["deployment.kubernetes.io/revision"],
        "3"
    );

    // pause: template changes make no ReplicaSet until resume.
    k.ok(&["rollout", "pause", "deployment/web"]);
    k.ok(&["set", "image", "deployment/web", "web=busybox:1.38"]);
    k.wait("the paused generation observed", || {
        let d = k.json(&["get", "deployment", "web"]);
        (d["status"]["observedGeneration"] == d["metadata"]["generation"]).then_some(())
    });
    assert_eq!(replicasets_of(&k, "web").len(), 2);
    k.ok(&["scale", "deployment/web", "--replicas=4"]);
    k.wait("4 replicas while paused", || {
        let d = k.json(&["get", "deployment", "web"]);
        (d["status"]["replicas"] == 4 && d["status"]["availableReplicas"] == 4).then_some(())
    });
    k.ok(&["rollout", "resume", "deployment/web"]);
    let out = k.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(replicasets_of(&k, "web").len(), 3);

    // restart: a new ReplicaSet with the restartedAt annotation.
    k.ok(&["rollout", "restart", "deployment/web"]);
    let out = k.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replicasets_of(&k, "web");
    assert_eq!(rss.len(), 4);
    let restarted = rss.iter().find(|r| r["spec"]["replicas"] == 4).unwrap();
    assert!(restarted["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_string());
    let pods = owned(
        &k,
        "default",
        restarted["metadata"]["uid"].as_str().unwrap(),
    );
    assert_eq!(pods.len(), 4);
}

#[test]
fn deployment_recreate_history_limit_and_progress_deadline() {
    let k = Arc::new(Kube::up(&[]));
    let _kubelet = k.kubelet("default");
    k.apply(&deployment(
        "rec",
        "busybox:1.36",
        "strategy: {type: Recreate}\n  revisionHistoryLimit: 1",
    ));
    k.ok(&["rollout", "status", "deployment/rec", "--timeout=90s"]);
    for (i, tag) in ["1.37", "1.38"].iter().enumerate() {
        k.ok(&[
            "set",
            "image",
            "deployment/rec",
            &format!("web=busybox:{tag}"),
        ]);
        let out = k.ok(&["rollout", "status", "deployment/rec", "--timeout=90s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        // Recreate: the old ReplicaSet is at 0, the new one has them all.
        let rss = replicasets_of(&k, "rec");
        let live: Vec<&Value> = rss.iter().filter(|r| r["spec"]["replicas"] != 0).collect();
        assert_eq!(live.len(), 1);
        assert_eq!(image_of(live[0]), format!("busybox:{tag}"));
        // revisionHistoryLimit 1 keeps one old ReplicaSet.
        k.wait("old ReplicaSets cleaned up", || {
            (replicasets_of(&k, "rec").len() == 2.min(i + 2)).then_some(())
        });
    }
    // minReadySeconds reaches the ReplicaSet, which then counts a pod
    // available only after it.
    k.ok(&[
        "patch",
        "deployment",
        "rec",
        "-p",
        r#"{"spec":{"minReadySeconds":1}}"#,
    ]);
    k.wait("minReadySeconds on the ReplicaSet", || {
        replicasets_of(&k, "rec")
            .iter()
            .filter(|r| r["spec"]["replicas"] != 0)
            .all(|r| r["spec"]["minReadySeconds"] == 1)
            .then_some(())
    });
    let ev = k.ok(&["describe", "deployment", "rec"]);
    assert!(ev.contains("Scaled down replica set rec-"), "{ev}");

    // A rollout whose pods never get ready exceeds its deadline, and
    // `rollout status` says so.
    k.apply(
        &deployment("slow", "busybox:1.36", "progressDeadlineSeconds: 3").replace(
            "labels: {app: slow}}",
            "labels: {app: slow, stuck: \"yes\"}}",
        ),
    );
    let out = k.run(
        &["rollout", "status", "deployment/slow", "--timeout=90s"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d = k.json(&["get", "deployment", "slow"]);
    let c = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(c["reason"], "ProgressDeadlineExceeded", "{c}");
    assert_eq!(c["status"], "False");
}

fn gone(k: &Kube, args: &[&str]) -> bool {
    let out = k.run(args, None);
    let err = String::from_utf8_lossy(&out.stderr);
    !out.status.success() && (err.contains("NotFound") || err.contains("not found"))
}

#[test]
fn deleting_a_deployment_collects_its_replicasets_and_pods() {
    let k = Arc::new(Kube::up(&[]));
    k.apply(&deployment("gcweb", "busybox:1.36", ""));
    let rs = k.wait("a ReplicaSet", || replicasets_of(&k, "gcweb").pop());
    let rs_uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    k.wait("3 pods", || {
        (owned(&k, "default", &rs_uid).len() == 3).then_some(())
    });
    // kubectl's default cascade is background: the Deployment goes at once,
    // the collector then deletes the ReplicaSet, then its pods.
    k.ok(&["delete", "deployment", "gcweb"]);
    k.wait("the ReplicaSet collected", || {
        gone(&k, &["get", "rs", &name(&rs)]).then_some(())
    });
    k.wait("the pods collected", || {
        (owned(&k, "default", &rs_uid).is_empty()).then_some(())
    });
    let left = k.items(&["get", "pods", "-l", "app=gcweb"]);
    assert!(left.is_empty(), "{left:?}");

    // A pod created with an owner that does not exist is collected too.
    k.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: dangling
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: nobody, uid: 6b1c1e2a-0000-4000-8000-000000000001}
spec:
  nodeSelector: {hako.test/no-such-node: \"true\"}
  containers: [{name: c, image: busybox:1.36}]
",
    );
    k.wait("the dangling pod collected", || {
        gone(&k, &["get", "pod", "dangling"]).then_some(())
    });
    // One live owner keeps a dependent: only the dangling reference is dropped.
    k.ok(&["create", "configmap", "owner"]);
    let owner_uid = k.json(&["get", "configmap", "owner"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    k.apply(&format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner_uid}}}
  - {{apiVersion: v1, kind: ConfigMap, name: ghost, uid: 6b1c1e2a-0000-4000-8000-000000000002}}
"
    ));
    k.wait("the dangling reference dropped", || {
        let refs =
            k.json(&["get", "configmap", "dependent"])["metadata"]["ownerReferences"].clone();
        (refs.as_array().map(Vec::len) == Some(1)).then_some(refs)
    });
    k.ok(&["delete", "configmap", "owner"]);
    k.wait("the dependent collected", || {
        gone(&k, &["get", "configmap", "dependent"]).then_some(())
    });

    // Orphan: the Deployment goes, its ReplicaSet stays without an owner
    // reference, with its pods.
    k.apply(&deployment("kept", "busybox:1.36", ""));
    let rs = k.wait("a ReplicaSet", || replicasets_of(&k, "kept").pop());
    let rs_uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    k.wait("3 pods", || {
        (owned(&k, "default", &rs_uid).len() == 3).then_some(())
    });
    k.ok(&["delete", "deployment", "kept", "--cascade=orphan"]);
    k.wait("the Deployment gone", || {
        gone(&k, &["get", "deployment", "kept"]).then_some(())
    });
    let orphan = k.json(&["get", "rs", &name(&rs)]);
    assert!(
        orphan["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{orphan}"
    );
    assert_eq!(owned(&k, "default", &rs_uid).len(), 3);

    // Foreground: the Deployment waits (deletionTimestamp, foregroundDeletion)
    // until its ReplicaSet and pods are gone, so once it is gone they are too.
    k.apply(&deployment("fg", "busybox:1.36", ""));
    let rs = k.wait("a ReplicaSet", || replicasets_of(&k, "fg").pop());
    let rs_uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    k.wait("3 pods", || {
        (owned(&k, "default", &rs_uid).len() == 3).then_some(())
    });
    k.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    k.wait("the Deployment gone", || {
        gone(&k, &["get", "deployment", "fg"]).then_some(())
    });
    assert!(gone(&k, &["get", "rs", &name(&rs)]));
    assert!(k.items(&["get", "pods", "-l", "app=fg"]).is_empty());
}

#[test]
fn deleting_a_namespace_deletes_its_contents_then_itself() {
    let k = Arc::new(Kube::up(&[]));
    k.ok(&["create", "namespace", "doomed"]);
    k.ok_in(
        &["apply", "-n", "doomed", "-f", "-"],
        Some(&replicaset("inner", 2)),
    );
    k.ok(&["create", "configmap", "cfg", "-n", "doomed"]);
    k.wait("2 pods", || {
        (k.items(&["get", "pods", "-n", "doomed"]).len() == 2).then_some(())
    });
    k.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    k.wait("the namespace gone", || {
        gone(&k, &["get", "namespace", "doomed"]).then_some(())
    });
    for kind in ["pods", "replicasets", "configmaps"] {
        let left = k.items(&["get", kind, "-n", "doomed"]);
        assert!(left.is_empty(), "{kind}: {left:?}");
    }
}

fn exists(k: &Kube, args: &[&str]) -> bool {
    k.run(args, None).status.success()
}

fn labels_of(v: &Value, key: &str) -> String {
    v["metadata"]["labels"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: sts}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 1}}
  template:
    metadata: {labels: {app: sts}}
    spec:
      nodeSelector: {hako.test/no-such-node: \"true\"}
      containers: [{name: c, image: \"busybox:1.36\"}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
";

#[test]
fn statefulset_orders_pods_keeps_claims_and_rolls_by_partition() {
    let k = Arc::new(Kube::up(&[]));
    k.apply(STATEFULSET);
    k.wait("web-0", || {
        k.run(&["get", "pod", "web-0", "-o", "json"], None)
            .status
            .success()
            .then_some(())
    });
    // web-1 waits for web-0 to be Running and Ready: once the controller has
    // reported web-0, web-1 still does not exist.
    k.wait("status with web-0", || {
        let s = k.json(&["get", "sts", "web"])["status"].clone();
        (s["replicas"] == 1 && s["observedGeneration"] == 1).then_some(())
    });
    assert!(!exists(&k, &["get", "pod", "web-1"]));
    let p0 = k.json(&["get", "pod", "web-0"]);
    assert_eq!(p0["spec"]["hostname"], "web-0");
    assert_eq!(p0["spec"]["subdomain"], "web");
    assert_eq!(
        labels_of(&p0, "statefulset.kubernetes.io/pod-name"),
        "web-0"
    );
    assert_eq!(labels_of(&p0, "apps.kubernetes.io/pod-index"), "0");
    let vol = p0["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .cloned()
        .unwrap();
    assert_eq!(vol["persistentVolumeClaim"]["claimName"], "data-web-0");
    assert!(exists(&k, &["get", "pvc", "data-web-0"]));
    k.set_pod_status("default", "web-0", "Running", true);
    k.wait("web-1", || {
        exists(&k, &["get", "pod", "web-1"]).then_some(())
    });
    assert!(exists(&k, &["get", "pvc", "data-web-1"]));
    k.set_pod_status("default", "web-1", "Running", true);
    let st = k.wait("2 ready", || {
        let s = k.json(&["get", "sts", "web"])["status"].clone();
        (s["readyReplicas"] == 2 && s["currentRevision"] == s["updateRevision"]).then_some(s)
    });
    let rev1 = st["updateRevision"].as_str().unwrap().to_string();
    assert_eq!(
        labels_of(
            &k.json(&["get", "pod", "web-1"]),
            "controller-revision-hash"
        ),
        rev1
    );
    let out = k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        out.contains("partitioned roll out complete") || out.contains("roll out complete"),
        "{out}"
    );

    // RollingUpdate with partition 1: only web-1 moves to the new revision.
    let _kubelet = k.kubelet("default");
    k.ok(&["set", "image", "sts/web", "c=busybox:1.37"]);
    let st = k.wait("web-1 updated", || {
        let s = k.json(&["get", "sts", "web"])["status"].clone();
        (s["updateRevision"] != rev1.as_str()
            && s["updatedReplicas"] == 1
            && s["readyReplicas"] == 2)
            .then_some(s)
    });
    let rev2 = st["updateRevision"].as_str().unwrap().to_string();
    assert_eq!(st["currentRevision"], rev1.as_str());
    assert_eq!(
        labels_of(
            &k.json(&["get", "pod", "web-0"]),
            "controller-revision-hash"
        ),
        rev1
    );
    assert_eq!(
        image_of_pod(&k.json(&["get", "pod", "web-1"])),
        "busybox:1.37"
    );
    let revs = k.items(&["get", "controllerrevisions", "-l", "app=sts"]);
    assert_eq!(revs.len(), 2, "{revs:?}");
    // Partition 0: web-0 follows, and the update revision becomes current.
    k.ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    k.wait("web-0 updated", || {
        let s = k.json(&["get", "sts", "web"])["status"].clone();
        (s["updatedReplicas"] == 2
            && s["currentRevision"] == rev2.as_str()
            && s["readyReplicas"] == 2)
            .then_some(())
    });
    assert_eq!(
        image_of_pod(&k.json(&["get", "pod", "web-0"])),
        "busybox:1.37"
    );
    let out = k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(out.contains("roll out complete"), "{out}");
    // Scaling down removes the highest ordinal; its claim stays.
    k.ok(&["scale", "sts", "web", "--replicas=1"]);
    k.wait("web-1 gone", || {
        (!exists(&k, &["get", "pod", "web-1"])).then_some(())
    });
    assert!(exists(&k, &["get", "pod", "web-0"]));
    assert!(exists(&k, &["get", "pvc", "data-web-1"]));
    // Parallel: every pod at once, none waiting for another to be ready.
    drop(_kubelet);
    k.apply(
        &STATEFULSET
            .replace("name: web}", "name: par}")
            .replace("app: sts", "app: par")
            .replace(
                "replicas: 2",
                "replicas: 3\n  podManagementPolicy: Parallel",
            ),
    );
    k.wait("3 parallel pods", || {
        (["par-0", "par-1", "par-2"]
            .iter()
            .all(|p| exists(&k, &["get", "pod", p])))
        .then_some(())
    });
    let d = k.ok(&["describe", "sts", "web"]);
    assert!(
        d.contains("create Pod web-0 in StatefulSet web successful"),
        "{d}"
    );
}

fn image_of_pod(p: &Value) -> String {
    p["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

const NODES: &str = "apiVersion: v1
kind: Node
metadata: {name: hako-test-a, labels: {disk: ssd}}
---
apiVersion: v1
kind: Node
metadata: {name: hako-test-b, labels: {disk: ssd}}
spec:
  taints: [{key: dedicated, value: x, effect: NoSchedule}]
---
apiVersion: v1
kind: Node
metadata: {name: hako-test-c}
";

fn daemon_nodes(k: &Kube) -> Vec<String> {
    let mut v: Vec<String> = k
        .items(&["get", "pods", "-l", "app=agent"])
        .iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .map(|p| {
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn daemonset_runs_one_pod_per_eligible_node_and_rolls() {
    let k = Arc::new(Kube::up(&[]));
    k.apply(NODES);
    k.apply(
        "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: c, image: \"busybox:1.36\"}]
",
    );
    // Node a only: b's taint is not tolerated, c has no disk=ssd.
    k.wait("one pod on node a", || {
        (daemon_nodes(&k) == ["hako-test-a"]).then_some(())
    });
    let pod = k.items(&["get", "pods", "-l", "app=agent"]).remove(0);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    let tols = pod["spec"]["tolerations"].to_string();
    assert!(tols.contains("node.kubernetes.io/unschedulable"), "{tols}");
    k.wait("status", || {
        let s = k.json(&["get", "ds", "agent"])["status"].clone();
        (s["desiredNumberScheduled"] == 1 && s["currentNumberScheduled"] == 1).then_some(())
    });
    // Tolerating the taint adds node b.
    k.ok(&[
        "patch", "ds", "agent", "--type=merge", "-p",
        r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]}}}}"#,
    ]);
    let _kubelet = k.kubelet("default");
    k.wait("pods on a and b", || {
        (daemon_nodes(&k) == ["hako-test-a", "hako-test-b"]).then_some(())
    });
    let out = k.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    // A new image rolls through both nodes.
    k.ok(&["set", "image", "ds/agent", "c=busybox:1.37"]);
    let out = k.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = k.items(&["get", "pods", "-l", "app=agent"]);
    let live: Vec<&Value> = pods
        .iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|p| image_of_pod(p) == "busybox:1.37"));
    let s = k.json(&["get", "ds", "agent"])["status"].clone();
    assert_eq!(
        (
            s["updatedNumberScheduled"].as_i64(),
            s["numberAvailable"].as_i64()
        ),
        (Some(2), Some(2)),
        "{s}"
    );
    assert!(k.items(&["get", "controllerrevisions"]).len() >= 2);
    // A node that stops matching loses its pod.
    k.ok(&["label", "node", "hako-test-a", "disk=hdd", "--overwrite"]);
    k.wait("only node b", || {
        (daemon_nodes(&k) == ["hako-test-b"]).then_some(())
    });
}

fn job(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  {extra_spec}
  template:
    spec:
      restartPolicy: Never
      {UNSCHEDULABLE}
      containers: [{{name: c, image: \"busybox:1.36\"}}]
"
    )
}

fn job_pods(k: &Kube, name: &str) -> Vec<Value> {
    k.items(&[
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/job-name={name}"),
    ])
}

fn active_pods(k: &Kube, name: &str) -> Vec<Value> {
    job_pods(k, name)
        .into_iter()
        .filter(|p| {
            !p["metadata"]["deletionTimestamp"].is_string()
                && p["status"]["phase"] != "Succeeded"
                && p["status"]["phase"] != "Failed"
        })
        .collect()
}

fn job_condition(k: &Kube, name: &str, t: &str) -> Option<Value> {
    k.json(&["get", "job", name])["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t && c["status"] == "True")
        .cloned()
}

#[test]
fn job_completions_parallelism_backoff_and_indexes() {
    let k = Arc::new(Kube::up(&[]));
    k.apply(&job("three", "completions: 3\n  parallelism: 2"));
    let mut done = 0;
    while done < 3 {
        let active = k.wait("active pods", || {
            let a = active_pods(&k, "three");
            (!a.is_empty()).then_some(a)
        });
        assert!(
            active.len() <= 2,
            "{} active with parallelism 2",
            active.len()
        );
        let p = &active[0];
        assert!(p["metadata"]["finalizers"]
            .to_string()
            .contains("batch.kubernetes.io/job-tracking"));
        k.set_pod_status("default", &name(p), "Succeeded", false);
        done += 1;
        k.wait("the success counted", || {
            (k.json(&["get", "job", "three"])["status"]["succeeded"] == done).then_some(())
        });
    }
    let c = k.wait("Complete", || job_condition(&k, "three", "Complete"));
    assert_eq!(c["reason"], "CompletionsReached");
    assert!(job_condition(&k, "three", "SuccessCriteriaMet").is_some());
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=30s",
    ]);
    let st = k.json(&["get", "job", "three"])["status"].clone();
    assert!(
        st["completionTime"].is_string() && st["startTime"].is_string(),
        "{st}"
    );
    // Counted pods lose the tracking finalizer.
    k.wait("finalizers removed", || {
        job_pods(&k, "three")
            .iter()
            .all(|p| {
                !p["metadata"]["finalizers"]
                    .to_string()
                    .contains("job-tracking")
            })
            .then_some(())
    });
    assert_eq!(job_pods(&k, "three").len(), 3);

    // A failing Job stops at its backoffLimit (one retry after the back-off).
    k.apply(&job("failing", "backoffLimit: 1"));
    for n in 1..=2 {
        let p = k.wait("a pod to fail", || active_pods(&k, "failing").pop());
        k.set_pod_status("default", &name(&p), "Failed", false);
        k.wait("the failure counted", || {
            (k.json(&["get", "job", "failing"])["status"]["failed"] == n).then_some(())
        });
    }
    let c = k.wait("Failed", || job_condition(&k, "failing", "Failed"));
    assert_eq!(c["reason"], "BackoffLimitExceeded");
    assert!(job_condition(&k, "failing", "FailureTarget").is_some());
    assert!(active_pods(&k, "failing").is_empty());
    assert_eq!(job_pods(&k, "failing").len(), 2);
    let d = k.ok(&["describe", "job", "failing"]);
    assert!(d.contains("BackoffLimitExceeded"), "{d}");

    // Indexed: one pod per index, with the annotation and the env variable.
    k.apply(&job(
        "idx",
        "completions: 3\n  parallelism: 3\n  completionMode: Indexed",
    ));
    let pods = k.wait("3 indexed pods", || {
        let a = active_pods(&k, "idx");
        (a.len() == 3).then_some(a)
    });
    let mut idx: Vec<String> = pods
        .iter()
        .map(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    idx.sort();
    assert_eq!(idx, ["0", "1", "2"]);
    for p in &pods {
        let i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap();
        assert!(name(p).starts_with(&format!("idx-{i}-")), "{}", name(p));
        assert_eq!(p["spec"]["hostname"], format!("idx-{i}"));
        assert!(p["spec"]["containers"][0]["env"]
            .to_string()
            .contains("JOB_COMPLETION_INDEX"));
    }
    for p in &pods {
        k.set_pod_status("default", &name(p), "Succeeded", false);
    }
    k.wait("Complete", || job_condition(&k, "idx", "Complete"));
    assert_eq!(
        k.json(&["get", "job", "idx"])["status"]["completedIndexes"],
        "0-2"
    );
}

#[test]
fn job_failure_policy_deadline_and_ttl() {
    let k = Arc::new(Kube::up(&[]));
    // podFailurePolicy: exit code 42 fails the Job at once.
    k.apply(&job(
        "policy",
        "backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: c, operator: In, values: [42]}",
    ));
    let p = k.wait("a pod", || active_pods(&k, "policy").pop());
    let status = json!({"status": {"phase": "Failed", "containerStatuses": [{
        "name": "c", "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 42, "reason": "Error"}}}]}});
    k.ok(&[
        "patch",
        "pod",
        &name(&p),
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    let c = k.wait("Failed", || job_condition(&k, "policy", "Failed"));
    assert_eq!(c["reason"], "PodFailurePolicy");
    assert_eq!(k.json(&["get", "job", "policy"])["status"]["failed"], 1);
    // activeDeadlineSeconds.
    k.apply(&job("slow", "activeDeadlineSeconds: 2"));
    let c = k.wait("Failed", || job_condition(&k, "slow", "Failed"));
    assert_eq!(c["reason"], "DeadlineExceeded");
    k.wait("its pod deleted", || {
        active_pods(&k, "slow").is_empty().then_some(())
    });
    // ttlSecondsAfterFinished: the finished Job is deleted (and its pods).
    k.apply(&job("brief", "ttlSecondsAfterFinished: 1"));
    let p = k.wait("a pod", || active_pods(&k, "brief").pop());
    k.set_pod_status("default", &name(&p), "Succeeded", false);
    k.wait("the Job deleted", || {
        gone(&k, &["get", "job", "brief"]).then_some(())
    });
    k.wait("its pod deleted", || {
        job_pods(&k, "brief").is_empty().then_some(())
    });
}

#[test]
fn cronjob_fires_on_its_schedule_and_records_success() {
    let k = Arc::new(Kube::up(&[]));
    let cronjob = |name: &str, extra: &str| {
        format!(
            "apiVersion: batch/v1
kind: CronJob
metadata: {{name: {name}}}
spec:
  schedule: \"* * * * *\"
  timeZone: Europe/Paris
  {extra}
  jobTemplate:
    metadata: {{labels: {{from: {name}}}}}
    spec:
      template:
        spec:
          restartPolicy: Never
          {UNSCHEDULABLE}
          containers: [{{name: c, image: \"busybox:1.36\"}}]
"
        )
    };
    k.apply(&cronjob("tick", "concurrencyPolicy: Forbid"));
    k.apply(&cronjob("paused", "suspend: true"));
    // The next minute boundary: at most a minute away.
    let job = k.wait("the CronJob to fire", || {
        k.items(&["get", "jobs", "-l", "from=tick"]).pop()
    });
    let jname = name(&job);
    let minutes: i64 = jname.strip_prefix("tick-").unwrap().parse().unwrap();
    let scheduled = job["metadata"]["annotations"]
        ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        scheduled.ends_with("+01:00") || scheduled.ends_with("+02:00"),
        "{scheduled}"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    let st = k.wait("status.active", || {
        let s = k.json(&["get", "cronjob", "tick"])["status"].clone();
        (s["active"][0]["name"] == jname.as_str()).then_some(s)
    });
    let last = st["lastScheduleTime"].as_str().unwrap().to_string();
    let out = Command::new("date")
        .args(["-u", "-d", &last, "+%s"])
        .output()
        .unwrap();
    let secs: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(secs / 60, minutes);
    // The Job's pod succeeds: the Job completes, the CronJob records it.
    let pod = k.wait("the job's pod", || active_pods(&k, &jname).pop());
    k.set_pod_status("default", &name(&pod), "Succeeded", false);
    k.wait("lastSuccessfulTime", || {
        let s = k.json(&["get", "cronjob", "tick"])["status"].clone();
        (s["lastSuccessfulTime"].is_string() && s["active"].is_null()).then_some(())
    });
    // The suspended one never ran.
    assert!(k.items(&["get", "jobs", "-l", "from=paused"]).is_empty());
    assert!(k.json(&["get", "cronjob", "paused"])["status"]["lastScheduleTime"].is_null());
    let d = k.ok(&["describe", "cronjob", "tick"]);
    assert!(d.contains(&format!("Created job {jname}")), "{d}");
}

#[test]
fn cronjob_concurrency_policies_and_history_with_a_fast_test_clock() {
    // A minute of the CronJob controller's clock lasts 2 s here.
    let k = Arc::new(Kube::up_env(&[], &[("HAKO_KUBE_TEST_MINUTE_SECONDS", "2")]));
    let cronjob = |name: &str, extra: &str| {
        format!(
            "apiVersion: batch/v1
kind: CronJob
metadata: {{name: {name}}}
spec:
  schedule: \"* * * * *\"
  {extra}
  jobTemplate:
    metadata: {{labels: {{from: {name}}}}}
    spec:
      template:
        spec:
          restartPolicy: Never
          {UNSCHEDULABLE}
          containers: [{{name: c, image: \"busybox:1.36\"}}]
"
        )
    };
    k.apply(&cronjob("forbid", "concurrencyPolicy: Forbid"));
    k.apply(&cronjob("replace", "concurrencyPolicy: Replace"));
    k.apply(&cronjob("limits", "successfulJobsHistoryLimit: 1"));
    // Forbid: the first Job never finishes, so no second one starts.
    let first = k.wait("forbid's first Job", || {
        k.items(&["get", "jobs", "-l", "from=forbid"]).pop()
    });
    k.wait("a skipped run", || {
        k.ok(&["describe", "cronjob", "forbid"])
            .contains("JobAlreadyActive")
            .then_some(())
    });
    let jobs = k.items(&["get", "jobs", "-l", "from=forbid"]);
    assert_eq!(jobs.iter().map(name).collect::<Vec<_>>(), [name(&first)]);
    // Replace: each run deletes the unfinished one before it.
    let r1 = k.wait("replace's first Job", || {
        k.items(&["get", "jobs", "-l", "from=replace"]).pop()
    });
    k.wait("the first Job replaced", || {
        let jobs = k.items(&["get", "jobs", "-l", "from=replace"]);
        (jobs.len() == 1 && name(&jobs[0]) != name(&r1)).then_some(())
    });
    // History: every run succeeds; one successful Job is kept.
    let mut seen = std::collections::BTreeSet::new();
    k.wait("three runs and one kept", || {
        for j in k.items(&["get", "jobs", "-l", "from=limits"]) {
            seen.insert(name(&j));
            for p in active_pods(&k, &name(&j)) {
                k.set_pod_status("default", &name(&p), "Succeeded", false);
            }
        }
        let complete = k
            .items(&["get", "jobs", "-l", "from=limits"])
            .iter()
            .filter(|j| {
                j["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Complete"))
            })
            .count();
        (seen.len() >= 3 && complete == 1).then_some(())
    });
    let st = k.json(&["get", "cronjob", "limits"])["status"].clone();
    assert!(st["lastSuccessfulTime"].is_string(), "{st}");
}

/// A process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kube_controllers_runs_alone_against_a_cluster() {
    let k = Kube::up(&["--disable-controllers"]);
    k.apply(&replicaset("alone", 2));
    let uid = k.json(&["get", "rs", "alone"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    // Nothing reconciles it: the ReplicaSet has no status yet.
    assert!(k.json(&["get", "rs", "alone"])["status"]["observedGeneration"].is_null());
    assert!(owned(&k, "default", &uid).is_empty());
    let _controllers = Killed(
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .args(["kube", "controllers", "--kubeconfig"])
            .arg(k.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hako kube controllers"),
    );
    k.wait("2 pods", || {
        (owned(&k, "default", &uid).len() == 2).then_some(())
    });
    k.wait("the status", || {
        (k.json(&["get", "rs", "alone"])["status"]["replicas"] == 2).then_some(())
    });
    // A kubeconfig that does not exist is a one-line error.
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .args([
            "kube",
            "controllers",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
