//! The ingress controller `hako kube up` runs (as k3s runs traefik): an HTTP
//! and HTTPS reverse proxy on host ports that routes requests by the
//! networking.k8s.io/v1 Ingresses of its class to the ready endpoints of
//! their backend Services, with TLS certificates from `kubernetes.io/tls`
//! Secrets chosen by SNI. Servers and client are hyper's; TLS is rustls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hako_kube_controllers::informer::{Ev, Informer};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HttpClient};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::{Api, Client, ResourceExt};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

/// The IngressClass `up` installs (as k3s installs traefik's).
pub const CLASS: &str = "hako";
/// Its `spec.controller`.
pub const CONTROLLER: &str = "hako.dev/ingress-controller";

type Body = BoxBody<Bytes, hyper::Error>;

/// What the proxy routes from: the caches of the kinds it reads.
struct State {
    ingresses: Arc<Informer<Ingress>>,
    classes: Arc<Informer<IngressClass>>,
    services: Arc<Informer<Service>>,
    slices: Arc<Informer<EndpointSlice>>,
    secrets: Arc<Informer<Secret>>,
    client: HttpClient<HttpConnector, Incoming>,
    /// Round robin over a backend's endpoints.
    next: AtomicUsize,
}

/// A request's route: the Ingress's namespace and the backend.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    namespace: String,
    backend: IngressBackend,
}

/// Whether `host` is matched by the rule host `rule` (exact, or `*.` one label).
fn host_matches(rule: &str, host: &str) -> bool {
    match rule.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => rule == host,
    }
}

/// Upstream's path matching: Exact is the whole path; Prefix (and, here,
/// ImplementationSpecific) matches element-wise (`/foo` matches `/foo`,
/// `/foo/` and `/foo/bar`, not `/foobar`). The match's length ranks it.
fn path_matches(kind: &str, rule: &str, path: &str) -> Option<usize> {
    if kind == "Exact" {
        return (rule == path).then_some(rule.len());
    }
    let prefix: Vec<&str> = rule.split('/').filter(|s| !s.is_empty()).collect();
    let elems: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    (elems.len() >= prefix.len() && elems[..prefix.len()] == prefix[..])
        .then(|| prefix.iter().map(|p| p.len() + 1).sum())
}

