//! The kubelet and the scheduler, driven by the real kubectl against `hako kube up`
//! (API server, `hako cri serve`, kubelet and scheduler from one command) in a temp
//! root, with images pulled from a `hako registry` on 127.0.0.1. Every test tears down
//! what it started — the control plane, its children, the pods' containers, network
//! namespaces and cgroups (`hako system reset`) — also when it fails.

mod engine_common;
mod kube_cluster;
mod kube_common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine_common::Root;
use kube_common::{condition, hako, node_name, phase, terminate, wait_for, Kube, Registry};
use serde_json::Value;

/// `hako kube up` in a temp root with a loopback registry holding busybox. Drop stops
/// the control plane (and its CRI, kubelet, scheduler), then resets the root.
struct Cluster {
    /// A containerd the node uses instead of `hako cri serve` (stopped after the pods).
    containerd: Option<Containerd>,
    kube: Kube,
    extra: Vec<Child>,
    /// Other hako roots the test used (a second node): reset on drop.
    others: Vec<PathBuf>,
    /// `REGISTRY/kube/busybox:1`
    image: String,
    _reg: Registry,
    root: Root,
}

impl std::ops::Deref for Cluster {
    type Target = Kube;
    fn deref(&self) -> &Kube {
        &self.kube
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(ctd) = &self.containerd {
            // The kubelet removes the pods' sandboxes (and their netns) through CRI.
            let _ = self.run(
                &["delete", "pods", "--all", "--wait=true", "--timeout=60s"],
                None,
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while !ctd.ctr(&["containers", "ls", "-q"]).trim().is_empty()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        for c in self.extra.iter_mut().rev() {
            terminate(c);
        }
        self.kube.stop();
        // Children of an `up` that was killed (they die with it, but make sure).
        for name in ["kubelet", "cri"] {
            for r in std::iter::once(self.root.root()).chain(self.others.iter().cloned()) {
                if let Ok(pid) = std::fs::read_to_string(r.join(format!("kube/{name}.pid"))) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        // SAFETY: kill(2) on a pid this test's control plane wrote.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
        }
        if let Some(mut ctd) = self.containerd.take() {
            ctd.stop();
        }
        for r in &self.others {
            let _ = Command::new(hako())
                .arg("--root")
                .arg(r)
                .args(["system", "reset", "-f"])
                .output();
        }
    }
}

impl Cluster {
    fn up() -> Cluster {
        Cluster::up_with(&[])
    }

    fn up_with(args: &[&str]) -> Cluster {
        Cluster::start(args, false)
    }

    /// `hako kube up` on a Debian containerd 1.6 (its CRI plugin) instead of hako's CRI.
    fn up_on_containerd() -> Cluster {
        Cluster::start(&[], true)
    }

    fn start(args: &[&str], on_containerd: bool) -> Cluster {
        let (root, reg, image) = kube_cluster::prepare();
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let containerd = on_containerd.then(|| {
            // containerd's sandbox ("pause") image: busybox sleeping, from the registry.
            let tar = root.dir().join("busybox.tar");
            let pause = format!("{}/kube/pause:1", reg.addr);
            root.ok(&[
                "import",
                tar.to_str().unwrap(),
                "-c",
                r#"CMD ["/bin/sleep", "1000000000"]"#,
                &pause,
            ]);
            root.ok(&["push", &pause]);
            let ctd = Containerd::start(&root.dir().join("containerd"), &pause, &reg.addr);
            args.extend([
                "--container-runtime-endpoint".to_string(),
                format!("unix://{}", ctd.socket().display()),
            ]);
            ctd
        });
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let kube = Kube::up_in(&root.root(), root.dir(), &args, &[]);
        let c = Cluster {
            containerd,
            kube,
            extra: Vec::new(),
            others: Vec::new(),
            image,
            _reg: reg,
            root,
        };
        wait_for("the node to be Ready", || c.node_ready(&node_name()));
        c
    }

    fn node_ready(&self, node: &str) -> bool {
        self.try_json(&["get", "node", node])
            .is_some_and(|n| condition(&n, "Ready")["status"] == "True")
    }

    /// The engine containers of this root named after pod `name` (k8s_*_NAME_*).
    fn engine_containers(&self, root: &Path, pod: &str) -> Vec<String> {
        let out = Command::new(hako())
            .arg("--root")
            .arg(root)
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| n.split('_').nth(2) == Some(pod))
            .map(str::to_string)
            .collect()
    }

    /// The host directory of a pod's emptyDir volume.
    fn empty_dir(&self, pod: &Value, volume: &str) -> PathBuf {
        self.root
            .root()
            .join("kube/kubelet/pods")
            .join(pod["metadata"]["uid"].as_str().unwrap())
            .join("volumes/kubernetes.io~empty-dir")
            .join(volume)
    }
}

#[test]
fn pod_runs_init_containers_in_order_and_gets_ready_with_an_ip() {
    let c = Cluster::up();
    let node = node_name();
    // The Node as the kubelet registered it.
    let n = c.try_json(&["get", "node", &node]).unwrap();
    for r in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(n["status"]["allocatable"][r].is_string(), "{r}: {n}");
    }
    assert_eq!(n["status"]["capacity"]["pods"], "110");
    let conds: Vec<&str> = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(conds.contains(&t), "{conds:?}");
    }
    let addrs = n["status"]["addresses"].to_string();
    assert!(
        addrs.contains("InternalIP") && addrs.contains("Hostname"),
        "{addrs}"
    );
    assert!(n["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap()
        .starts_with("hako://"));
    assert!(
        n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_i64()
            .unwrap()
            > 0
    );
    let lease = c.json(&["-n", "kube-node-lease", "get", "lease", &node]);
    assert_eq!(lease["spec"]["holderIdentity"], node.as_str());

    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  initContainers:
  - name: first
    image: {img}
    command: ["sh", "-c", "echo first >> /work/order"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: second
    image: {img}
    command: ["sh", "-c", "echo second >> /work/order"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: httpd
    image: {img}
    workingDir: /work
    command: ["sh", "-c"]
    args: ["echo $(GREETING) from $(POD_NAME) in $(NS) > index.html; cat order >> index.html; exec httpd -f -p 8080 -h /work"]
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: GREETING, value: hello}}
    - {{name: MEM, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    resources:
      requests: {{cpu: 100m, memory: 32Mi}}
      limits: {{cpu: 500m, memory: 64Mi}}
    ports: [{{containerPort: 8080, name: http}}]
    volumeMounts: [{{name: work, mountPath: /work}}]
    startupProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
      failureThreshold: 30
    readinessProbe:
      httpGet: {{path: /, port: http}}
      periodSeconds: 1
  - name: gated
    image: {img}
    command: ["sh", "-c", "exec sleep 100000"]
    volumeMounts: [{{name: gate, mountPath: /gate}}]
    readinessProbe:
      exec: {{command: ["test", "-e", "/gate/ready"]}}
      periodSeconds: 1
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: gate, emptyDir: {{}}}}
"#,
        img = c.image
    ));
    // Running, but not Ready until the gated container's probe passes.
    let pod = c.wait_pod("web", "running with both containers started", |p| {
        phase(p) == "Running"
            && p["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|s| {
                    s.len() == 2 && s.iter().all(|s| s["state"]["running"].is_object())
                })
            && p["status"]["containerStatuses"][0]["ready"] == true
    });
    assert_eq!(condition(&pod, "Ready")["status"], "False", "{pod}");
    assert_eq!(condition(&pod, "Ready")["reason"], "ContainersNotReady");
    assert_eq!(condition(&pod, "Initialized")["status"], "True");
    assert_eq!(condition(&pod, "PodScheduled")["status"], "True");
    assert_eq!(
        condition(&pod, "PodReadyToStartContainers")["status"],
        "True"
    );
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    assert!(pod["status"]["startTime"].is_string());
    assert!(pod["status"]["hostIP"].is_string());
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert_eq!(pod["status"]["podIPs"][0]["ip"], ip.as_str());
    for s in pod["status"]["initContainerStatuses"].as_array().unwrap() {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    let cs = &pod["status"]["containerStatuses"][0];
    assert!(cs["containerID"].as_str().unwrap().starts_with("hako://"));
    assert!(cs["imageID"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["started"], true);

    // The gate opens from the host side of the emptyDir: the pod turns Ready.
    std::fs::write(c.empty_dir(&pod, "gate").join("ready"), "").unwrap();
    c.wait_pod("web", "Ready", |p| {
        condition(p, "Ready")["status"] == "True"
    });

    // The pod answers on its IP: env expanded, init containers ran in order.
    let page = Command::new("wget")
        .args(["-qO-", &format!("http://{ip}:8080/")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&page.stdout),
        "hello from web in default\nfirst\nsecond\n"
    );
    // Events kubectl describe shows.
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    for r in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(events.contains(r), "{r}: {events}");
    }
    // The cgroup limits went through CRI.
    let id = cs["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("hako://")
        .to_string();
    let inspect = c.root.inspect(&id);
    assert_eq!(
        inspect["HostConfig"]["Memory"],
        64 << 20,
        "{}",
        inspect["HostConfig"]
    );
}

#[test]
fn liveness_failure_restarts_the_container() {
    let c = Cluster::up();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: {img}
    command: ["sh", "-c", "echo run $(cat /state/runs); echo x >> /state/runs; touch /state/alive; exec sleep 100000"]
    volumeMounts: [{{name: state, mountPath: /state}}]
    livenessProbe:
      exec: {{command: ["test", "-e", "/state/alive"]}}
      periodSeconds: 1
      failureThreshold: 2
  volumes:
  - {{name: state, emptyDir: {{}}}}
"#,
        img = c.image
    ));
    let pod = c.wait_pod("live", "running", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let first = pod["status"]["containerStatuses"][0]["containerID"].clone();
    // The probe's file goes away on the host side: the kubelet kills and restarts it
    // (the new container recreates the file, so it stays).
    let alive = c.empty_dir(&pod, "state").join("alive");
    wait_for("the container to create its file", || alive.exists());
    std::fs::remove_file(&alive).unwrap();
    let pod = c.wait_pod("live", "restarted once and running", |p| {
        let s = &p["status"]["containerStatuses"][0];
        s["restartCount"] == 1 && s["state"]["running"].is_object()
    });
    let s = &pod["status"]["containerStatuses"][0];
    assert_ne!(s["containerID"], first);
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 137, "{s}");
    assert_eq!(s["lastState"]["terminated"]["containerID"], first);
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=live",
    ]);
    assert!(
        events.contains("Unhealthy") && events.contains("Liveness probe failed"),
        "{events}"
    );
    assert!(events.contains("Killing"), "{events}");
}

