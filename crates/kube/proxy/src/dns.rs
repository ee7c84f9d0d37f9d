//! Cluster DNS (`hako kube dns`), the part of CoreDNS's kubernetes plugin a
//! cluster needs: `SVC.NS.svc.cluster.local` A records (the cluster IP, or
//! every ready endpoint of a headless Service), per-pod records of headless
//! Services (`HOSTNAME.SVC...` from the endpoints' hostname, as StatefulSets
//! set it, and `1-2-3-4.SVC...`), SRV records `_PORT._PROTO.SVC...` for named
//! ports, CNAMEs of ExternalName Services, PTR records of cluster IPs and
//! headless endpoints; other names go to the host's
//! resolvers. Messages are parsed and written with hickory-proto.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hako_kube_controllers::informer::Informer;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client, ResourceExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// CoreDNS's default TTL for cluster records.
const TTL: u32 = 5;
pub const DOMAIN: &str = "cluster.local";

/// What the cluster knows of one name.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// Records for the name (possibly none of the asked type: NOERROR, no data).
    Found(Vec<RData>),
    /// In the cluster's zone, but nothing has that name.
    NxDomain,
    /// Not the cluster's: ask the host's resolvers.
    Forward,
}

pub struct Zone {
    services: Arc<Informer<Service>>,
    slices: Arc<Informer<EndpointSlice>>,
}

