//! The kubelet: registers its Node, heartbeats, and runs the pods bound to it (from the
//! API and from a manifest directory) through CRI.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt as _;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;

use crate::client::{connect_cri, kube_client, Cri};
use crate::events::Recorder;
use crate::node::{host_ip, machine, Machine};
use crate::pod::{Backoff, Worker};
use crate::spec;

pub const VERSION: &str = "v1.33.0-hako";

/// `hako kube kubelet`'s options.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    pub kubeconfig: PathBuf,
    /// `unix:///path/to/cri.sock`
    pub runtime_endpoint: String,
    pub node_name: String,
    /// The kubelet's own directory (volumes, logs, seccomp profiles).
    pub root: PathBuf,
    /// The HTTPS port of the kubelet server (logs, exec, attach, port-forward).
    pub port: u16,
    pub pod_manifest_path: Option<PathBuf>,
    /// The cluster's PKI directory (`$ROOT/kube/pki`): the CA that signs the kubelet's
    /// serving certificate and `kubelet-client.token`, the only token the server accepts.
    pub pki_dir: Option<PathBuf>,
    /// Stop every pod on SIGTERM (upstream leaves them running).
    pub stop_pods_on_exit: bool,
    /// How often each pod is synced without an event (its ConfigMap, Secret and
    /// downward API volumes follow their sources at this pace; upstream: 1 minute).
    pub sync_frequency: Duration,
    /// `--cluster-dns` and `--cluster-domain`: ClusterFirst pods' resolver.
    pub cluster_dns: spec::ClusterDns,
}

pub struct Kubelet {
    pub client: kube::Client,
    pub cri: Cri,
    pub node_name: String,
    pub root: PathBuf,
    pub host_ip: String,
    pub port: u16,
    pub machine: Machine,
    pub node_cpu_milli: i128,
    pub node_memory: i128,
    pub recorder: Recorder,
    pub workers: Mutex<HashMap<String, Worker>>,
    pub backoff: Mutex<HashMap<String, Backoff>>,
    /// Static pods by uid (they are not in the API; the server lists them too).
    pub static_pods: Mutex<HashMap<String, Pod>>,
    /// Immutable ConfigMaps/Secrets and service account tokens already read.
    pub objects: crate::objects::ImmutableCache,
    pub sync_frequency: Duration,
}

