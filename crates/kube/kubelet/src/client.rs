//! Connections: the Kubernetes API (a kubeconfig, rustls with ring) and CRI (gRPC
//! over a unix socket).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// A Kubernetes client from the kubeconfig at `path` (its current context).
pub async fn kube_client(path: &Path) -> Result<kube::Client> {
    // kube's rustls needs a process-wide provider; a second install is a no-op error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("loading the kubeconfig {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("creating a client from {}", path.display()))
}

/// The CRI clients of one runtime endpoint.
#[derive(Clone)]
pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    /// `runtime_name` of CRI Version, the scheme of container IDs (`hako://ID`).
    pub runtime_name: String,
    pub runtime_version: String,
}

/// Connect to `endpoint` (`unix:///path` or a path), waiting up to `wait` for the
/// socket to appear (the runtime may start alongside the kubelet).
pub async fn connect_cri(endpoint: &str, wait: Duration) -> Result<Cri> {
    let path = endpoint
        .strip_prefix("unix://")
        .unwrap_or(endpoint)
        .to_string();
    if !path.starts_with('/') {
        bail!("container runtime endpoint {endpoint:?}: only unix:///absolute/path sockets are supported");
    }
    let start = Instant::now();
    loop {
        match try_connect(&path).await {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() >= wait => {
                return Err(e)
                    .with_context(|| format!("connecting to the container runtime at {endpoint}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn try_connect(path: &str) -> Result<Cri> {
    let p = path.to_string();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await?;
    let mut rt = RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let v = rt
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await?
        .into_inner();
    Ok(Cri {
        rt,
        img: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
        runtime_name: v.runtime_name,
        runtime_version: v.runtime_version,
    })
}
