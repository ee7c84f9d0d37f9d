//! The streaming server behind Exec, Attach and PortForward, as
//! containerd's (and kubelet's): the RPC stores its request under a random
//! single-use token valid for a minute and answers
//! `http://ADDR:PORT/{exec,attach,portforward}/TOKEN`; the client (kubelet
//! proxying kubectl, or crictl) then upgrades an HTTP request on that URL
//! to either protocol Kubernetes clients speak:
//!
//! - SPDY/3.1 ([`spdy`]), `X-Stream-Protocol-Version: v4.channel.k8s.io`
//!   (exec/attach: streams named by their `streamType` header) or
//!   `portforward.k8s.io` (a data and an error stream per request);
//! - websocket, subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`
//!   (binary messages prefixed by their channel: 0 stdin, 1 stdout,
//!   2 stderr, 3 error, 4 resize; v5 adds 255 = close a channel), and for
//!   port-forward `v4.channel.k8s.io`/`portforward.k8s.io` with two
//!   channels per `port` query parameter, or client-go's
//!   `SPDY/3.1+portforward.k8s.io` (the SPDY protocol tunnelled in binary
//!   messages).
//!
//! The server listens on loopback by default (`stream_server_address`,
//! `stream_server_port`; port 0 = an ephemeral one).

mod over_spdy;
mod over_ws;
pub(crate) mod portforward;
pub(crate) mod remote;
pub mod spdy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tokio::net::TcpListener;

use crate::server::State;

/// How long a URL stays valid (containerd's and kubelet's minute).
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// At most this many URLs wait to be used (as kubelet's request cache).
const MAX_TOKENS: usize = 1000;

/// What a token stands for.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl Pending {
    fn kind(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

/// The streaming server's address and the tokens waiting to be used.
#[derive(Debug)]
pub(crate) struct Streaming {
    base: String,
    tokens: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Streaming {
    /// The URL for `p`, valid once within a minute.
    pub(crate) fn url(&self, p: Pending) -> Result<String, tonic::Status> {
        let token = token();
        let kind = p.kind();
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|_, (at, _)| at.elapsed() < TOKEN_TTL);
        if t.len() >= MAX_TOKENS {
            return Err(tonic::Status::resource_exhausted(format!(
                "{kind}: {MAX_TOKENS} streaming URLs are waiting to be used already"
            )));
        }
        t.insert(token.clone(), (Instant::now(), p));
        Ok(format!("{}/{kind}/{token}", self.base))
    }

    /// The request stored under `token` for `kind`, which is used up.
    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let (at, p) = t.remove(token)?;
        (at.elapsed() < TOKEN_TTL && p.kind() == kind).then_some(p)
    }
}

/// 8 random bytes, URL-safe base64 (as containerd's tokens).
fn token() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Never fails for 8 bytes on Linux >= 3.17; stay unpredictable anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (t as u64 ^ std::process::id() as u64).to_le_bytes();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Bind the streaming server; the URL base goes into the returned handle.
pub(crate) async fn bind(addr: &str, port: u16) -> crate::Result<(TcpListener, Arc<Streaming>)> {
    let listener = TcpListener::bind((addr, port))
        .await
        .map_err(|e| crate::Error::io(format!("listening for streams on {addr} port {port}"), e))?;
    let local: SocketAddr = listener
        .local_addr()
        .map_err(|e| crate::Error::io("the streaming server's address", e))?;
    Ok((
        listener,
        Arc::new(Streaming {
            base: format!("http://{local}"),
            tokens: Mutex::new(HashMap::new()),
        }),
    ))
}