#[test]
fn restart_policies_end_in_succeeded_or_failed() {
    let c = Cluster::up();
    let pod = |name: &str, policy: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - {{name: c, image: {}, command: [\"sh\", \"-c\", \"{script}\"]}}\n---\n",
            c.image
        )
    };
    c.apply(
        &(pod("never-fails", "Never", "exit 3")
            + &pod("onfailure-ok", "OnFailure", "echo done")
            + &pod("onfailure-retries", "OnFailure", "exit 1")
            + &pod("always-ok", "Always", "exit 0")),
    );
    let p = c.wait_pod("never-fails", "Failed", |p| phase(p) == "Failed");
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    let p = c.wait_pod("onfailure-ok", "Succeeded", |p| phase(p) == "Succeeded");
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    assert_eq!(condition(&p, "Ready")["reason"], "PodCompleted");
    // OnFailure and Always restart (the second restart waits in CrashLoopBackOff).
    for name in ["onfailure-retries", "always-ok"] {
        let p = c.wait_pod(name, "restarted and backing off", |p| {
            p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)
                && p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "CrashLoopBackOff"
        });
        assert_eq!(phase(&p), "Running", "{p}");
        assert!(p["status"]["containerStatuses"][0]["lastState"]["terminated"].is_object());
    }
    // Security context: user, groups (fsGroup on the emptyDir too), read-only root.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: secure}}
spec:
  restartPolicy: Never
  securityContext: {{runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000, supplementalGroups: [3000]}}
  containers:
  - name: c
    image: {}
    command: ["sh", "-c", "id -u; id -G; stat -c %g /data; touch /data/f && echo data-ok; touch /x 2>/dev/null || echo root-ro"]
    securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, emptyDir: {{}}}}]
