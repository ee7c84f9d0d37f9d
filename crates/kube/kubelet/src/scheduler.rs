//! The scheduler: binds pending pods (no nodeName, schedulerName default-scheduler) to a
//! node through the pods/binding subresource. Filters: nodeName, nodeSelector, required
//! node affinity, taints and tolerations, unschedulable nodes, requests against
//! allocatable minus the pods already there, required pod (anti-)affinity on any
//! topology key (namespaceSelector honoured), topology spread constraints; scores:
//! preferred node and pod (anti-)affinity, ScheduleAnyway spreading and least
//! allocated; volume binding (claims exist, bound
//! volumes admit the node, unbound Immediate claims make the pod wait, delayed-binding
//! claims get the `volume.kubernetes.io/selected-node` annotation). A pod that fits nowhere gets
//! PodScheduled=False (Unschedulable) and a FailedScheduling event.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, PodSpec, Taint, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use tokio::sync::Notify;

use crate::client::kube_client;
use crate::events::{pod_ref, Recorder};
use crate::quantity::{parse_milli, parse_units};
use crate::spec::pod_requests;

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub kubeconfig: PathBuf,
    pub scheduler_name: String,
}

/// Run the scheduler until SIGINT/SIGTERM, on a runtime of its own.
pub fn run_scheduler(opts: SchedulerOptions, ready: impl FnOnce()) -> Result<()> {
    crate::limit_malloc_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the scheduler's runtime")?;
    rt.block_on(async move {
        let client = kube_client(&opts.kubeconfig).await?;
        ready();
        tokio::select! {
            r = schedule_loop(client, opts.scheduler_name.clone()) => r,
            _ = crate::shutdown_signal() => Ok(()),
        }
    })
}

/// Run the scheduler on a thread of the calling process (`hako kube up`, as k3s runs
/// every control-plane component in one process): a single-threaded runtime of its own,
/// still a client of the API server through `kubeconfig`. Errors are logged; the thread
/// retries every 5 s until the API server answers.
pub fn spawn_thread(opts: SchedulerOptions) {
    std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("starting the scheduler's runtime: {e:#}"),
            };
            rt.block_on(async move {
                loop {
                    let r = match kube_client(&opts.kubeconfig).await {
                        Ok(client) => schedule_loop(client, opts.scheduler_name.clone()).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        tracing::error!("running the scheduler: {e:#}");
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            })
        })
        .expect("spawning the scheduler thread");
}

