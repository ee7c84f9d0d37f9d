//! The control plane's credentials: a CA, a serving certificate for
//! 127.0.0.1/localhost and a bearer token, generated once under
//! `$ROOT/kube/pki` and reused; the kubeconfig that carries them to kubectl.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub token: String,
}

/// Write `data` to `path` through a temp name (mode 0600), so a crash never
/// leaves half a key.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn random_token() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("generating a token: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Pki {
    /// Load the credentials from `dir`, generating them the first time.
    pub fn load_or_create(dir: &Path) -> Result<Pki> {
        let names = ["ca.crt", "server.crt", "server.key", "token"];
        if names.iter().all(|n| dir.join(n).exists()) {
            let read = |n: &str| {
                std::fs::read_to_string(dir.join(n))
                    .with_context(|| format!("reading {}", dir.join(n).display()))
            };
            return Ok(Pki {
                ca_cert: read("ca.crt")?,
                server_cert: read("server.crt")?,
                server_key: read("server.key")?,
                token: read("token")?.trim().to_string(),
            });
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Self::generate().context("generating the control plane's certificates")?;
        write_private(&dir.join("ca.crt"), pki.ca_cert.as_bytes())?;
        write_private(&dir.join("server.crt"), pki.server_cert.as_bytes())?;
        write_private(&dir.join("server.key"), pki.server_key.as_bytes())?;
        write_private(&dir.join("token"), pki.token.as_bytes())?;
        Ok(pki)
    }

    fn generate() -> Result<Pki> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "hako-kube-ca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let server_key = KeyPair::generate()?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "hako-kube-apiserver");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;
        Ok(Pki {
            ca_cert: ca_cert.pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            token: random_token()?,
        })
    }
}

/// The kubeconfig for the admin user of the server at `addr`.
pub fn kubeconfig(pki: &Pki, addr: SocketAddr) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca_cert);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: hako
  cluster:
    server: https://{addr}
    certificate-authority-data: {ca}
users:
- name: hako-admin
  user:
    token: {token}
contexts:
- name: hako
  context:
    cluster: hako
    user: hako-admin
    namespace: default
current-context: hako
",
        token = pki.token
    )
}

pub fn write_kubeconfig(path: &Path, pki: &Pki, addr: SocketAddr) -> Result<()> {
    write_private(path, kubeconfig(pki, addr).as_bytes())
}
