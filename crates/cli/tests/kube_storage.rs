//! PersistentVolumes, PersistentVolumeClaims, StorageClasses and the local-path
//! provisioner of `hako kube up`, driven by the real kubectl with real pods (busybox
//! pulled from a `hako registry` on 127.0.0.1). Every test stops its control plane and
//! resets its root (containers, netns, cgroups) also when it fails; volume directories
//! live in the test's temp dir.

mod engine_common;
mod kube_cluster;
mod kube_common;

use std::path::{Path, PathBuf};

use kube_cluster::Cluster;
use kube_common::phase;
use serde_json::Value;

impl Cluster {
    /// `kubectl apply` that must fail: its one-line error.
    fn refused(&self, yaml: &str) -> String {
        self.fails_in(&["apply", "-f", "-"], Some(yaml))
            .trim()
            .to_string()
    }

    fn get(&self, what: &str, name: &str) -> Value {
        self.try_json(&["get", what, name]).unwrap_or(Value::Null)
    }

    /// Wait (bounded, see `Kube::wait`) until `cond` holds.
    fn until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        self.wait(what, || cond().then_some(()))
    }

    fn wait_running(&self, pod: &str) -> Value {
        self.wait_pod(pod, "Running", |p| phase(p) == "Running")
    }

    fn events_of(&self, name: &str) -> String {
        self.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ])
    }
}

/// Static volumes: a claim binds the smallest PV that fits (pre-created, no class), a pod
/// writes into it, the claim is protected while the pod uses it, and Retain leaves the PV
/// Released with its data once the claim is gone. An Immediate class of the local
/// provisioner binds without a consumer; a claim of an unknown provisioner keeps its pod
/// unschedulable. Bad claims are refused with one-line errors.
#[test]
fn static_volumes_bind_and_retain_keeps_them_released() {
    let c = Cluster::up(&["--disable-proxy"]);
    let img = c.image.clone();
    let small = c.root.dir().join("pv-small");
    let big = c.root.dir().join("pv-big");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::create_dir_all(&big).unwrap();
    for (name, size, dir) in [("small", "100Mi", &small), ("big", "1Gi", &big)] {
        c.apply(&format!(
            r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}, labels: {{tier: static}}}}
spec:
  capacity: {{storage: {size}}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: {}}}
"#,
            dir.display()
        ));
    }
    let pv = c.get("pv", "big");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert!(pv["metadata"]["finalizers"]
        .to_string()
        .contains("kubernetes.io/pv-protection"));
    c.until("PVs Available", || {
        phase(&c.get("pv", "big")) == "Available"
    });

    // 500Mi: only `big` fits.
    c.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 500Mi}}
  selector: {matchLabels: {tier: static}}
"#,
    );
    c.until("claim Bound", || phase(&c.get("pvc", "claim")) == "Bound");
    let claim = c.get("pvc", "claim");
    assert_eq!(claim["spec"]["volumeName"], "big");
    assert_eq!(claim["status"]["capacity"]["storage"], "1Gi");
    assert!(claim["metadata"]["finalizers"]
        .to_string()
        .contains("kubernetes.io/pvc-protection"));
    c.until("PV Bound", || phase(&c.get("pv", "big")) == "Bound");
    assert_eq!(c.get("pv", "big")["spec"]["claimRef"]["name"], "claim");
    assert_eq!(phase(&c.get("pv", "small")), "Available");

    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {img}
    command: ["sh", "-c", "echo kept > /data/file; sleep 1000000"]
    volumeMounts: [{{name: d, mountPath: /data}}]
  - name: ro
    image: {img}
    command: ["sleep", "1000000"]
    volumeMounts: [{{name: r, mountPath: /ro}}]
  volumes:
  - name: d
    persistentVolumeClaim: {{claimName: claim}}
  - name: r
    persistentVolumeClaim: {{claimName: claim, readOnly: true}}
"#
    ));
    c.wait_running("writer");
    c.until("the file in the PV", || big.join("file").exists());
    assert_eq!(std::fs::read_to_string(big.join("file")).unwrap(), "kept\n");
    // The same claim mounted readOnly: readable, not writable.
    assert_eq!(
        c.ok(&["exec", "writer", "-c", "ro", "--", "cat", "/ro/file"]),
        "kept\n"
    );
    let e = c.fails_in(
        &["exec", "writer", "-c", "ro", "--", "touch", "/ro/new"],
        None,
    );
    assert!(e.contains("Read-only file system"), "{e}");

    // In use: the claim only gets a deletionTimestamp until the pod is gone.
    c.ok(&["delete", "pvc", "claim", "--wait=false"]);
    let claim = c.get("pvc", "claim");
    assert!(
        claim["metadata"]["deletionTimestamp"].is_string(),
        "{claim}"
    );
    let listed = c.ok(&["get", "pvc", "claim"]);
    assert!(listed.contains("Terminating"), "{listed}");
    c.ok(&["delete", "pod", "writer", "--wait=true", "--timeout=60s"]);
    c.until("the claim gone", || {
        c.try_json(&["get", "pvc", "claim"]).is_none()
    });
    c.until("the PV Released", || {
        phase(&c.get("pv", "big")) == "Released"
    });
    assert_eq!(std::fs::read_to_string(big.join("file")).unwrap(), "kept\n");

    // Too big for every PV, no class: Pending with an event.
    c.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: huge}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Gi}}
