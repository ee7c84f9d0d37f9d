//! The SPDY side of the streaming server: Kubernetes' remote command
//! protocol v4 (one stream per `streamType`) and its port-forward protocol
//! (an error and a data stream per forwarded connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::remote::{End, Input, Output, Remote};
use super::spdy::{self, header, Event};
use crate::server::State;

/// How long the client has to open the streams it asked for (kubelet's).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The terminal size message on the resize stream.
#[derive(serde::Deserialize)]
pub(super) struct Size {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Take the whole JSON sizes from the front of `buf`.
pub(super) fn sizes(buf: &mut Vec<u8>) -> Vec<Input> {
    let mut out = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    while let Some(Ok(s)) = it.next() {
        used = it.byte_offset();
        out.push(Input::Resize {
            width: s.width,
            height: s.height,
        });
    }
    buf.drain(..used);
    out
}

/// Serve exec or attach on an upgraded SPDY connection.
pub(super) async fn remote<IO>(io: IO, state: Arc<State>, remote: Remote)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let streams = remote.streams();
    let cmd = remote.cmd();
    let spdy::Session { writer, mut events } = spdy::session(io);
    let mut expected = vec!["error"];
    if streams.stdin {
        expected.push("stdin");
    }
    if streams.stdout {
        expected.push("stdout");
    }
    if streams.stderr {
        expected.push("stderr");
    }
    if streams.tty {
        expected.push("resize");
    }
    // streamType -> stream id, and the reverse for routing input.
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut early = Vec::new();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !expected.iter().all(|t| ids.contains_key(*t)) {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Open { stream_id, headers, .. }) => {
                    if writer.reply(stream_id, Vec::new()).await.is_err() {
                        return;
                    }
                    let kind = header(&headers, "streamtype").unwrap_or("").to_string();
                    ids.insert(kind, stream_id);
                }
                Some(ev @ Event::Data { .. }) => early.push(ev),
                Some(Event::Reply { .. } | Event::Reset { .. }) => {}
                Some(Event::Closed) | None => return,
            },
            _ = &mut deadline => {
                tracing::debug!("stream session: the client did not open {expected:?} in time");
                break;
            }
        }
    }
    let by_id: HashMap<u32, String> = ids.iter().map(|(k, v)| (*v, k.clone())).collect();
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let task = tokio::spawn(remote.run(state, in_rx, out_tx));
    let mut in_tx = Some(in_tx);
    let mut resize = Vec::new();
    let mut route = |ev: Event| -> Vec<Input> {
        let Event::Data {
            stream_id,
            data,
            fin,
        } = ev
        else {
            return Vec::new();
        };
        match by_id.get(&stream_id).map(String::as_str) {
            Some("stdin") => {
                let mut v = Vec::new();
                if !data.is_empty() {
                    v.push(Input::Stdin(data));
                }
                if fin {
                    v.push(Input::StdinEof);
                }
                v
            }
            Some("resize") => {
                resize.extend_from_slice(&data);
                sizes(&mut resize)
            }
            _ => Vec::new(),
        }
    };
    for ev in early {
        for i in route(ev) {
            if let Some(tx) = &in_tx {
                let _ = tx.send(i).await;
            }
        }
    }
    let mut events_open = true;
    loop {
        tokio::select! {
            ev = events.recv(), if events_open => match ev {
                Some(Event::Closed) | None => {
                    events_open = false;
                    // The client is gone: its stdin ends.
                    in_tx = None;
                }
                Some(ev) => {
                    for i in route(ev) {
                        if let Some(tx) = &in_tx {
                            let _ = tx.send(i).await;
                        }
                    }
                }
            },
            o = out_rx.recv() => {
                let (kind, data) = match o {
                    Some(Output::Stdout(b)) => ("stdout", b),
                    Some(Output::Stderr(b)) => ("stderr", b),
                    None => break,
                };
                if let Some(id) = ids.get(kind) {
                    let _ = writer.data(*id, &data).await;
                }
            }
        }
    }
    drop(in_tx);
    let end = task
        .await
        .unwrap_or_else(|_| End::Failed("the stream session failed".into()));
    if let Some(id) = ids.get("error") {
        let _ = writer.data(*id, &end.status(&cmd)).await;
    }
    // Our half of every stream closes, so the client's copies end.
    for id in ids.values() {
        let _ = writer.fin(*id).await;
    }
    let last = ids.values().copied().max().unwrap_or(0);
    let _ = writer.goaway(last).await;
}