async fn schedule_loop(client: kube::Client, name: String) -> Result<()> {
    let wake = Arc::new(Notify::new());
    let (pods, pw) = reflector::store();
    let (nodes, nw) = reflector::store();
    let w1 = wake.clone();
    let pod_stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pw)
        .applied_objects()
        .for_each(move |_| {
            w1.notify_one();
            async {}
        });
    let w2 = wake.clone();
    let node_stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(nw)
        .applied_objects()
        .for_each(move |_| {
            w2.notify_one();
            async {}
        });
    tokio::spawn(pod_stream);
    tokio::spawn(node_stream);
    let (claims, cw) = reflector::store();
    let (volumes, vw) = reflector::store();
    let (classes, sw) = reflector::store();
    tokio::spawn(watch_into::<PersistentVolumeClaim>(
        client.clone(),
        cw,
        wake.clone(),
    ));
    tokio::spawn(watch_into::<PersistentVolume>(
        client.clone(),
        vw,
        wake.clone(),
    ));
    tokio::spawn(watch_into::<StorageClass>(client.clone(), sw, wake.clone()));
    // Namespaces' labels, for namespaceSelector in pod affinity terms.
    let (namespaces, nsw) = reflector::store();
    tokio::spawn(watch_into::<Namespace>(client.clone(), nsw, wake.clone()));
    let s = Scheduler {
        b: Binder {
            recorder: Recorder {
                client: client.clone(),
                component: "default-scheduler",
                host: String::new(),
            },
            client,
            claims,
            classes,
        },
        name,
        pods,
        nodes,
        volumes,
        namespaces,
        reported: HashMap::new(),
        assumed: Default::default(),
        wake: wake.clone(),
        binds: Arc::new(tokio::sync::Semaphore::new(BINDS_IN_FLIGHT)),
    };
    let _ = s.pods.wait_until_ready().await;
    let _ = s.nodes.wait_until_ready().await;
    let _ = s.b.claims.wait_until_ready().await;
    let _ = s.volumes.wait_until_ready().await;
    let _ = s.b.classes.wait_until_ready().await;
    let _ = s.namespaces.wait_until_ready().await;
    let mut s = s;
    loop {
        s.pass().await;
        // Unschedulable pods are retried when anything changes, and every 5 s.
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(Duration::from_millis(20)).await,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Bindings sent at once (upstream binds each pod in a goroutine of its own).
const BINDS_IN_FLIGHT: usize = 16;

struct Scheduler {
    b: Binder,
    name: String,
    pods: Store<Pod>,
    nodes: Store<Node>,
    volumes: Store<PersistentVolume>,
    namespaces: Store<Namespace>,
    /// The last Unschedulable message written per pod uid (not repeated).
    reported: HashMap<String, String>,
    /// Pods placed (their binding in flight or done) but not yet seen bound in the
    /// cache: uid → node. Shared with the binding tasks, which drop a failed one.
    assumed: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// Wakes the scheduling loop (a failed binding: place the pod again).
    wake: Arc<Notify>,
    /// Bounds the bindings in flight.
    binds: Arc<tokio::sync::Semaphore>,
}

/// What a binding task needs of the scheduler (the stores are shared handles).
#[derive(Clone)]
struct Binder {
    client: kube::Client,
    recorder: Recorder,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
}

/// Watch a kind into a reflector store, waking the scheduler on changes.
async fn watch_into<K>(client: kube::Client, w: reflector::store::Writer<K>, wake: Arc<Notify>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(w)
        .applied_objects()
        .for_each(move |_| {
            wake.notify_one();
            async {}
        })
        .await
}

fn pod_node(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Scheduler {
    fn assumed(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.assumed.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn pass(&mut self) {
        let all = self.pods.state();
        self.assumed().retain(|uid, _| {
            all.iter()
                .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str()) && pod_node(p).is_none())
        });
        let assumed = self.assumed().clone();
        let mut pending: Vec<Arc<Pod>> = all
            .iter()
            .filter(|p| {
                pod_node(p).is_none()
                    && p.metadata.deletion_timestamp.is_none()
                    && !terminal(p)
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.scheduler_name.as_deref())
                        .unwrap_or("default-scheduler")
                        == self.name
                    && !assumed.contains_key(p.metadata.uid.as_deref().unwrap_or(""))
            })
            .cloned()
            .collect();
        pending.sort_by_key(|p| {
            (
                std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
                p.metadata.creation_timestamp.clone().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
        // Upstream's two cycles: pods are placed one at a time (each placement is assumed,
        // so the next one counts it), then bound concurrently: a binding is an API round
        // trip, and binding one pod after another made pods reach the kubelet one by one.
        // The bindings run as tasks of their own: the next pass places the pods created
        // meanwhile without waiting for this pass's bindings to be answered.
        let nodes = self.nodes.state();
        let mut placed = Vec::new();
        for pod in pending {
            match self.pick(&pod, &nodes, &all) {
                Ok(node) => {
                    if let Some(uid) = &pod.metadata.uid {
                        self.assumed().insert(uid.clone(), node.clone());
                    }
                    placed.push((pod, node));
                }
                Err(msg) => {
                    if let Some((node, victims)) = self.preemption(&pod, &nodes, &all) {
                        self.preempt(&pod, &node, &victims).await;
                    }
                    self.unschedulable(&pod, msg).await
                }
            }
        }
        for (pod, node) in placed {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            self.reported.remove(&uid);
            let b = self.b.clone();
            let (assumed, wake, binds) =
                (self.assumed.clone(), self.wake.clone(), self.binds.clone());
            tokio::spawn(async move {
                let Ok(_permit) = binds.acquire_owned().await else {
                    return;
                };
                if !b.bind(&pod, &node).await {
                    // Not bound: placed again at the next pass.
                    assumed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&uid);
                    wake.notify_one();
                }
            });
        }
    }

    fn topology<'a>(&self, nodes: &'a [Arc<Node>], all: &'a [Arc<Pod>]) -> Topology<'a> {
        let assumed = self.assumed();
        Topology {
            nodes,
            placed: all
                .iter()
                .filter(|p| !terminal(p))
                .filter_map(|p| {
                    let uid = p.metadata.uid.as_deref().unwrap_or("");
                    let node = pod_node(p).or(assumed.get(uid).map(String::as_str))?;
                    Some((p.as_ref(), node.to_string()))
                })
                .collect(),
            namespaces: self
                .namespaces
                .state()
                .iter()
                .map(|n| {
                    (
                        n.metadata.name.clone().unwrap_or_default(),
                        n.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    /// Pods on node `name` that still count (not finished), with the ones this
    /// scheduler just bound there.
    fn on_node<'a>(&self, name: &str, all: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
        let assumed = self.assumed();
        all.iter()
            .filter(|p| !terminal(p))
            .filter(|p| {
                pod_node(p) == Some(name)
                    || assumed
                        .get(p.metadata.uid.as_deref().unwrap_or(""))
                        .map(String::as_str)
                        == Some(name)
            })
            .map(|p| p.as_ref())
            .collect()
    }

    /// Upstream's DefaultPreemption for a pod that fits nowhere: on each node, the
    /// pods of lower priority whose removal lets it fit (pods already terminating
    /// count as gone; the highest-priority ones are spared when it still fits
    /// without them); the node whose victims have the lowest top priority, then the
    /// fewest. No victims: the pod only waits for terminating pods.
    fn preemption(
        &self,
        pod: &Pod,
        nodes: &[Arc<Node>],
        all: &[Arc<Pod>],
    ) -> Option<(String, Vec<Pod>)> {
        let spec = pod.spec.as_ref()?;
        if spec.preemption_policy.as_deref() == Some("Never") {
            return None;
        }
        let prio = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let mine = prio(pod);
        let topo = self.topology(nodes, all);
        let mut best: Option<((i32, usize, String), Vec<Pod>)> = None;
        for n in nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let staying: Vec<&Pod> = self
                .on_node(&name, all)
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let (mut lower, mut kept): (Vec<&Pod>, Vec<&Pod>) =
                staying.into_iter().partition(|p| prio(p) < mine);
            if self.volumes_fit(pod, n).is_err() || fits(pod, n, &kept, &topo).is_err() {
                continue;
            }
            // Spare the most important ones first.
            lower.sort_by_key(|p| std::cmp::Reverse(prio(p)));
            let mut victims = Vec::new();
            for p in lower {
                kept.push(p);
                if fits(pod, n, &kept, &topo).is_err() {
                    kept.pop();
                    victims.push(p.clone());
                }
            }
            let key = (
                victims.iter().map(prio).max().unwrap_or(i32::MIN),
                victims.len(),
                name,
            );
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, victims));
            }
        }
        best.map(|((_, _, node), victims)| (node, victims))
    }

    /// Evict `victims` for `pod` (DisruptionTarget condition, Preempted event,
    /// graceful delete) and nominate `node` for it.
    async fn preempt(&mut self, pod: &Pod, node: &str, victims: &[Pod]) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        for v in victims {
            let (api, ns, name) = self.pod_api(v);
            let mut conds = v
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            conds.retain(|c| c.type_ != "DisruptionTarget");
            let mut conds: Vec<serde_json::Value> = conds
                .into_iter()
                .map(|c| serde_json::to_value(c).unwrap_or_default())
                .collect();
            conds.push(serde_json::json!({
                "type": "DisruptionTarget", "status": "True",
                "reason": "PreemptionByScheduler",
                "message": format!("{}: preempting to accommodate a higher priority pod", self.name),
                "lastTransitionTime": Time(Utc::now()),
            }));
            let patch = serde_json::json!({"status": {"conditions": conds}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!("marking pod {ns}/{name} preempted: {e}");
            }
            self.b.recorder.record(
                pod_ref(v, None),
                "Normal",
                "Preempted",
                format!("Preempted by pod {uid} on node {node}"),
            );
            let dp = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: v.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => tracing::warn!("preempting pod {ns}/{name}: {e}"),
            }
        }
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref());
        if nominated != Some(node) {
            let (api, ns, name) = self.pod_api(pod);
            let patch = serde_json::json!({"status": {"nominatedNodeName": node}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!("nominating node {node} for pod {ns}/{name}: {e}");
            }
        }
    }

    /// The pods API of `pod`'s namespace, with its namespace and name.
    fn pod_api(&self, pod: &Pod) -> (Api<Pod>, String, String) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        (Api::namespaced(self.b.client.clone(), &ns), ns, name)
    }

    /// The best node for `pod`, or why there is none (upstream's message shape).
    fn pick(&self, pod: &Pod, nodes: &[Arc<Node>], all: &[Arc<Pod>]) -> Result<String, String> {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(i64, String)> = None;
        let topo = self.topology(nodes, all);
        for n in nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let on_node = self.on_node(&name, all);
            match self
                .volumes_fit(pod, n)
                .and_then(|()| fits(pod, n, &on_node, &topo))
            {
                Err(r) => *reasons.entry(r).or_default() += 1,
                Ok(()) => {
                    let score = score(pod, n, &on_node, &topo);
                    if best
                        .as_ref()
                        .is_none_or(|(s, bn)| score > *s || (score == *s && name < *bn))
                    {
                        best = Some((score, name));
                    }
                }
            }
        }
        match best {
            Some((_, n)) => Ok(n),
            None => {
                let detail: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                let mut msg = format!("0/{} nodes are available", nodes.len());
                if !detail.is_empty() {
                    msg.push_str(": ");
                    msg.push_str(&detail.join(", "));
                }
                msg.push('.');
                Err(msg)
            }
        }
    }

    async fn unschedulable(&mut self, pod: &Pod, msg: String) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.reported.get(&uid) == Some(&msg) {
            return;
        }
        let (api, ns, name) = self.pod_api(pod);
        let mut conds = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conds.retain(|c| c.type_ != "PodScheduled");
        let patch = serde_json::json!({"status": {"phase": "Pending", "conditions": conds.into_iter().map(|c| serde_json::to_value(c).unwrap_or_default()).chain(std::iter::once(serde_json::json!({
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": msg, "lastTransitionTime": Time(Utc::now()),
        }))).collect::<Vec<_>>()}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.b.recorder.record(
                    pod_ref(pod, None),
                    "Warning",
                    "FailedScheduling",
                    msg.clone(),
                );
                self.reported.insert(uid, msg);
            }
            Err(e) => tracing::warn!("writing the Unschedulable condition of pod {ns}/{name}: {e}"),
        }
    }
}

