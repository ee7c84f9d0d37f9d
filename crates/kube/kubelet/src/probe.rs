//! Probes (liveness, readiness, startup) and lifecycle hooks: exec through CRI ExecSync,
//! httpGet, tcpSocket and gRPC health checks against the pod's IP, on their timings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

use crate::client::Cri;

/// What a probe or hook does, as in the Pod spec.
#[derive(Clone, Debug)]
pub enum Action {
    Exec(Vec<String>),
    Http(HTTPGetAction),
    Tcp(Option<String>, IntOrString),
    Grpc(i32, Option<String>),
}

impl Action {
    pub fn of_probe(p: &Probe) -> Option<Action> {
        if let Some(e) = &p.exec {
            Some(Action::Exec(e.command.clone().unwrap_or_default()))
        } else if let Some(h) = &p.http_get {
            Some(Action::Http(h.clone()))
        } else if let Some(t) = &p.tcp_socket {
            Some(Action::Tcp(t.host.clone(), t.port.clone()))
        } else {
            p.grpc
                .as_ref()
                .map(|g| Action::Grpc(g.port, g.service.clone()))
        }
    }

    pub fn of_handler(h: &k8s_openapi::api::core::v1::LifecycleHandler) -> Option<Action> {
        if let Some(e) = &h.exec {
            Some(Action::Exec(e.command.clone().unwrap_or_default()))
        } else if let Some(g) = &h.http_get {
            Some(Action::Http(g.clone()))
        } else {
            h.tcp_socket
                .as_ref()
                .map(|t| Action::Tcp(t.host.clone(), t.port.clone()))
        }
    }
}

/// Where a probe reaches the container: its pod IP and its named ports.
#[derive(Clone)]
pub struct Target {
    pub container_id: String,
    pub ip: String,
    pub ports: Vec<(String, i32)>,
}

impl Target {
    fn port(&self, p: &IntOrString) -> Result<u16, String> {
        match p {
            IntOrString::Int(n) => {
                u16::try_from(*n).map_err(|_| format!("port {n} is out of range"))
            }
            IntOrString::String(name) => match name.parse::<u16>() {
                Ok(n) => Ok(n),
                Err(_) => self
                    .ports
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| *p as u16)
                    .ok_or_else(|| format!("the container has no port named {name:?}")),
            },
        }
    }
}

/// Run `action` once within `timeout`: Ok on success, Err(what failed) otherwise.
pub async fn run(cri: &Cri, action: &Action, t: &Target, timeout: Duration) -> Result<(), String> {
    let fut = async {
        match action {
            Action::Exec(cmd) => {
                let r = cri
                    .rt
                    .clone()
                    .exec_sync(cri::ExecSyncRequest {
                        container_id: t.container_id.clone(),
                        cmd: cmd.clone(),
                        timeout: timeout.as_secs().max(1) as i64,
                    })
                    .await
                    .map_err(|e| format!("exec {cmd:?}: {}", e.message()))?
                    .into_inner();
                if r.exit_code == 0 {
                    Ok(())
                } else {
                    let out = String::from_utf8_lossy(&r.stdout).to_string()
                        + &String::from_utf8_lossy(&r.stderr);
                    let out = out.trim();
                    if out.is_empty() {
                        Err(format!("command {cmd:?} exited with {}", r.exit_code))
                    } else {
                        Err(format!(
                            "command {cmd:?} exited with {}: {}",
                            r.exit_code,
                            out.escape_debug()
                        ))
                    }
                }
            }
            Action::Http(h) => http_get(h, t).await,
            Action::Tcp(host, port) => {
                let host = host.clone().unwrap_or_else(|| t.ip.clone());
                let port = t.port(port)?;
                tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
            }
            Action::Grpc(port, service) => grpc_check(&t.ip, *port, service.clone()).await,
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f64())),
    }
}

async fn http_get(h: &HTTPGetAction, t: &Target) -> Result<(), String> {
    let host = h.host.clone().unwrap_or_else(|| t.ip.clone());
    let port = t.port(&h.port)?;
    let https = match h.scheme.as_deref().unwrap_or("HTTP") {
        s if s.eq_ignore_ascii_case("HTTP") => false,
        s if s.eq_ignore_ascii_case("HTTPS") => true,
        s => return Err(format!("unsupported scheme {s:?}")),
    };
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    let mut has_host = false;
    for hd in h.http_headers.iter().flatten() {
        if hd.name.eq_ignore_ascii_case("host") {
            has_host = true;
        }
        // Header names and values with line breaks would split the request.
        if hd.name.contains(['\r', '\n']) || hd.value.contains(['\r', '\n']) {
            return Err(format!("header {:?} holds a line break", hd.name));
        }
        req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
    }
    if !has_host {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    req.push_str("\r\n");
    let url = format!(
        "{}://{host}:{port}{path}",
        if https { "https" } else { "http" }
    );
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("Get {url:?}: dial tcp {host}:{port}: {e}"))?;
    let code = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(insecure_tls())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        status_of(tls, &req, &url).await?
    } else {
        status_of(tcp, &req, &url).await?
    };
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Send `req` and read the status code of the answer.
async fn status_of<S>(mut s: S, req: &str, url: &str) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    let mut buf = vec![0u8; 256];
    let mut n = 0;
    while n < 12 {
        let r = s
            .read(&mut buf[n..])
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get {url:?}: not an HTTP response"))
}