"#,
        c.image
    ));
    c.wait_pod("secure", "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        c.ok(&["logs", "secure"]),
        "1000\n1000 2000 3000\n2000\ndata-ok\nroot-ro\n"
    );
    // A finished pod's containers are stopped, its sandbox too; its log stays readable.
    assert!(c
        .engine_containers(&c.root.root(), "onfailure-ok")
        .iter()
        .all(|n| c.root.state_of(n).is_none_or(|(s, _)| s != "running")));
}

#[test]
fn delete_runs_prestop_within_the_grace_period_and_removes_everything() {
    let c = Cluster::up();
    let host = c.root.dir().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: c
    image: {img}
    command: ["sh", "-c", "trap 'echo term >> /host/log; exit 0' TERM; echo started >> /host/log; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: host, mountPath: /host}}, {{name: scratch, mountPath: /scratch}}]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "echo poststart >> /host/hooks"]}}
      preStop:
        exec: {{command: ["sh", "-c", "echo prestop >> /host/log"]}}
  volumes:
  - {{name: host, hostPath: {{path: {host}, type: Directory}}}}
  - {{name: scratch, emptyDir: {{}}}}
"#,
        img = c.image,
        host = host.display()
    ));
    let pod = c.wait_pod("graceful", "running", |p| phase(p) == "Running");
    wait_for("postStart", || {
        std::fs::read_to_string(host.join("hooks")).is_ok_and(|s| s == "poststart\n")
    });
    let pod_dir = c
        .root
        .root()
        .join("kube/kubelet/pods")
        .join(pod["metadata"]["uid"].as_str().unwrap());
    assert!(pod_dir
        .join("volumes/kubernetes.io~empty-dir/scratch")
        .is_dir());
    assert_eq!(c.engine_containers(&c.root.root(), "graceful").len(), 2);
    c.ok(&["delete", "pod", "graceful", "--wait=true"]);
    wait_for("the pod's containers and sandbox to go", || {
        c.engine_containers(&c.root.root(), "graceful").is_empty()
    });
    // preStop ran, then the container got SIGTERM and exited on its own (no SIGKILL).
    let log = std::fs::read_to_string(host.join("log")).unwrap();
    assert_eq!(log, "started\nprestop\nterm\n");
    assert!(!pod_dir.exists(), "{}", pod_dir.display());
    assert!(c.try_json(&["get", "pod", "graceful"]).is_none());
}