/// Upstream's volume binder annotation: the node a delayed-binding claim is to be
/// provisioned (or bound) on.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

fn claim_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

impl Scheduler {
    /// The VolumeBinding filter: claims exist, bound ones' volumes admit the node,
    /// unbound ones wait for the scheduler only if their class says so.
    fn volumes_fit(&self, pod: &Pod, n: &Node) -> Result<(), String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        for name in claim_names(pod) {
            let Some(c) = self.b.claim(ns, &name) else {
                return Err(format!("persistentvolumeclaim {name:?} not found"));
            };
            if c.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
            }
            let volume = c
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty());
            match volume {
                Some(v) => {
                    let Some(pv) = self.volumes.get(&reflector::ObjectRef::new(&v)) else {
                        return Err(
                            "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
                                .into(),
                        );
                    };
                    let terms = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_affinity.as_ref())
                        .and_then(|a| a.required.as_ref())
                        .map(|r| r.node_selector_terms.clone());
                    if let Some(terms) = terms {
                        if !terms.iter().any(|t| term_matches(t, n)) {
                            return Err("node(s) had volume node affinity conflict".into());
                        }
                    }
                }
                None if self.b.delayed(&c) => {}
                None => return Err("pod has unbound immediate PersistentVolumeClaims".into()),
            }
        }
        Ok(())
    }
}

