//! Hijacked connections (attach, exec start): docker clients send
//! `Connection: Upgrade` / `Upgrade: tcp` and, after the server's 101,
//! use the raw connection both ways: the process's output (framed without
//! a TTY) from the server, its stdin from the client. A client's half-close
//! is the end of its stdin; a failed write means it left, and `on_gone`
//! lets the producer stop (nothing is left reading for nobody).

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use hako_engine::attachment::DetachMatcher;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the client sends for the process's stdin.
pub enum Input {
    Data(Vec<u8>),
    Eof,
}

/// docker's answer to a hijack request: 101 with `Upgrade: tcp` when
/// asked, else 200 and the raw stream (old clients).
pub fn response(upgrade: bool, tty: bool) -> Response<Body> {
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let mut r = Response::new(Body::empty());
    if upgrade {
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    }
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    }
    r
}

/// Relay between the upgraded connection and a process: `out` until it
/// ends (the process is done), the client's bytes to `input`. With
/// `detach`, the client's detach sequence ends the session as docker's
/// does: the connection is closed, `on_gone` runs, the process goes on.
/// Whether the client detached.
pub async fn relay(
    on_upgrade: OnUpgrade,
    mut out: mpsc::Receiver<Bytes>,
    input: Option<std::sync::mpsc::Sender<Input>>,
    mut detach: Option<DetachMatcher>,
    on_gone: impl FnOnce() + Send,
) -> bool {
    let io = match on_upgrade.await {
        Ok(u) => TokioIo::new(u),
        Err(e) => {
            tracing::debug!("upgrading an attach connection: {e}");
            on_gone();
            return false;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut reading = true;
    let mut buf = vec![0u8; 16 * 1024];
    let mut gone = false;
    let mut detached = false;
    loop {
        tokio::select! {
            chunk = out.recv() => match chunk {
                Some(b) => {
                    if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                        gone = true;
                        break;
                    }
                }
                None => break,
            },
            n = rd.read(&mut buf), if reading => match n {
                Ok(0) => {
                    reading = false;
                    if let Some(i) = &input {
                        let _ = i.send(Input::Eof);
                    }
                }
                Ok(n) => {
                    let (data, done) = match detach.as_mut() {
                        Some(m) => m.feed(&buf[..n]),
                        None => (buf[..n].to_vec(), false),
                    };
                    if let Some(i) = &input {
                        if !data.is_empty() {
                            let _ = i.send(Input::Data(data));
                        }
                    }
                    if done {
                        detached = true;
                        break;
                    }
                }
                Err(_) => {
                    gone = true;
                    break;
                }
            },
        }
    }
    if detached {
        on_gone();
        let _ = wr.shutdown().await;
    } else if gone {
        on_gone();
    } else {
        let _ = wr.shutdown().await;
        // Closing with the client's bytes unread would reset the
        // connection (the client reports "connection reset" instead of the
        // end): read until it closes its side, which it does on our EOF.
        if reading {
            let drain = async {
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
        }
    }
    detached
}
