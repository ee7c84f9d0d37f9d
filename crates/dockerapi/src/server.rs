//! The listener and the router: a unix socket (mode 0660, group `hako` if
//! it exists) and TCP with TLS (`listen`), HTTP/1.1 with connection upgrades (attach and exec hijack
//! the connection), docker's `/v1.NN/` path prefixes checked against the
//! supported range and stripped before routing, and the headers docker
//! clients read on every answer (`Api-Version`, `Server`, `Docker-Experimental`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use hako_engine::{Engine, Programs};
use hako_image::ImageStore;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tower::ServiceExt;

use crate::error::{ApiError, ApiResult, SetupError};

/// The API version served (docker 27's; docker CLI 28 negotiates down to it).
pub const API_VERSION: &str = "1.47";
/// The oldest API version a client may ask for (docker's minimum).
pub const MIN_API_VERSION: &str = "1.24";
/// The default socket.
pub const DEFAULT_SOCKET: &str = "/run/hako/docker.sock";

/// What `hako system service` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The engine and image root (`--root`).
    pub root: PathBuf,
    /// The programs containers need (monitor, cleanup and DNS commands).
    pub programs: Programs,
    /// The unix socket to serve on (None: TCP only).
    pub socket: Option<PathBuf>,
    /// `--tcp` and its TLS files.
    pub tcp: Option<crate::listen::TcpOptions>,
    /// Stop after this long without a connection; None: run until stopped.
    pub idle: Option<Duration>,
}

/// What every handler shares.
#[derive(Clone)]
pub struct State(pub Arc<Inner>);

pub struct Inner {
    pub root: PathBuf,
    pub programs: Programs,
    /// Connections open now (for the idle timeout).
    pub connections: AtomicUsize,
    /// Told when the last open connection ends ([`trim_when_idle`]).
    pub went_idle: tokio::sync::Notify,
    /// Clients attached to containers not started yet, by container id.
    pub pending: Mutex<HashMap<String, Vec<crate::attach::PendingAttach>>>,
    /// Exec instances, by exec id.
    pub execs: Mutex<HashMap<String, Arc<Mutex<crate::exec::ExecInstance>>>>,
}

impl std::ops::Deref for State {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl State {
    pub fn new(root: PathBuf, programs: Programs) -> State {
        State(Arc::new(Inner {
            root,
            programs,
            connections: AtomicUsize::new(0),
            went_idle: tokio::sync::Notify::new(),
            pending: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
        }))
    }

    /// Register a client waiting for container `id` to start.
    pub fn pending_attach(&self, id: &str, p: crate::attach::PendingAttach) {
        let mut m = self.pending.lock().expect("pending lock");
        m.entry(id.to_string()).or_default().push(p);
    }

    /// The client (the first still waiting) a start of `id` hands over to.
    pub fn take_pending_attach(&self, id: &str) -> Option<crate::attach::PendingAttach> {
        let mut m = self.pending.lock().expect("pending lock");
        let list = m.get_mut(id)?;
        list.retain(|p| !p.tx.is_closed());
        let p = (!list.is_empty()).then(|| list.remove(0));
        if list.is_empty() {
            m.remove(id);
        }
        p
    }

    /// Drop the waiters of `id` whose clients left.
    pub fn forget_pending(&self, id: &str) {
        let mut m = self.pending.lock().expect("pending lock");
        if let Some(list) = m.get_mut(id) {
            list.retain(|p| !p.tx.is_closed());
            if list.is_empty() {
                m.remove(id);
            }
        }
    }

    /// Open the engine of the root. The engine and the image store are
    /// SQLite-backed and blocking: handlers reach them through
    /// [`State::blocking`], one open per request (they are cheap to open
    /// and every hako command shares them through their file locks).
    pub fn engine(&self) -> ApiResult<Engine> {
        Ok(Engine::open(&self.root)?)
    }

    pub fn images(&self) -> ApiResult<ImageStore> {
        Ok(ImageStore::open(&self.root)?)
    }

    /// Run `f` with the engine on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State, &Engine) -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || {
            let engine = s.engine()?;
            f(&s, &engine)
        })
        .await?
    }
}

/// Every route of the API, unprefixed (see [`route_version`]).
pub fn router(state: State) -> Router {
    Router::new()
        .merge(crate::system::routes())
        .merge(crate::containers::routes())
        .merge(crate::exec::routes())
        .merge(crate::images::routes())
        .merge(crate::build::routes())
        .merge(crate::networks::routes())
        .merge(crate::volumes::routes())
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "page not found: {}",
        crate::error::printable(uri.path())
    ))
}

/// The API version a request asked for, from its `/vMAJOR.MINOR` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

/// Strip a `/v1.NN` prefix from the request's path, refusing versions out of
/// range as docker does (400, naming the versions). The version goes into the
/// request's extensions; unprefixed paths are the newest version.
pub fn route_version(req: &mut Request<Body>) -> ApiResult<()> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        req.extensions_mut()
            .insert(ApiVersion::parse(API_VERSION).expect("valid"));
        return Ok(());
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(v) = ApiVersion::parse(ver) else {
        // Not a version prefix (a path starting with /v...): route as is.
        return Ok(());
    };
    let min = ApiVersion::parse(MIN_API_VERSION).expect("valid");
    let max = ApiVersion::parse(API_VERSION).expect("valid");
    if v < min {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if v > max {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|_| ApiError::bad_request("the request's path is not valid"))?,
    );
    *req.uri_mut() = Uri::from_parts(parts)
        .map_err(|_| ApiError::bad_request("the request's path is not valid"))?;
    req.extensions_mut().insert(v);
    Ok(())
}