impl Binder {
    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&reflector::ObjectRef::new(name).within(ns))
    }

    /// Unbound, and its class binds only once a consumer is scheduled?
    fn delayed(&self, c: &PersistentVolumeClaim) -> bool {
        let class = c
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        !class.is_empty()
            && self
                .classes
                .get(&reflector::ObjectRef::new(&class))
                .is_some_and(|sc| sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
    }

    /// Annotate the pod's unbound delayed-binding claims with the chosen node, so the
    /// volume controller binds or provisions them there.
    async fn select_node_for_claims(&self, pod: &Pod, node: &str) -> Result<()> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        for name in claim_names(pod) {
            let Some(c) = self.claim(ns, &name) else {
                continue;
            };
            let unbound = c
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("")
                .is_empty();
            let selected = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SELECTED_NODE));
            if unbound && self.delayed(&c) && selected.map(String::as_str) != Some(node) {
                let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("selecting node {node} for claim {ns}/{name}"))?;
            }
        }
        Ok(())
    }

    /// Bind `pod` to `node`; false if it is not bound.
    async fn bind(&self, pod: &Pod, node: &str) -> bool {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = self.select_node_for_claims(pod, node).await {
            tracing::warn!("pod {ns}/{name}: {e:#}");
            return false;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        let body = serde_json::to_vec(&binding).unwrap_or_default();
        let r = api
            .create_subresource::<serde_json::Value>("binding", &name, &PostParams::default(), body)
            .await;
        // The binding subresource sets PodScheduled=True itself (as upstream's does).
        let r = match r {
            // An API server without pods/binding: set spec.nodeName and the condition.
            Err(kube::Error::Api(e))
                if e.code == 404 && !e.message.contains(&name) || e.code == 405 =>
            {
                let patch = serde_json::json!({"spec": {"nodeName": node}});
                let r = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ());
                if r.is_ok() {
                    let cond = serde_json::json!({"status": {"conditions": [{
                        "type": "PodScheduled", "status": "True",
                        "lastTransitionTime": Time(Utc::now()),
                    }]}});
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&cond))
                        .await;
                }
                r
            }
            r => r.map(|_| ()),
        };
        match r {
            Ok(()) => {
                self.recorder.record(
                    pod_ref(pod, None),
                    "Normal",
                    "Scheduled",
                    format!("Successfully assigned {ns}/{name} to {node}"),
                );
                true
            }
            Err(e) => {
                tracing::warn!("binding pod {ns}/{name} to {node}: {e}");
                false
            }
        }
    }
}

