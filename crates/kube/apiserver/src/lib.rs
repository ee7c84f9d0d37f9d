//! hako's Kubernetes API server: the REST API kubectl and client libraries
//! speak (discovery, CRUD, watch, patches, Table output), over TLS with
//! bearer-token authentication, on a [`hako_kube_store::Store`].
//!
//! One generic handler serves every kind; what differs per kind (schema
//! check, defaults, table columns) lives in [`resources`].

pub mod auth;
pub mod certs;
mod config_objects;
mod crd;
mod delete;
mod discovery;
mod handler;
mod meta;
mod node_authz;
mod openapi;
mod patch;
mod priority;
mod protobuf;
mod proxy;
pub mod quantity;
pub mod rbac;
pub mod resources;
mod reviews;
mod service_accounts;
mod services;
mod ssa;
mod status;
mod storage;
mod subresources;
mod table;
pub mod tokens;
mod validation;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use hako_kube_store::{EtcdStore, SqliteStore, Store};

/// Where objects are kept.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// `$ROOT/kube/store.db`.
    Sqlite,
    /// An etcd v3 server (its JSON gateway), keys under `prefix`.
    Etcd { endpoint: String, prefix: String },
}

pub use services::ServiceCidr;
pub use status::ApiError;

/// How the API server runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seconds between compactions of the store's history.
    pub compaction: std::time::Duration,
    /// Where Services' cluster IPs come from (`--service-cluster-ip-range`).
    pub service_cidr: ServiceCidr,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            compaction: std::time::Duration::from_secs(300),
            service_cidr: ServiceCidr::default(),
        }
    }
}

/// Where `hako kube` keeps its state under the hako root.
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(hako_root: &Path) -> Self {
        Paths {
            root: hako_root.to_path_buf(),
        }
    }
    pub fn dir(&self) -> PathBuf {
        self.root.join("kube")
    }
    pub fn pki(&self) -> PathBuf {
        self.dir().join("pki")
    }
    pub fn store(&self) -> PathBuf {
        self.dir().join("store.db")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir().join("apiserver.pid")
    }
    pub fn kubelet_client_token(&self) -> PathBuf {
        self.pki().join(certs::KUBELET_CLIENT_TOKEN)
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// The kubeconfig a component of `kube up` runs with (`controller-manager`,
    /// `scheduler`, `kube-proxy`, `kubelet`): its own client certificate.
    pub fn component_kubeconfig(&self, component: &str) -> PathBuf {
        self.dir().join(format!("{component}.kubeconfig"))
    }
}

/// Shared state of the running server.
pub struct App {
    pub store: Arc<dyn Store>,
    pub token: String,
    /// TLS and credentials for the kubelets (logs, exec, attach, port-forward).
    pub kubelet: proxy::KubeletClient,
    /// Signs and checks service account tokens (TokenRequest).
    pub tokens: tokens::TokenIssuer,
}

/// Start the API server on `addr` (port 0 picks a free one), writing the
/// kubeconfig; `ready` is called with the bound address once it accepts
/// connections. Runs until `shutdown` resolves.
pub async fn run(
    paths: &Paths,
    store: &StoreConfig,
    settings: &Settings,
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(paths.dir())
        .with_context(|| format!("creating {}", paths.dir().display()))?;
    let pki = certs::Pki::load_or_create(&paths.pki())?;
    let store: Arc<dyn Store> = match store {
        StoreConfig::Sqlite => Arc::new(SqliteStore::open(&paths.store())?),
        StoreConfig::Etcd { endpoint, prefix } => Arc::new(
            EtcdStore::new(endpoint, prefix)
                .with_context(|| format!("connecting to etcd at {endpoint}"))?,
        ),
    };
    handler::bootstrap(store.as_ref()).context("creating the default namespaces")?;
    rbac::bootstrap(store.as_ref()).context("creating the bootstrap RBAC roles and bindings")?;
    crd::refresh(store.as_ref());
    services::set_cidr(settings.service_cidr);
    let svc_kind = resources::find("", "v1", "services").expect("services are served");
    services::repair(store.as_ref(), &svc_kind.prefix())
        .context("checking the services' cluster IPs and node ports")?;
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    certs::write_kubeconfig(&paths.kubeconfig(), &pki, bound)?;
    // The components run as upstream's users, which RBAC binds to their roles.
    for (component, user) in [
        ("controller-manager", "system:kube-controller-manager"),
        ("scheduler", "system:kube-scheduler"),
        ("kube-proxy", "system:kube-proxy"),
    ] {
        certs::write_client_kubeconfig(
            &paths.pki(),
            &format!("https://{bound}"),
            &paths.component_kubeconfig(component),
            user,
            &[],
        )?;
    }
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(certs::server_tls(&pki)?);
    service_accounts::set_root_ca(&pki.ca_cert);
    let app = Arc::new(App {
        store,
        token: pki.token.clone(),
        kubelet: proxy::KubeletClient::new(&pki.ca_cert, &pki.kubelet_token)?,
        tokens: tokens::TokenIssuer::load_or_create(&paths.pki())?,
    });
    tokio::spawn(compact_periodically(app.store.clone(), settings.compaction));
    let router = handler::router(app);
    let handle = axum_server::Handle::new();
    let h2 = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h2.graceful_shutdown(Some(std::time::Duration::from_secs(2)));
    });
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls)?.handle(handle);
    ready(bound);
    server
        .serve(router.into_make_service())
        .await
        .with_context(|| format!("serving on {bound}"))
}

/// Resolves on SIGINT or SIGTERM.
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

/// Run the API server in the foreground until SIGINT/SIGTERM, on a runtime
/// of its own; the pid file `$ROOT/kube/apiserver.pid` lets `hako kube down`
/// stop it.
pub fn serve_foreground(
    paths: &Paths,
    store: &StoreConfig,
    settings: &Settings,
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    // Requests run their store work on blocking threads; the store takes one request
    // at a time (SQLite) or waits on etcd, so a few threads serve as fast as many, and
    // each thread kept alive holds its stack and heap.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the API server's runtime")?;
    std::fs::create_dir_all(paths.dir())
        .with_context(|| format!("creating {}", paths.dir().display()))?;
    let pid = paths.pid();
    std::fs::write(&pid, std::process::id().to_string())
        .with_context(|| format!("writing {}", pid.display()))?;
    let result = rt.block_on(run(paths, store, settings, addr, ready, shutdown_signal()));
    let _ = std::fs::remove_file(&pid);
    result
}

/// Upstream's scheme: every `interval`, forget history older than the
/// revision that was current one interval ago. Watches and continue tokens
/// older than that get 410 Gone and clients re-list.
async fn compact_periodically(store: Arc<dyn Store>, interval: std::time::Duration) {
    let mut previous: Option<u64> = None;
    loop {
        tokio::time::sleep(interval).await;
        if let Some(rev) = previous {
            if let Err(e) = store.compact(rev) {
                tracing::warn!("compacting the store below revision {rev}: {e}");
            }
        }
        previous = store.current_revision().ok();
    }
}