/// Ready endpoints of a Service: (ip, hostname).
fn ready_endpoints(
    slices: &[Arc<EndpointSlice>],
    ns: &str,
    svc: &str,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for s in slices {
        if s.namespace().as_deref() != Some(ns)
            || s.labels()
                .get("kubernetes.io/service-name")
                .map(String::as_str)
                != Some(svc)
            || s.address_type != "IPv4"
        {
            continue;
        }
        for e in &s.endpoints {
            if e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true) {
                if let Some(ip) = e.addresses.first() {
                    out.push((ip.clone(), e.hostname.clone()));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn a(ip: &str) -> Option<RData> {
    Ipv4Addr::from_str(ip).ok().map(|ip| RData::A(A(ip)))
}

impl Zone {
    pub fn start(client: Client) -> Zone {
        Zone {
            services: Informer::start(Api::all(client.clone())),
            slices: Informer::start(Api::all(client)),
        }
    }

    pub async fn wait_synced(&self) {
        self.services.wait_synced().await;
        self.slices.wait_synced().await;
    }

    /// Answer `name` (any case, with or without the final dot) for `qtype`.
    pub fn lookup(&self, name: &str, qtype: RecordType) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(rev) = name.strip_suffix(".in-addr.arpa") {
            return self.reverse(rev, qtype);
        }
        let Some(rest) = name.strip_suffix(&format!(".svc.{DOMAIN}")) else {
            return if name == DOMAIN || name.ends_with(&format!(".{DOMAIN}")) {
                Lookup::NxDomain
            } else {
                Lookup::Forward
            };
        };
        let labels: Vec<&str> = rest.split('.').collect();
        // SVC.NS, HOST.SVC.NS or _PORT._PROTO.SVC.NS
        let (first, svc, ns) = match labels.as_slice() {
            [svc, ns] => (None, *svc, *ns),
            [h, svc, ns] => (Some((*h, None)), *svc, *ns),
            [p, proto, svc, ns] if p.starts_with('_') && proto.starts_with('_') => {
                (Some((*p, Some(*proto))), *svc, *ns)
            }
            _ => return Lookup::NxDomain,
        };
        let Some(s) = self.services.get_in(Some(ns), svc) else {
            return Lookup::NxDomain;
        };
        let spec = s.spec.clone().unwrap_or_default();
        let base = format!("{svc}.{ns}.svc.{DOMAIN}.");
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let eps = ready_endpoints(&self.slices.list(Some(ns)), ns, svc);
        match first {
            None => {
                if spec.type_.as_deref() == Some("ExternalName") {
                    let target = spec.external_name.unwrap_or_default();
                    return match Name::from_ascii(format!("{}.", target.trim_end_matches('.'))) {
                        Ok(n) => Lookup::Found(vec![RData::CNAME(CNAME(n))]),
                        Err(_) => Lookup::NxDomain,
                    };
                }
                if qtype != RecordType::A {
                    return Lookup::Found(Vec::new());
                }
                if headless {
                    Lookup::Found(eps.iter().filter_map(|(ip, _)| a(ip)).collect())
                } else {
                    Lookup::Found(spec.cluster_ip.as_deref().and_then(a).into_iter().collect())
                }
            }
            Some((host, None)) => {
                if !headless {
                    return Lookup::NxDomain;
                }
                let hit: Vec<RData> = eps
                    .iter()
                    .filter(|(ip, h)| h.as_deref() == Some(host) || ip.replace('.', "-") == host)
                    .filter_map(|(ip, _)| a(ip))
                    .collect();
                match (hit.is_empty(), qtype) {
                    (true, _) => Lookup::NxDomain,
                    (false, RecordType::A) => Lookup::Found(hit),
                    (false, _) => Lookup::Found(Vec::new()),
                }
            }
            Some((port, Some(proto))) => {
                let (port, proto) = (&port[1..], &proto[1..]);
                let Some(p) = spec.ports.iter().flatten().find(|p| {
                    p.name.as_deref() == Some(port)
                        && p.protocol
                            .as_deref()
                            .unwrap_or("TCP")
                            .eq_ignore_ascii_case(proto)
                }) else {
                    return Lookup::NxDomain;
                };
                if qtype != RecordType::SRV {
                    return Lookup::Found(Vec::new());
                }
                let srv = |target: String, port: i32| {
                    Name::from_ascii(target)
                        .ok()
                        .map(|n| RData::SRV(SRV::new(0, 100, port as u16, n)))
                };
                if !headless {
                    return Lookup::Found(srv(base, p.port).into_iter().collect());
                }
                // Headless: one target per endpoint, on the Service port.
                Lookup::Found(
                    eps.iter()
                        .filter_map(|(ip, h)| {
                            let label = h.clone().unwrap_or_else(|| ip.replace('.', "-"));
                            srv(format!("{label}.{base}"), p.port)
                        })
                        .collect(),
                )
            }
        }
    }

    /// PTR records of cluster IPs and of headless Services' endpoints;
    /// other addresses are the host resolvers'.
    fn reverse(&self, rev: &str, qtype: RecordType) -> Lookup {
        let mut octets: Vec<&str> = rev.split('.').collect();
        if octets.len() != 4 {
            return Lookup::Forward;
        }
        octets.reverse();
        let ip = octets.join(".");
        if Ipv4Addr::from_str(&ip).is_err() {
            return Lookup::Forward;
        }
        let mut names = Vec::new();
        for s in self.services.list(None) {
            let (ns, svc) = (s.namespace().unwrap_or_default(), s.name_any());
            let base = format!("{svc}.{ns}.svc.{DOMAIN}.");
            match s.spec.as_ref().and_then(|sp| sp.cluster_ip.as_deref()) {
                Some("None") => {
                    for (eip, h) in ready_endpoints(&self.slices.list(Some(&ns)), &ns, &svc) {
                        if eip == ip {
                            let label = h.unwrap_or_else(|| eip.replace('.', "-"));
                            names.push(format!("{label}.{base}"));
                        }
                    }
                }
                Some(cip) if cip == ip => names.push(base),
                _ => {}
            }
        }
        if names.is_empty() {
            return Lookup::Forward;
        }
        if qtype != RecordType::PTR {
            return Lookup::Found(Vec::new());
        }
        names.sort();
        Lookup::Found(
            names
                .into_iter()
                .filter_map(|n| Name::from_ascii(n).ok())
                .map(|n| RData::PTR(PTR(n)))
                .collect(),
        )
    }

    /// The reply to one query message, or `None` to forward it.
    fn answer(&self, msg: &Message) -> Option<Message> {
        let q = msg.queries().first()?;
        let name = q.name().to_ascii();
        let lookup = self.lookup(&name, q.query_type());
        if lookup == Lookup::Forward {
            return None;
        }
        let mut r = Message::new();
        r.set_id(msg.id())
            .set_message_type(MessageType::Response)
            .set_op_code(msg.op_code())
            .set_recursion_desired(msg.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true)
            .add_query(q.clone());
        match lookup {
            Lookup::Found(rdata) => {
                for d in rdata {
                    // An ExternalName pointing into the cluster: the target's
                    // records follow the CNAME, as CoreDNS adds them (stub
                    // resolvers do not chase CNAMEs themselves).
                    let chased = match &d {
                        RData::CNAME(CNAME(t)) if q.query_type() != RecordType::CNAME => {
                            match self.lookup(&t.to_ascii(), q.query_type()) {
                                Lookup::Found(more) => Some((t.clone(), more)),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    r.add_answer(Record::from_rdata(q.name().clone(), TTL, d));
                    if let Some((owner, more)) = chased {
                        for m in more {
                            r.add_answer(Record::from_rdata(owner.clone(), TTL, m));
                        }
                    }
                }
            }
            _ => {
                r.set_response_code(ResponseCode::NXDomain);
            }
        }
        Some(r)
    }
}

/// The host's resolvers.
fn upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

async fn forward(query: &[u8], up: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in up {
        let bind = if u.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let Ok(s) = UdpSocket::bind(bind).await else {
            continue;
        };
        if s.send_to(query, u).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await
        {
            if n >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// The reply to a raw query: the zone's answer, else the host resolvers'
/// (SERVFAIL when none answers). `None` for bytes that are no DNS query.
async fn reply(zone: &Zone, up: &[SocketAddr], raw: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(raw).ok()?;
    if let Some(r) = zone.answer(&msg) {
        return r.to_vec().ok();
    }
    if let Some(r) = forward(raw, up).await {
        return Some(r);
    }
    let mut r = Message::new();
    r.set_id(msg.id())
        .set_message_type(MessageType::Response)
        .set_response_code(ResponseCode::ServFail)
        .add_queries(msg.queries().to_vec());
    r.to_vec().ok()
}

/// One TCP client: two-byte length-prefixed messages (RFC 1035 4.2.2) until
/// it closes or idles for 10 s.
async fn serve_tcp_client(zone: Arc<Zone>, up: Arc<Vec<SocketAddr>>, mut conn: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut raw = vec![0u8; u16::from_be_bytes(len) as usize];
        if conn.read_exact(&mut raw).await.is_err() {
            return;
        }
        let Some(r) = reply(&zone, &up, &raw).await else {
            return;
        };
        let Ok(n) = u16::try_from(r.len()) else {
            return;
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend_from_slice(&r);
        if conn.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Bind UDP and TCP on the same address; port 0 picks a port free for both.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding {listen} (UDP) for cluster DNS"))?;
        let addr = udp.local_addr().context("the DNS socket's address")?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // Only a picked port may be retried: another one is free for both.
            Err(e) if listen.port() == 0 => last = Some(e),
            Err(e) => {
                return Err(e).with_context(|| format!("binding {addr} (TCP) for cluster DNS"))
            }
        }
    }
    Err(last.expect("a failed attempt"))
        .with_context(|| format!("finding a port free for UDP and TCP on {}", listen.ip()))
}

/// Serve UDP and TCP queries on `listen` until the runtime stops; `ready`
/// gets the bound address once the zone is loaded.
pub async fn serve(
    client: Client,
    listen: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let (sock, tcp) = bind(listen).await?;
    let sock = Arc::new(sock);
    let zone = Arc::new(Zone::start(client));
    zone.wait_synced().await;
    ready(sock.local_addr().context("the DNS socket's address")?);
    let up = Arc::new(upstreams());
    let (z, u) = (zone.clone(), up.clone());
    tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((conn, _)) => {
                    tokio::spawn(serve_tcp_client(z.clone(), u.clone(), conn));
                }
                Err(e) => {
                    tracing::warn!("cluster DNS: accepting a TCP connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("cluster DNS: receiving: {e}");
                continue;
            }
        };
        let raw = buf[..n].to_vec();
        let (sock, up, zone) = (sock.clone(), up.clone(), zone.clone());
        // Upstreams may be slow: the loop goes on answering.
        tokio::spawn(async move {
            if let Some(r) = reply(&zone, &up, &raw).await {
                let _ = sock.send_to(&r, from).await;
            }
        });
    }
}

/// `hako kube dns`: serve in the foreground until SIGINT/SIGTERM. Prints
/// `cluster DNS listening on ADDR` once it answers.
pub fn run_foreground(kubeconfig: PathBuf, listen: SocketAddr) -> Result<()> {
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let client = hako_kube_controllers::client_from(&kubeconfig).await?;
        tokio::select! {
            r = serve(client, listen, |addr| {
                use std::io::Write as _;
                let mut out = std::io::stdout();
                let _ = writeln!(out, "cluster DNS listening on {addr}");
                let _ = out.flush();
            }) => r,
            _ = crate::shutdown_signal() => Ok(()),
        }
    })
}

/// The Service CoreDNS is published as in kube-system (`kube-dns`), its
/// Endpoints and EndpointSlice pointing at `server` (where this process
/// answers). kube-proxy DNATs `cluster_ip:53` there, so pods reach it.
pub async fn publish(client: &Client, cluster_ip: Ipv4Addr, server: SocketAddr) -> Result<()> {
    use k8s_openapi::api::core::v1::Endpoints;
    let ns = "kube-system";
    let port = server.port();
    let labels = serde_json::json!({
        "k8s-app": "kube-dns",
        "kubernetes.io/cluster-service": "true",
        "kubernetes.io/name": "CoreDNS",
    });
    let svc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port},
            ],
        },
    });
    let ip = server.ip().to_string();
    let eps = serde_json::json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
        "subsets": [{
            "addresses": [{"ip": ip}],
            "ports": [
                {"name": "dns", "port": port, "protocol": "UDP"},
                {"name": "dns-tcp", "port": port, "protocol": "TCP"},
            ],
        }],
    });
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-hako", "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "hako-cluster-dns",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
        ],
    });
    put(
        Api::<Service>::namespaced(client.clone(), ns),
        "Service kube-dns",
        &svc,
    )
    .await?;
    put(
        Api::<Endpoints>::namespaced(client.clone(), ns),
        "Endpoints kube-dns",
        &eps,
    )
    .await?;
    put(
        Api::<EndpointSlice>::namespaced(client.clone(), ns),
        "EndpointSlice kube-dns-hako",
        &slice,
    )
    .await
}