fn node_labels(n: &Node) -> BTreeMap<String, String> {
    n.metadata.labels.clone().unwrap_or_default()
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&r.key);
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(w)) = (
                v.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|w| w.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > w
            } else {
                v < w
            }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, n: &Node) -> bool {
    let labels = node_labels(n);
    let name = n.metadata.name.clone().unwrap_or_default();
    let exprs = t
        .match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, &labels));
    let fields_labels = BTreeMap::from([("metadata.name".to_string(), name)]);
    let fields = t
        .match_fields
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, &fields_labels));
    (t.match_expressions.is_some() || t.match_fields.is_some()) && exprs && fields
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            t.key.as_deref() == Some(taint.key.as_str())
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let ml = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let me = sel.match_expressions.iter().flatten().all(|r| {
        let v = labels.get(&r.key);
        let values = r.values.clone().unwrap_or_default();
        match r.operator.as_str() {
            "In" => v.is_some_and(|v| values.contains(v)),
            "NotIn" => v.is_none_or(|v| !values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        }
    });
    ml && me
}

/// Every node, where each non-finished pod runs (or was just bound), and the
/// namespaces' labels: what pod (anti-)affinity and topology spreading look at.
struct Topology<'a> {
    nodes: &'a [Arc<Node>],
    placed: Vec<(&'a Pod, String)>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
}

impl Topology<'_> {
    /// The value of label `key` on node `name`.
    fn domain(&self, key: &str, name: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .and_then(|n| n.metadata.labels.as_ref()?.get(key).cloned())
    }

    /// The pods in the same `key` domain as node `name` (none if it lacks the label).
    fn in_domain<'s>(&'s self, key: &'s str, name: &str) -> impl Iterator<Item = &'s Pod> + 's {
        let dom = self.domain(key, name);
        self.placed
            .iter()
            .filter(move |(_, on)| dom.is_some() && self.domain(key, on) == dom)
            .map(|(p, _)| *p)
    }

    /// Does pod affinity `term` of `owner` select `other` (namespaces, namespaceSelector
    /// — empty selects all — and the label selector)?
    fn selects(&self, term: &PodAffinityTerm, owner: &Pod, other: &Pod) -> bool {
        let ns_of = |p: &Pod| {
            p.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into())
        };
        let (own, other_ns) = (ns_of(owner), ns_of(other));
        let listed = term.namespaces.clone().unwrap_or_default();
        let ns_ok = match &term.namespace_selector {
            None if listed.is_empty() => other_ns == own,
            None => listed.contains(&other_ns),
            Some(sel) => {
                listed.contains(&other_ns)
                    || selector_matches(
                        sel,
                        &self.namespaces.get(&other_ns).cloned().unwrap_or_default(),
                    )
            }
        };
        let labels = other.metadata.labels.clone().unwrap_or_default();
        ns_ok
            && term
                .label_selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &labels))
    }

    /// Pods matching spread constraint `c` of `pod` per domain, over the nodes the
    /// pod's nodeSelector and required node affinity admit (upstream's default
    /// `nodeAffinityPolicy: Honor`) that have the topology key.
    fn spread_counts(&self, pod: &Pod, c: &TopologySpreadConstraint) -> BTreeMap<String, i64> {
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let eligible: BTreeMap<String, String> = self
            .nodes
            .iter()
            .filter(|n| node_affinity_fits(&spec, n))
            .filter_map(|n| {
                let v = n.metadata.labels.as_ref()?.get(&c.topology_key)?;
                Some((n.metadata.name.clone().unwrap_or_default(), v.clone()))
            })
            .collect();
        let mut counts: BTreeMap<String, i64> = eligible.values().map(|v| (v.clone(), 0)).collect();
        for (o, on) in &self.placed {
            let Some(dom) = eligible.get(on) else {
                continue;
            };
            let labels = o.metadata.labels.clone().unwrap_or_default();
            if o.metadata.namespace.as_deref().unwrap_or("default") == ns
                && o.metadata.deletion_timestamp.is_none()
                && c.label_selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(s, &labels))
            {
                *counts.entry(dom.clone()).or_default() += 1;
            }
        }
        counts
    }
}

