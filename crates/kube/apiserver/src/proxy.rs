//! pods/log, pods/exec, pods/attach and pods/portforward, proxied to the
//! kubelet of the pod's node as upstream's API server does.
//!
//! The kubelet serves HTTPS on `status.daemonEndpoints.kubeletEndpoint.Port`
//! (10250 if unset) at the node's InternalIP (else its Hostname); its serving
//! certificate must chain to the cluster CA, and the API server authenticates
//! with the bearer token in `$ROOT/kube/pki/kubelet-client.token`. Paths are
//! the kubelet's: `/containerLogs/NS/POD/CONTAINER`, `/exec/NS/POD/CONTAINER`,
//! `/attach/NS/POD/CONTAINER`, `/portForward/NS/POD`. Upgrade requests
//! (SPDY/3.1, websocket) are sent on with their upgrade headers, the
//! kubelet's 101 goes back to the client, and from then on bytes are copied
//! both ways untouched.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode, Uri};
use hako_kube_store::Store;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::handler::{get_current, sanitize, ApiResult, Target};
use crate::resources;
use crate::status::{quoted, ApiError};

/// How the API server reaches kubelets: TLS trusting only the cluster CA,
/// and the token kubelets accept.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
    token: String,
}

impl KubeletClient {
    pub fn new(ca_pem: &str, token: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| anyhow::anyhow!("reading the cluster CA: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("adding the cluster CA to the trust roots: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("configuring TLS to kubelets: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Upgrades (SPDY, websocket) need HTTP/1.1.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: Arc::new(tls),
            token: token.to_string(),
        })
    }
}

pub fn is_proxied(sub: &str) -> bool {
    matches!(sub, "log" | "exec" | "attach" | "portforward")
}

/// The query string as ordered pairs (exec's `command` repeats).
fn pairs(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn truthy(q: &[(String, String)], k: &str) -> bool {
    matches!(first(q, k), Some("1" | "true" | "True"))
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request is about: the one asked for (it must exist),
/// else the pod's only container, else the one the
/// `kubectl.kubernetes.io/default-container` annotation names.
fn container(pod: &Value, asked: Option<&str>) -> ApiResult<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let main = names(pod, "containers");
    let init = names(pod, "initContainers");
    let eph = names(pod, "ephemeralContainers");
    if let Some(c) = asked.filter(|c| !c.is_empty()) {
        if main.iter().chain(&init).chain(&eph).any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {} is not valid for pod {}",
            sanitize(c),
            name
        )));
    }
    if main.len() == 1 {
        return Ok(main[0].clone());
    }
    if let Some(d) = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str)
    {
        if main.iter().chain(&init).chain(&eph).any(|n| n == d) {
            return Ok(d.to_string());
        }
    }
    if main.is_empty() {
        return Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        )));
    }
    // Go's %v of a string slice, as upstream prints the choices.
    let mut msg = format!(
        "a container name must be specified for pod {name}, choose one of: [{}]",
        main.join(" ")
    );
    if !init.is_empty() {
        msg.push_str(&format!(
            " or one of the init containers: [{}]",
            init.join(" ")
        ));
    }
    if !eph.is_empty() {
        msg.push_str(&format!(
            " or one of the ephemeral containers: [{}]",
            eph.join(" ")
        ));
    }
    Err(ApiError::bad_request(msg))
}

/// Where the kubelet of `node` listens: (address, TLS name, port).
fn kubelet_endpoint(
    store: &dyn Store,
    node: &str,
) -> ApiResult<(IpAddr, ServerName<'static>, u16)> {
    let kind = resources::find("", "v1", "nodes").expect("nodes are served");
    let n = store
        .get(&kind.key(None, node))
        .map_err(|e| ApiError::from_store(e, "", "nodes", node))?
        .value;
    let port = n
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= 65535)
        .unwrap_or(10250) as u16;
    let addrs = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let of = |ty: &str| {
        addrs
            .iter()
            .find(|a| a["type"] == ty)
            .and_then(|a| a["address"].as_str())
            .map(String::from)
    };
    let unreachable = |why: String| {
        ApiError::internal(format!(
            "error dialing backend: node {}: {why}",
            quoted(node)
        ))
    };
    if let Some(ip) = of("InternalIP") {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| unreachable(format!("InternalIP {} is not an IP address", quoted(&ip))))?;
        return Ok((ip, ServerName::IpAddress(ip.into()), port));
    }
    if let Some(host) = of("Hostname") {
        let name = ServerName::try_from(host.clone())
            .map_err(|_| unreachable(format!("Hostname {} is not a DNS name", quoted(&host))))?;
        // Resolve it as the system does (blocking, but only once per stream).
        let ip = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| unreachable(format!("cannot resolve Hostname {}", quoted(&host))))?;
        return Ok((ip, name, port));
    }
    Err(unreachable(
        "it has no InternalIP or Hostname address".into(),
    ))
}

