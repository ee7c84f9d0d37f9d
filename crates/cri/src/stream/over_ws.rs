//! The websocket side of the streaming server: Kubernetes' channel
//! protocols (`v5.channel.k8s.io`, `v4.channel.k8s.io`): binary messages
//! whose first byte is the channel.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use k8s_cri::v1 as cri;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::remote::{End, Input, Output, Remote};
use crate::server::State;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: "the client closed channel N" (`[255, N]`).
const CLOSE: u8 = 255;

/// A close frame with `code` (clients take anything but 1000 "normal" for
/// a failure of the whole session).
fn close(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(1 + data.len());
    b.push(channel);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

/// Serve exec or attach on a websocket.
pub(super) async fn remote<S>(
    ws: WebSocketStream<S>,
    state: Arc<State>,
    remote: Remote,
    protocol: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let v5 = protocol == "v5.channel.k8s.io";
    let cmd = remote.cmd();
    let (mut sink, mut stream) = ws.split();
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let task = tokio::spawn(remote.run(state, in_rx, out_tx));
    let reader = tokio::spawn(async move {
        let mut resize = Vec::new();
        while let Some(Ok(msg)) = stream.next().await {
            let b = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            let inputs = match b.first() {
                Some(&STDIN) if b.len() > 1 => vec![Input::Stdin(b[1..].to_vec())],
                Some(&RESIZE) => {
                    resize.extend_from_slice(&b[1..]);
                    super::over_spdy::sizes(&mut resize)
                }
                Some(&CLOSE) if v5 && b.get(1) == Some(&STDIN) => vec![Input::StdinEof],
                _ => Vec::new(),
            };
            for i in inputs {
                if in_tx.send(i).await.is_err() {
                    return;
                }
            }
        }
        // The client is gone: its stdin ends.
        let _ = in_tx.send(Input::StdinEof).await;
    });
    while let Some(o) = out_rx.recv().await {
        let msg = match o {
            Output::Stdout(b) => frame(STDOUT, &b),
            Output::Stderr(b) => frame(STDERR, &b),
        };
        let _ = sink.send(msg).await;
    }
    let end = task
        .await
        .unwrap_or_else(|_| End::Failed("the stream session failed".into()));
    let _ = sink.send(frame(ERROR, &end.status(&cmd))).await;
    let _ = sink.send(close(CloseCode::Normal, "")).await;
    let _ = sink.close().await;
    reader.abort();
}

/// Serve port-forward on a websocket: for the i-th `port` of the query,
/// channel 2i carries the data and 2i+1 the errors; the server first
/// writes the port (2 bytes, little-endian) on both, as kubelet does.
pub(super) async fn portforward<S>(
    ws: WebSocketStream<S>,
    state: Arc<State>,
    req: cri::PortForwardRequest,
    ports: Vec<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    let sink = Arc::new(Mutex::new(sink));
    if ports.is_empty() {
        let mut s = sink.lock().await;
        let _ = s
            .send(close(
                CloseCode::Policy,
                "query parameter \"port\" is required",
            ))
            .await;
        return;
    }
    let netns = super::portforward::netns_of(&state, &req.pod_sandbox_id).await;
    let mut to_pod = Vec::new();
    let mut readers = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let connected = async {
            let p = super::parse_port(port)?;
            {
                let mut s = sink.lock().await;
                let _ = s.send(frame(data, &p.to_le_bytes())).await;
                let _ = s.send(frame(error, &p.to_le_bytes())).await;
            }
            super::portforward::connect(netns.as_ref().map_err(Clone::clone)?, p).await
        }
        .await;
        let tcp = match connected {
            Ok(t) => t,
            Err(e) => {
                let msg = crate::error::one_line(&format!(
                    "error forwarding port {port} to pod sandbox {}: {e}",
                    req.pod_sandbox_id
                ));
                let _ = sink.lock().await.send(frame(error, msg.as_bytes())).await;
                to_pod.push(None);
                continue;
            }
        };
        let (mut rd, wr) = tcp.into_split();
        to_pod.push(Some(wr));
        let sink = sink.clone();
        readers.spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .lock()
                            .await
                            .send(frame(data, &buf[..n]))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
    }
    while let Some(Ok(msg)) = stream.next().await {
        let b = match msg {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some(&ch) = b.first() else { continue };
        if ch % 2 != 0 || b.len() < 2 {
            continue;
        }
        if let Some(Some(wr)) = to_pod.get_mut(ch as usize / 2) {
            if wr.write_all(&b[1..]).await.is_err() {
                to_pod[ch as usize / 2] = None;
            }
        }
    }
    readers.abort_all();
    let mut s = sink.lock().await;
    let _ = s.send(close(CloseCode::Normal, "")).await;
    let _ = s.close().await;
}

/// The byte stream carried in a websocket's binary messages (client-go's
/// SPDY tunnelling), as an ordinary connection.
pub(super) fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let inbound = async {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Binary(b) = msg else {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                    continue;
                };
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(buf[..n].to_vec().into()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = sink.send(close(CloseCode::Normal, "")).await;
            let _ = sink.close().await;
        };
        tokio::join!(inbound, outbound);
    });
    ours
}