impl State {
    /// Whether `ing` is this controller's: its class is one of ours, or it
    /// names none and ours is the default.
    fn ours(&self, ing: &Ingress) -> bool {
        let class = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.clone())
            .or_else(|| {
                ing.annotations()
                    .get("kubernetes.io/ingress.class")
                    .cloned()
            });
        match class {
            Some(c) => self.classes.get_in(None, &c).is_some_and(|ic| {
                ic.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
            }),
            None => true,
        }
    }

    /// The backend for `host` and `path` over every Ingress of ours: exact
    /// hosts before wildcards before rules without a host, then the longest
    /// path (Exact before Prefix at the same length), then the oldest
    /// Ingress; else a `defaultBackend` (an Ingress with a matching host first).
    fn route(&self, host: &str, path: &str) -> Option<Route> {
        let mut ings: Vec<Arc<Ingress>> = self
            .ingresses
            .list(None)
            .into_iter()
            .filter(|i| self.ours(i))
            .collect();
        ings.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.clone().map(|t| t.0),
                i.name_any(),
            )
        });
        let mut best: Option<((u8, usize, u8), Route)> = None;
        let mut default_for_host: Option<Route> = None;
        for ing in &ings {
            let ns = ing.namespace().unwrap_or_default();
            let spec = ing.spec.clone().unwrap_or_default();
            for rule in spec.rules.iter().flatten() {
                let host_rank = match rule.host.as_deref().unwrap_or("") {
                    "" => 0,
                    h if h.starts_with("*.") && host_matches(h, host) => 1,
                    h if h == host => 2,
                    _ => continue,
                };
                if host_rank > 0 && default_for_host.is_none() {
                    if let Some(b) = &spec.default_backend {
                        default_for_host = Some(Route {
                            namespace: ns.clone(),
                            backend: b.clone(),
                        });
                    }
                }
                for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let rule_path = p.path.as_deref().unwrap_or("/");
                    let Some(len) = path_matches(&p.path_type, rule_path, path) else {
                        continue;
                    };
                    let rank = (host_rank, len, u8::from(p.path_type == "Exact"));
                    if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                        best = Some((
                            rank,
                            Route {
                                namespace: ns.clone(),
                                backend: p.backend.clone(),
                            },
                        ));
                    }
                }
            }
        }
        if let Some((_, r)) = best {
            return Some(r);
        }
        default_for_host.or_else(|| {
            ings.iter().find_map(|i| {
                let b = i.spec.as_ref()?.default_backend.clone()?;
                Some(Route {
                    namespace: i.namespace().unwrap_or_default(),
                    backend: b,
                })
            })
        })
    }

    /// A ready endpoint (`ip:port`) of the route's Service port, round robin.
    fn endpoint(&self, r: &Route) -> Option<String> {
        let b = r.backend.service.as_ref()?;
        let svc = self.services.get_in(Some(&r.namespace), &b.name)?;
        let want = b.port.as_ref()?;
        let sp = svc.spec.as_ref()?.ports.iter().flatten().find(|p| {
            p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                && (want.number == Some(p.port) || (want.name.is_some() && want.name == p.name))
        })?;
        let pname = sp.name.clone().unwrap_or_default();
        let mut eps = Vec::new();
        for s in self.slices.list(Some(&r.namespace)) {
            if s.labels().get("kubernetes.io/service-name") != Some(&b.name)
                || s.address_type != "IPv4"
            {
                continue;
            }
            let Some(port) = s
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.clone().unwrap_or_default() == pname)
                .and_then(|p| p.port)
            else {
                continue;
            };
            for e in &s.endpoints {
                if e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true) {
                    if let Some(ip) = e.addresses.first() {
                        eps.push(format!("{ip}:{port}"));
                    }
                }
            }
        }
        eps.sort();
        if eps.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(eps[i % eps.len()].clone())
    }

    /// The certificate for the SNI name `name` from the Ingresses' `tls`
    /// sections (the first one when the client sends no name or none matches).
    fn certificate(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let mut first = None;
        for ing in self.ingresses.list(None) {
            if !self.ours(&ing) {
                continue;
            }
            let ns = ing.namespace().unwrap_or_default();
            for t in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(secret) = t.secret_name.as_deref() else {
                    continue;
                };
                let hosts = t.hosts.clone().unwrap_or_default();
                let hit = name.is_some_and(|n| hosts.iter().any(|h| host_matches(h, n)));
                if !hit && first.is_some() {
                    continue;
                }
                let Some(key) = self
                    .secrets
                    .get_in(Some(&ns), secret)
                    .and_then(|s| certified_key(&s))
                else {
                    continue;
                };
                if hit {
                    return Some(key);
                }
                first = Some(key);
            }
        }
        first
    }
}

/// A `kubernetes.io/tls` Secret's `tls.crt` and `tls.key` as rustls's key.
fn certified_key(s: &Secret) -> Option<Arc<CertifiedKey>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let data = s.data.as_ref()?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&data.get("tls.crt")?.0)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
    let key = PrivateKeyDer::from_pem_slice(&data.get("tls.key")?.0).ok()?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).ok()?;
    Some(Arc::new(CertifiedKey::new(certs, signer)))
}

struct Certs(Arc<State>);

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ingress certificates")
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        self.0.certificate(name.as_deref())
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// Proxy one request to its backend.
async fn handle(
    state: Arc<State>,
    mut req: Request<Incoming>,
    scheme: &'static str,
    peer: SocketAddr,
) -> Response<Body> {
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    // The port, and a bracketed IPv6 literal's brackets, are not the host.
    let host = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host,
    }
    .to_ascii_lowercase();
    let path = req.uri().path().to_string();
    let Some(route) = state.route(&host, &path) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let Some(ep) = state.endpoint(&route) else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no available server");
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let Ok(uri) = format!("http://{ep}{pq}").parse::<hyper::Uri>() else {
        return text(StatusCode::BAD_REQUEST, "bad request path");
    };
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    if !host.is_empty() && !h.contains_key(hyper::header::HOST) {
        if let Ok(v) = host.parse() {
            h.insert(hyper::header::HOST, v);
        }
    }
    if let Ok(v) = peer.ip().to_string().parse() {
        h.append("x-forwarded-for", v);
    }
    h.insert(
        "x-forwarded-proto",
        hyper::header::HeaderValue::from_static(scheme),
    );
    match state.client.request(req).await {
        Ok(r) => r.map(|b| b.boxed()),
        Err(e) => {
            tracing::warn!("ingress: forwarding to {ep}: {e}");
            text(StatusCode::BAD_GATEWAY, "bad gateway")
        }
    }
}

