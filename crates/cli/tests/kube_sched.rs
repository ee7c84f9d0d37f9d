//! Sidecar init containers, the scheduler's spreading and scoring, and preemption,
//! driven by the real kubectl against `hako kube up` with real pods (busybox pulled
//! from a `hako registry` on 127.0.0.1). Every test stops its control plane and resets
//! its root (containers, netns, cgroups) also when it fails; host directories the pods
//! write to live in the test's temp dir.

mod engine_common;
mod kube_cluster;
mod kube_common;

use kube_cluster::Cluster;
use kube_common::{condition, node_name, phase};
use serde_json::Value;

/// The status of container `name` in `field` (`initContainerStatuses`...).
fn status_of<'a>(pod: &'a Value, field: &str, name: &str) -> &'a Value {
    pod["status"][field]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

/// A sidecar starts first and lets the next init container run only once its startup
/// probe passed, keeps running beside the container, is restarted when it exits without
/// touching the container, and is stopped after the container on deletion.
#[test]
fn sidecar_init_container_runs_beside_the_pod_and_stops_last() {
    let c = Cluster::up(&[]);
    let dir = c.root.dir().join("sidecar");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: sc}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 20
  volumes: [{{name: s, hostPath: {{path: {dir}, type: Directory}}}}]
  initContainers:
  - name: side
    image: {img}
    restartPolicy: Always
    command: ["sh", "-c", "echo side-up >> /s/log; trap 'sleep 1; echo side-term >> /s/log; exit 0' TERM; sleep 2; touch /s/ready; while [ ! -f /s/exit ]; do sleep 1; done; rm /s/exit; echo side-exit >> /s/log"]
    startupProbe: {{exec: {{command: ["test", "-f", "/s/ready"]}}, periodSeconds: 1}}
    volumeMounts: [{{name: s, mountPath: /s}}]
  - name: init
    image: {img}
    command: ["sh", "-c", "test -f /s/ready && echo init >> /s/log"]
    volumeMounts: [{{name: s, mountPath: /s}}]
  containers:
  - name: main
    image: {img}
    command: ["sh", "-c", "echo main >> /s/log; trap 'sleep 3; echo main-term >> /s/log; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{{name: s, mountPath: /s}}]
"#,
        dir = dir.display(),
        img = c.image
    ));
    let p = c.wait_pod("sc", "running and ready", |p| {
        phase(p) == "Running" && condition(p, "Ready")["status"] == "True"
    });
    // The regular init container ran after the sidecar's startup probe passed.
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        ["side-up", "init", "main"],
        "{lines}"
    );
    let side = status_of(&p, "initContainerStatuses", "side");
    assert!(side["state"]["running"].is_object(), "{side}");
    assert_eq!(side["started"], true, "{side}");
    assert_eq!(side["ready"], true, "{side}");
    let init = status_of(&p, "initContainerStatuses", "init");
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    assert_eq!(condition(&p, "Initialized")["status"], "True");

    // The sidecar exits: it is started again (restartPolicy Never is the pod's, not its).
    std::fs::write(dir.join("exit"), "").unwrap();
    let p = c.wait_pod("sc", "the sidecar restarted", |p| {
        let s = status_of(p, "initContainerStatuses", "side");
        s["restartCount"] == 1 && s["state"]["running"].is_object()
    });
    let main = status_of(&p, "containerStatuses", "main");
    assert_eq!(main["restartCount"], 0, "{main}");
    assert!(main["state"]["running"].is_object(), "{main}");
    assert_eq!(phase(&p), "Running");
    let side = status_of(&p, "initContainerStatuses", "side");
    assert_eq!(side["lastState"]["terminated"]["exitCode"], 0, "{side}");

    // Deletion stops the container (3 s in its TERM handler), then the sidecar.
    c.ok(&["delete", "pod", "sc", "--wait=true", "--timeout=60s"]);
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [
            "side-up",
            "init",
            "main",
            "side-exit",
            "side-up",
            "main-term",
            "side-term"
        ],
        "{lines}"
    );
}

/// A Job's pod completes when its container does although its sidecar never exits;
/// the sidecar is stopped then.
#[test]
fn sidecar_does_not_hold_a_job_pod_from_completing() {
    let mut c = Cluster::up(&[]);
    c.delete_on_drop = Some("pods".into());
    c.apply(&format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: withside}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      initContainers:
      - {{name: side, image: {img}, restartPolicy: Always, command: ["sleep", "100000"]}}
      containers:
      - {{name: main, image: {img}, command: ["sh", "-c", "sleep 1; echo done"]}}
"#,
        img = c.image
    ));
    c.wait("the job to complete", || {
        let j = c.try_json(&["get", "job", "withside"])?;
        (condition(&j, "Complete")["status"] == "True").then_some(())
    });
    let pods = c.items(&["get", "pods", "-l", "job-name=withside"]);
    assert_eq!(pods.len(), 1);
    let name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let p = c.wait_pod(&name, "the sidecar stopped", |p| {
        status_of(p, "initContainerStatuses", "side")["state"]["terminated"].is_object()
    });
    assert_eq!(phase(&p), "Succeeded");
    let main = status_of(&p, "containerStatuses", "main");
    assert_eq!(main["state"]["terminated"]["exitCode"], 0, "{main}");
}