"#,
    );
    c.until("the FailedBinding event", || {
        c.events_of("huge")
            .contains("no persistent volumes available for this claim and no storage class is set")
    });
    assert_eq!(phase(&c.get("pvc", "huge")), "Pending");

    // A pod placed on the node directly (no scheduler) with that unbound claim: the
    // kubelet keeps it waiting with a FailedMount event.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: stuck}}
spec:
  nodeName: {node}
  containers:
  - {{name: c, image: {img}, command: ["sleep", "1000"]}}
  volumes:
  - {{name: d, persistentVolumeClaim: {{claimName: huge}}}}
"#,
        node = kube_common::node_name()
    ));
    c.until("the FailedMount event", || {
        c.events_of("stuck").contains(
            "Unable to attach or mount volumes: PVC default/huge has non-bound phase (\"Pending\")",
        )
    });
    assert_eq!(phase(&c.get("pod", "stuck")), "Pending");
    c.ok(&["delete", "pod", "stuck", "--wait=true", "--timeout=60s"]);

    // Pre-binding: a PV reserved for a claim by its claimRef (though a smaller one
    // fits), a claim naming its PV; Delete on a static PV cannot be carried out: Failed.
    let doomed = c.root.dir().join("pv-doomed");
    std::fs::create_dir_all(&doomed).unwrap();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: reserved}}
spec:
  capacity: {{storage: 2Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: {big}}}
  claimRef: {{namespace: default, name: mine}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: doomed}}
spec:
  capacity: {{storage: 50Mi}}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  persistentVolumeReclaimPolicy: Delete
  hostPath: {{path: {doomed}}}
"#,
        big = big.display(),
        doomed = doomed.display()
    ));
    // The controller has seen both once it made them Available.
    c.until("the new PVs Available", || {
        phase(&c.get("pv", "reserved")) == "Available"
            && phase(&c.get("pv", "doomed")) == "Available"
    });
    c.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: mine}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: named}
spec:
  storageClassName: ""
  volumeName: doomed
  accessModes: [ReadOnlyMany]
  resources: {requests: {storage: 10Mi}}
"#,
    );
    c.until("the pre-bound claims Bound", || {
        phase(&c.get("pvc", "mine")) == "Bound" && phase(&c.get("pvc", "named")) == "Bound"
    });
    assert_eq!(c.get("pvc", "mine")["spec"]["volumeName"], "reserved");
    assert_eq!(c.get("pv", "doomed")["spec"]["claimRef"]["name"], "named");
    assert_eq!(phase(&c.get("pv", "small")), "Available");
    c.ok(&["delete", "pvc", "named", "--wait=true", "--timeout=60s"]);
    c.until("the static Delete PV Failed", || {
        phase(&c.get("pv", "doomed")) == "Failed"
    });
    assert!(c.get("pv", "doomed")["status"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("no deletable volume plugin matched"));
    assert!(doomed.exists());

    // An Immediate class of the local provisioner binds without a consumer.
    c.apply(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: hako.io/local-path
volumeBindingMode: Immediate
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: quick}
spec:
  storageClassName: fast
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
"#,
    );
    c.until("the Immediate claim Bound", || {
        phase(&c.get("pvc", "quick")) == "Bound"
    });
    let vol = c.get("pvc", "quick")["spec"]["volumeName"]
        .as_str()
        .unwrap()
        .to_string();
    let path = c.get("pv", &vol)["spec"]["hostPath"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        Path::new(&path).starts_with(c.root.root().join("kube/storage")),
        "{path}"
    );
    assert!(Path::new(&path).is_dir());

    // An unbound Immediate claim nobody provisions: its pod cannot be scheduled.
    c.apply(&format!(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: external}}
provisioner: example.com/nfs
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: far}}
spec:
  storageClassName: external
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: waiter}}
spec:
  containers:
  - {{name: c, image: {img}, command: ["sleep", "1000"]}}
  volumes:
  - {{name: d, persistentVolumeClaim: {{claimName: far}}}}
"#
    ));
    c.until("the pod Unschedulable", || {
        let p = c.get("pod", "waiter");
        p["status"]["conditions"].to_string().contains(
            "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims.",
        )
    });
    assert!(c.events_of("far").contains(
        "Waiting for a volume to be created either by the external provisioner 'example.com/nfs'"
    ));

    // Bad claims: one-line Kubernetes errors, nothing stored.
    let e = c.refused(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: bad}
spec:
  accessModes: [ReadWriteSometimes]
  resources: {requests: {storage: 1Gi}}
"#,
    );
    assert_eq!(
        e,
        r#"The PersistentVolumeClaim "bad" is invalid: spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod""#
    );
    let e = c.refused(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: bad}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: "0"}}