/// Serve streams until the runtime ends.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn plain(code: StatusCode, text: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(text + "\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Every value of header `name`, comma-separated lists split.
fn header_list(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first protocol of the client's that we speak (the client's order).
fn choose(offered: &[String], ours: &[&'static str]) -> Option<&'static str> {
    offered
        .iter()
        .find_map(|o| ours.iter().find(|p| **p == o.as_str()).copied())
}

/// The websocket remote-command protocols, best first.
const WS_REMOTE: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// The websocket port-forward protocols: SPDY tunnelled in binary messages
/// (client-go's, so kubectl's and crictl's), or kubelet's channels.
const WS_PORTFORWARD: &[&str] = &[
    "SPDY/3.1+portforward.k8s.io",
    "v4.channel.k8s.io",
    "portforward.k8s.io",
];
/// The SPDY remote-command protocols.
const SPDY_REMOTE: &[&str] = &["v4.channel.k8s.io"];
/// The SPDY port-forward protocol.
const SPDY_PORTFORWARD: &[&str] = &["portforward.k8s.io"];

async fn handle(state: Arc<State>, mut req: Request<Incoming>) -> Result<Reply, hyper::Error> {
    let path = req.uri().path().trim_matches('/').to_string();
    let Some((kind, token)) = path.split_once('/') else {
        return Ok(plain(StatusCode::NOT_FOUND, "no such stream".into()));
    };
    let Some(pending) = state.streaming.take(kind, token) else {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            format!("{kind}: unknown or expired streaming token"),
        ));
    };
    let upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_pf = matches!(pending, Pending::PortForward(_));
    if upgrade == "websocket" {
        let Some(key) = req
            .headers()
            .get(hyper::header::SEC_WEBSOCKET_KEY)
            .map(|k| k.as_bytes().to_vec())
        else {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                "websocket upgrade without Sec-WebSocket-Key".into(),
            ));
        };
        let offered = header_list(&req, "sec-websocket-protocol");
        let Some(proto) = choose(&offered, if is_pf { WS_PORTFORWARD } else { WS_REMOTE }) else {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}: none of the offered websocket protocols is supported (hako speaks {})",
                    pending.kind(),
                    if is_pf { WS_PORTFORWARD } else { WS_REMOTE }.join(", ")
                ),
            ));
        };
        // Port-forward over websocket names its ports in the query.
        let ports = query_ports(req.uri().query().unwrap_or(""));
        let on_upgrade = hyper::upgrade::on(&mut req);
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(up) = on_upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(up),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            match pending {
                Pending::PortForward(r) if proto.starts_with("SPDY/3.1+") => {
                    over_spdy::portforward(over_ws::tunnel(ws), state, r).await
                }
                Pending::PortForward(r) => over_ws::portforward(ws, state, r, ports).await,
                Pending::Exec(r) => {
                    over_ws::remote(ws, state, remote::Remote::Exec(r), proto).await
                }
                Pending::Attach(r) => {
                    over_ws::remote(ws, state, remote::Remote::Attach(r), proto).await
                }
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(hyper::header::UPGRADE, "websocket".parse().expect("ascii"));
        h.insert(hyper::header::CONNECTION, "Upgrade".parse().expect("ascii"));
        h.insert(
            hyper::header::SEC_WEBSOCKET_ACCEPT,
            accept.parse().expect("base64"),
        );
        h.insert(
            hyper::header::SEC_WEBSOCKET_PROTOCOL,
            proto.parse().expect("ascii"),
        );
        return Ok(r);
    }
    if upgrade.starts_with("spdy/3.1") {
        let offered = header_list(&req, "x-stream-protocol-version");
        let ours = if is_pf { SPDY_PORTFORWARD } else { SPDY_REMOTE };
        let Some(proto) = choose(&offered, ours) else {
            return Ok(plain(
                StatusCode::FORBIDDEN,
                format!(
                    "{}: none of the offered stream protocols is supported (hako speaks {})",
                    pending.kind(),
                    ours.join(", ")
                ),
            ));
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(up) = on_upgrade.await else { return };
            let io = TokioIo::new(up);
            match pending {
                Pending::PortForward(r) => over_spdy::portforward(io, state, r).await,
                Pending::Exec(r) => over_spdy::remote(io, state, remote::Remote::Exec(r)).await,
                Pending::Attach(r) => over_spdy::remote(io, state, remote::Remote::Attach(r)).await,
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(
            hyper::header::UPGRADE,
            spdy::UPGRADE.parse().expect("ascii"),
        );
        h.insert(hyper::header::CONNECTION, "Upgrade".parse().expect("ascii"));
        h.insert("x-stream-protocol-version", proto.parse().expect("ascii"));
        return Ok(r);
    }
    Ok(plain(
        StatusCode::BAD_REQUEST,
        format!(
            "{}: expected an upgrade to websocket or {}",
            pending.kind(),
            spdy::UPGRADE
        ),
    ))
}

/// The `port` query parameters (repeated or comma-separated).
fn query_ports(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "port")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .collect()
}

/// A port number as kubelet accepts it (1-65535), or a one-line error.
pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "invalid port {}: expected 1-65535",
            crate::error::one_line(&format!("{s:?}"))
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_and_kind_bound() {
        let s = Streaming {
            base: "http://127.0.0.1:1".into(),
            tokens: Mutex::new(HashMap::new()),
        };
        let url = s
            .url(Pending::Attach(cri::AttachRequest::default()))
            .unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:1/attach/"));
        assert!(s.take("exec", &token).is_none(), "the kind is part of it");
        let url = s
            .url(Pending::Attach(cri::AttachRequest::default()))
            .unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(s.take("attach", &token).is_some());
        assert!(s.take("attach", &token).is_none(), "used up");
    }

    #[test]
    fn ports_and_protocols() {
        assert_eq!(query_ports("port=80&x=1&port=81,82"), ["80", "81", "82"]);
        assert_eq!(parse_port("80"), Ok(80));
        assert!(parse_port("0").is_err());
        assert_eq!(
            parse_port("8\u{1b}0").unwrap_err(),
            "invalid port \"8\\u{1b}0\": expected 1-65535"
        );
        let offered = vec!["v4.channel.k8s.io".to_string(), "v5.channel.k8s.io".into()];
        assert_eq!(choose(&offered, WS_REMOTE), Some("v4.channel.k8s.io"));
        assert_eq!(choose(&["v3.channel.k8s.io".into()], WS_REMOTE), None);
    }
}