/// Create `obj`, or bring an existing one to it with a JSON merge patch
/// (lists, such as the Service's two ports on port 53, are replaced whole).
async fn put<K>(api: Api<K>, what: &str, obj: &serde_json::Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    use kube::api::{Patch, PatchParams, PostParams};
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let typed: K = serde_json::from_value(obj.clone())
        .with_context(|| format!("building {what} in kube-system"))?;
    match api.create(&PostParams::default(), &typed).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => api
            .patch(name, &PatchParams::default(), &Patch::Merge(obj))
            .await
            .map(|_| ())
            .with_context(|| format!("updating {what} in kube-system")),
        Err(e) => Err(e).with_context(|| format!("publishing {what} in kube-system")),
    }
}

/// Run cluster DNS on a thread of its own (as `hako kube up` does): answer
/// on `listen_ip` (a port free for UDP and TCP) and publish the `kube-dns`
/// Service at `cluster_ip`. Retries until the API server takes it.
pub fn spawn_thread(kubeconfig: PathBuf, listen_ip: std::net::IpAddr, cluster_ip: Ipv4Addr) {
    std::thread::Builder::new()
        .name("cluster-dns".into())
        .spawn(move || {
            let rt = match crate::runtime() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("starting cluster DNS: {e:#}"),
            };
            rt.block_on(async move {
                let client = match hako_kube_controllers::client_from(&kubeconfig).await {
                    Ok(c) => c,
                    Err(e) => return tracing::error!("starting cluster DNS: {e:#}"),
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let c = client.clone();
                tokio::spawn(async move {
                    let Ok(addr) = rx.await else { return };
                    // The API server may still be starting: try until it takes it.
                    while let Err(e) = publish(&c, cluster_ip, addr).await {
                        tracing::warn!("cluster DNS: {e:#}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    tracing::info!("cluster DNS: answering on {addr}, published at {cluster_ip}");
                });
                let listen = SocketAddr::new(listen_ip, 0);
                if let Err(e) = serve(client, listen, |a| {
                    let _ = tx.send(a);
                })
                .await
                {
                    tracing::error!("cluster DNS: {e:#}");
                }
            })
        })
        .expect("spawning the cluster DNS thread");
}
