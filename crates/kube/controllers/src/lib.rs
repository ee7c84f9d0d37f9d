//! hako's workload controllers (issue 17): clients of the Kubernetes API that
//! reconcile ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, owner
//! references (garbage collection), namespace deletion, PersistentVolume binding and
//! the local-path provisioner.
//!
//! Built as upstream's kube-controller-manager: one shared informer per kind
//! ([`informer`]), a work queue per controller with rate-limited requeue
//! ([`queue`]), expectations so a lagging cache never makes a controller
//! create twice ([`expectations`]), one module per controller.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpointslice;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod informer;
pub mod job;
pub mod local_path;
pub mod namespace;
pub mod pv;
pub mod queue;
pub mod replicaset;
pub mod servicelb;
pub mod statefulset;
pub mod util;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use informer::Informer;

/// The informers and the client every controller shares.
pub struct Shared {
    pub client: Client,
    pub pods: Arc<Informer<Pod>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub statefulsets: Arc<Informer<StatefulSet>>,
    pub revisions: Arc<Informer<ControllerRevision>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub nodes: Arc<Informer<Node>>,
    pub jobs: Arc<Informer<Job>>,
    pub cronjobs: Arc<Informer<CronJob>>,
    pub namespaces: Arc<Informer<Namespace>>,
}

/// A client for the cluster of a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<Client> {
    // kube's rustls needs a process-wide crypto provider; another component
    // of the same process may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("reading the kubeconfig {}", kubeconfig.display()))?;
    let kc = Kubeconfig::from_yaml(&text)
        .with_context(|| format!("parsing the kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading the kubeconfig {}", kubeconfig.display()))?;
    Client::try_from(config).context("creating the Kubernetes client")
}

/// What the controllers need beyond the cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The local-path provisioner's directory (None: it does not run here).
    pub local_path_dir: Option<PathBuf>,
    /// Install the `local-path` StorageClass as the default (as `hako kube up` does).
    pub install_default_class: bool,
}

/// Start every controller on the current tokio runtime; returns once they
/// are running (they run until the runtime stops).
pub async fn start(client: Client, opts: Options) -> Result<Arc<Shared>> {
    let shared = Arc::new(Shared {
        pods: Informer::start(Api::all(client.clone())),
        replicasets: Informer::start(Api::all(client.clone())),
        deployments: Informer::start(Api::all(client.clone())),
        statefulsets: Informer::start(Api::all(client.clone())),
        revisions: Informer::start(Api::all(client.clone())),
        daemonsets: Informer::start(Api::all(client.clone())),
        nodes: Informer::start(Api::all(client.clone())),
        jobs: Informer::start(Api::all(client.clone())),
        cronjobs: Informer::start(Api::all(client.clone())),
        namespaces: Informer::start(Api::all(client.clone())),
        client,
    });
    replicaset::start(shared.clone());
    deployment::start(shared.clone());
    statefulset::start(shared.clone());
    daemonset::start(shared.clone());
    job::start(shared.clone());
    cronjob::start(shared.clone());
    namespace::start(shared.clone());
    endpointslice::start(shared.clone());
    servicelb::start(shared.clone());
    pv::start(
        shared.clone(),
        opts.local_path_dir
            .map(|base| local_path::LocalPath { base }),
    );
    if opts.install_default_class {
        tokio::spawn(local_path::install_default_class(shared.client.clone()));
    }
    let sh = shared.clone();
    tokio::spawn(async move {
        // Discovery may fail while the server starts: retry.
        loop {
            match gc::start(sh.clone()).await {
                Ok(()) => return,
                Err(e) => tracing::warn!("starting the garbage collector: {e:#}"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Ok(shared)
}

/// `hako kube controllers`: run the controllers in the foreground.
pub fn run_foreground(kubeconfig: PathBuf, opts: Options) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let client = client_from(&kubeconfig).await?;
        start(client, opts).await?;
        shutdown_signal().await;
        Ok(())
    })
}

/// Run the controllers on a thread of their own (as `hako kube up` does once
/// its API server listens); errors are logged.
pub fn spawn_thread(kubeconfig: PathBuf, opts: Options) {
    std::thread::Builder::new()
        .name("controllers".into())
        .spawn(move || {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("starting the controllers: {e:#}"),
            };
            rt.block_on(async move {
                match client_from(&kubeconfig).await {
                    Ok(c) => {
                        if let Err(e) = start(c, opts).await {
                            tracing::error!("starting the controllers: {e:#}");
                        }
                    }
                    Err(e) => tracing::error!("starting the controllers: {e:#}"),
                }
                std::future::pending::<()>().await
            })
        })
        .expect("spawning the controllers thread");
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("creating the controllers' runtime")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