/// The node name kubelet uses by default: the host name, lower-cased.
pub fn default_node_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// Run the kubelet until SIGINT/SIGTERM, on a runtime of its own.
pub fn run_kubelet(opts: KubeletOptions, ready: impl FnOnce(&str, u16)) -> Result<()> {
    crate::limit_malloc_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the kubelet's runtime")?;
    spec::set_cluster_dns(opts.cluster_dns.clone());
    rt.block_on(async move {
        let k = start(&opts).await?;
        ready(&k.node_name, k.port);
        crate::shutdown_signal().await;
        if opts.stop_pods_on_exit {
            let uids: Vec<String> = k.known_uids().into_iter().collect();
            for u in &uids {
                k.remove_pod(u);
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while !k.known_uids().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    })
}

async fn start(opts: &KubeletOptions) -> Result<Arc<Kubelet>> {
    std::fs::create_dir_all(&opts.root)
        .with_context(|| format!("creating the kubelet directory {}", opts.root.display()))?;
    let client = kube_client(&opts.kubeconfig).await?;
    let cri = connect_cri(&opts.runtime_endpoint, Duration::from_secs(30)).await?;
    let m = machine(&opts.root);
    let listener = crate::server::bind(opts.port)?;
    let port = listener.local_addr()?.port();
    let k = Arc::new(Kubelet {
        recorder: Recorder {
            client: client.clone(),
            component: "kubelet",
            host: opts.node_name.clone(),
        },
        client,
        cri,
        node_name: opts.node_name.clone(),
        root: opts.root.clone(),
        host_ip: host_ip(),
        port,
        node_cpu_milli: m.cpus as i128 * 1000,
        node_memory: m.memory,
        machine: m,
        workers: Mutex::new(HashMap::new()),
        backoff: Mutex::new(HashMap::new()),
        static_pods: Mutex::new(HashMap::new()),
        objects: Default::default(),
        sync_frequency: opts.sync_frequency,
    });
    k.register_node().await?;
    if let Err(e) = k.renew_lease().await {
        tracing::warn!("creating the node lease: {e:#}");
    }
    tokio::spawn(k.clone().heartbeat());
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(k.clone().watch_pods(synced_tx));
    tokio::spawn(k.clone().container_events());
    if let Some(dir) = &opts.pod_manifest_path {
        tokio::spawn(k.clone().static_pods_loop(dir.clone()));
    }
    crate::server::spawn(k.clone(), listener, opts.pki_dir.clone()).await?;
    tokio::spawn(trim_when_idle(k.clone()));
    // Sandboxes of pods this kubelet no longer has go once the first list is in.
    let k2 = k.clone();
    let has_static = opts.pod_manifest_path.is_some();
    tokio::spawn(async move {
        let _ = synced_rx.await;
        if has_static {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        loop {
            if let Err(e) = k2.remove_orphans().await {
                tracing::warn!("removing pods this node no longer runs: {e:#}");
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    Ok(k)
}

impl Kubelet {
    /// Watch the pods bound to this node (a field selector on spec.nodeName).
    async fn watch_pods(self: Arc<Self>, synced: tokio::sync::oneshot::Sender<()>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
        let mut stream = watcher(api, cfg).boxed();
        let mut synced = Some(synced);
        let mut seen: HashSet<String> = HashSet::new();
        let mut listing: HashSet<String> = HashSet::new();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                    if is_mirror(&p) {
                        continue;
                    }
                    let uid = spec::uid(&p).to_string();
                    listing.insert(uid.clone());
                    seen.insert(uid);
                    self.update_pod(p, false);
                }
                Ok(watcher::Event::Delete(p)) => {
                    if is_mirror(&p) {
                        continue;
                    }
                    seen.remove(spec::uid(&p));
                    self.remove_pod(spec::uid(&p));
                }
                Ok(watcher::Event::Init) => listing.clear(),
                Ok(watcher::Event::InitDone) => {
                    // A re-list: pods deleted while the watch was down are gone.
                    for gone in seen.difference(&listing).cloned().collect::<Vec<_>>() {
                        self.remove_pod(&gone);
                    }
                    seen = listing.clone();
                    if let Some(s) = synced.take() {
                        let _ = s.send(());
                    }
                }
                Err(e) => {
                    tracing::warn!("watching the node's pods: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// CRI container events wake the worker of the pod they concern (a PLEG).
    async fn container_events(self: Arc<Self>) {
        loop {
            let r = self
                .cri
                .rt
                .clone()
                .get_container_events(cri::GetEventsRequest {})
                .await;
            if let Ok(r) = r {
                let mut s = r.into_inner();
                while let Ok(Some(ev)) = s.message().await {
                    let uid = ev
                        .pod_sandbox_status
                        .as_ref()
                        .and_then(|p| p.metadata.as_ref().map(|m| m.uid.clone()))
                        .or_else(|| {
                            ev.containers_statuses
                                .first()
                                .and_then(|c| c.labels.get(spec::LABEL_POD_UID).cloned())
                        });
                    if let Some(uid) = uid {
                        self.wake_pod(&uid);
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Stop and remove sandboxes of pods no source has any more (deleted while the
    /// kubelet was down).
    async fn remove_orphans(&self) -> Result<()> {
        let known = self.known_uids();
        let list = self
            .cri
            .rt
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .context("listing sandboxes")?
            .into_inner()
            .items;
        for s in list {
            let Some(uid) = s.labels.get(spec::LABEL_POD_UID) else {
                continue;
            };
            if known.contains(uid) {
                continue;
            }
            tracing::info!(
                "removing sandbox {} of pod uid {uid}, which this node no longer runs",
                s.id
            );
            let mut rt = self.cri.rt.clone();
            let _ = rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await;
            let _ = rt
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await;
            let _ = std::fs::remove_dir_all(spec::pod_dir(&self.root, uid));
        }
        Ok(())
    }
}

/// A mirror pod (the API's copy of a static pod): never run from the API.
pub fn is_mirror(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(crate::static_pods::MIRROR_ANNOTATION))
}

/// Sync passes of pod workers so far (the kubelet's measure of being busy).
pub(crate) static SYNC_PASSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Give the heap's free pages back to the system once a burst of pod syncs is over
/// (a 3 s window with no more passes than the periodic resyncs of the pods make, after
/// a busier one):
/// glibc keeps what the burst freed (its workers' CRI and API buffers) resident otherwise.
async fn trim_when_idle(k: Arc<Kubelet>) {
    use std::sync::atomic::Ordering;
    const WINDOW: Duration = Duration::from_secs(3);
    let mut seen = SYNC_PASSES.load(Ordering::Relaxed);
    let mut trimmed = true;
    loop {
        tokio::time::sleep(WINDOW).await;
        let now = SYNC_PASSES.load(Ordering::Relaxed);
        let passes = now - seen;
        seen = now;
        let pods = k.workers.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        let resyncs = pods * WINDOW.as_millis() as u64 / k.sync_frequency.as_millis().max(1) as u64;
        if passes > resyncs + 5 {
            trimmed = false;
        } else if !trimmed {
            trimmed = true;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim(3) only returns free heap pages to the kernel.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