async fn serve_conn<S>(state: Arc<State>, io: S, scheme: &'static str, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(state, req, scheme, peer).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Keep `status.loadBalancer.ingress` of our Ingresses at the node's address.
async fn update_status(client: Client, state: Arc<State>, node_ip: String) {
    let dirty = Arc::new(tokio::sync::Notify::new());
    let d = dirty.clone();
    state
        .ingresses
        .on_event(move |_: Ev<Ingress>| d.notify_one());
    loop {
        for ing in state.ingresses.list(None) {
            if !state.ours(&ing) {
                continue;
            }
            let have = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .and_then(|v| v.first())
                .and_then(|i| i.ip.clone());
            if have.as_deref() == Some(node_ip.as_str()) {
                continue;
            }
            let ns = ing.namespace().unwrap_or_default();
            let patch =
                serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": node_ip}]}}});
            if let Err(e) = Api::<Ingress>::namespaced(client.clone(), &ns)
                .patch_status(
                    &ing.name_any(),
                    &Default::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(
                    "ingress: updating the status of Ingress {ns}/{}: {e}",
                    ing.name_any()
                );
            }
        }
        dirty.notified().await;
    }
}

/// Install the IngressClass `hako`, the default class (as k3s installs traefik's).
async fn install_class(client: &Client) -> Result<()> {
    let api = Api::<IngressClass>::all(client.clone());
    let class: IngressClass = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": CLASS,
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": CONTROLLER},
    }))
    .context("building the IngressClass")?;
    match api.create(&Default::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("installing the IngressClass hako"),
    }
}

/// Run the controller: listeners on `http` and `https` (either may be
/// `None`), until the runtime stops.
pub async fn run(
    client: Client,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    node_ip: String,
) -> Result<()> {
    while let Err(e) = install_class(&client).await {
        tracing::warn!("ingress: {e:#}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let state = Arc::new(State {
        ingresses: Informer::start(Api::all(client.clone())),
        classes: Informer::start(Api::all(client.clone())),
        services: Informer::start(Api::all(client.clone())),
        slices: Informer::start(Api::all(client.clone())),
        secrets: Informer::start(Api::all(client.clone())),
        client: HttpClient::builder(TokioExecutor::new()).build_http(),
        next: AtomicUsize::new(0),
    });
    state.ingresses.wait_synced().await;
    state.classes.wait_synced().await;
    state.services.wait_synced().await;
    state.slices.wait_synced().await;
    state.secrets.wait_synced().await;
    tokio::spawn(update_status(client, state.clone(), node_ip));
    let mut tasks = Vec::new();
    if let Some(addr) = http {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} for ingress HTTP"))?;
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Ok((conn, peer)) = l.accept().await {
                    tokio::spawn(serve_conn(st.clone(), conn, "http", peer));
                }
            }
        }));
    }
    if let Some(addr) = https {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} for ingress HTTPS"))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("setting up TLS for the ingress")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Certs(state.clone())));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Ok((conn, peer)) = l.accept().await {
                    let (st, acceptor) = (st.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(conn))
                            .await
                        {
                            Ok(Ok(tls)) => serve_conn(st, tls, "https", peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!("ingress: TLS handshake with {peer}: {e}")
                            }
                            Err(_) => {}
                        }
                    });
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Run the controller on a thread of its own (as `hako kube up` does).
pub fn spawn_thread(
    kubeconfig: PathBuf,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    node_ip: String,
) {
    std::thread::Builder::new()
        .name("ingress".into())
        .spawn(move || {
            let rt = match crate::runtime() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("starting the ingress controller: {e:#}"),
            };
            rt.block_on(async move {
                let client = match hako_kube_controllers::client_from(&kubeconfig).await {
                    Ok(c) => c,
                    Err(e) => return tracing::error!("starting the ingress controller: {e:#}"),
                };
                if let Err(e) = run(client, http, https, node_ip).await {
                    eprintln!("hako kube up: the ingress controller stopped: {e:#}");
                }
            })
        })
        .expect("spawning the ingress thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching_is_element_wise() {
        assert_eq!(path_matches("Prefix", "/foo", "/foo/bar"), Some(4));
        assert_eq!(path_matches("Prefix", "/foo/", "/foo"), Some(4));
        assert_eq!(path_matches("Prefix", "/foo", "/foobar"), None);
        assert_eq!(path_matches("Prefix", "/", "/anything"), Some(0));
        assert_eq!(path_matches("Exact", "/foo", "/foo/"), None);
        assert_eq!(
            path_matches("ImplementationSpecific", "/a/b", "/a/b/c"),
            Some(4)
        );
    }

    #[test]
    fn wildcard_hosts_match_one_label() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("web.example.com", "web.example.com"));
    }
}