"#,
    );
    assert_eq!(
        e,
        r#"The PersistentVolumeClaim "bad" is invalid: spec.resources[storage]: Invalid value: "0": must be greater than zero"#
    );
    let e = c.refused(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: bad}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Gx}}
"#,
    );
    assert!(
        e.lines().count() == 1 && e.contains("quantities must match the regular expression"),
        "{e}"
    );
    let e = c.refused(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: bad}
spec:
  resources: {requests: {storage: 1Gi}}
"#,
    );
    assert!(e.contains("spec.accessModes: Required value"), "{e}");
    assert!(c.try_json(&["get", "pvc", "bad"]).is_none());

    let table = c.ok(&["get", "pv,pvc,sc"]);
    eprintln!("{table}");
    for want in [
        "RECLAIM POLICY",
        "Released",
        "default/claim",
        "local-path (default)",
        "rancher.io/local-path",
        "WaitForFirstConsumer",
        "Pending",
    ] {
        assert!(table.contains(want), "{want} missing in:\n{table}");
    }
    c.ok(&["delete", "pod", "waiter", "--wait=true", "--timeout=60s"]);
}

/// The default class (local-path, WaitForFirstConsumer) provisions a directory per claim
/// of a StatefulSet's volumeClaimTemplates on the pod's node; a pod deleted and
/// recreated, or scaled away and back, finds its data; deleting the set and its claims
/// (reclaim policy Delete) leaves no volume and no directory.
#[test]
fn statefulset_claims_get_local_volumes_that_survive_their_pods() {
    let c = Cluster::up(&["--disable-proxy"]);
    let img = c.image.clone();
    let storage = c.root.root().join("kube/storage");
    c.until("the default StorageClass", || {
        c.get("sc", "local-path")["metadata"]["annotations"]
            ["storageclass.kubernetes.io/is-default-class"]
            == "true"
    });
    let sc = c.get("sc", "local-path");
    assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(sc["reclaimPolicy"], "Delete");
    c.apply(&format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {img}
        command: ["sh", "-c", "[ -f /data/id ] || hostname > /data/id; echo start >> /data/starts; sleep 1000000"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 64Mi}}}}
"#
    ));
    c.wait_running("web-0");
    c.wait_running("web-1");
    let node = c.get("pod", "web-0")["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    let mut dirs = Vec::new();
    for i in 0..2 {
        let claim = c.get("pvc", &format!("data-web-{i}"));
        assert_eq!(phase(&claim), "Bound", "{claim}");
        assert_eq!(claim["spec"]["storageClassName"], "local-path");
        assert_eq!(
            claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
            node.as_str()
        );
        let vol = claim["spec"]["volumeName"].as_str().unwrap();
        let pv = c.get("pv", vol);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"][0],
            node.as_str()
        );
        let dir = PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap());
        assert!(dir.starts_with(&storage), "{}", dir.display());
        let id = dir.join("id");
        c.until("the pod's file in its volume", || id.exists());
        assert_eq!(
            std::fs::read_to_string(&id).unwrap().trim(),
            format!("web-{i}")
        );
        dirs.push(dir);
    }

    // A new web-0 (new uid) mounts the same volume.
    let uid = c.get("pod", "web-0")["metadata"]["uid"].clone();
    c.ok(&["delete", "pod", "web-0", "--wait=true", "--timeout=60s"]);
    c.until("a new web-0", || {
        let p = c.get("pod", "web-0");
        p["metadata"]["uid"] != uid && phase(&p) == "Running"
    });
    let id = c.ok(&["exec", "web-0", "--", "cat", "/data/id"]);
    assert_eq!(id.trim(), "web-0");
    c.until("web-0's second start", || {
        c.ok(&["exec", "web-0", "--", "cat", "/data/starts"])
            .lines()
            .count()
            == 2
    });

    // Scale down and up: the claim stays, web-1 comes back to its data.
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    c.until("web-1 gone", || {
        c.try_json(&["get", "pod", "web-1"]).is_none()
    });
    assert_eq!(phase(&c.get("pvc", "data-web-1")), "Bound");
    c.ok(&["scale", "statefulset", "web", "--replicas=2"]);
    c.wait_running("web-1");
    assert_eq!(
        c.ok(&["exec", "web-1", "--", "cat", "/data/id"]).trim(),
        "web-1"
    );

    let table = c.ok(&["get", "pv,pvc,sc"]);
    eprintln!("{table}");
    assert!(table.contains("default/data-web-0") && table.contains("local-path (default)"));

    // Delete the set, then its claims: the volumes and their directories go.
    c.ok(&[
        "delete",
        "statefulset",
        "web",
        "--wait=true",
        "--timeout=60s",
    ]);
    c.ok(&[
        "delete",
        "pvc",
        "-l",
        "app=web",
        "--wait=true",
        "--timeout=120s",
    ]);
    c.until("the provisioned volumes gone", || {
        c.try_json(&["get", "pv"])
            .is_some_and(|l| l["items"].as_array().is_some_and(|a| a.is_empty()))
    });
    for d in &dirs {
        assert!(!d.exists(), "{} still exists", d.display());
    }
    let left: Vec<_> = std::fs::read_dir(&storage)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