#[test]
fn unschedulable_pod_gets_the_condition_then_runs_when_a_node_fits() {
    let c = Cluster::up();
    let node = node_name();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: picky}}\nspec:\n  nodeSelector: {{disk: ssd}}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
        c.image
    ));
    let p = c.wait_pod("picky", "Unschedulable", |p| {
        condition(p, "PodScheduled")["reason"] == "Unschedulable"
    });
    assert_eq!(condition(&p, "PodScheduled")["status"], "False");
    assert_eq!(
        condition(&p, "PodScheduled")["message"],
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    );
    assert_eq!(phase(&p), "Pending");
    assert!(p["spec"]["nodeName"].is_null());
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=picky",
    ]);
    assert!(events.contains("FailedScheduling"), "{events}");
    // A pod that asks for more cpu than the node has stays pending too.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: greedy}}\nspec:\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"1\"], resources: {{requests: {{cpu: \"1000\"}}}}}}\n",
        c.image
    ));
    let p = c.wait_pod("greedy", "Unschedulable", |p| {
        condition(p, "PodScheduled")["reason"] == "Unschedulable"
    });
    assert!(condition(&p, "PodScheduled")["message"]
        .as_str()
        .unwrap()
        .contains("Insufficient cpu"));
    // The node gets the label: the scheduler binds the pod and it runs there.
    c.ok(&["label", "node", &node, "disk=ssd"]);
    let p = c.wait_pod("picky", "running", |p| phase(p) == "Running");
    assert_eq!(p["spec"]["nodeName"], node.as_str());
    assert_eq!(condition(&p, "PodScheduled")["status"], "True");
    // A taint keeps new pods off unless they tolerate it.
    c.ok(&["taint", "node", &node, "dedicated=infra:NoSchedule"]);
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: tolerant}}\nspec:\n  tolerations: [{{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}}]\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {img}, command: [\"sleep\", \"100000\"]}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: intolerant}}\nspec:\n  containers:\n  - {{name: c, image: {img}, command: [\"sleep\", \"1\"]}}\n",
        img = c.image
    ));
    c.wait_pod("tolerant", "running", |p| phase(p) == "Running");
    let p = c.wait_pod("intolerant", "Unschedulable", |p| {
        condition(p, "PodScheduled")["reason"] == "Unschedulable"
    });
    assert!(condition(&p, "PodScheduled")["message"]
        .as_str()
        .unwrap()
        .contains("untolerated taint {dedicated: infra}"));
}

#[test]
fn static_pod_runs_with_a_mirror_pod() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let c = Cluster::up_with(&["--pod-manifest-path", manifests.to_str().unwrap()]);
    let node = node_name();
    let file = manifests.join("static.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: static-web, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
            c.image
        ),
    )
    .unwrap();
    let mirror = format!("static-web-{node}");
    let p = c.wait_pod(&mirror, "running", |p| phase(p) == "Running");
    assert!(
        p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string(),
        "{p}"
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(p["spec"]["nodeName"], node.as_str());
    let first = p["metadata"]["uid"].clone();
    // Deleting the mirror does not stop the static pod: the kubelet recreates the mirror.
    c.ok(&["delete", "pod", &mirror]);
    c.wait_pod(&mirror, "mirrored again", |p| {
        p["metadata"]["uid"] != first && phase(p) == "Running"
    });
    assert_eq!(c.engine_containers(&c.root.root(), &mirror).len(), 2);
    // Removing the file stops the pod and removes the mirror.
    std::fs::remove_file(&file).unwrap();
    wait_for("the static pod to go", || {
        c.engine_containers(&c.root.root(), &mirror).is_empty()
            && c.try_json(&["get", "pod", &mirror]).is_none()
    });
}

