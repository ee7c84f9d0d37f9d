//! The parts of the kubeconfig `hako kube up` writes that a client needs:
//! the server, its CA, and a bearer token or a client certificate.

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;

pub struct KubeConfig {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub token: Option<String>,
    /// Client certificate and key, PEM, concatenated (reqwest's identity).
    pub identity_pem: Option<Vec<u8>>,
}

/// The value of the first `name: value` line (hako writes one cluster, one user).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .next()
}

fn decoded(text: &str, name: &str, path: &str) -> Result<Option<Vec<u8>>> {
    field(text, name)
        .map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .with_context(|| format!("decoding {name} in the kubeconfig {path}"))
        })
        .transpose()
}

pub fn read(path: &str) -> Result<KubeConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the kubeconfig {path}"))?;
    let server = field(&text, "server")
        .ok_or_else(|| anyhow!("the kubeconfig {path} names no server"))?
        .to_string();
    let ca_pem = decoded(&text, "certificate-authority-data", path)?
        .ok_or_else(|| anyhow!("the kubeconfig {path} has no certificate-authority-data"))?;
    let identity_pem = match (
        decoded(&text, "client-certificate-data", path)?,
        decoded(&text, "client-key-data", path)?,
    ) {
        (Some(mut cert), Some(key)) => {
            cert.extend_from_slice(&key);
            Some(cert)
        }
        _ => None,
    };
    let token = field(&text, "token").map(String::from);
    if token.is_none() && identity_pem.is_none() {
        return Err(anyhow!(
            "the kubeconfig {path} has neither a token nor a client certificate"
        ));
    }
    Ok(KubeConfig {
        server,
        ca_pem,
        token,
        identity_pem,
    })
}

impl KubeConfig {
    /// A client of its own (one connection): each load client and each
    /// watcher is a separate client, as separate processes would be.
    pub fn client(&self) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&self.ca_pem).context("reading the CA")?,
            )
            .pool_max_idle_per_host(1);
        if let Some(id) = &self.identity_pem {
            b = b.identity(
                reqwest::Identity::from_pem(id).context("reading the client certificate")?,
            );
        }
        if let Some(token) = &self.token {
            let mut h = reqwest::header::HeaderMap::new();
            let v = format!("Bearer {token}")
                .parse()
                .context("the kubeconfig's token is not a valid header value")?;
            h.insert(reqwest::header::AUTHORIZATION, v);
            b = b.default_headers(h);
        }
        b.build().context("building an HTTPS client")
    }
}
