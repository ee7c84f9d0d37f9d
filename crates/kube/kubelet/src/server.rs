//! The kubelet's HTTPS server, which the API server proxies `kubectl logs/exec/attach/
//! port-forward` to: /healthz, /pods, /containerLogs, and /exec, /attach, /portForward,
//! whose upgraded connections are relayed byte for byte to the CRI streaming server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{DateTime, Utc};

use crate::kubelet::Kubelet;
use crate::logs::{self, LogOptions};
use crate::spec;

struct Srv {
    k: Arc<Kubelet>,
    token_file: Option<PathBuf>,
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, msg.into()).into_response()
}

/// The serving certificate: signed by the cluster CA when its key is in `pki_dir` (the
/// API server trusts only that), else self-signed (logs/exec through the API server
/// then fail its verification, which the log says).
fn serving_cert(k: &Kubelet, pki_dir: Option<&std::path::Path>) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut ips: Vec<std::net::IpAddr> = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    if let Ok(ip) = k.host_ip.parse() {
        ips.insert(0, ip);
    }
    if let Some(dir) = pki_dir.filter(|d| d.join("ca.key").exists()) {
        let (c, key) =
            hako_kube_apiserver::certs::issue_kubelet_serving_cert(dir, &k.node_name, &ips)?;
        return Ok((c.into_bytes(), key.into_bytes()));
    }
    tracing::warn!(
        "no cluster CA key{}: the kubelet serves a self-signed certificate the API server will not trust",
        pki_dir.map(|d| format!(" in {}", d.display())).unwrap_or_default()
    );
    let mut names = vec![k.node_name.clone(), "localhost".to_string()];
    names.extend(ips.iter().map(|i| i.to_string()));
    let ck = rcgen::generate_simple_self_signed(names)
        .context("generating the kubelet's serving certificate")?;
    Ok((
        ck.cert.pem().into_bytes(),
        ck.key_pair.serialize_pem().into_bytes(),
    ))
}

/// Bind the server's port (0: any free one) before the node registers it.
pub fn bind(port: u16) -> Result<std::net::TcpListener> {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("kubelet server: listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serve on `listener`.
pub async fn spawn(
    k: Arc<Kubelet>,
    listener: std::net::TcpListener,
    pki_dir: Option<PathBuf>,
) -> Result<()> {
    let (c, key) = serving_cert(&k, pki_dir.as_deref())?;
    let token_file = pki_dir.map(|d| d.join("kubelet-client.token"));
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(c, key)
        .await
        .context("loading the kubelet's serving certificate")?;
    let srv = Arc::new(Srv { k, token_file });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/exec/{ns}/{pod}/{uid}/{container}", any(exec_uid))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .route("/attach/{ns}/{pod}/{uid}/{container}", any(attach_uid))
        .route("/portForward/{ns}/{pod}", any(port_forward))
        .route("/portForward/{ns}/{pod}/{uid}", any(port_forward_uid))
        .layer(axum::middleware::from_fn_with_state(srv.clone(), auth))
        .with_state(srv);
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls)?;
    tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!("kubelet server: {e}");
        }
    });
    Ok(())
}

/// Only the API server's bearer token is let in (/healthz is open).
async fn auth(State(s): State<Arc<Srv>>, req: Request, next: axum::middleware::Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let want = s
        .token_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let got = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (want, got) {
        (Some(w), Some(g)) if w == g => next.run(req).await,
        _ => err(StatusCode::UNAUTHORIZED, "Unauthorized"),
    }
}

fn running_pods(k: &Kubelet) -> Vec<Arc<Pod>> {
    let workers = k.workers.lock().unwrap_or_else(|e| e.into_inner());
    workers
        .values()
        .filter_map(|w| w.tx.borrow().pod.clone())
        .collect()
}

fn find_pod(k: &Kubelet, ns: &str, name: &str, uid: Option<&str>) -> Option<Arc<Pod>> {
    running_pods(k).into_iter().find(|p| {
        spec::namespace(p) == ns && spec::name(p) == name && uid.is_none_or(|u| spec::uid(p) == u)
    })
}