/// The TLS client of HTTPS probes. Upstream's probes skip certificate
/// verification (a pod's serving certificate is rarely one the node trusts);
/// the handshake's signatures are still checked.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

async fn grpc_check(ip: &str, port: i32, service: Option<String>) -> Result<(), String> {
    let addr = format!("http://{ip}:{port}");
    let ch = tonic::transport::Endpoint::from_shared(addr.clone())
        .map_err(|e| format!("grpc {addr}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("failed to connect service {ip}:{port} within the timeout: {e}"))?;
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.map_err(|e| format!("grpc {addr}: {e}"))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let r: tonic::Response<HealthCheckResponse> = g
        .unary(
            tonic::Request::new(HealthCheckRequest {
                service: service.unwrap_or_default(),
            }),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(|e| format!("health rpc failed: {}", e.message()))?;
    // SERVING = 1
    if r.get_ref().status == 1 {
        Ok(())
    } else {
        Err(format!(
            "service unhealthy (responded with status {})",
            r.get_ref().status
        ))
    }
}

/// What the probes of one running container found.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    pub ready: bool,
    pub started: bool,
    /// Set once liveness or startup failed enough times: the container is to be killed.
    pub kill: Option<String>,
}

/// The probes of a container, their timings with upstream's defaults.
#[derive(Clone)]
pub struct Probes {
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub startup: Option<Probe>,
}

struct Timing {
    initial: Duration,
    period: Duration,
    timeout: Duration,
    success: u32,
    failure: u32,
}

fn timing(p: &Probe) -> Timing {
    let s = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    Timing {
        initial: s(p.initial_delay_seconds, 0),
        period: s(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: s(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

/// One probe run, its state boxed: a probe task sleeps between runs most of its life
/// and then holds no HTTP or gRPC client state.
async fn probe_once(
    cri: &Cri,
    action: &Action,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    Box::pin(run(cri, action, target, timeout)).await
}

/// Called with (probe kind, failure message) on each failed probe run.
pub type OnFailure = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Run the probes of one container until it is gone (the caller aborts the task);
/// results go into `state` and each change wakes the pod worker.
pub async fn run_probes(
    cri: Cri,
    target: Target,
    probes: Probes,
    state: Arc<Mutex<ProbeState>>,
    wake: Arc<Notify>,
    on_failure: OnFailure,
) {
    let set = |f: &dyn Fn(&mut ProbeState)| {
        if let Ok(mut s) = state.lock() {
            f(&mut s);
        }
        wake.notify_one();
    };
    if let Some(p) = &probes.startup {
        let (Some(action), t) = (Action::of_probe(p), timing(p)) else {
            return;
        };
        tokio::time::sleep(t.initial).await;
        let mut failures = 0;
        loop {
            match probe_once(&cri, &action, &target, t.timeout).await {
                Ok(()) => break,
                Err(msg) => {
                    failures += 1;
                    on_failure("Startup", &msg);
                    if failures >= t.failure {
                        set(&|s| s.kill = Some(format!("Container failed startup probe: {msg}")));
                        return;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }
    set(&|s| s.started = true);
    let liveness = async {
        let Some(p) = &probes.liveness else {
            return std::future::pending::<()>().await;
        };
        let (Some(action), t) = (Action::of_probe(p), timing(p)) else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(t.initial).await;
        let mut failures = 0;
        loop {
            match probe_once(&cri, &action, &target, t.timeout).await {
                Ok(()) => failures = 0,
                Err(msg) => {
                    failures += 1;
                    on_failure("Liveness", &msg);
                    if failures >= t.failure {
                        set(&|s| {
                            s.kill = Some(format!(
                                "Container failed liveness probe, will be restarted: {msg}"
                            ))
                        });
                        return std::future::pending::<()>().await;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let readiness = async {
        let Some(p) = &probes.readiness else {
            set(&|s| s.ready = true);
            return std::future::pending::<()>().await;
        };
        let (Some(action), t) = (Action::of_probe(p), timing(p)) else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(t.initial).await;
        let (mut ok, mut bad) = (0u32, 0u32);
        let mut ready = false;
        loop {
            match probe_once(&cri, &action, &target, t.timeout).await {
                Ok(()) => {
                    ok += 1;
                    bad = 0;
                    if !ready && ok >= t.success {
                        ready = true;
                        set(&|s| s.ready = true);
                    }
                }
                Err(msg) => {
                    bad += 1;
                    ok = 0;
                    on_failure("Readiness", &msg);
                    if ready && bad >= t.failure {
                        ready = false;
                        set(&|s| s.ready = false);
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::join!(liveness, readiness);
}
