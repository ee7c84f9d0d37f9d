//! `POST /containers/{id}/attach`: the container's output live (and its
//! stdin) on a hijacked connection. A client attached to a container that
//! has not started yet (docker run without -d attaches, then starts) is
//! handed the monitor connection made before the start, so none of the
//! output is missed. `logs=1` replays the log first; on a terminal the
//! detach keys (`detachKeys`, default ctrl-p ctrl-q) end the session and
//! leave the container running.

use std::os::fd::AsRawFd;

use axum::body::Body;
use axum::extract::{Path, Request, State as St};
use axum::response::Response;
use bytes::Bytes;
use std::sync::{Arc, Mutex};

use hako_engine::attachment::DetachMatcher;
use hako_engine::{Attachment, Event, Started, Status};
use tokio::sync::{mpsc, oneshot};

use crate::containers::{find, query_size, wants_upgrade};
use crate::error::{ApiError, ApiResult};
use crate::hijack::{self, Input};
use crate::params::Params;
use crate::server::State;
use crate::stream;

/// A client waiting for a container's start.
pub struct PendingAttach {
    pub size: Option<(u16, u16)>,
    pub tx: oneshot::Sender<Started>,
}

pub async fn attach(
    St(s): St<State>,
    Path(id): Path<String>,
    q: Params,
    mut req: Request,
) -> ApiResult<Response> {
    let c = s
        .blocking({
            let id = id.clone();
            move |_, engine| find(engine, &id)
        })
        .await?;
    let tty = c.config.tty;
    let want_in = q.bool("stdin");
    let (want_out, want_err) = (q.bool("stdout"), q.bool("stderr"));
    let (logs, live) = (q.bool("logs"), q.bool("stream"));
    // docker reads the detach sequence only from a terminal's input.
    let detach = if tty && want_in {
        Some(detach_matcher(q.str("detachKeys"))?)
    } else {
        None
    };
    let size = query_size(&q);
    // Running: connect now (before the log is read, so nothing between
    // the two is lost); otherwise wait for the start to hand over.
    let source: Option<Source> = if !live {
        None
    } else if c.state.status == Status::Running {
        let cid = c.id.clone();
        let (_, a) = s
            .blocking(move |_, engine| Ok(engine.attach_stream(&cid, size)?))
            .await?;
        Some(Source::Now(a))
    } else {
        let (tx, rx) = oneshot::channel();
        s.pending_attach(&c.id, PendingAttach { size, tx });
        Some(Source::Later(rx))
    };
    let upgrade = wants_upgrade(req.headers());
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(16);
    let (in_tx, in_rx) = std::sync::mpsc::channel();
    let killer: Killer = Arc::new(Mutex::new(None));
    let feed = Feed {
        state: s.clone(),
        id: c.id.clone(),
        logs,
        source,
        tty,
        want_in: want_in && upgrade,
        want_out,
        want_err,
        killer: killer.clone(),
    };
    let st = s.clone();
    let cid = c.id.clone();
    if upgrade {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let feeder = tokio::spawn(feed.run(out_tx, in_rx));
            let detached = hijack::relay(
                on_upgrade,
                out_rx,
                want_in.then_some(in_tx),
                detach,
                move || {
                    // The client left (or detached): end the monitor
                    // connection, which ends the output thread reading it.
                    if let Some(a) = killer.lock().expect("attach lock").take() {
                        let _ = nix::sys::socket::shutdown(
                            a.fd().as_raw_fd(),
                            nix::sys::socket::Shutdown::Both,
                        );
                    }
                },
            )
            .await;
            if detached {
                tracing::debug!("a client detached from container {cid}");
            }
            let started = feeder.await.ok().flatten();
            finish(st, cid, started).await;
        });
        return Ok(hijack::response(true, tty));
    }
    // An old client without Upgrade: the output as the response body.
    let (tx, body) = stream::channel();
    drop(in_tx);
    tokio::spawn(async move {
        let feeder = tokio::spawn(feed.run(out_tx, in_rx));
        let mut rx = out_rx;
        while let Some(b) = rx.recv().await {
            if !tx.send_async(b).await {
                break;
            }
        }
        drop(rx);
        if let Some(a) = killer.lock().expect("attach lock").take() {
            let _ =
                nix::sys::socket::shutdown(a.fd().as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        let started = feeder.await.ok().flatten();
        finish(st, cid, started).await;
    });
    let mut r = hijack::response(false, tty);
    *r.body_mut() = Body::new(body);
    Ok(r)
}

/// The `detachKeys` of an attach or exec (docker's default ctrl-p,ctrl-q);
/// a bad sequence is docker's 400.
pub fn detach_matcher(keys: Option<&str>) -> ApiResult<DetachMatcher> {
    let keys = keys.unwrap_or(hako_engine::attachment::DEFAULT_DETACH_KEYS);
    let bytes = hako_engine::attachment::parse_detach_keys(keys).map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid detach keys ({}) provided",
            crate::error::printable(keys)
        ))
    })?;
    Ok(DetachMatcher::new(bytes))
}