#[test]
fn kubelet_restart_adopts_running_pods() {
    let c = Cluster::up();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: keeper}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
        c.image
    ));
    let p = c.wait_pod("keeper", "running", |p| phase(p) == "Running");
    let id = p["status"]["containerStatuses"][0]["containerID"].clone();
    let pidfile = c.root.root().join("kube/kubelet.pid");
    let old: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the kubelet this test's control plane started.
    unsafe {
        libc::kill(old, libc::SIGKILL);
    }
    // `kube up` starts it again; it finds the pod's sandbox and container by their
    // CRI labels and keeps them.
    wait_for("a new kubelet", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .is_some_and(|p| p != old)
    });
    // A pod created now shows the new kubelet works; then the old one is unchanged.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: after}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
        c.image
    ));
    c.wait_pod("after", "running", |p| phase(p) == "Running");
    let p = c.pod("keeper");
    assert_eq!(phase(&p), "Running");
    assert_eq!(p["status"]["containerStatuses"][0]["containerID"], id);
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(c.engine_containers(&c.root.root(), "keeper").len(), 2);
}

#[test]
fn second_kubelet_is_a_second_node_and_node_selector_picks_it() {
    let mut c = Cluster::up();
    let root2 = c.root.dir().join("root2");
    let sock = c.root.dir().join("cri2.sock");
    let conf = c.root.dir().join("cri2.toml");
    std::fs::write(
        &conf,
        format!(
            "cni_conf_dir = {:?}\n",
            c.root.dir().join("net2.d").display().to_string()
        ),
    )
    .unwrap();
    c.others.push(root2.clone());
    let cri = Command::new(hako())
        .arg("--root")
        .arg(&root2)
        .args(["cri", "serve", "--socket"])
        .arg(&sock)
        .arg("--config")
        .arg(&conf)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.extra.push(cri);
    let second = format!("second-{}", std::process::id());
    let kubelet = Command::new(hako())
        .arg("--root")
        .arg(&root2)
        .args(["kube", "kubelet", "--kubeconfig"])
        .arg(c.kubeconfig())
        .arg("--container-runtime-endpoint")
        .arg(format!("unix://{}", sock.display()))
        .args(["--node-name", &second, "--port", "0"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.extra.push(kubelet);
    wait_for("the second node to be Ready", || c.node_ready(&second));
    let nodes = c.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: there}}\nspec:\n  nodeSelector: {{kubernetes.io/hostname: {second}}}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
        c.image
    ));
    let p = c.wait_pod("there", "running", |p| phase(p) == "Running");
    assert_eq!(p["spec"]["nodeName"], second.as_str());
    // Its containers are the second root's, none are the first's.
    assert_eq!(c.engine_containers(&root2, "there").len(), 2);
    assert!(c.engine_containers(&c.root.root(), "there").is_empty());
    // Anti-affinity on the hostname spreads two pods over the two nodes.
    let anti = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: spread}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {{matchLabels: {{app: spread}}}}\n        topologyKey: kubernetes.io/hostname\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n---\n",
            c.image
        )
    };
    c.apply(&(anti("spread-a") + &anti("spread-b") + &anti("spread-c")));
    // Whichever two the scheduler takes first land on different nodes; the third fits nowhere.
    let mut pods = Vec::new();
    wait_for("two spread pods bound and one unschedulable", || {
        pods = ["spread-a", "spread-b", "spread-c"]
            .map(|n| c.pod(n))
            .to_vec();
        let bound = pods
            .iter()
            .filter(|p| p["spec"]["nodeName"].is_string())
            .count();
        let refused = pods
            .iter()
            .filter(|p| condition(p, "PodScheduled")["reason"] == "Unschedulable")
            .count();
        bound == 2 && refused == 1
    });
    let nodes: Vec<&Value> = pods
        .iter()
        .filter_map(|p| {
            p["spec"]["nodeName"]
                .is_string()
                .then_some(&p["spec"]["nodeName"])
        })
        .collect();
    assert_ne!(nodes[0], nodes[1]);
    let third = pods
        .iter()
        .find(|p| p["spec"]["nodeName"].is_null())
        .unwrap();
    assert!(condition(third, "PodScheduled")["message"]
        .as_str()
        .unwrap()
        .contains("anti-affinity"));
}

/// Debian's containerd 1.6 with its CRI plugin in a temp directory: its own socket, a
/// CNI bridge of its own (removed on stop), plain HTTP to the loopback registry.
struct Containerd {
    dir: PathBuf,
    child: Option<Child>,
    bridge: String,
}