/// Serve port-forward on an upgraded SPDY connection: each pair of
/// streams (same `requestID`) is one connection to its `port` in the pod.
pub(super) async fn portforward<IO>(io: IO, state: Arc<State>, req: cri::PortForwardRequest)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let netns = super::portforward::netns_of(&state, &req.pod_sandbox_id).await;
    let spdy::Session { writer, mut events } = spdy::session(io);
    #[derive(Default)]
    struct Pair {
        error: Option<u32>,
        data: Option<(u32, mpsc::Receiver<Option<Vec<u8>>>)>,
        port: String,
    }
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut to_pod: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Open {
                stream_id, headers, ..
            } => {
                if writer.reply(stream_id, Vec::new()).await.is_err() {
                    break;
                }
                let kind = header(&headers, "streamtype").unwrap_or("");
                // Old clients send no requestID: kubelet pairs the error
                // stream N with the data stream N+2.
                let rid = match (header(&headers, "requestid"), kind) {
                    (Some(r), _) => r.to_string(),
                    (None, "data") => stream_id.saturating_sub(2).to_string(),
                    (None, _) => stream_id.to_string(),
                };
                let pair = pairs.entry(rid.clone()).or_default();
                if let Some(p) = header(&headers, "port") {
                    pair.port = p.to_string();
                }
                match kind {
                    "error" => pair.error = Some(stream_id),
                    "data" => {
                        let (tx, rx) = mpsc::channel(64);
                        to_pod.insert(stream_id, tx);
                        pair.data = Some((stream_id, rx));
                    }
                    _ => {
                        let _ = writer.reset(stream_id, spdy::rst::PROTOCOL_ERROR).await;
                        continue;
                    }
                }
                if pair.error.is_some() && pair.data.is_some() {
                    let pair = pairs.remove(&rid).expect("present");
                    let (data, rx) = pair.data.expect("present");
                    tasks.spawn(forward(
                        writer.clone(),
                        netns.clone(),
                        req.pod_sandbox_id.clone(),
                        pair.port,
                        pair.error.expect("present"),
                        data,
                        rx,
                    ));
                }
            }
            Event::Data {
                stream_id,
                data,
                fin,
            } => {
                if let Some(tx) = to_pod.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = tx.send(Some(data)).await;
                    }
                    if fin {
                        let _ = tx.send(None).await;
                        to_pod.remove(&stream_id);
                    }
                }
            }
            Event::Reset { stream_id, .. } => {
                to_pod.remove(&stream_id);
            }
            Event::Reply { .. } => {}
            Event::Closed => break,
        }
    }
    // The client went: its connections into the pod go too.
    tasks.abort_all();
}

/// One forwarded connection: pod -> data stream until the pod's side
/// ends (then both our halves close), client -> pod until its FIN.
async fn forward<W>(
    writer: Arc<spdy::Writer<W>>,
    netns: Result<String, String>,
    sandbox: String,
    port: String,
    error: u32,
    data: u32,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
) where
    W: AsyncWrite + Unpin + Send,
{
    let connected = async {
        let p = super::parse_port(&port)?;
        super::portforward::connect(&netns?, p).await
    }
    .await;
    let tcp = match connected {
        Ok(t) => t,
        Err(e) => {
            let msg = crate::error::one_line(&format!(
                "error forwarding port {port} to pod sandbox {sandbox}: {e}"
            ));
            let _ = writer.data(error, msg.as_bytes()).await;
            let _ = writer.fin(error).await;
            let _ = writer.fin(data).await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.data(data, &buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = writer.fin(data).await;
        let _ = writer.fin(error).await;
    };
    let up = async {
        while let Some(Some(b)) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(down, up);
}