/// The kubelet path and query for a request on `sub`.
fn kubelet_target(sub: &str, pod: &Value, q: &[(String, String)]) -> ApiResult<String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let mut out = form_urlencoded::Serializer::new(String::new());
    let path = match sub {
        "log" => {
            let c = container(pod, first(q, "container"))?;
            for b in ["follow", "previous", "timestamps"] {
                if truthy(q, b) {
                    out.append_pair(b, "true");
                }
            }
            for n in ["sinceSeconds", "tailLines", "limitBytes"] {
                if let Some(v) = first(q, n) {
                    let ok = v
                        .parse::<i64>()
                        .is_ok_and(|x| x >= if n == "tailLines" { 0 } else { 1 });
                    if !ok {
                        return Err(ApiError::bad_request(format!(
                            "{n}: Invalid value: {}: must be a {} integer",
                            quoted(v),
                            if n == "tailLines" {
                                "non-negative"
                            } else {
                                "positive"
                            }
                        )));
                    }
                    out.append_pair(n, v);
                }
            }
            if let Some(v) = first(q, "sinceTime") {
                out.append_pair("sinceTime", v);
            }
            format!("/containerLogs/{ns}/{name}/{c}")
        }
        "exec" | "attach" => {
            let c = container(pod, first(q, "container"))?;
            if sub == "exec" {
                let cmds: Vec<&str> = q
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.as_str())
                    .collect();
                if cmds.is_empty() {
                    return Err(ApiError::bad_request("you must specify at least 1 command"));
                }
                for c in cmds {
                    out.append_pair("command", c);
                }
            }
            let streams = ["stdin", "stdout", "stderr"];
            if !streams.iter().any(|s| truthy(q, s)) {
                return Err(ApiError::bad_request(
                    "you must specify at least one of stdin, stdout, stderr",
                ));
            }
            for s in streams.iter().chain(&["tty"]) {
                if truthy(q, s) {
                    out.append_pair(s, "true");
                }
            }
            let verb = if sub == "exec" { "exec" } else { "attach" };
            format!("/{verb}/{ns}/{name}/{c}")
        }
        _ => {
            for (k, v) in q.iter().filter(|(k, _)| k == "ports") {
                out.append_pair(k, v);
            }
            format!("/portForward/{ns}/{name}")
        }
    };
    let query = out.finish();
    // Names are DNS subdomains (checked on create): nothing to escape.
    Ok(if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    })
}

/// Headers not sent on (the client's credentials, hop-by-hop ones; the
/// upgrade pair is added back for upgrade requests).
fn forwarded(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "authorization"
            | "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "upgrade"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "impersonate-user"
            | "impersonate-group"
    )
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && headers.contains_key(header::UPGRADE)
}

fn dial_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!(
        "error dialing backend: {}",
        sanitize(&e.to_string())
    ))
}

/// Serve a proxied pod subresource.
pub async fn handle(
    store: Arc<dyn Store>,
    kubelet: &KubeletClient,
    t: &Target,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    client_upgrade: Option<OnUpgrade>,
) -> ApiResult<Response<Body>> {
    let sub = t.sub.as_deref().unwrap_or("");
    let allowed = if sub == "log" {
        *method == Method::GET
    } else {
        *method == Method::GET || *method == Method::POST
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let upgrade = is_upgrade(headers);
    if sub != "log" && !upgrade {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let q = pairs(uri);
    let (pod, endpoint) = {
        let store = store.clone();
        let t = Target {
            kind: t.kind,
            ns: t.ns.clone(),
            name: t.name.clone(),
            sub: None,
        };
        let sub = sub.to_string();
        let q = q.clone();
        tokio::task::spawn_blocking(move || -> ApiResult<_> {
            let pod = get_current(store.as_ref(), &t)?.value;
            // Check the request before looking for the node.
            let target = kubelet_target(&sub, &pod, &q)?;
            let node = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(String::from);
            let endpoint = match node {
                Some(n) => Some((kubelet_endpoint(store.as_ref(), &n)?, target)),
                None => None,
            };
            Ok((pod, endpoint))
        })
        .await
        .map_err(|e| ApiError::internal(format!("looking up the pod: {e}")))??
    };
    let Some(((ip, server_name, port), target)) = endpoint else {
        // Upstream: no node, no logs yet (an empty answer); nothing to exec in.
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        if sub == "log" {
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::empty())
                .expect("static response parts"));
        }
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };

    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| {
            dial_error(format!(
                "dial tcp {}: {e}",
                std::net::SocketAddr::new(ip, port)
            ))
        })?;
    let tls = tokio_rustls::TlsConnector::from(kubelet.tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| dial_error(format!("TLS handshake with the kubelet: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(dial_error)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("kubelet connection: {e}");
        }
    });

    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    };
    let mut req = Request::builder()
        .method(method.clone())
        .uri(target)
        .header(header::HOST, host)
        .header(header::AUTHORIZATION, format!("Bearer {}", kubelet.token));
    for (name, value) in headers.iter().filter(|(n, _)| forwarded(n)) {
        req = req.header(name, value);
    }
    if upgrade {
        req = req.header(header::CONNECTION, "Upgrade");
        for v in headers.get_all(header::UPGRADE) {
            req = req.header(header::UPGRADE, v);
        }
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    let mut resp = sender.send_request(req).await.map_err(dial_error)?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal(
                "the kubelet switched protocols on a request that cannot be upgraded",
            ));
        };
        let kubelet_upgrade = hyper::upgrade::on(&mut resp);
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (name, value) in resp.headers() {
            out = out.header(name, value);
        }
        tokio::spawn(async move {
            let (client, kubelet) = match tokio::join!(client_upgrade, kubelet_upgrade) {
                (Ok(c), Ok(k)) => (c, k),
                (c, k) => {
                    tracing::debug!(
                        "upgrade failed: client {:?}, kubelet {:?}",
                        c.err(),
                        k.err()
                    );
                    return;
                }
            };
            let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                tracing::debug!("proxied stream ended: {e}");
            }
        });
        return out
            .body(Body::empty())
            .map_err(|e| ApiError::internal(format!("relaying the kubelet's answer: {e}")));
    }

    let mut out = Response::builder().status(resp.status());
    for (name, value) in resp.headers().iter().filter(|(n, _)| {
        !matches!(
            n.as_str(),
            "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "content-length"
        )
    }) {
        out = out.header(name, value);
    }
    out.body(Body::new(resp.into_body()))
        .map_err(|e| ApiError::internal(format!("relaying the kubelet's answer: {e}")))
}