/// The headers docker's daemon puts on every answer.
fn add_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("hako/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
}

/// Answer one request: version routing, the router, the headers.
pub async fn handle(app: Router, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let mut req = req.map(Body::new);
    let mut resp = match route_version(&mut req) {
        Ok(()) => match app.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        },
        Err(e) => e.into_response(),
    };
    add_headers(&mut resp);
    resp
}

/// A connection accepted on one of the listeners.
enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
}

/// Accept on the unix socket and the TCP listener, whichever has a client.
async fn accept(
    unix: Option<&UnixListener>,
    tcp: Option<&crate::listen::Tcp>,
) -> std::io::Result<Accepted> {
    tokio::select! {
        r = async { unix.expect("guarded").accept().await }, if unix.is_some() => {
            r.map(|(s, _)| Accepted::Unix(s))
        }
        r = async { tcp.expect("guarded").listener.accept().await }, if tcp.is_some() => {
            r.map(|(s, a)| Accepted::Tcp(s, a))
        }
    }
}

/// Serve HTTP/1.1 with upgrades on one connection.
async fn serve_connection<I>(app: Router, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(app, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("connection ended: {e}");
    }
}

/// Serve until SIGINT/SIGTERM or, with `idle`, until no connection has
/// been open for that long. The socket is removed on the way out.
pub async fn serve(opts: Options) -> Result<(), SetupError> {
    let unix = opts
        .socket
        .as_deref()
        .map(crate::listen::bind_unix)
        .transpose()?;
    let tcp = match &opts.tcp {
        Some(t) => Some(crate::listen::bind_tcp(t).await?),
        None => None,
    };
    if unix.is_none() && tcp.is_none() {
        return Err(SetupError(
            "nothing to serve on: give --socket or --tcp".into(),
        ));
    }
    if let Some(t) = &tcp {
        let scheme = if t.tls.is_some() { "TLS" } else { "plain TCP" };
        tracing::info!("serving the API on tcp://{} ({scheme})", t.addr);
    }
    let state = State::new(opts.root.clone(), opts.programs.clone());
    let app = router(state.clone());
    let trim = tokio::spawn(trim_when_idle(state.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| SetupError(format!("watching for SIGTERM: {e}")))?;
    let result = loop {
        let idle = async {
            match opts.idle {
                Some(d) => loop {
                    tokio::time::sleep(d).await;
                    if state.connections.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept(unix.as_ref(), tcp.as_ref()) => {
                let accepted = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        continue;
                    }
                };
                let app = app.clone();
                let state = state.clone();
                let tls = tcp.as_ref().and_then(|t| t.tls.clone());
                state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    match accepted {
                        Accepted::Unix(s) => serve_connection(app, s).await,
                        Accepted::Tcp(s, peer) => match tls {
                            // The handshake runs here, off the accept loop.
                            Some(tls) => match tls.accept(s).await {
                                Ok(s) => serve_connection(app, s).await,
                                Err(e) => tracing::info!("TLS handshake with {peer} refused: {e}"),
                            },
                            None => serve_connection(app, s).await,
                        },
                    }
                    if state.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
                        state.went_idle.notify_one();
                    }
                });
            }
            _ = idle => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
        }
    };
    trim.abort();
    if let Some(sock) = &opts.socket {
        let _ = std::fs::remove_file(sock);
    }
    result
}

/// How long the service stays without a connection before its heap is
/// trimmed: past the blocking threads' keep-alive, so the memory of the
/// threads that ended is free by then, and long enough that a client's
/// next command (docker run = create, attach, start, wait) rarely falls
/// in between.
const TRIM_AFTER: Duration = Duration::from_millis(1500);
/// How long an idle blocking thread (engine and image store calls) stays.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Give the heap's free memory back to the system once no client has been
/// connected for [`TRIM_AFTER`]: glibc keeps what a burst of requests freed
/// (in the main heap and in each thread's arena) for reuse, and an idle
/// service need not hold it.
async fn trim_when_idle(state: State) {
    loop {
        state.went_idle.notified().await;
        tokio::time::sleep(TRIM_AFTER).await;
        if state.connections.load(Ordering::SeqCst) == 0 {
            trim_heap();
        }
    }
}

fn trim_heap() {
    // SAFETY: malloc_trim(3) only returns free memory of the allocator's
    // arenas to the kernel; no allocation of ours is touched.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A status-only answer with an empty body (204, 201 without content...).
pub fn status(code: StatusCode) -> Response<Body> {
    code.into_response()
}

/// [`serve`] on a runtime of its own, for callers without one (the CLI).
pub fn run(opts: Options) -> Result<(), SetupError> {
    // Requests run on blocking threads (the engine and the image store), and
    // glibc gives each busy thread an arena of its own (up to 8 per core)
    // that keeps its freed memory: two arenas keep the idle heap small.
    // SAFETY: mallopt(3) only sets an allocator tunable, before our threads exist.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
        .map_err(|e| SetupError(format!("starting the service's runtime: {e}")))?;
    rt.block_on(serve(opts))
}
