//! The gRPC server: both CRI services on one unix socket, until SIGTERM or
//! SIGINT; the socket is removed on the way out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::error::{Error, Result};

/// The default socket (kubelet's `--container-runtime-endpoint
/// unix:///run/hako/cri.sock`).
pub const DEFAULT_SOCKET: &str = "/run/hako/cri.sock";

/// What `hako cri serve` serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The hako root (images, containers).
    pub root: PathBuf,
    /// The unix socket to listen on.
    pub socket: PathBuf,
    /// The configuration.
    pub config: Config,
    /// The monitor and the cleanup command the engine starts.
    pub programs: hako_engine::Programs,
    /// The hako binary, bound into sandboxes as the built-in pause.
    pub hako: PathBuf,
}

/// Shared by both services: everything an RPC needs to open the root.
#[derive(Debug)]
pub(crate) struct State {
    pub root: PathBuf,
    pub config: Config,
    pub programs: hako_engine::Programs,
    pub hako: PathBuf,
    /// The streaming server's URLs and tokens.
    pub streaming: Arc<crate::stream::Streaming>,
    /// The engine and image store, kept open across requests.
    pub pool: crate::pool::Pool,
}

impl State {
    /// An open engine and image store for one request.
    pub(crate) fn open(&self) -> Result<crate::pool::Handles<'_>> {
        self.pool.get()
    }
}

/// Run `f` (synchronous library calls: SQLite, registries, runtimes) on the
/// blocking pool, its error as a gRPC status.
pub(crate) async fn blocking<T, F>(f: F) -> std::result::Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(tonic::Status::from),
        Err(e) => Err(tonic::Status::internal(crate::error::one_line(&format!(
            "a request handler failed: {e}"
        )))),
    }
}

fn bind(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                format!("creating the socket directory {}", dir.display()),
                e,
            )
        })?;
    }
    // A socket left by a server that died: nothing listens on it any more.
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(Error::Conflict(format!(
            "socket {}: another server is listening on it",
            socket.display()
        )));
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("removing the stale socket {}", socket.display()),
                e,
            ))
        }
    }
    let listener = UnixListener::bind(socket)
        .map_err(|e| Error::io(format!("listening on {}", socket.display()), e))?;
    // Root only: the socket runs containers.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("restricting {}", socket.display()), e))?;
    Ok(listener)
}

/// Serve the CRI on `opts.socket` until SIGTERM or SIGINT.
pub fn serve(opts: ServeOptions) -> Result<()> {
    // A client that goes away mid-answer must cost its connection (EPIPE),
    // not the server (the CLI restores SIGPIPE's default for pipelines).
    // SAFETY: setting a signal disposition to SIG_IGN, before any thread
    // of ours exists; no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // Every RPC runs on a blocking thread, and a kubelet starting many pods at once
    // makes dozens of them; glibc gives each busy thread an arena of its own (up to
    // 8 per core) and keeps their freed memory: two arenas, and idle threads ended
    // soon, keep the server's heap from growing with the burst (bench/kube).
    // SAFETY: mallopt(3) only sets an allocator tunable, before our threads exist.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    crate::cni::ensure_conf(&opts.config.cni_conf_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    let socket = opts.socket.clone();
    let result = rt.block_on(async move {
        let listener = bind(&opts.socket)?;
        let (streams, streaming) = crate::stream::bind(
            &opts.config.stream_server_address,
            opts.config.stream_server_port,
        )
        .await?;
        let state = Arc::new(State {
            pool: crate::pool::Pool::new(opts.root.clone()),
            root: opts.root,
            config: opts.config,
            programs: opts.programs,
            hako: opts.hako,
            streaming,
        });
        tokio::spawn(crate::stream::serve(streams, state.clone()));
        let runtime = crate::runtime_service::Runtime::new(state.clone());
        let images = crate::image_service::Images::new(state);
        tracing::info!("serving CRI on {}", opts.socket.display());
        tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(runtime))
            .add_service(ImageServiceServer::new(images))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown())
            .await
            .map_err(|e| Error::Io {
                context: format!("serving CRI on {}", opts.socket.display()),
                source: std::io::Error::other(e.to_string()),
            })
    });
    let _ = std::fs::remove_file(&socket);
    result
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, serve until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
