//! Connections: the accept loop for plain HTTP (HTTP/1.1 and h2c) and TLS (HTTP/1.1 and
//! HTTP/2 by ALPN), with a connection limit, an idle timeout and read timeouts, so idle,
//! half-open and stalled connections are closed instead of held forever.
//!
//! - At most `max_connections` connections are served at once; one accepted beyond that
//!   is closed at once (a client sees the connection closed and may retry), and counted.
//! - A connection with no request in progress (idle keep-alive, half-open, or a client
//!   that connected and never sent a request) is closed after `idle_timeout` without a
//!   byte moving in either direction.
//! - Request headers (HTTP/1) and the TLS handshake must arrive within `read_timeout`,
//!   and a request body may not pause for longer than that between two chunks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// The limits a server applies to its connections (from [`crate::config::Config`]).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// What a connection shares with the requests it carries: how many are in progress
/// (the idle timer only runs while there are none).
#[derive(Default)]
struct ConnState {
    in_flight: AtomicUsize,
}

/// Counts a request as in progress until dropped (also when the connection goes away
/// mid-request and the handler future is dropped).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's byte stream that fails with `TimedOut` once nothing has moved for
/// `idle` while no request is in progress; hyper then closes the connection.
struct IdleIo<S> {
    io: S,
    state: Arc<ConnState>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleIo<S> {
    fn new(io: S, state: Arc<ConnState>, idle: Duration) -> Self {
        IdleIo {
            io,
            state,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Called when the stream has nothing to give: time the connection out if it is
    /// idle and has been for too long (registering the wake-up otherwise).
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        if self.state.in_flight.load(Ordering::SeqCst) > 0 {
            // A handler is at work: not idle. Progress after it resets the deadline.
            self.progressed();
            return Poll::Pending;
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that fails with `TimedOut` when no chunk arrives for `timeout`: a
/// client that stops sending in the middle of an upload does not hold its handler.
struct TimeoutBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl hyper::body::Body for TimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let t = self.timeout;
                self.deadline.as_mut().reset(Instant::now() + t);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "no request body data for {} s",
                    self.timeout.as_secs_f64()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serve `router` on `listener` (TLS when `tls` is given) until `shutdown` resolves,
/// then let in-flight requests finish (for at most 30 s).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sendfile: Option<(bool, Arc<std::sync::atomic::AtomicU64>)>,
    router: Router,
    limits: ConnLimits,
    refused: Arc<std::sync::atomic::AtomicU64>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: not fatal; back off briefly so EMFILE does not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                %peer,
                limit = limits.max_connections,
                "connection limit reached: closing a new connection"
            );
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let state = Arc::new(ConnState::default());
        let service = {
            let state = state.clone();
            let router = router.clone();
            let read_timeout = limits.read_timeout;
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let guard = InFlight::new(&state);
                let req = req.map(|inner| {
                    Body::new(TimeoutBody {
                        inner,
                        timeout: read_timeout,
                        deadline: Box::pin(tokio::time::sleep(read_timeout)),
                    })
                });
                let mut router = router.clone();
                async move {
                    let resp: Response<Body> = router.call(req).await?;
                    drop(guard);
                    Ok::<_, std::convert::Infallible>(resp)
                }
            })
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let sendfile = sendfile.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match tls {
                Some(acceptor) => {
                    // The handshake is bounded too: a client that connects and stalls
                    // must not hold a connection slot.
                    let stream =
                        match tokio::time::timeout(limits.read_timeout, acceptor.accept(tcp)).await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let io = TokioIo::new(IdleIo::new(stream, state, limits.idle_timeout));
                    let conn = builder.serve_connection_with_upgrades(io, service);
                    watcher.watch(conn.into_owned()).await
                }
                None => {
                    let (on, sent) = sendfile.unwrap_or_default();
                    let stream = crate::zerocopy::SendfileStream::new(tcp, on, sent);
                    let io = TokioIo::new(IdleIo::new(stream, state, limits.idle_timeout));
                    let conn = builder.serve_connection_with_upgrades(io, service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running 30 s after shutdown: closing them");
    }
    Ok(())
}