/// The monitor connection of a live attach, to end it when the client goes.
type Killer = Arc<Mutex<Option<Attachment>>>;

/// What feeds an attach's output: the log first with `logs=1`, then, with
/// `stream=1`, the live output (and the client's stdin to the container).
struct Feed {
    state: State,
    id: String,
    logs: bool,
    source: Option<Source>,
    tty: bool,
    want_in: bool,
    want_out: bool,
    want_err: bool,
    killer: Killer,
}

impl Feed {
    /// Feed `out` until the output ends; the start handed over, if any.
    async fn run(
        self,
        out: mpsc::Sender<Bytes>,
        input: std::sync::mpsc::Receiver<Input>,
    ) -> Option<Started> {
        let (tty, want_out, want_err) = (self.tty, self.want_out, self.want_err);
        let out = if self.logs {
            let (st, id) = (self.state.clone(), self.id.clone());
            tokio::task::spawn_blocking(move || {
                if let Ok(engine) = st.engine() {
                    replay_log(&engine, &id, tty, want_out, want_err, &out);
                }
                out
            })
            .await
            .ok()?
        } else {
            out
        };
        let source = self.source?;
        let (a, started) = tokio::select! {
            got = source.get() => got?,
            // The client left before the container started.
            _ = out.closed() => return None,
        };
        if self.want_in {
            if let Ok(w) = a.try_clone() {
                spawn_input(w, input);
            }
        }
        if let Ok(k) = a.try_clone() {
            *self.killer.lock().expect("attach lock") = Some(k);
        }
        let _ = spawn_output(a, tty, want_out, want_err, out).await;
        started
    }
}

/// `logs=1`: the container's log so far, in the attach's framing.
fn replay_log(
    engine: &hako_engine::Engine,
    id: &str,
    tty: bool,
    want_out: bool,
    want_err: bool,
    out: &mpsc::Sender<Bytes>,
) {
    use hako_engine::logs::{Reader, Stream};
    let Ok(mut reader) = Reader::open_with_history(&engine.log_path(id)) else {
        return;
    };
    let Ok(entries) = reader.read_new() else {
        return;
    };
    for e in entries {
        let which = match e.stream {
            Stream::Stdout if want_out => stream::STDOUT,
            Stream::Stderr if want_err => stream::STDERR,
            _ => continue,
        };
        let b = if tty {
            Bytes::from(e.log.into_bytes())
        } else {
            Bytes::from(stream::frame(which, e.log.as_bytes()))
        };
        if out.blocking_send(b).is_err() {
            return;
        }
    }
}

enum Source {
    Now(Attachment),
    Later(oneshot::Receiver<Started>),
}

impl Source {
    async fn get(self) -> Option<(Attachment, Option<Started>)> {
        match self {
            Source::Now(a) => Some((a, None)),
            Source::Later(rx) => {
                let mut started = rx.await.ok()?;
                let a = started.attachment.take()?;
                Some((a, Some(started)))
            }
        }
    }
}

/// After the session: a start's progress pipe is read to its end, so the
/// monitor never writes into a closed pipe.
async fn finish(s: State, id: String, started: Option<Started>) {
    if let Some(started) = started {
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(engine) = s.engine() {
                let _ = started.wait(&engine);
            }
            drop(id);
        })
        .await;
    } else {
        s.forget_pending(&id);
    }
}

/// Read the monitor's events into `out` (framed without a TTY) until the
/// container exits, the connection ends or the client is gone.
fn spawn_output(
    mut a: Attachment,
    tty: bool,
    want_out: bool,
    want_err: bool,
    out: mpsc::Sender<Bytes>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        while let Ok(Some(events)) = a.read() {
            for e in events {
                let (which, data) = match e {
                    Event::Stdout(d) if want_out => (stream::STDOUT, d),
                    Event::Stderr(d) if want_err => (stream::STDERR, d),
                    Event::Exit(_) => return,
                    _ => continue,
                };
                let b = if tty {
                    Bytes::from(data)
                } else {
                    Bytes::from(stream::frame(which, &data))
                };
                if out.blocking_send(b).is_err() {
                    return;
                }
            }
        }
    })
}

fn spawn_input(mut a: Attachment, rx: std::sync::mpsc::Receiver<Input>) {
    std::thread::spawn(move || {
        for i in rx {
            let r = match i {
                Input::Data(d) => a.send_stdin(&d),
                Input::Eof => a.close_stdin(),
            };
            if r.is_err() {
                break;
            }
        }
    });
}