impl Containerd {
    fn start(dir: &Path, pause: &str, registry: &str) -> Containerd {
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        let id = std::process::id();
        let bridge = format!("hkc{}", id % 1_000_000);
        std::fs::write(
            dir.join("net.d/10-test.conflist"),
            format!(
                r#"{{"cniVersion": "0.4.0", "name": "hkc-{id}", "plugins": [{{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false, "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.{}.{}.0/24"}}]], "dataDir": "{}"}}}}]}}"#,
                100 + (id / 256) % 100,
                id % 256,
                dir.join("ipam").display()
            ),
        )
        .unwrap();
        let d = dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # No CAP_SYS_RESOURCE here: nothing may get an oom_score_adj below ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"#
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd (install Debian's containerd)");
        let c = Containerd {
            dir: dir.to_path_buf(),
            child: Some(child),
            bridge,
        };
        wait_for("containerd's socket", || {
            std::os::unix::net::UnixStream::connect(c.socket()).is_ok()
        });
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kill what is left (a failed test), stop containerd, remove the bridge.
    fn stop(&mut self) {
        for id in self.ctr(&["containers", "ls", "-q"]).lines() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "delete", "-f", id]);
            let _ = self.ctr(&["containers", "delete", id]);
        }
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
        let _ = Command::new("ip")
            .args(["link", "delete", "dev", &self.bridge])
            .output();
    }
}

