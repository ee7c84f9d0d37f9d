//! The gRPC server: both CRI services on one unix socket, until SIGTERM or
//! SIGINT; the socket is removed on the way out.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, SemaphorePermit};
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

/// How many RPCs may run their blocking work at once. Beyond it a request
/// queues (it does not fail): a kubelet starting a hundred pods at once
/// made a hundred blocking threads, each with its stack, its engine and
/// image store handles (SQLite page caches) and its share of malloc
/// arenas (bench/kube). The work is mostly waiting for processes (CNI
/// plugins, the OCI runtime, the monitor), so a few at a time keep the
/// two cores busy.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

static SLOTS: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);
/// Requests whose blocking work has not ended yet (bounded or not).
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// Work ended since the last [`trim_when_idle`] pass.
static WORKED: AtomicBool = AtomicBool::new(false);

/// Run `f` (synchronous library calls: SQLite, registries, runtimes) on the
/// blocking pool, its error as a gRPC status; at most [`MAX_IN_FLIGHT`] at
/// once, the others waiting their turn. `rpc` names it in the debug log,
/// with its time.
pub(crate) async fn blocking<T, F>(rpc: &'static str, f: F) -> std::result::Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    bounded(&SLOTS, rpc, f).await
}

/// As [`blocking`], off the bound: for calls that mostly wait on something
/// else for as long as their caller asks (StopContainer's grace period,
/// ExecSync's command, a pull from a registry), which must not hold a slot
/// the short calls need.
pub(crate) async fn blocking_long<T, F>(
    rpc: &'static str,
    f: F,
) -> std::result::Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    run(rpc, None, f).await
}

async fn bounded<T, F>(
    slots: &'static Semaphore,
    rpc: &'static str,
    f: F,
) -> std::result::Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let slot = slots
        .acquire()
        .await
        .map_err(|_| tonic::Status::unavailable("the server is shutting down"))?;
    run(rpc, Some(slot), f).await
}

async fn run<T, F>(
    rpc: &'static str,
    slot: Option<SemaphorePermit<'static>>,
    f: F,
) -> std::result::Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let t0 = Instant::now();
    BUSY.fetch_add(1, Ordering::SeqCst);
    // The slot and the count go with the work, not with the request: a
    // client that gives up does not end the work it started.
    let work = move || {
        let r = f();
        drop(slot);
        WORKED.store(true, Ordering::SeqCst);
        BUSY.fetch_sub(1, Ordering::SeqCst);
        r
    };
    let r = match tokio::task::spawn_blocking(work).await {
        Ok(r) => r.map_err(tonic::Status::from),
        Err(e) => Err(tonic::Status::internal(crate::error::one_line(&format!(
            "a request handler failed: {e}"
        )))),
    };
    tracing::debug!(
        rpc,
        ms = t0.elapsed().as_secs_f64() * 1000.0,
        ok = r.is_ok(),
        "CRI request"
    );
    r
}

/// Give memory back once no request is running: the idle engine/image
/// store pairs but one are closed (their SQLite page caches grow with the
/// pods), and the heap's free pages are returned to the system (a burst
/// leaves freed memory in every malloc arena, which glibc keeps for the
/// next allocation and would otherwise stay resident at idle).
async fn trim_when_idle(state: Arc<State>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if BUSY.load(Ordering::SeqCst) == 0 && WORKED.swap(false, Ordering::SeqCst) {
            let state = state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                state.pool.shrink(1);
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                // SAFETY: malloc_trim(3) only returns free memory of the
                // allocator's arenas to the kernel; it takes their locks.
                unsafe {
                    libc::malloc_trim(0);
                }
            })
            .await;
        }
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
        tokio::spawn(trim_when_idle(state.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// Requests beyond the bound wait for a slot, and all are answered.
    #[test]
    fn requests_beyond_the_bound_queue_and_all_answer() {
        static TEST_SLOTS: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);
        // Requests running, the most seen at once, and the gate they wait at.
        let state = Arc::new((Mutex::new((0usize, 0usize, false)), Condvar::new()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let requests = 3 * MAX_IN_FLIGHT;
        let answers = rt.block_on(async {
            let tasks: Vec<_> = (0..requests)
                .map(|i| {
                    let state = state.clone();
                    tokio::spawn(bounded(&TEST_SLOTS, "Test", move || {
                        let (lock, gate) = &*state;
                        let mut s = lock.lock().unwrap();
                        s.0 += 1;
                        s.1 = s.1.max(s.0);
                        gate.notify_all();
                        while !s.2 {
                            s = gate.wait(s).unwrap();
                        }
                        s.0 -= 1;
                        Ok(i)
                    }))
                })
                .collect();
            // Hold the first requests until the bound is reached, then
            // let a little time pass for any request that would overtake.
            {
                let (lock, gate) = &*state;
                let mut s = lock.lock().unwrap();
                while s.0 < MAX_IN_FLIGHT {
                    s = gate.wait(s).unwrap();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let running = state.0.lock().unwrap().0;
            // Opened before any assertion, so that a failure does not
            // leave the requests waiting forever.
            {
                let (lock, gate) = &*state;
                lock.lock().unwrap().2 = true;
                gate.notify_all();
            }
            assert_eq!(running, MAX_IN_FLIGHT);
            let mut answers = Vec::new();
            for t in tasks {
                answers.push(t.await.unwrap().unwrap());
            }
            answers
        });
        assert_eq!(answers, (0..requests).collect::<Vec<_>>());
        assert_eq!(state.0.lock().unwrap().1, MAX_IN_FLIGHT);
    }
}
