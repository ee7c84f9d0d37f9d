//! Pod workers: one task per pod drives it through CRI (sandbox, image pulls, init
//! containers in order, containers, restarts with back-off, probes, hooks, termination)
//! and writes the pod's status back to the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::env::EnvContext;
use crate::events::pod_ref;
use crate::kubelet::Kubelet;
use crate::objects::PodObjects;
use crate::probe::{self, Action, ProbeState, Probes, Target};
use crate::spec::{self, name, namespace, uid};
use crate::volumes::{self, VolumeContext};

/// What the pod's sources want: the pod (None once it is gone from every source) and
/// whether it is a static pod (its status goes to its mirror pod).
#[derive(Clone)]
pub struct Desired {
    pub pod: Option<Arc<Pod>>,
    pub mirror: bool,
}

pub struct Worker {
    pub tx: watch::Sender<Desired>,
    pub wake: Arc<Notify>,
}

struct ProbeHandle {
    state: Arc<Mutex<ProbeState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct PodState {
    /// Why a container is not running (ErrImagePull, CrashLoopBackOff...), by name.
    waiting: HashMap<String, (String, String)>,
    probes: HashMap<String, ProbeHandle>,
    last_status: Option<serde_json::Value>,
    terminal: bool,
    start_time: Option<Time>,
    /// Earliest back-off expiry: the worker wakes then.
    next_wake: Option<Instant>,
    /// The ConfigMaps/Secrets the pod uses and its volumes' host paths, as of this sync.
    objects: Arc<PodObjects>,
    volumes: HashMap<String, PathBuf>,
    /// The last FailedMount message (recorded once, not at every sync).
    mount_error: Option<String>,
    /// The pod's sandbox as of the last sync.
    sandbox: Option<String>,
    /// The last ContainerStatus read per container id: kept while the list shows the
    /// container in the same state (a running or exited container's status does not
    /// change), so a pass asks CRI only about containers that changed.
    statuses: HashMap<String, cri::ContainerStatus>,
}

impl Drop for PodState {
    fn drop(&mut self) {
        for (_, p) in self.probes.drain() {
            p.task.abort();
        }
    }
}

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn time_of(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Time(DateTime::<Utc>::from_timestamp_nanos(nanos)))
}

fn is_state(c: &cri::ContainerStatus, s: cri::ContainerState) -> bool {
    c.state == s as i32
}

/// The two newest containers of one name (current and previous attempt).
#[derive(Default, Clone)]
struct Observed {
    latest: Option<cri::ContainerStatus>,
    previous: Option<cri::ContainerStatus>,
}

impl Kubelet {
    /// Hand `pod` to its worker, starting one for a new pod.
    pub fn update_pod(self: &Arc<Self>, pod: Pod, mirror: bool) {
        let uid = uid(&pod).to_string();
        if uid.is_empty() {
            return;
        }
        let d = Desired {
            pod: Some(Arc::new(pod)),
            mirror,
        };
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = workers.get(&uid) {
            // A change of the status alone (mostly the kubelet's own writes coming back
            // through the watch) is kept for the next sync but wakes nobody, as upstream's
            // pod config only syncs on spec/metadata changes: each sync costs CRI lists.
            w.tx.send_if_modified(|cur| {
                let wake = cur.mirror != d.mirror
                    || match (&cur.pod, &d.pod) {
                        (Some(a), Some(b)) => !same_but_status(a, b),
                        _ => true,
                    };
                *cur = d;
                wake
            });
            return;
        }
        let (tx, rx) = watch::channel(d);
        let wake = Arc::new(Notify::new());
        workers.insert(
            uid.clone(),
            Worker {
                tx,
                wake: wake.clone(),
            },
        );
        let k = self.clone();
        tokio::spawn(async move { k.pod_worker(uid, rx, wake).await });
    }

    /// The pod is gone from its source: its worker stops it and ends.
    pub fn remove_pod(&self, uid: &str) {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = workers.get(uid) {
            let _ = w.tx.send(Desired {
                pod: None,
                mirror: false,
            });
        }
    }

    /// Wake the worker of pod `uid` (a container event).
    pub fn wake_pod(&self, uid: &str) {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = workers.get(uid) {
            w.wake.notify_one();
        }
    }