#[test]
fn kubelet_runs_a_pod_on_containerd() {
    let c = Cluster::up_on_containerd();
    let n = c.try_json(&["get", "node", &node_name()]).unwrap();
    assert!(
        n["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("containerd://1.6"),
        "{}",
        n["status"]["nodeInfo"]
    );
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: on-containerd}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {{name: init, image: {img}, command: ["sh", "-c", "echo init > /work/init"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - name: c
    image: {img}
    command: ["sh", "-c", "echo hi from $(POD_NAME); cat /work/init; exec sleep 100000"]
    env: [{{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
    volumeMounts: [{{name: work, mountPath: /work}}]
    readinessProbe: {{exec: {{command: ["test", "-e", "/work/init"]}}, periodSeconds: 1}}
  volumes: [{{name: work, emptyDir: {{}}}}]
"#,
        img = c.image
    ));
    let p = c.wait_pod("on-containerd", "Ready", |p| {
        condition(p, "Ready")["status"] == "True"
    });
    assert!(
        p["status"]["podIP"].as_str().unwrap().starts_with("10."),
        "{p}"
    );
    assert!(p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    // The logs come from containerd's log file, through the API server and the kubelet.
    wait_for("the pod's log", || {
        c.run(&["logs", "on-containerd"], None).stdout == b"hi from on-containerd\ninit\n"
    });
    c.ok(&["delete", "pod", "on-containerd", "--wait=true"]);
    let ctd = c.containerd.as_ref().unwrap();
    wait_for("containerd to have no containers", || {
        ctd.ctr(&["containers", "ls", "-q"]).trim().is_empty()
    });
}

/// A free TCP port on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn kubectl_exec_and_port_forward_go_through_the_kubelet() {
    let c = Cluster::up();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: shell}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sh\", \"-c\", \"mkdir /www; echo page > /www/index.html; exec httpd -f -p 8080 -h /www\"]}}\n",
        c.image
    ));
    c.wait_pod("shell", "running", |p| phase(p) == "Running");
    // exec: stdout, stderr and the exit code come back; stdin goes in.
    let out = c.run(
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("err\n"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        c.ok_in(&["exec", "-i", "shell", "--", "cat"], Some("hello\n")),
        "hello\n"
    );
    // port-forward (SPDY through the API server, the kubelet and the CRI streaming server).
    let port = free_port();
    let mut pf = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["port-forward", "pod/shell", &format!("{port}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(pf.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("Forwarding from"), "{line:?}");
    // Keep reading: kubectl writes a line per connection and must not hit a closed pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    let page = Command::new("wget")
        .args(["-qO-", &format!("http://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    let _ = pf.kill();
    let _ = pf.wait();
    assert_eq!(String::from_utf8_lossy(&page.stdout), "page\n");
}

#[test]
fn kube_down_stops_the_node_processes_and_leaves_pods_running() {
    let mut c = Cluster::up();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: stays}}\nspec:\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
        c.image
    ));
    c.wait_pod("stays", "running", |p| phase(p) == "Running");
    let pids: Vec<i64> = ["cri", "kubelet"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(c.root.root().join(format!("kube/{n}.pid")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    c.root.ok(&["kube", "down"]);
    assert!(c.kube.wait_exit().success());
    for pid in pids {
        assert!(!engine_common::pid_alive(pid), "pid {pid} still runs");
    }
    // The pod's containers still run (only deleting a pod stops it).
    let names = c.engine_containers(&c.root.root(), "stays");
    assert_eq!(names.len(), 2);
    for n in names {
        assert_eq!(c.root.state_of(&n).unwrap().0, "running", "{n}");
    }
}

#[test]
fn image_pull_secrets_authenticate_pulls() {
    let c = Cluster::up();
    // A registry that wants a user and password, holding busybox.
    let htpasswd = c.root.dir().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("kube:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    let reg = Registry::start(
        &c.root.dir().join("auth-registry"),
        &["--htpasswd", htpasswd.to_str().unwrap()],
    );
    let auth_file = c.root.dir().join("auth.json");
    let hako_auth = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(hako())
            .arg("--root")
            .arg(c.root.root())
            .args(args)
            .env("HAKO_AUTH_FILE", &auth_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "hako {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = format!("{}/private/busybox:1", reg.addr);
    hako_auth(
        &["login", "-u", "kube", "--password-stdin", &reg.addr],
        Some("s3cret\n"),
    );
    hako_auth(&["tag", "busybox", &image], None);
    hako_auth(&["push", &image], None);
    hako_auth(&["rmi", &image], None);
    let pod = |name: &str, secrets: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{secrets}  containers:\n  - {{name: c, image: {image}, command: [\"sleep\", \"100000\"]}}\n"
        )
    };
    // Without credentials the pull fails: ErrImagePull, then ImagePullBackOff.
    c.apply(&pod("anonymous", ""));
    let p = c.wait_pod("anonymous", "a pull error", |p| {
        matches!(
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    });
    assert_eq!(phase(&p), "Pending");
    // With a dockerconfigjson secret it runs.
    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", reg.addr),
        "--docker-username=kube",
        "--docker-password=s3cret",
    ]);
    c.apply(&pod(
        "authenticated",
        "  imagePullSecrets: [{name: regcred}]\n",
    ));
    c.wait_pod("authenticated", "running", |p| phase(p) == "Running");
}

/// `scheme: HTTPS` probes skip certificate verification as upstream's do: a probe
/// of the kubelet's own TLS port (a certificate the probe does not trust) passes,
/// one of a plain-HTTP port fails with the handshake error in the event.
#[test]
fn https_probes_pass_on_tls_and_fail_on_plain_http() {
    let c = Cluster::up();
    let node = c.json(&["get", "node", &node_name()]);
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .unwrap();
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: tls-ok}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: [sleep, '100000']
    readinessProbe:
      httpGet: {{host: 127.0.0.1, port: {port}, path: /healthz, scheme: HTTPS}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: tls-bad}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: [sh, -c, 'mkdir /www; echo page > /www/index.html; exec httpd -f -p 8080 -h /www']
    readinessProbe:
      httpGet: {{port: 8080, path: /, scheme: HTTPS}}
      periodSeconds: 1
",
        image = c.image
    ));
    c.wait_pod("tls-ok", "Ready through an HTTPS probe", |p| {
        condition(p, "Ready")["status"] == "True"
    });
    let p = c.wait_pod("tls-bad", "running", |p| phase(p) == "Running");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let mut last = String::new();
    wait_for("a failed HTTPS readiness probe event", || {
        last = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=tls-bad,reason=Unhealthy",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        last.contains("Readiness probe failed")
    });
    assert!(last.contains(&format!("https://{ip}:8080/")), "{last}");
    assert!(!last.contains("not supported"), "{last}");
    assert_eq!(condition(&c.pod("tls-bad"), "Ready")["status"], "False");
}

/// `kubectl attach -i` reaches a running container's stdin and output through the
/// API server, the kubelet's relay and the CRI streaming server; with
/// `stdinOnce` the container's stdin closes when the session's does.
#[test]
fn kubectl_attach_reaches_the_running_container() {
    let c = Cluster::up();
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: attached}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {}
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'echo ready; while read l; do echo \"got $l\"; done; echo bye']
",
        c.image
    ));
    c.wait_pod("attached", "running", |p| phase(p) == "Running");
    wait_for("the container's first line", || {
        c.run(&["logs", "attached"], None).stdout == b"ready\n"
    });
    let out = c.run(&["attach", "-i", "attached", "-c", "c"], Some("one\ntwo\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("got one\ngot two\n"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdin closed with the session: the loop ended and the container exited 0.
    let p = c.wait_pod("attached", "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    assert_eq!(
        String::from_utf8_lossy(&c.run(&["logs", "attached"], None).stdout),
        "ready\ngot one\ngot two\nbye\n"
    );
}

/// A registry that accepts connections and never answers: pulls from it hang until
/// [`HangingRegistry::release`] closes them.
struct HangingRegistry {
    addr: String,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl HangingRegistry {
    fn start() -> HangingRegistry {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                held.lock().unwrap().push(s);
            }
        });
        HangingRegistry { addr, conns }
    }

    fn accepted(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    fn release(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for HangingRegistry {
    fn drop(&mut self) {
        self.release();
    }
}

#[test]
fn deployment_pods_start_while_another_pods_image_pull_hangs() {
    let c = Cluster::up();
    let hang = HangingRegistry::start();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: stuck}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {{name: c, image: "{}/kube/never:1", imagePullPolicy: Always}}
"#,
        hang.addr
    ));
    wait_for(
        "the kubelet to be pulling from the hanging registry",
        || hang.accepted() > 0,
    );
    // Pods are started side by side: a pull that does not end holds up no other pod.
    c.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: side}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: side}}}}
  template:
    metadata: {{labels: {{app: side}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - {{name: c, image: "{}", command: [sleep, "3600"]}}
"#,
        c.image
    ));
    c.wait("the Deployment's 3 pods to run", || {
        let pods = c.items(&["get", "pods", "-l", "app=side"]);
        (pods.len() == 3 && pods.iter().all(|p| phase(p) == "Running")).then_some(())
    });
    let stuck = c.pod("stuck");
    assert_eq!(phase(&stuck), "Pending", "{stuck}");
    assert!(hang.accepted() > 0);
    // The pull fails once its connections close; then the pod can be deleted.
    hang.release();
    c.ok(&["delete", "deployment", "side", "--wait=true"]);
    c.ok(&["delete", "pod", "stuck", "--wait=true", "--timeout=90s"]);
}

