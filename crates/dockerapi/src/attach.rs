//! `POST /containers/{id}/attach`: the container's output live (and its
//! stdin) on a hijacked connection. A client attached to a container that
//! has not started yet (docker run without -d attaches, then starts) is
//! handed the monitor connection made before the start, so none of the
//! output is missed.

use std::os::fd::AsRawFd;

use axum::body::Body;
use axum::extract::{Path, Request, State as St};
use axum::response::Response;
use bytes::Bytes;
use hako_engine::{Attachment, Event, Started, Status};
use tokio::sync::{mpsc, oneshot};

use crate::containers::{find, query_size, wants_upgrade};
use crate::error::ApiResult;
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
    let size = query_size(&q);
    // Running: connect now; otherwise wait for the start to hand over.
    let source: Source = if c.state.status == Status::Running {
        let cid = c.id.clone();
        let (_, a) = s
            .blocking(move |_, engine| Ok(engine.attach_stream(&cid, size)?))
            .await?;
        Source::Now(a)
    } else {
        let (tx, rx) = oneshot::channel();
        s.pending_attach(&c.id, PendingAttach { size, tx });
        Source::Later(rx)
    };
    let upgrade = wants_upgrade(req.headers());
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(16);
    let st = s.clone();
    let cid = c.id.clone();
    if upgrade {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Some((a, started)) = source.get().await else {
                return;
            };
            let Ok(writer) = a.try_clone() else { return };
            let Ok(killer) = a.try_clone() else { return };
            let (in_tx, in_rx) = std::sync::mpsc::channel();
            let producer = spawn_output(a, tty, want_out, want_err, out_tx);
            if want_in {
                spawn_input(writer, in_rx);
            }
            hijack::relay(on_upgrade, out_rx, want_in.then_some(in_tx), move || {
                // The client left: end the monitor connection, which
                // ends the output thread blocked reading it.
                let _ = nix::sys::socket::shutdown(
                    killer.fd().as_raw_fd(),
                    nix::sys::socket::Shutdown::Both,
                );
            })
            .await;
            let _ = producer.await;
            finish(st, cid, started).await;
        });
        return Ok(hijack::response(true, tty));
    }
    // An old client without Upgrade: the output as the response body.
    let (tx, body) = stream::channel();
    tokio::spawn(async move {
        let Some((a, started)) = source.get().await else {
            return;
        };
        let mut rx = out_rx;
        let producer = spawn_output(a, tty, want_out, want_err, out_tx);
        while let Some(b) = rx.recv().await {
            if !tx.send_async(b).await {
                break;
            }
        }
        drop(rx);
        let _ = producer.await;
        finish(st, cid, started).await;
    });
    let mut r = hijack::response(false, tty);
    *r.body_mut() = Body::new(body);
    Ok(r)
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