/// nodeSelector and required node affinity.
fn node_affinity_fits(spec: &PodSpec, n: &Node) -> bool {
    let labels = node_labels(n);
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|req| req.node_selector_terms.iter().any(|t| term_matches(t, n)))
}

fn spread_constraints<'p>(
    pod: &'p Pod,
    when: &'p str,
) -> impl Iterator<Item = &'p TopologySpreadConstraint> + 'p {
    pod.spec
        .iter()
        .flat_map(|s| s.topology_spread_constraints.iter().flatten())
        .filter(move |c| c.when_unsatisfiable == when)
}

/// Whether `pod` may go to `n`, given the pods on it; Err is the reason (as upstream words it).
fn fits(pod: &Pod, n: &Node, on_node: &[&Pod], topo: &Topology) -> Result<(), String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let nspec = n.spec.clone().unwrap_or_default();
    let name = n.metadata.name.clone().unwrap_or_default();
    if nspec.unschedulable == Some(true) {
        let tolerated = spec.tolerations.iter().flatten().any(|t| {
            t.key.as_deref() == Some("node.kubernetes.io/unschedulable")
                || (t.operator.as_deref() == Some("Exists") && t.key.is_none())
        });
        if !tolerated {
            return Err("node(s) were unschedulable".into());
        }
    }
    if !node_affinity_fits(&spec, n) {
        return Err("node(s) didn't match Pod's node affinity/selector".into());
    }
    for taint in nspec.taints.iter().flatten() {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if !spec
            .tolerations
            .iter()
            .flatten()
            .any(|t| tolerates(t, taint))
        {
            return Err(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ));
        }
    }
    // Resources: requests against allocatable minus what the node's pods request.
    let alloc = n
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let (cpu, mem) = pod_requests(pod);
    let used: (i128, i128) = on_node
        .iter()
        .map(|p| pod_requests(p))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if let Some(max) = alloc.get("pods").and_then(|q| parse_units(&q.0)) {
        if on_node.len() as i128 + 1 > max {
            return Err("Too many pods".into());
        }
    }
    if let Some(a) = alloc.get("cpu").and_then(|q| parse_milli(&q.0)) {
        if cpu > 0 && used.0 + cpu > a {
            return Err("Insufficient cpu".into());
        }
    }
    if let Some(a) = alloc.get("memory").and_then(|q| parse_units(&q.0)) {
        if mem > 0 && used.1 + mem > a {
            return Err("Insufficient memory".into());
        }
    }
    // Host ports.
    let ports = |p: &Pod| -> Vec<(i32, String)> {
        p.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|cp| {
                cp.host_port
                    .filter(|h| *h > 0)
                    .map(|h| (h, cp.protocol.clone().unwrap_or_else(|| "TCP".into())))
            })
            .collect()
    };
    let mine = ports(pod);
    if !mine.is_empty()
        && on_node
            .iter()
            .any(|p| ports(p).iter().any(|x| mine.contains(x)))
    {
        return Err("node(s) didn't have free ports for the requested pod ports".into());
    }
    // Required pod anti-affinity: no selected pod in this node's topology domain.
    let anti = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .clone()
        })
        .unwrap_or_default();
    for term in &anti {
        if topo
            .in_domain(&term.topology_key, &name)
            .any(|o| topo.selects(term, pod, o))
        {
            return Err("node(s) didn't match pod anti-affinity rules".into());
        }
    }
    // Existing pods' anti-affinity against this one, in their domains.
    for (o, on) in &topo.placed {
        let terms = o
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();
        if terms.iter().any(|t| {
            let dom = topo.domain(&t.topology_key, on);
            dom.is_some() && topo.domain(&t.topology_key, &name) == dom && topo.selects(t, o, pod)
        }) {
            return Err("node(s) didn't satisfy existing pods anti-affinity rules".into());
        }
    }
    // Required pod affinity: a selected pod in this node's domain (or, upstream's
    // special case, none anywhere yet and the pod selects itself).
    let aff = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .clone()
        })
        .unwrap_or_default();
    for term in &aff {
        let here = topo
            .in_domain(&term.topology_key, &name)
            .any(|o| topo.selects(term, pod, o));
        let anywhere = topo.placed.iter().any(|(o, _)| topo.selects(term, pod, o));
        let has_key = topo.domain(&term.topology_key, &name).is_some();
        if !here && (anywhere || !has_key || !topo.selects(term, pod, pod)) {
            return Err("node(s) didn't match pod affinity rules".into());
        }
    }
    // Topology spread (DoNotSchedule): placing the pod here keeps the skew within
    // maxSkew (fewer domains than minDomains: the global minimum counts as 0).
    let own_labels = pod.metadata.labels.clone().unwrap_or_default();
    for c in spread_constraints(pod, "DoNotSchedule") {
        let Some(dom) = topo.domain(&c.topology_key, &name) else {
            return Err(
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into(),
            );
        };
        let counts = topo.spread_counts(pod, c);
        let few = (counts.len() as i32) < c.min_domains.unwrap_or(1);
        let min = if few {
            0
        } else {
            counts.values().copied().min().unwrap_or(0)
        };
        let own = c
            .label_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, &own_labels)) as i64;
        if counts.get(&dom).copied().unwrap_or(0) + own - min > c.max_skew as i64 {
            return Err("node(s) didn't match pod topology spread constraints".into());
        }
    }
    Ok(())
}