/// A pod named `name` in namespace `ns` with `labels` (flow mapping body) and extra
/// spec lines (two-space indented), sleeping.
fn pod_yaml(image: &str, ns: &str, name: &str, labels: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{spec}  containers:\n  - {{name: c, image: {image}, command: [sleep, '100000']}}\n"
    )
}

impl Cluster {
    /// Apply a pod and wait until the scheduler bound it: its node.
    fn placed(&self, ns: &str, name: &str, labels: &str, spec: &str) -> String {
        self.apply(&pod_yaml(&self.image, ns, name, labels, spec));
        self.wait(&format!("pod {name} bound"), || {
            let p = self.try_json(&["get", "pod", name, "-n", ns])?;
            p["spec"]["nodeName"].as_str().map(str::to_string)
        })
    }

    /// Apply a pod the scheduler must refuse: its Unschedulable message.
    fn refused(&self, name: &str, labels: &str, spec: &str) -> String {
        self.apply(&pod_yaml(&self.image, "default", name, labels, spec));
        let p = self.wait_pod(name, "unschedulable", |p| {
            condition(p, "PodScheduled")["reason"] == "Unschedulable"
        });
        assert!(p["spec"]["nodeName"].is_null(), "{p}");
        condition(&p, "PodScheduled")["message"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

const ZONE: &str = "topology.kubernetes.io/zone";

/// Topology spread (DoNotSchedule with minDomains, ScheduleAnyway), pod affinity on a
/// node label other than the hostname, preferred pod (anti-)affinity weights and
/// namespaceSelector, on two nodes (the second a kubelet with a root of its own) in
/// zones `za` and `zb`.
#[test]
fn scheduler_spreads_over_zones_and_scores_pod_affinity() {
    let c = Cluster::up(&[]);
    let second = c.second_node();
    let (n1, n2) = (node_name(), second.name.clone());
    c.ok(&["label", "node", &n1, &format!("{ZONE}=za")]);
    c.ok(&["label", "node", &n2, &format!("{ZONE}=zb")]);
    let prefer_n1 = |weight: u32| {
        format!("nodeAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: {weight}, preference: {{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{n1}]}}]}}}}]}}")
    };
    let spread = |when: &str, extra: &str| {
        format!("  topologySpreadConstraints: [{{maxSkew: 1, topologyKey: {ZONE}, whenUnsatisfiable: {when}, labelSelector: {{matchLabels: {{app: spread}}}}{extra}}}]\n")
    };

    // maxSkew 1 over the zones beats the preference for the first node: 2 and 2.
    let spec = format!(
        "  affinity: {{{}}}\n{}",
        prefer_n1(100),
        spread("DoNotSchedule", "")
    );
    let nodes: Vec<String> = ["s1", "s2", "s3", "s4"]
        .iter()
        .map(|n| c.placed("default", n, "app: spread", &spec))
        .collect();
    assert_eq!(nodes, [n1.clone(), n2.clone(), n1.clone(), n2.clone()]);
    // Fewer zones than minDomains: the minimum counts as 0, so no node keeps the skew.
    let msg = c.refused(
        "s5",
        "app: spread",
        &spread("DoNotSchedule", ", minDomains: 3"),
    );
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints."
    );
    let msg = c.refused(
        "s6",
        "app: spread",
        "  topologySpreadConstraints: [{maxSkew: 1, topologyKey: example.com/rack, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}]\n",
    );
    assert_eq!(msg, "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints (missing required label).");

    // A third spread pod pinned to the first node (zone za: 3, zb: 2).
    let pin = format!("  nodeSelector: {{kubernetes.io/hostname: {n1}}}\n");
    assert_eq!(
        c.placed("default", "pin", "app: spread, role: pin", &pin),
        n1
    );
    // Required pod affinity on the zone key lands beside `pin` (the emptier node loses).
    let zone_term =
        format!("{{labelSelector: {{matchLabels: {{role: pin}}}}, topologyKey: {ZONE}}}");
    let mate = format!(
        "  affinity: {{podAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: [{zone_term}]}}}}\n"
    );
    assert_eq!(c.placed("default", "mate", "app: mate", &mate), n1);
    // Preferred pod affinity pulls towards `pin`.
    let near = format!(
        "  affinity: {{podAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: 50, podAffinityTerm: {zone_term}}}]}}}}\n"
    );
    assert_eq!(c.placed("default", "near", "app: near", &near), n1);
    // ScheduleAnyway: the emptier zone outweighs a small node preference.
    let soft = format!(
        "  affinity: {{{}}}\n{}",
        prefer_n1(1),
        spread("ScheduleAnyway", "")
    );
    assert_eq!(c.placed("default", "soft", "app: soft", &soft), n2);

    // Preferred pod anti-affinity pushes away, even against a node preference.
    let away = format!(
        "  affinity: {{{}, podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: 50, podAffinityTerm: {zone_term}}}]}}}}\n",
        prefer_n1(1)
    );
    assert_eq!(c.placed("default", "away", "app: away", &away), n2);

    // namespaceSelector: only namespaces with matching labels hold the selected pods.
    c.ok(&["create", "namespace", "teamb"]);
    c.ok(&["label", "namespace", "teamb", "team=blue"]);
    let on_n2 = format!("  nodeSelector: {{kubernetes.io/hostname: {n2}}}\n");
    assert_eq!(c.placed("teamb", "remote", "app: remote", &on_n2), n2);
    let by_team = |team: &str| {
        format!("  affinity: {{podAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: [{{labelSelector: {{matchLabels: {{app: remote}}}}, namespaceSelector: {{matchLabels: {{team: {team}}}}}, topologyKey: kubernetes.io/hostname}}]}}}}\n")
    };
    assert_eq!(
        c.placed("default", "blue", "app: blue", &by_team("blue")),
        n2
    );
    let msg = c.refused("red", "app: red", &by_team("red"));
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."
    );
}

/// PriorityClasses (built-in ones, Priority admission) and preemption: a pod of a
/// higher class that fits only without a running lower-priority pod evicts it
/// (DisruptionTarget condition, Preempted event, graceful delete), is nominated to the
/// node, then runs there.
#[test]
fn higher_priority_pod_preempts_a_lower_one() {
    let mut c = Cluster::up(&[]);
    c.delete_on_drop = Some("pods".into());
    let node = node_name();
    let critical = c.json(&["get", "priorityclass", "system-node-critical"]);
    assert_eq!(critical["value"], 2_000_001_000);
    c.apply("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n");
    let with = |name: &str, class: &str, cpu: i64, grace: u32| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: {grace}\n  priorityClassName: {class}\n  containers:\n  - {{name: c, image: {}, command: [sleep, '100000'], resources: {{requests: {{cpu: {cpu}m}}}}}}\n",
            c.image
        )
    };
    // Admission: the class's value becomes spec.priority; an unknown class is refused.
    let dry = c.ok_in(
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(&with("crit", "system-node-critical", 10, 1)),
    );
    let dry: Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["spec"]["priority"], 2_000_001_000);
    assert_eq!(dry["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let err = c.fails_in(&["apply", "-f", "-"], Some(&with("nope", "missing", 10, 1)));
    assert!(
        err.contains(r#"pods "nope" is forbidden: no PriorityClass with name missing was found"#),
        "{err}"
    );

    // A low pod takes all but 500m of the node's cpu; the high one asks for 600m.
    let alloc = c.json(&["get", "node", &node])["status"]["allocatable"]["cpu"]
        .as_str()
        .unwrap()
        .to_string();
    let alloc: i64 = match alloc.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => alloc.parse::<i64>().unwrap() * 1000,
    };
    c.apply(
        &with("low", "system-cluster-critical", alloc - 500, 10)
            .replace("  priorityClassName: system-cluster-critical\n", ""),
    );
    c.wait_pod("low", "running", |p| phase(p) == "Running");
    c.apply(&with("high", "high", 600, 1));
    // The low pod is marked and deleted gracefully (its 10 s grace keeps it visible).
    let low = c.wait_pod("low", "preempted", |p| {
        condition(p, "DisruptionTarget")["reason"] == "PreemptionByScheduler"
    });
    assert!(low["metadata"]["deletionTimestamp"].is_string(), "{low}");
    let high = c.wait_pod("high", "nominated", |p| {
        p["status"]["nominatedNodeName"] == node.as_str()
    });
    assert!(high["spec"]["nodeName"].is_null(), "{high}");
    let uid = high["metadata"]["uid"].as_str().unwrap().to_string();
    let events = c.items(&["get", "events", "--field-selector", "reason=Preempted"]);
    assert!(
        events.iter().any(
            |e| e["message"] == format!("Preempted by pod {uid} on node {node}")
                && e["involvedObject"]["name"] == "low"
        ),
        "{events:?}"
    );
    let high = c.wait_pod("high", "running", |p| phase(p) == "Running");
    assert_eq!(high["spec"]["nodeName"], node.as_str());
    assert_eq!(high["spec"]["priority"], 1000);
    assert!(c.try_json(&["get", "pod", "low"]).is_none());
}

/// Readiness gates: a running pod stays unready (ReadinessGatesNotReady, upstream's
/// message) until the gate's condition is True in its status.
#[test]
fn readiness_gate_holds_ready_until_its_condition_is_true() {
    let mut c = Cluster::up(&[]);
    c.delete_on_drop = Some("pods".into());
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: gated}}\nspec:\n  terminationGracePeriodSeconds: 1\n  readinessGates: [{{conditionType: example.com/gate}}]\n  containers:\n  - {{name: c, image: {}, command: [sleep, '100000']}}\n",
        c.image
    ));
    let p = c.wait_pod("gated", "running with ready containers", |p| {
        phase(p) == "Running" && condition(p, "ContainersReady")["status"] == "True"
    });
    let ready = condition(&p, "Ready");
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "ReadinessGatesNotReady");
    assert_eq!(
        ready["message"],
        "corresponding condition of pod readiness gate \"example.com/gate\" does not exist."
    );
    let patch = |status: &str| {
        format!(
            r#"{{"status": {{"conditions": [{{"type": "example.com/gate", "status": "{status}"}}]}}}}"#
        )
    };
    c.ok(&[
        "patch",
        "pod",
        "gated",
        "--subresource=status",
        "--type=strategic",
        "-p",
        &patch("False"),
    ]);
    c.wait_pod("gated", "the gate reported False", |p| {
        condition(p, "Ready")["message"]
            == "the status of pod readiness gate \"example.com/gate\" is not \"True\", but False"
    });
    c.ok(&[
        "patch",
        "pod",
        "gated",
        "--subresource=status",
        "--type=strategic",
        "-p",
        &patch("True"),
    ]);
    let p = c.wait_pod("gated", "ready", |p| {
        condition(p, "Ready")["status"] == "True"
    });
    // The gate's condition is kept beside the kubelet's own.
    assert_eq!(condition(&p, "example.com/gate")["status"], "True");
}