#[test]
fn pod_whose_sandbox_stops_gets_a_new_sandbox_and_runs_again() {
    let c = Cluster::up();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: phoenix}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {{name: c, image: "{}", command: [sleep, "3600"]}}
"#,
        c.image
    ));
    let first = c.wait_pod("phoenix", "Running", |p| phase(p) == "Running");
    let first_id = first["status"]["containerStatuses"][0]["containerID"].clone();
    // Stop the pause container behind the kubelet's back: the sandbox is no longer
    // ready, so the kubelet (which remembers the sandbox it made) starts over.
    let root = c.root.root();
    let sandbox = c
        .engine_containers(&root, "phoenix")
        .into_iter()
        .find(|n| n.starts_with("k8s_POD_"))
        .expect("the pod's sandbox container");
    let out = Command::new(hako())
        .arg("--root")
        .arg(&root)
        .args(["stop", "-t", "0", &sandbox])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let again = c.wait_pod("phoenix", "running in a new sandbox", |p| {
        phase(p) == "Running"
            && !p["status"]["containerStatuses"][0]["containerID"].is_null()
            && p["status"]["containerStatuses"][0]["containerID"] != first_id
    });
    assert!(
        again["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "{again}"
    );
    c.ok(&["delete", "pod", "phoenix", "--wait=true"]);
}

/// The processes whose command line has `kube scheduler` and mentions `root`.
fn scheduler_processes(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" kube scheduler") && c.contains(&root))
        .collect()
}

#[test]
fn kube_up_schedules_pods_without_a_scheduler_process() {
    let c = Cluster::up();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: placed}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
        c.image
    ));
    let p = c.wait_pod("placed", "running", |p| phase(p) == "Running");
    assert_eq!(p["spec"]["nodeName"], node_name().as_str());
    // The binding came from `up` itself: no scheduler process, no pid file of one.
    let procs = scheduler_processes(&c.root.root());
    assert!(procs.is_empty(), "scheduler processes: {procs:?}");
    assert!(!c.root.root().join("kube/scheduler.pid").exists());
    // The event says who bound it: the scheduler's identity, not the admin's.
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=placed,reason=Scheduled",
        "-o",
        "jsonpath={.items[*].source.component}",
    ]);
    assert_eq!(events.trim(), "default-scheduler");
}

#[test]
fn standalone_scheduler_binds_pods_of_an_up_without_one() {
    let mut c = Cluster::up_with(&["--disable-scheduler"]);
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: waits}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [\"sleep\", \"100000\"]}}\n",
        c.image
    ));
    // Nothing in `up` binds it.
    let p = c.json(&["get", "pod", "waits"]);
    assert!(p["spec"]["nodeName"].is_null(), "{p}");
    let sched = Command::new(hako())
        .arg("--root")
        .arg(c.root.root())
        .args(["kube", "scheduler", "--kubeconfig"])
        .arg(c.root.root().join("kube/scheduler.kubeconfig"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.extra.push(sched);
    let p = c.wait_pod("waits", "running", |p| phase(p) == "Running");
    assert_eq!(p["spec"]["nodeName"], node_name().as_str());
    assert_eq!(scheduler_processes(&c.root.root()).len(), 1);
}