/// Preferred node affinity weights, preferred pod (anti-)affinity weights (× 100 per
/// term with a selected pod in the node's domain), ScheduleAnyway spreading (-100 per
/// matching pod in the domain) plus least-allocated (0-100 per resource).
fn score(pod: &Pod, n: &Node, on_node: &[&Pod], topo: &Topology) -> i64 {
    let mut s: i64 = 0;
    let name = n.metadata.name.clone().unwrap_or_default();
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let preferred = |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
        terms
            .into_iter()
            .flatten()
            .filter(|w| {
                let t = &w.pod_affinity_term;
                topo.in_domain(&t.topology_key, &name)
                    .any(|o| topo.selects(t, pod, o))
            })
            .map(|w| w.weight as i64 * 100)
            .sum::<i64>()
    };
    s += preferred(
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
    );
    s -= preferred(
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
    );
    for c in spread_constraints(pod, "ScheduleAnyway") {
        let counts = topo.spread_counts(pod, c);
        let worst = counts.values().copied().max().unwrap_or(0) + 1;
        let here = topo
            .domain(&c.topology_key, &name)
            .and_then(|d| counts.get(&d).copied())
            .unwrap_or(worst);
        s -= here * 100;
    }
    if let Some(pref) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
    {
        for p in pref {
            if term_matches(&p.preference, n) {
                s += p.weight as i64 * 100;
            }
        }
    }
    let alloc = n
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let (cpu, mem) = pod_requests(pod);
    let used: (i128, i128) = on_node
        .iter()
        .map(|p| pod_requests(p))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    // Unset requests count as upstream's defaults (100m, 200Mi) for spreading.
    let cpu = if cpu == 0 { 100 } else { cpu };
    let mem = if mem == 0 { 200 << 20 } else { mem };
    let free = |total: Option<i128>, used: i128, want: i128| -> i64 {
        match total {
            Some(t) if t > 0 => (((t - used - want).max(0) * 100) / t) as i64,
            _ => 0,
        }
    };
    s += free(
        alloc.get("cpu").and_then(|q| parse_milli(&q.0)),
        used.0,
        cpu,
    );
    s += free(
        alloc.get("memory").and_then(|q| parse_units(&q.0)),
        used.1,
        mem,
    );
    s
}