    pub fn known_uids(&self) -> HashSet<String> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.keys().cloned().collect()
    }

    async fn pod_worker(
        self: Arc<Self>,
        uid: String,
        mut rx: watch::Receiver<Desired>,
        wake: Arc<Notify>,
    ) {
        let mut st = PodState::default();
        let mut last: Option<Arc<Pod>> = None;
        let mut mirror = false;
        loop {
            let d = rx.borrow_and_update().clone();
            if let Some(p) = &d.pod {
                last = Some(p.clone());
                mirror = d.mirror;
            }
            let Some(pod) = last.clone() else { break };
            if d.pod.is_none() || pod.metadata.deletion_timestamp.is_some() {
                // Retry until the pod's containers are gone: a CRI hiccup must not leak them.
                let mut tries = 0;
                while let Err(e) =
                    Box::pin(self.terminate(&pod, &mut st, d.pod.is_some(), mirror)).await
                {
                    tries += 1;
                    tracing::warn!("stopping pod {}/{}: {e:#}", namespace(&pod), name(&pod));
                    if tries >= 30 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // A pod recreated with the same uid cannot happen; a static pod whose file
                // comes back gets a new worker.
                let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
                let stale = rx.has_changed().unwrap_or(false)
                    && rx
                        .borrow()
                        .pod
                        .as_ref()
                        .is_some_and(|p| p.metadata.deletion_timestamp.is_none());
                if !stale {
                    workers.remove(&uid);
                    return;
                }
                drop(workers);
                st = PodState::default();
                continue;
            }
            st.next_wake = None;
            crate::kubelet::SYNC_PASSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Boxed: the pass's state (every CRI and API call it may make) is allocated
            // while it runs, not kept in each idle worker task for the pod's life.
            if let Err(e) = Box::pin(self.sync(&pod, &mut st, mirror, &wake)).await {
                tracing::warn!("syncing pod {}/{}: {e:#}", namespace(&pod), name(&pod));
                st.next_wake = Some(Instant::now() + Duration::from_secs(2));
            }
            let sleep = st
                .next_wake
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(self.sync_frequency)
                .min(self.sync_frequency);
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
    }

    async fn list_sandboxes(&self, uid: &str) -> Result<Vec<cri::PodSandbox>> {
        Ok(self
            .cri
            .rt
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: HashMap::from([(
                        spec::LABEL_POD_UID.to_string(),
                        uid.to_string(),
                    )]),
                    ..Default::default()
                }),
            })
            .await
            .context("listing the pod's sandboxes")?
            .into_inner()
            .items)
    }

    async fn list_containers(&self, filter: cri::ContainerFilter) -> Result<Vec<cri::Container>> {
        Ok(self
            .cri
            .rt
            .clone()
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .context("listing the pod's containers")?
            .into_inner()
            .containers)
    }

    async fn container_status(&self, id: &str) -> Option<cri::ContainerStatus> {
        self.cri
            .rt
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().status)
    }

    /// Stop and remove a sandbox with everything in it.
    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut rt = self.cri.rt.clone();
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .with_context(|| format!("stopping sandbox {id}"))?;
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .with_context(|| format!("removing sandbox {id}"))?;
        Ok(())
    }

    /// Run the preStop hook (if any) then stop the container, all within `grace`.
    async fn kill_container(
        &self,
        pod: &Pod,
        c: Option<&Container>,
        id: &str,
        ip: &str,
        grace: i64,
        reason: &str,
    ) {
        let started = Instant::now();
        if let Some(c) = c {
            self.recorder.record(
                pod_ref(pod, Some(format!("spec.containers{{{}}}", c.name))),
                "Normal",
                "Killing",
                reason.to_string(),
            );
            let pre = c
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref())
                .and_then(Action::of_handler);
            if let Some(action) = pre {
                let t = target(c, id, ip);
                let timeout = Duration::from_secs(grace.max(1) as u64);
                if let Err(msg) = probe::run(&self.cri, &action, &t, timeout).await {
                    self.recorder.record(
                        pod_ref(pod, Some(format!("spec.containers{{{}}}", c.name))),
                        "Warning",
                        "FailedPreStopHook",
                        format!("PreStopHook failed: {msg}"),
                    );
                }
            }
        }
        let left = (grace - started.elapsed().as_secs() as i64).max(if grace > 0 { 1 } else { 0 });
        if let Err(e) = self
            .cri
            .rt
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_string(),
                timeout: left,
            })
            .await
        {
            tracing::warn!("stopping container {id}: {}", e.message());
        }
    }

    /// The pod is being deleted (or is gone): preStop hooks, stop every container within
    /// the grace period, remove the sandboxes and the pod's directory, then delete the pod
    /// object (grace 0) if it is still there.
    async fn terminate(
        &self,
        pod: &Pod,
        st: &mut PodState,
        in_api: bool,
        mirror: bool,
    ) -> Result<()> {
        for (_, p) in st.probes.drain() {
            p.task.abort();
        }
        let uid = uid(pod).to_string();
        let grace = spec::grace_seconds(pod);
        let containers = self
            .list_containers(cri::ContainerFilter {
                label_selector: HashMap::from([(spec::LABEL_POD_UID.to_string(), uid.clone())]),
                ..Default::default()
            })
            .await?;
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let spec_containers: Vec<Container> = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .cloned()
            .collect();
        // Containers first, all at once; then the sidecars, in reverse order, with the
        // grace period left (upstream: they outlive what they serve).
        let started = Instant::now();
        let cname = |c: &cri::Container| {
            c.metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default()
        };
        let sidecars: Vec<&Container> = spec_containers
            .iter()
            .filter(|c| spec::is_sidecar(c))
            .collect();
        let running: Vec<&cri::Container> = containers
            .iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .collect();
        let kill = |c: &cri::Container, grace: i64| {
            let name = cname(c);
            let spec_c = spec_containers.iter().find(|s| s.name == name);
            let ip = ip.clone();
            let id = c.id.clone();
            async move {
                self.kill_container(
                    pod,
                    spec_c,
                    &id,
                    &ip,
                    grace,
                    &format!("Stopping container {name}"),
                )
                .await
            }
        };
        let kills = running
            .iter()
            .filter(|c| !sidecars.iter().any(|s| s.name == cname(c)))
            .map(|c| kill(c, grace));
        futures::future::join_all(kills).await;
        for side in sidecars.iter().rev() {
            let left = (grace - started.elapsed().as_secs() as i64).max(0);
            for c in running.iter().filter(|c| cname(c) == side.name) {
                kill(c, left).await;
            }
        }
        for s in self.list_sandboxes(&uid).await? {
            self.remove_sandbox(&s.id).await?;
        }
        let dir = spec::pod_dir(&self.root, &uid);
        volumes::unmount_pod_volumes(&dir);
        self.objects.forget_pod(&uid);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the pod directory {}", dir.display()))?;
        }
        let logs = spec::log_dir(&self.root, pod);
        let _ = std::fs::remove_dir_all(&logs);
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&format!("{uid}/")));
        if in_api && !mirror {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace(pod));
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(name(pod), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e).context("deleting the pod object"),
            }
        }
        Ok(())
    }

    /// The status of sandbox `id` if it is ready.
    async fn ready_sandbox(&self, id: &str) -> Result<Option<cri::PodSandboxStatus>> {
        let st = self
            .cri
            .rt
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await;
        match st {
            Ok(r) => Ok(r
                .into_inner()
                .status
                .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)),
            Err(e) if e.code() == tonic::Code::NotFound => Ok(None),
            Err(e) => {
                Err(anyhow::anyhow!("{}", e.message())).context("reading the sandbox's status")
            }
        }
    }

    /// The pod's ready sandbox, created if there is none: its id, config and IPs.
    /// `known` is the sandbox of the last sync: when it is still ready, no list of every
    /// sandbox is needed (a list costs the runtime a pass over all its containers).
    async fn ensure_sandbox(
        &self,
        pod: &Pod,
        known: Option<&str>,
    ) -> Result<(String, cri::PodSandboxConfig, Vec<String>)> {
        let attempt_of = |m: Option<&cri::PodSandboxMetadata>| m.map(|m| m.attempt).unwrap_or(0);
        let mut found = None;
        if let Some(id) = known {
            if let Some(s) = self.ready_sandbox(id).await? {
                found = Some((id.to_string(), attempt_of(s.metadata.as_ref()), s));
            }
        }
        if found.is_none() {
            let uid = uid(pod);
            let sandboxes = self.list_sandboxes(uid).await?;
            let ready = sandboxes
                .iter()
                .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
                .max_by_key(|s| s.created_at);
            let id = match ready {
                Some(s) => s.id.clone(),
                None => {
                    // A sandbox that died takes its containers with it: start over in a new one.
                    for s in &sandboxes {
                        self.remove_sandbox(&s.id).await?;
                    }
                    let attempt = sandboxes
                        .iter()
                        .map(|s| attempt_of(s.metadata.as_ref()) + 1)
                        .max()
                        .unwrap_or(0);
                    let logs = spec::log_dir(&self.root, pod);
                    std::fs::create_dir_all(&logs).with_context(|| {
                        format!("creating the log directory {}", logs.display())
                    })?;
                    let cfg = spec::sandbox_config(pod, attempt, &self.root);
                    let r = self
                        .cri
                        .rt
                        .clone()
                        .run_pod_sandbox(cri::RunPodSandboxRequest {
                            config: Some(cfg),
                            runtime_handler: pod
                                .spec
                                .as_ref()
                                .and_then(|s| s.runtime_class_name.clone())
                                .unwrap_or_default(),
                        })
                        .await;
                    match r {
                        Ok(r) => r.into_inner().pod_sandbox_id,
                        Err(e) => {
                            let msg = format!("Failed to create pod sandbox: {}", e.message());
                            self.recorder.record(
                                pod_ref(pod, None),
                                "Warning",
                                "FailedCreatePodSandBox",
                                msg.clone(),
                            );
                            anyhow::bail!(msg)
                        }
                    }
                }
            };
            let s = self
                .ready_sandbox(&id)
                .await?
                .with_context(|| format!("sandbox {id} is not ready"))?;
            found = Some((id, attempt_of(s.metadata.as_ref()), s));
        }
        let (id, attempt, status) = found.expect("set above");
        let cfg = spec::sandbox_config(pod, attempt, &self.root);
        let ips = if spec::host_network(pod) {
            vec![self.host_ip.clone()]
        } else {
            let net = status.network.unwrap_or_default();
            std::iter::once(net.ip)
                .chain(net.additional_ips.into_iter().map(|p| p.ip))
                .filter(|ip| !ip.is_empty())
                .collect()
        };
        Ok((id, cfg, ips))
    }

    /// Pull `c`'s image as its pull policy says (with the pod's imagePullSecrets); Err is
    /// the waiting reason and message.
    async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox: &cri::PodSandboxConfig,
    ) -> Result<Option<i64>, (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        let field = Some(format!("spec.containers{{{}}}", c.name));
        let policy = spec::pull_policy(c);
        let spec_img = cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let present = self
            .cri
            .img
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(spec_img.clone()),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image);
        let uid_of = |i: &cri::Image| i.uid.as_ref().map(|u| u.value);
        match (policy.as_str(), &present) {
            ("Never", None) => {
                return Err((
                    "ErrImageNeverPull".into(),
                    format!("Container image {image:?} is not present with pull policy of Never"),
                ))
            }
            ("Never", Some(i)) | ("IfNotPresent", Some(i)) => return Ok(uid_of(i)),
            _ => {}
        }
        let key = format!("{}/{}/pull", uid(pod), c.name);
        let in_backoff = self
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|b| b.until > Instant::now());
        if in_backoff {
            return Err((
                "ImagePullBackOff".into(),
                format!("Back-off pulling image {image:?}"),
            ));
        }
        self.recorder.record(
            pod_ref(pod, field.clone()),
            "Normal",
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let started = Instant::now();
        let mut auths: Vec<Option<cri::AuthConfig>> = Vec::new();
        let registry = spec::registry_of(&image);
        for s in pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
        {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace(pod));
            if let Ok(Some(secret)) = api.get_opt(&s.name).await {
                if let Some(d) = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(".dockerconfigjson"))
                {
                    auths.extend(spec::docker_auths(&d.0, &registry).into_iter().map(Some));
                }
            }
        }
        if auths.is_empty() {
            auths.push(None);
        }
        let mut last_err = String::new();
        for auth in auths {
            let r = self
                .cri
                .img
                .clone()
                .pull_image(cri::PullImageRequest {
                    image: Some(spec_img.clone()),
                    auth,
                    sandbox_config: Some(sandbox.clone()),
                })
                .await;
            match r {
                Ok(_) => {
                    self.backoff
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                    self.recorder.record(
                        pod_ref(pod, field),
                        "Normal",
                        "Pulled",
                        format!(
                            "Successfully pulled image {image:?} in {:.3}s",
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    let i = self
                        .cri
                        .img
                        .clone()
                        .image_status(cri::ImageStatusRequest {
                            image: Some(spec_img),
                            verbose: false,
                        })
                        .await
                        .ok()
                        .and_then(|r| r.into_inner().image);
                    return Ok(i.as_ref().and_then(uid_of));
                }
                Err(e) => last_err = e.message().to_string(),
            }
        }
        let mut bo = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let delay = bo
            .get(&key)
            .map(|b| (b.delay * 2).min(BACKOFF_MAX))
            .unwrap_or(BACKOFF_START);
        bo.insert(
            key,
            Backoff {
                delay,
                until: Instant::now() + delay,
            },
        );
        drop(bo);
        let msg = format!("Failed to pull image {image:?}: {last_err}");
        self.recorder
            .record(pod_ref(pod, field), "Warning", "Failed", msg.clone());
        Err(("ErrImagePull".into(), msg))
    }

    /// Read the objects the pod uses and bring its volumes up to date (at every sync, so
    /// ConfigMap, Secret and downward API contents follow their sources); false, with a
    /// FailedMount event, when a volume cannot be set up.
    async fn sync_volumes(&self, pod: &Pod, st: &mut PodState) -> bool {
        let objects = match self.objects.fetch(&self.client, pod).await {
            Ok(o) => Arc::new(o),
            Err(e) => {
                tracing::warn!("pod {}/{}: {e:#}", namespace(pod), name(pod));
                return !st.volumes.is_empty() || pod_has_no_volumes(pod);
            }
        };
        let cx = VolumeContext {
            pod,
            root: &self.root,
            objects: &objects,
            node_name: &self.node_name,
            host_ip: &self.host_ip,
            node_cpu_milli: self.node_cpu_milli,
            node_memory: self.node_memory,
        };
        let r = volumes::prepare_volumes(&cx);
        st.objects = objects;
        match r {
            Ok(v) => {
                st.volumes = v;
                st.mount_error = None;
                true
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if st.mount_error.as_ref() != Some(&msg) {
                    self.recorder
                        .record(pod_ref(pod, None), "Warning", "FailedMount", msg.clone());
                    st.mount_error = Some(msg);
                }
                false
            }
        }
    }

    /// A CRI call for container `name` failed: the Failed event and the waiting
    /// reason (`CreateContainerError`, `RunContainerError`) kubelet reports.
    fn container_failed(
        &self,
        pod: &Pod,
        field: Option<String>,
        st: &mut PodState,
        name: &str,
        reason: &str,
        e: &tonic::Status,
    ) {
        let msg = e.message().to_string();
        self.recorder.record(
            pod_ref(pod, field),
            "Warning",
            "Failed",
            format!("Error: {msg}"),
        );
        st.waiting.insert(name.to_string(), (reason.into(), msg));
    }

    /// Pull, create and start container `c` at `attempt`, then its postStart hook.
    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sid: &str,
        sandbox: &cri::PodSandboxConfig,
        ips: &[String],
        st: &mut PodState,
        init: bool,
    ) {
        let field = Some(format!(
            "spec.{}{{{}}}",
            if init { "initContainers" } else { "containers" },
            c.name
        ));
        let image_uid = match self.ensure_image(pod, c, sandbox).await {
            Ok(u) => u,
            Err(w) => {
                st.waiting.insert(c.name.clone(), w);
                return;
            }
        };
        let objects = st.objects.clone();
        let cx = spec::ContainerContext {
            pod,
            env: EnvContext {
                pod,
                pod_ips: ips,
                host_ip: &self.host_ip,
                node_name: &self.node_name,
                node_cpu_milli: self.node_cpu_milli,
                node_memory: self.node_memory,
                objects: &objects,
                warnings: Default::default(),
            },
            volumes: &st.volumes,
            root: &self.root,
            node_memory: self.node_memory,
        };
        let cfg = spec::check_non_root(pod, c, image_uid)
            .and_then(|_| spec::container_config(c, attempt, &cx));
        for w in cx.env.warnings.take() {
            self.recorder.record(
                pod_ref(pod, None),
                "Warning",
                "InvalidEnvironmentVariableNames",
                w,
            );
        }
        let cfg = match cfg {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("{e:#}");
                self.recorder.record(
                    pod_ref(pod, field),
                    "Warning",
                    "Failed",
                    format!("Error: {msg}"),
                );
                st.waiting
                    .insert(c.name.clone(), ("CreateContainerConfigError".into(), msg));
                return;
            }
        };
        let mut rt = self.cri.rt.clone();
        let id = match rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sid.to_string(),
                config: Some(cfg),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
        {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                self.container_failed(pod, field, st, &c.name, "CreateContainerError", &e);
                return;
            }
        };
        self.recorder.record(
            pod_ref(pod, field.clone()),
            "Normal",
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = rt
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            self.container_failed(pod, field, st, &c.name, "RunContainerError", &e);
            return;
        }
        st.waiting.remove(&c.name);
        self.recorder.record(
            pod_ref(pod, field.clone()),
            "Normal",
            "Started",
            format!("Started container {}", c.name),
        );
        let post = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            .and_then(Action::of_handler);
        if let Some(action) = post {
            let ip = ips.first().cloned().unwrap_or_default();
            let t = target(c, &id, &ip);
            let timeout = Duration::from_secs(spec::grace_seconds(pod).max(30) as u64);
            if let Err(msg) = probe::run(&self.cri, &action, &t, timeout).await {
                self.recorder.record(
                    pod_ref(pod, field),
                    "Warning",
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {msg}"),
                );
                self.kill_container(
                    pod,
                    Some(c),
                    &id,
                    &ip,
                    spec::grace_seconds(pod),
                    "FailedPostStartHook",
                )
                .await;
            }
        }
    }

    /// Restart an exited container unless it is in back-off (10 s doubling to 5 min,
    /// forgotten once a container ran 10 min).
    #[allow(clippy::too_many_arguments)]
    async fn restart(
        &self,
        pod: &Pod,
        c: &Container,
        latest: &cri::ContainerStatus,
        sid: &str,
        sandbox: &cri::PodSandboxConfig,
        ips: &[String],
        st: &mut PodState,
        init: bool,
    ) {
        let key = format!("{}/{}", uid(pod), c.name);
        let now = now_nanos();
        let ran = Duration::from_nanos((latest.finished_at - latest.started_at).max(0) as u64);
        let since_exit = Duration::from_nanos((now - latest.finished_at).max(0) as u64);
        // Decide under the lock, act after it (the guard must not live across an await).
        let waiting_for: Option<Duration> = {
            let mut bo = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            if ran > 2 * BACKOFF_MAX {
                bo.remove(&key);
            }
            match bo.get(&key) {
                Some(b) if since_exit < b.delay => Some(b.delay),
                _ => {
                    let delay = bo
                        .get(&key)
                        .map(|b| (b.delay * 2).min(BACKOFF_MAX))
                        .unwrap_or(BACKOFF_START);
                    bo.insert(
                        key,
                        Backoff {
                            delay,
                            until: Instant::now() + delay,
                        },
                    );
                    None
                }
            }
        };
        if let Some(delay) = waiting_for {
            let left = delay - since_exit;
            let msg = format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                delay.as_secs(),
                c.name,
                name(pod),
                namespace(pod),
                uid(pod)
            );
            let first = st
                .waiting
                .get(&c.name)
                .is_none_or(|(r, _)| r != "CrashLoopBackOff");
            st.waiting
                .insert(c.name.clone(), ("CrashLoopBackOff".into(), msg));
            let at = Instant::now() + left;
            st.next_wake = Some(st.next_wake.map_or(at, |w| w.min(at)));
            if first {
                self.recorder.record(
                    pod_ref(pod, Some(format!("spec.containers{{{}}}", c.name))),
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container".to_string(),
                );
            }
            return;
        }
        let attempt = latest.metadata.as_ref().map(|m| m.attempt + 1).unwrap_or(1);
        self.start_container(pod, c, attempt, sid, sandbox, ips, st, init)
            .await;
    }

    /// One pass of the pod towards its spec, then its status.
    async fn sync(
        &self,
        pod: &Pod,
        st: &mut PodState,
        mirror: bool,
        wake: &Arc<Notify>,
    ) -> Result<()> {
        let spec = pod.spec.as_ref().context("the pod has no spec")?;
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(api_phase, Some("Succeeded" | "Failed")) {
            st.terminal = true;
        }
        if st.start_time.is_none() {
            st.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(Time(Utc::now())));
        }
        if st.terminal {
            // Done: keep it stopped (a restarted kubelet must not run it again).
            for s in self.list_sandboxes(uid(pod)).await? {
                if s.state == cri::PodSandboxState::SandboxReady as i32 {
                    self.stop_pod(pod, &s.id).await;
                }
            }
            return Ok(());
        }
        // Claims resolve to their volumes before anything starts (upstream's volume manager).
        let resolved = match crate::claims::resolve(&self.client, pod).await {
            Ok(p) => p,
            Err(msg) => {
                if st.mount_error.as_deref() != Some(msg.as_str()) {
                    self.recorder.record(
                        pod_ref(pod, None),
                        "Warning",
                        "FailedMount",
                        format!("Unable to attach or mount volumes: {msg}"),
                    );
                    st.mount_error = Some(msg);
                }
                self.write_status(pod, st, mirror, None, &[], &BTreeMap::new())
                    .await;
                st.next_wake = Some(Instant::now() + Duration::from_secs(2));
                return Ok(());
            }
        };
        let pod = &resolved;
        // Containers from the resolved pod: its mounts of read-only claims are read-only.
        let spec = pod.spec.as_ref().context("the pod has no spec")?;
        let (sid, sandbox, ips) = match self.ensure_sandbox(pod, st.sandbox.as_deref()).await {
            Ok(x) => {
                st.sandbox = Some(x.0.clone());
                x
            }
            Err(e) => {
                self.write_status(pod, st, mirror, None, &[], &BTreeMap::new())
                    .await;
                return Err(e);
            }
        };
        let obs = self.observe(&sid, &mut st.statuses).await?;
        let ip = ips.first().cloned().unwrap_or_default();
        if !self.sync_volumes(pod, st).await {
            // No container starts without its volumes (upstream: ContainerCreating).
            for c in spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
            {
                if obs.get(&c.name).and_then(|o| o.latest.as_ref()).is_none() {
                    st.waiting
                        .insert(c.name.clone(), ("ContainerCreating".into(), String::new()));
                }
            }
            st.next_wake = Some(Instant::now() + Duration::from_secs(2));
            self.write_status(pod, st, mirror, Some((false, false)), &ips, &obs)
                .await;
            return Ok(());
        }

        // Whether this pass changed anything in CRI (then the status needs a new look).
        let mut acted = false;
        // Init containers, one at a time, in order. A sidecar (`restartPolicy: Always`,
        // KEP-753) lets the next one start once it runs and its startup probe passed,
        // then keeps running (restarted whenever it exits) beside the containers.
        let mut init_done = true;
        let mut init_failed = false;
        let init_containers: Vec<&Container> = spec.init_containers.iter().flatten().collect();
        for (i, c) in init_containers.iter().enumerate() {
            let c = *c;
            let o = obs.get(&c.name).cloned().unwrap_or_default();
            if spec::is_sidecar(c) {
                // Past it already when a later container exists: restarts do not block.
                let passed = init_containers[i + 1..]
                    .iter()
                    .map(|x| &x.name)
                    .chain(spec.containers.iter().map(|x| &x.name))
                    .any(|n| obs.get(n).is_some_and(|o| o.latest.is_some()));
                let started = match &o.latest {
                    None => {
                        acted = true;
                        self.start_container(pod, c, 0, &sid, &sandbox, &ips, st, true)
                            .await;
                        wake.notify_one();
                        false
                    }
                    Some(s) if is_state(s, cri::ContainerState::ContainerRunning) => {
                        match self.check_running(pod, c, s, &ip, st, wake).await {
                            Some(started) => started,
                            None => {
                                acted = true;
                                false
                            }
                        }
                    }
                    Some(s) if is_state(s, cri::ContainerState::ContainerExited) => {
                        acted = true;
                        self.restart(pod, c, s, &sid, &sandbox, &ips, st, true)
                            .await;
                        wake.notify_one();
                        false
                    }
                    Some(_) => false,
                };
                if started || passed {
                    continue;
                }
                init_done = false;
                break;
            }
            match &o.latest {
                None => {
                    init_done = false;
                    acted = true;
                    self.start_container(pod, c, 0, &sid, &sandbox, &ips, st, true)
                        .await;
                    wake.notify_one();
                }
                Some(s)
                    if is_state(s, cri::ContainerState::ContainerExited) && s.exit_code == 0 =>
                {
                    continue
                }
                Some(s) if is_state(s, cri::ContainerState::ContainerExited) => {
                    init_done = false;
                    if policy == "Never" {
                        init_failed = true;
                    } else {
                        acted = true;
                        self.restart(pod, c, s, &sid, &sandbox, &ips, st, true)
                            .await;
                    }
                }
                Some(_) => init_done = false,
            }
            break;
        }

        if init_done && !init_failed {
            for c in &spec.containers {
                let o = obs.get(&c.name).cloned().unwrap_or_default();
                match &o.latest {
                    None => {
                        // The next look is the status pass below (which wakes the
                        // worker again unless the container runs).
                        acted = true;
                        self.start_container(pod, c, 0, &sid, &sandbox, &ips, st, false)
                            .await;
                    }
                    Some(s) if is_state(s, cri::ContainerState::ContainerRunning) => {
                        if self.check_running(pod, c, s, &ip, st, wake).await.is_none() {
                            acted = true;
                        }
                    }
                    Some(s) if is_state(s, cri::ContainerState::ContainerExited) => {
                        let again = match policy {
                            "Always" => true,
                            "OnFailure" => s.exit_code != 0,
                            _ => false,
                        };
                        if again {
                            acted = true;
                            self.restart(pod, c, s, &sid, &sandbox, &ips, st, false)
                                .await;
                            wake.notify_one();
                        }
                    }
                    Some(s) if is_state(s, cri::ContainerState::ContainerCreated) => {
                        acted = true;
                        let _ = self
                            .cri
                            .rt
                            .clone()
                            .start_container(cri::StartContainerRequest {
                                container_id: s.id.clone(),
                            })
                            .await;
                    }
                    Some(_) => {}
                }
            }
        }
        // Probes of containers that are no longer running stop.
        let running: HashSet<String> = obs
            .values()
            .filter_map(|o| o.latest.as_ref())
            .filter(|s| is_state(s, cri::ContainerState::ContainerRunning))
            .map(|s| s.id.clone())
            .collect();
        st.probes.retain(|id, p| {
            let keep = running.contains(id);
            if !keep {
                p.task.abort();
            }
            keep
        });
        // Status from what CRI says now, if the actions above changed it.
        let obs = if acted {
            self.observe(&sid, &mut st.statuses).await?
        } else {
            obs
        };
        if acted && init_done && !init_failed {
            // Containers this pass started get their probes now, not one pass later
            // (upstream runs the first probe as soon as the container runs, after
            // initialDelaySeconds): a readiness probe is what makes a pod Ready.
            // One that is not running yet gets another pass.
            for c in &spec.containers {
                match obs.get(&c.name).and_then(|o| o.latest.as_ref()) {
                    Some(s) if is_state(s, cri::ContainerState::ContainerRunning) => {
                        self.ensure_probes(pod, c, &s.id, &ip, st, wake)
                    }
                    _ => wake.notify_one(),
                }
            }
        }
        let phase = self
            .write_status(pod, st, mirror, Some((init_done, init_failed)), &ips, &obs)
            .await;
        if matches!(phase.as_str(), "Succeeded" | "Failed") {
            st.terminal = true;
            self.stop_pod(pod, &sid).await;
            // Sidecars ran until now: their statuses show them stopped.
            if spec.init_containers.iter().flatten().any(spec::is_sidecar) {
                let obs = self.observe(&sid, &mut st.statuses).await?;
                self.write_status(pod, st, mirror, Some((init_done, init_failed)), &ips, &obs)
                    .await;
            }
        }
        Ok(())
    }

    /// A running container: kill it when its spec changed or a probe says so, else
    /// make sure its probes run. Returns whether it has started (startup probe passed),
    /// None when it was killed.
    async fn check_running(
        &self,
        pod: &Pod,
        c: &Container,
        s: &cri::ContainerStatus,
        ip: &str,
        st: &mut PodState,
        wake: &Arc<Notify>,
    ) -> Option<bool> {
        let hash = s.annotations.get(spec::ANN_CONTAINER_HASH);
        let kill = if hash.is_some_and(|h| *h != spec::container_hash(c)) {
            Some(format!(
                "Container {} definition changed, will be restarted",
                c.name
            ))
        } else {
            st.probes
                .get(&s.id)
                .and_then(|p| p.state.lock().ok().and_then(|mut x| x.kill.take()))
        };
        if let Some(reason) = kill {
            // A probe's own terminationGracePeriodSeconds overrides the pod's.
            let probe = if reason.starts_with("Container failed liveness probe") {
                c.liveness_probe.as_ref()
            } else if reason.starts_with("Container failed startup probe") {
                c.startup_probe.as_ref()
            } else {
                None
            };
            let grace = probe
                .and_then(|p| p.termination_grace_period_seconds)
                .unwrap_or_else(|| spec::grace_seconds(pod));
            self.kill_container(pod, Some(c), &s.id, ip, grace, &reason)
                .await;
            if let Some(p) = st.probes.remove(&s.id) {
                p.task.abort();
            }
            wake.notify_one();
            return None;
        }
        self.ensure_probes(pod, c, &s.id, ip, st, wake);
        Some(
            st.probes
                .get(&s.id)
                .is_some_and(|p| p.state.lock().is_ok_and(|x| x.started)),
        )
    }

    /// Stop what runs in a finished pod (its containers and sandbox stay for logs).
    async fn stop_pod(&self, pod: &Pod, sid: &str) {
        let grace = spec::grace_seconds(pod);
        if let Ok(cs) = self
            .list_containers(cri::ContainerFilter {
                pod_sandbox_id: sid.to_string(),
                ..Default::default()
            })
            .await
        {
            for c in cs
                .iter()
                .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            {
                let _ = self
                    .cri
                    .rt
                    .clone()
                    .stop_container(cri::StopContainerRequest {
                        container_id: c.id.clone(),
                        timeout: grace,
                    })
                    .await;
            }
        }
        let _ = self
            .cri
            .rt
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sid.to_string(),
            })
            .await;
    }

    /// The containers of sandbox `sid` by name: the newest two attempts (older exited
    /// ones are removed, as upstream keeps one dead container per name).
    async fn observe(
        &self,
        sid: &str,
        known: &mut HashMap<String, cri::ContainerStatus>,
    ) -> Result<BTreeMap<String, Observed>> {
        let list = self
            .list_containers(cri::ContainerFilter {
                pod_sandbox_id: sid.to_string(),
                ..Default::default()
            })
            .await?;
        let mut by_name: BTreeMap<String, Vec<cri::Container>> = BTreeMap::new();
        for c in list {
            let n = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            by_name.entry(n).or_default().push(c);
        }
        let mut out = BTreeMap::new();
        let mut seen = HashSet::new();
        for (n, mut cs) in by_name {
            cs.sort_by_key(|c| {
                std::cmp::Reverse((
                    c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                    c.created_at,
                ))
            });
            for old in cs.iter().skip(2) {
                if old.state != cri::ContainerState::ContainerRunning as i32 {
                    let _ = self
                        .cri
                        .rt
                        .clone()
                        .remove_container(cri::RemoveContainerRequest {
                            container_id: old.id.clone(),
                        })
                        .await;
                }
            }
            let mut status = async |c: Option<&cri::Container>| {
                let c = c?;
                match known.get(&c.id).filter(|s| s.state == c.state) {
                    Some(s) => Some(s.clone()),
                    None => {
                        let s = self.container_status(&c.id).await?;
                        known.insert(c.id.clone(), s.clone());
                        Some(s)
                    }
                }
            };
            let latest = status(cs.first()).await;
            let previous = status(cs.get(1)).await;
            seen.extend(cs.iter().take(2).map(|c| c.id.clone()));
            out.insert(n, Observed { latest, previous });
        }
        known.retain(|id, _| seen.contains(id));
        Ok(out)
    }

    fn ensure_probes(
        &self,
        pod: &Pod,
        c: &Container,
        id: &str,
        ip: &str,
        st: &mut PodState,
        wake: &Arc<Notify>,
    ) {
        if st.probes.contains_key(id) {
            return;
        }
        let probes = Probes {
            liveness: c.liveness_probe.clone(),
            readiness: c.readiness_probe.clone(),
            startup: c.startup_probe.clone(),
        };
        let state = Arc::new(Mutex::new(ProbeState::default()));
        if probes.liveness.is_none() && probes.readiness.is_none() && probes.startup.is_none() {
            if let Ok(mut s) = state.lock() {
                s.ready = true;
                s.started = true;
            }
            st.probes.insert(
                id.to_string(),
                ProbeHandle {
                    state,
                    task: tokio::spawn(async {}),
                },
            );
            return;
        }
        let rec = self.recorder.clone();
        let pref = pod_ref(pod, Some(format!("spec.containers{{{}}}", c.name)));
        let on_failure: probe::OnFailure = Arc::new(move |kind: &str, msg: &str| {
            rec.record(
                pref.clone(),
                "Warning",
                "Unhealthy",
                format!("{kind} probe failed: {msg}"),
            );
        });
        let task = tokio::spawn(probe::run_probes(
            self.cri.clone(),
            target(c, id, ip),
            probes,
            state.clone(),
            wake.clone(),
            on_failure,
        ));
        st.probes
            .insert(id.to_string(), ProbeHandle { state, task });
    }

    fn k8s_container_status(
        &self,
        c: &Container,
        o: Option<&Observed>,
        st: &PodState,
        init: bool,
        default_reason: &str,
    ) -> ContainerStatus {
        let runtime = &self.cri.runtime_name;
        let terminated = |s: &cri::ContainerStatus| {
            let reason = if !s.reason.is_empty() {
                s.reason.clone()
            } else if s.exit_code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: s.exit_code,
                    reason: Some(reason),
                    message: (!s.message.is_empty()).then(|| s.message.clone()),
                    started_at: time_of(s.started_at),
                    finished_at: time_of(s.finished_at),
                    container_id: Some(format!("{runtime}://{}", s.id)),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let waiting = |reason: &str, message: Option<String>| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message,
            }),
            ..Default::default()
        };
        let mut cs = ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ..Default::default()
        };
        let w = st.waiting.get(&c.name);
        let latest = o.and_then(|o| o.latest.as_ref());
        match latest {
            None => {
                cs.state = Some(match w {
                    Some((r, m)) => waiting(r, Some(m.clone())),
                    None => waiting(default_reason, None),
                });
                cs.started = Some(false);
            }
            Some(s) => {
                cs.restart_count = s.metadata.as_ref().map(|m| m.attempt as i32).unwrap_or(0);
                cs.container_id = Some(format!("{runtime}://{}", s.id));
                cs.image_id = s.image_ref.clone();
                let prev = o.and_then(|o| o.previous.as_ref()).map(terminated);
                if is_state(s, cri::ContainerState::ContainerRunning) {
                    let p = st
                        .probes
                        .get(&s.id)
                        .and_then(|p| p.state.lock().ok().map(|x| x.clone()));
                    cs.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: time_of(s.started_at),
                        }),
                        ..Default::default()
                    });
                    cs.last_state = prev;
                    let probed = !init || spec::is_sidecar(c);
                    cs.ready = probed && p.as_ref().is_some_and(|p| p.ready);
                    cs.started = Some(!probed || p.as_ref().is_some_and(|p| p.started));
                } else if is_state(s, cri::ContainerState::ContainerExited) {
                    match w {
                        Some((r, m)) => {
                            cs.state = Some(waiting(r, Some(m.clone())));
                            cs.last_state = Some(terminated(s));
                        }
                        None => {
                            cs.state = Some(terminated(s));
                            cs.last_state = prev;
                        }
                    }
                    cs.ready = init && !spec::is_sidecar(c) && s.exit_code == 0;
                    cs.started = Some(false);
                } else {
                    cs.state = Some(waiting("ContainerCreating", None));
                    cs.last_state = prev;
                    cs.started = Some(false);
                }
            }
        }
        cs
    }

    /// Compute and write the pod's status (only when it changed); returns the phase.
    async fn write_status(
        &self,
        pod: &Pod,
        st: &mut PodState,
        mirror: bool,
        init: Option<(bool, bool)>,
        ips: &[String],
        obs: &BTreeMap<String, Observed>,
    ) -> String {
        let Some(spec) = pod.spec.as_ref() else {
            return "Pending".into();
        };
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let (init_done, init_failed) = init.unwrap_or((false, false));
        let init_statuses: Vec<ContainerStatus> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| self.k8s_container_status(c, obs.get(&c.name), st, true, "PodInitializing"))
            .collect();
        let default_reason = if init_done {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let statuses: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| self.k8s_container_status(c, obs.get(&c.name), st, false, default_reason))
            .collect();
        // Upstream's getPhase.
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for s in &statuses {
            let state = s.state.clone().unwrap_or_default();
            if state.running.is_some() {
                running += 1;
            } else if let Some(t) = &state.terminated {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            } else if s
                .last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
        let phase = if init_failed {
            "Failed"
        } else if !init_done || init.is_none() || waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            if policy == "Always" {
                "Running"
            } else if stopped == succeeded {
                "Succeeded"
            } else if policy == "OnFailure" {
                "Running"
            } else {
                "Failed"
            }
        } else {
            "Pending"
        };
        let old_conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let now = Time(Utc::now());
        let cond = |t: &str, ok: bool, reason: Option<String>, message: Option<String>| {
            let status = if ok { "True" } else { "False" };
            let since = old_conditions
                .iter()
                .find(|c| c.type_ == t && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            PodCondition {
                type_: t.to_string(),
                status: status.to_string(),
                last_transition_time: Some(since),
                reason,
                message,
                ..Default::default()
            }
        };
        // A sidecar's readiness counts with the containers' (KEP-753).
        let unready: Vec<&str> = init_statuses
            .iter()
            .zip(spec.init_containers.iter().flatten())
            .filter(|(_, c)| spec::is_sidecar(c))
            .map(|(s, _)| s)
            .chain(statuses.iter())
            .filter(|s| !s.ready)
            .map(|s| s.name.as_str())
            .collect();
        let incomplete: Vec<&str> = init_statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.as_str())
            .collect();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let (ready_reason, ready_msg) = if terminal {
            (Some("PodCompleted".to_string()), None)
        } else if unready.is_empty() {
            (None, None)
        } else {
            (
                Some("ContainersNotReady".to_string()),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        };
        // Readiness gates: conditions others set in the pod's status (upstream's wording).
        let gates: Vec<String> = spec
            .readiness_gates
            .iter()
            .flatten()
            .filter_map(|g| {
                let t = &g.condition_type;
                match old_conditions.iter().find(|c| &c.type_ == t) {
                    None => Some(format!(
                        "corresponding condition of pod readiness gate \"{t}\" does not exist."
                    )),
                    Some(c) if c.status != "True" => Some(format!(
                        "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                        c.status
                    )),
                    Some(_) => None,
                }
            })
            .collect();
        let all_ready = unready.is_empty() && !terminal;
        let (pod_ready, pod_reason, pod_msg) = if all_ready && !gates.is_empty() {
            (
                false,
                Some("ReadinessGatesNotReady".to_string()),
                Some(gates.join(", ")),
            )
        } else {
            (all_ready, ready_reason.clone(), ready_msg.clone())
        };
        let mut conditions = vec![
            cond(
                "PodReadyToStartContainers",
                !ips.is_empty() && !terminal,
                None,
                None,
            ),
            if incomplete.is_empty() || init_done {
                cond(
                    "Initialized",
                    true,
                    terminal.then(|| "PodCompleted".to_string()),
                    None,
                )
            } else {
                cond(
                    "Initialized",
                    false,
                    Some("ContainersNotInitialized".into()),
                    Some(format!(
                        "containers with incomplete status: [{}]",
                        incomplete.join(" ")
                    )),
                )
            },
            cond("Ready", pod_ready, pod_reason, pod_msg),
            cond("ContainersReady", all_ready, ready_reason, ready_msg),
        ];
        conditions.push(
            old_conditions
                .iter()
                .find(|c| c.type_ == "PodScheduled")
                .cloned()
                .unwrap_or_else(|| cond("PodScheduled", true, None, None)),
        );
        // Conditions the kubelet does not own (readiness gates, DisruptionTarget) stay.
        const OWN: &[&str] = &[
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ];
        conditions.extend(
            old_conditions
                .iter()
                .filter(|c| !OWN.contains(&c.type_.as_str()))
                .cloned(),
        );
        let status = PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(conditions),
            host_ip: Some(self.host_ip.clone()),
            host_ips: Some(vec![HostIP {
                ip: self.host_ip.clone(),
            }]),
            pod_ip: ips.first().cloned(),
            pod_ips: (!ips.is_empty())
                .then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
            start_time: st.start_time.clone(),
            qos_class: Some(spec::qos_class(pod).to_string()),
            container_statuses: Some(statuses),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap_or_default();
        if !mirror && st.last_status.as_ref() == Some(&json) {
            return phase.to_string();
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace(pod));
        let name = name(pod);
        let patch = serde_json::json!({ "status": json });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => st.last_status = Some(json),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                if !mirror {
                    tracing::debug!("pod {}/{name} is gone", namespace(pod));
                }
            }
            Err(e) => tracing::warn!("writing the status of pod {}/{name}: {e}", namespace(pod)),
        }
        phase.to_string()
    }
}

/// Whether two versions of a pod differ only in their status (and resourceVersion or
/// managedFields, which every write changes).
fn same_but_status(a: &Pod, b: &Pod) -> bool {
    let meta = |p: &Pod| {
        let mut m = p.metadata.clone();
        m.resource_version = None;
        m.managed_fields = None;
        m
    };
    a.spec == b.spec && meta(a) == meta(b)
}

fn pod_has_no_volumes(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_none_or(|v| v.is_empty())
}

fn target(c: &Container, id: &str, ip: &str) -> Target {
    Target {
        container_id: id.to_string(),
        ip: ip.to_string(),
        ports: c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
            .collect(),
    }
}

/// A back-off entry: the current delay and when it was last armed.
pub struct Backoff {
    pub delay: Duration,
    pub until: Instant,
}