async fn pods(State(s): State<Arc<Srv>>) -> Response {
    let items: Vec<&Pod> = Vec::new();
    let pods = running_pods(&s.k);
    let mut items = items;
    items.extend(pods.iter().map(|p| p.as_ref()));
    let list =
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    (
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

fn query(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |x: &[u8]| {
            std::str::from_utf8(x)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if b.len() >= i + 3 && hex(&b[i + 1..i + 3]).is_some() => {
                out.extend(hex(&b[i + 1..i + 3]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The newest container `name` of the pod (or the one before it, for `previous`).
async fn find_container(
    k: &Kubelet,
    pod: &Pod,
    name: &str,
    previous: bool,
) -> Option<cri::ContainerStatus> {
    let list = k
        .cri
        .rt
        .clone()
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: HashMap::from([
                    (spec::LABEL_POD_UID.to_string(), spec::uid(pod).to_string()),
                    (spec::LABEL_CONTAINER_NAME.to_string(), name.to_string()),
                ]),
                ..Default::default()
            }),
        })
        .await
        .ok()?
        .into_inner()
        .containers;
    let mut list = list;
    list.sort_by_key(|c| {
        std::cmp::Reverse((
            c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            c.created_at,
        ))
    });
    let c = list.get(if previous { 1 } else { 0 })?;
    k.cri
        .rt
        .clone()
        .container_status(cri::ContainerStatusRequest {
            container_id: c.id.clone(),
            verbose: false,
        })
        .await
        .ok()?
        .into_inner()
        .status
}

async fn container_logs(
    State(s): State<Arc<Srv>>,
    UrlPath((ns, pod_name, container)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(&raw);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let flag = |k: &str| get(k).is_some_and(|v| v == "true" || v == "1");
    let mut opts = LogOptions {
        follow: flag("follow"),
        timestamps: flag("timestamps"),
        tail_lines: get("tailLines").and_then(|v| v.parse().ok()),
        limit_bytes: get("limitBytes").and_then(|v| v.parse().ok()),
        since: None,
    };
    if let Some(secs) = get("sinceSeconds").and_then(|v| v.parse::<i64>().ok()) {
        opts.since = Some(Utc::now() - k8s_openapi::chrono::Duration::seconds(secs));
    } else if let Some(t) = get("sinceTime") {
        opts.since = DateTime::parse_from_rfc3339(&t)
            .ok()
            .map(|t| t.with_timezone(&Utc));
    }
    let Some(pod) = find_pod(&s.k, &ns, &pod_name, None) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("pod {ns:?}/{pod_name:?} is not on this node"),
        );
    };
    let previous = flag("previous");
    let Some(cs) = find_container(&s.k, &pod, &container, previous).await else {
        let what = if previous {
            "previous terminated container"
        } else {
            "container"
        };
        return err(
            StatusCode::BAD_REQUEST,
            format!("{what} {container:?} in pod {pod_name:?} not found"),
        );
    };
    let path = {
        let p = PathBuf::from(&cs.log_path);
        if p.is_absolute() {
            p
        } else {
            spec::log_dir(&s.k.root, &pod).join(p)
        }
    };
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(e) => {
            return err(
                StatusCode::NOT_FOUND,
                format!("reading the log of container {container:?}: {e}"),
            )
        }
    };
    let mut pending = None;
    let (entries, used) = logs::parse(&data, &mut pending);
    let mut first = logs::render(&logs::select(entries, &opts), opts.timestamps);
    let mut budget = opts.limit_bytes;
    if let Some(b) = budget {
        first.truncate(b);
        budget = Some(b - first.len());
    }
    let running = cs.state == cri::ContainerState::ContainerRunning as i32;
    if !opts.follow || !running || budget == Some(0) {
        return ([(header::CONTENT_TYPE, "text/plain")], first).into_response();
    }
    // Follow: poll the file for what comes after, while the container runs.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let k = s.k.clone();
    let id = cs.id.clone();
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut offset = used as u64;
        let mut pending = pending;
        let mut budget = budget;
        let mut checks = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let data = match tokio::fs::read(&path).await {
                Ok(d) => d,
                Err(_) => return,
            };
            let new = data.get(offset as usize..).unwrap_or(&[]);
            let (entries, used) = logs::parse(new, &mut pending);
            offset += used as u64;
            if !entries.is_empty() {
                let mut out = logs::render(&entries, opts.timestamps);
                if let Some(b) = budget {
                    out.truncate(b);
                    budget = Some(b - out.len());
                }
                if tx.send(Ok(out)).await.is_err() || budget == Some(0) {
                    return;
                }
            }
            checks += 1;
            if checks.is_multiple_of(5) {
                let st = k
                    .cri
                    .rt
                    .clone()
                    .container_status(cri::ContainerStatusRequest {
                        container_id: id.clone(),
                        verbose: false,
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().status);
                if st.is_none_or(|s| s.state != cri::ContainerState::ContainerRunning as i32)
                    && used == 0
                {
                    return;
                }
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

enum Stream {
    Exec,
    Attach,
}

async fn exec(
    s: State<Arc<Srv>>,
    p: UrlPath<(String, String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    let UrlPath((ns, pod, c)) = p;
    stream(s, Stream::Exec, ns, pod, None, c, q, req).await
}
async fn exec_uid(
    s: State<Arc<Srv>>,
    p: UrlPath<(String, String, String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    let UrlPath((ns, pod, uid, c)) = p;
    stream(s, Stream::Exec, ns, pod, Some(uid), c, q, req).await
}
async fn attach(
    s: State<Arc<Srv>>,
    p: UrlPath<(String, String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    let UrlPath((ns, pod, c)) = p;
    stream(s, Stream::Attach, ns, pod, None, c, q, req).await
}
async fn attach_uid(
    s: State<Arc<Srv>>,
    p: UrlPath<(String, String, String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    let UrlPath((ns, pod, uid, c)) = p;
    stream(s, Stream::Attach, ns, pod, Some(uid), c, q, req).await
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    State(s): State<Arc<Srv>>,
    kind: Stream,
    ns: String,
    pod_name: String,
    uid: Option<String>,
    container: String,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let q = query(&raw);
    let flag = |k: &str| q.iter().any(|(n, v)| n == k && (v == "true" || v == "1"));
    let Some(pod) = find_pod(&s.k, &ns, &pod_name, uid.as_deref()) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("pod {ns:?}/{pod_name:?} is not on this node"),
        );
    };
    let cs = find_container(&s.k, &pod, &container, false).await;
    let Some(cs) = cs.filter(|c| c.state == cri::ContainerState::ContainerRunning as i32) else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod_name:?} is not running"),
        );
    };
    let mut rt = s.k.cri.rt.clone();
    let url = match kind {
        Stream::Exec => {
            let cmd: Vec<String> = q
                .iter()
                .filter(|(n, _)| n == "command")
                .map(|(_, v)| v.clone())
                .collect();
            rt.exec(cri::ExecRequest {
                container_id: cs.id.clone(),
                cmd,
                tty: flag("tty"),
                stdin: flag("input") || flag("stdin"),
                stdout: flag("output") || flag("stdout"),
                stderr: flag("error") || flag("stderr"),
            })
            .await
            .map(|r| r.into_inner().url)
        }
        Stream::Attach => rt
            .attach(cri::AttachRequest {
                container_id: cs.id.clone(),
                tty: flag("tty"),
                stdin: flag("input") || flag("stdin"),
                stdout: flag("output") || flag("stdout"),
                stderr: flag("error") || flag("stderr"),
            })
            .await
            .map(|r| r.into_inner().url),
    };
    match url {
        Ok(u) => relay(&u, req).await,
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

async fn port_forward(
    s: State<Arc<Srv>>,
    p: UrlPath<(String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    let UrlPath((ns, pod)) = p;
    forward(s, ns, pod, None, q, req).await
}
async fn port_forward_uid(
    s: State<Arc<Srv>>,
    p: UrlPath<(String, String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    let UrlPath((ns, pod, uid)) = p;
    forward(s, ns, pod, Some(uid), q, req).await
}

async fn forward(
    State(s): State<Arc<Srv>>,
    ns: String,
    pod_name: String,
    uid: Option<String>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let Some(pod) = find_pod(&s.k, &ns, &pod_name, uid.as_deref()) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("pod {ns:?}/{pod_name:?} is not on this node"),
        );
    };
    let ports: Vec<i32> = query(&raw)
        .iter()
        .filter(|(n, _)| n == "ports" || n == "port")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let sandboxes =
        s.k.cri
            .rt
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: HashMap::from([(
                        spec::LABEL_POD_UID.to_string(),
                        spec::uid(&pod).to_string(),
                    )]),
                    state: Some(cri::PodSandboxStateValue {
                        state: cri::PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await;
    let Some(sid) = sandboxes
        .ok()
        .and_then(|r| r.into_inner().items.into_iter().next())
        .map(|s| s.id)
    else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("pod {pod_name:?} has no running sandbox"),
        );
    };
    match s
        .k
        .cri
        .rt
        .clone()
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sid,
            port: ports,
        })
        .await
    {
        Ok(r) => relay(&r.into_inner().url, req).await,
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

/// Send the client's (upgrade) request to the CRI streaming URL and, on 101, copy
/// bytes both ways between the two upgraded connections; any other answer is returned
/// as is.
async fn relay(url: &str, mut req: Request) -> Response {
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime returned a bad streaming URL {url:?}"),
        );
    };
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let https = uri.scheme_str() == Some("https");
    if https {
        return err(
            StatusCode::NOT_IMPLEMENTED,
            "HTTPS streaming URLs are not supported yet",
        );
    }
    let port = uri.port_u16().unwrap_or(80);
    let tcp = match tokio::net::TcpStream::connect((host.as_str(), port)).await {
        Ok(t) => t,
        Err(e) => {
            return err(
                StatusCode::BAD_GATEWAY,
                format!("connecting to the streaming server {host}:{port}: {e}"),
            )
        }
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await {
            Ok(x) => x,
            Err(e) => return err(StatusCode::BAD_GATEWAY, format!("streaming server: {e}")),
        };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut up = axum::http::Request::builder()
        .method(req.method().clone())
        .uri(path);
    let mut headers = HeaderMap::new();
    for (k, v) in req.headers() {
        if k == header::HOST || k == header::AUTHORIZATION || k == header::CONTENT_LENGTH {
            continue;
        }
        headers.append(k.clone(), v.clone());
    }
    if let Ok(h) = HeaderValue::from_str(&format!("{host}:{port}")) {
        headers.insert(header::HOST, h);
    }
    if let Some(h) = up.headers_mut() {
        *h = headers;
    }
    let Ok(up) = up.body(http_body_util::Empty::<bytes::Bytes>::new()) else {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "building the streaming request",
        );
    };
    let mut resp = match sender.send_request(up).await {
        Ok(r) => r,
        Err(e) => return err(StatusCode::BAD_GATEWAY, format!("streaming server: {e}")),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, Body::new(body));
    }
    let backend = hyper::upgrade::on(&mut resp);
    let client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (Ok(b), Ok(c)) = (backend.await, client.await) else {
            return;
        };
        let mut b = hyper_util::rt::TokioIo::new(b);
        let mut c = hyper_util::rt::TokioIo::new(c);
        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
    });
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    if let Some(h) = out.headers_mut() {
        *h = resp.headers().clone();
    }
    out.body(Body::empty())
        .unwrap_or_else(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "building the response"))
}
