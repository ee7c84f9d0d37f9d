//! The HTTP face of the registry: the distribution-spec API over [`Store`], with auth,
//! access logging, metrics, TLS and graceful shutdown.

mod blobs;
mod conn;
mod manifests;
mod metrics;
mod referrers;
mod response;
mod routes;
mod tags;
mod token;
mod uploads;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::auth::{Htpasswd, Policy, TokenIssuer};
use crate::config::Config;
use crate::storage::FsDriver;
use crate::store::Store;

pub use metrics::Metrics;

/// Everything a request handler can reach.
pub struct App {
    pub store: Store,
    pub htpasswd: Option<Htpasswd>,
    pub tokens: Option<TokenIssuer>,
    pub policy: Policy,
    pub tls: bool,
    pub metrics: Metrics,
}

pub type AppState = Arc<App>;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("creating storage root {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("loading TLS certificate {cert} and key {key}: {source}")]
    Tls {
        cert: String,
        key: String,
        source: std::io::Error,
    },
    #[error("serving on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl App {
    /// Build the application state a configuration describes.
    pub fn from_config(config: &Config) -> Result<App, ServeError> {
        config.validate()?;
        let driver = FsDriver::new(&config.root).map_err(|source| ServeError::Root {
            path: config.root.display().to_string(),
            source,
        })?;
        let htpasswd = config.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
        let tokens = match &config.token {
            Some(t) => Some(TokenIssuer::load(
                &t.secret_file,
                Duration::from_secs(t.ttl_secs),
                t.service.clone(),
            )?),
            None => None,
        };
        Ok(App {
            store: Store::new(Arc::new(driver), config.upload_expiry()),
            htpasswd,
            tokens,
            policy: Policy {
                rules: config.access.clone(),
                anonymous_pull: config.anonymous_pull,
            },
            tls: config.tls_cert.is_some(),
            metrics: Metrics::default(),
        })
    }
}

/// The registry's routes. Repository names contain `/`, so everything under `/v2/<name>/`
/// is dispatched by [`routes::dispatch`] parsing the path from its end.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/v2/", get(routes::base).head(routes::base))
        .route("/v2", get(routes::base).head(routes::base))
        .route("/v2/_catalog", get(tags::catalog))
        .route("/token", get(token::issue))
        .route("/metrics", get(metrics::render))
        .fallback(routes::dispatch)
        .layer(middleware::from_fn_with_state(app.clone(), access_log))
        .with_state(app)
}

/// Structured access log, request metrics, and the API version header on every response.
async fn access_log(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    let status = resp.status().as_u16();
    app.metrics.observe(&method, status);
    tracing::info!(
        target: "hako_registry::access",
        %method,
        path,
        status,
        ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

/// A bound registry ready to serve.
pub struct Server {
    app: AppState,
    listener: std::net::TcpListener,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    sendfile: bool,
    limits: conn::ConnLimits,
}

impl Server {
    /// Bind the configured address (port 0 picks a free one; see [`Server::local_addr`]).
    pub fn bind(config: &Config) -> Result<Server, ServeError> {
        let app = Arc::new(App::from_config(config)?);
        let listener =
            std::net::TcpListener::bind(config.addr).map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        let tls = config.tls_cert.clone().zip(config.tls_key.clone());
        Ok(Server {
            app,
            listener,
            tls,
            sendfile: config.sendfile,
            limits: conn::ConnLimits {
                read_timeout: Duration::from_secs(config.read_timeout_secs),
                idle_timeout: Duration::from_secs(config.idle_timeout_secs),
                max_connections: config.max_connections,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// Serve until `shutdown` resolves, then finish in-flight requests and return.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let addr = self.local_addr();
        let app = self.app.clone();
        // Uploads abandoned by clients are purged in the background.
        let expiry_store = app.store.clone();
        let expiry_task = tokio::spawn(async move {
            let period = (expiry_store.upload_expiry / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(600));
            loop {
                tokio::time::sleep(period).await;
                match expiry_store.expire_uploads().await {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::info!(count = ids.len(), "expired abandoned uploads")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expiring uploads failed"),
                }
            }
        });
        let limits = conn::ConnLimits {
            read_timeout: self.limits.read_timeout,
            idle_timeout: self.limits.idle_timeout,
            max_connections: self.limits.max_connections,
        };
        let refused = self.app.metrics.refused_counter();
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|source| ServeError::Serve { addr, source })?;
        let result = match self.tls {
            None => {
                tracing::info!(%addr, "registry listening (http)");
                let sendfile = Some((self.sendfile, self.app.metrics.sendfile_counter()));
                conn::serve(
                    listener,
                    None,
                    sendfile,
                    router(app),
                    limits,
                    refused,
                    shutdown,
                )
                .await
                .map_err(|source| ServeError::Serve { addr, source })
            }
            Some((cert, key)) => {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                    .await
                    .map_err(|source| ServeError::Tls {
                        cert: cert.display().to_string(),
                        key: key.display().to_string(),
                        source,
                    })?;
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
                tracing::info!(%addr, "registry listening (https)");
                conn::serve(
                    listener,
                    Some(acceptor),
                    None,
                    router(app),
                    limits,
                    refused,
                    shutdown,
                )
                .await
                .map_err(|source| ServeError::Serve { addr, source })
            }
        };
        expiry_task.abort();
        result
    }
}

/// Resolves on SIGINT or SIGTERM: the shutdown signal for a foreground `registry serve`.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Run a registry in the foreground until SIGINT/SIGTERM, on a runtime of its own: the
/// entry point for `hako registry serve`, which then needs no async code itself.
pub fn serve_blocking(config: &Config) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hako-registry")
        .build()
        .map_err(|source| ServeError::Serve {
            addr: config.addr,
            source,
        })?;
    rt.block_on(async {
        let server = Server::bind(config)?;
        // Printed, not logged: scripts starting the registry on port 0 read it.
        println!("hako registry listening on {}", server.local_addr());
        server.run(shutdown_signal()).await
    })
}