/// A liveness probe's terminationGracePeriodSeconds overrides the pod's hour-long one:
/// the container ignoring SIGTERM is killed after it and restarted.
#[test]
fn liveness_probe_grace_period_overrides_the_pods() {
    let c = Cluster::up(&[]);
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: probed}}\nspec:\n  terminationGracePeriodSeconds: 3600\n  containers:\n  - name: c\n    image: {}\n    command: [sh, -c, 'touch /tmp/alive; exec sleep 100000']\n    livenessProbe: {{exec: {{command: [test, -f, /tmp/alive]}}, periodSeconds: 1, failureThreshold: 1, terminationGracePeriodSeconds: 1}}\n",
        c.image
    ));
    c.wait_pod("probed", "running", |p| phase(p) == "Running");
    c.ok(&["exec", "probed", "--", "rm", "/tmp/alive"]);
    let p = c.wait_pod("probed", "restarted", |p| {
        status_of(p, "containerStatuses", "c")["restartCount"] == 1
    });
    let last = &status_of(&p, "containerStatuses", "c")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");
    c.ok(&[
        "delete",
        "pod",
        "probed",
        "--grace-period=1",
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// A sidecar's requests count beside the containers' and the later init containers':
/// two init containers each asking 60% of the node's cpu fit one after the other, not a
/// sidecar and an init container that run at the same time.
#[test]
fn sidecar_requests_count_beside_the_later_init_containers() {
    let c = Cluster::up(&[]);
    let alloc = c.ok(&[
        "get",
        "node",
        &node_name(),
        "-o",
        "jsonpath={.status.allocatable.cpu}",
    ]);
    let milli: u64 = match alloc.trim().strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => alloc.trim().parse::<u64>().unwrap() * 1000,
    };
    let share = milli * 6 / 10;
    let init = |name: &str, sidecar: bool| {
        format!(
            "  - {{name: {name}, image: {}, command: [{}], {}resources: {{requests: {{cpu: {share}m}}}}}}\n",
            c.image,
            if sidecar { "sleep, '100000'" } else { "'true'" },
            if sidecar { "restartPolicy: Always, " } else { "" },
        )
    };
    let beside = format!(
        "  initContainers:\n{}{}",
        init("side", true),
        init("i2", false)
    );
    let msg = c.refused("beside", "app: b", &beside);
    assert!(msg.contains("Insufficient cpu"), "{msg}");
    c.ok(&["delete", "pod", "beside", "--wait=true"]);
    let both = format!(
        "  initContainers:\n{}{}",
        init("i1", false),
        init("i2", false)
    );
    assert_eq!(c.placed("default", "in-turn", "app: a", &both), node_name());
}
