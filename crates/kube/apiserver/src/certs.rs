//! The control plane's credentials: a CA (its key kept to sign kubelets'
//! serving certificates), a serving certificate for 127.0.0.1/localhost, the
//! admin bearer token and the token the API server shows kubelets, generated
//! once under `$ROOT/kube/pki` and reused; the kubeconfig that carries them
//! to kubectl.

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
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    /// The admin's bearer token (the kubeconfig's).
    pub token: String,
    /// The bearer token the API server sends kubelets (logs, exec, attach,
    /// port-forward); a kubelet accepts only this one.
    pub kubelet_token: String,
}

/// The file under the pki directory holding the API server's token for kubelets.
pub const KUBELET_CLIENT_TOKEN: &str = "kubelet-client.token";

/// Write `data` to `path` through a temp name (mode 0600), so a crash never
/// leaves half a key.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
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
        // A root from before the CA key was kept gets a new CA (kube up
        // rewrites the kubeconfig anyway).
        let names = ["ca.crt", "ca.key", "server.crt", "server.key", "token"];
        let read = |n: &str| {
            std::fs::read_to_string(dir.join(n))
                .with_context(|| format!("reading {}", dir.join(n).display()))
        };
        let pki = if names.iter().all(|n| dir.join(n).exists()) {
            Pki {
                ca_cert: read("ca.crt")?,
                ca_key: read("ca.key")?,
                server_cert: read("server.crt")?,
                server_key: read("server.key")?,
                token: read("token")?.trim().to_string(),
                kubelet_token: String::new(),
            }
        } else {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let pki = Self::generate().context("generating the control plane's certificates")?;
            write_private(&dir.join("ca.key"), pki.ca_key.as_bytes())?;
            write_private(&dir.join("ca.crt"), pki.ca_cert.as_bytes())?;
            write_private(&dir.join("server.crt"), pki.server_cert.as_bytes())?;
            write_private(&dir.join("server.key"), pki.server_key.as_bytes())?;
            write_private(&dir.join("token"), pki.token.as_bytes())?;
            pki
        };
        let kubelet = dir.join(KUBELET_CLIENT_TOKEN);
        let kubelet_token = if kubelet.exists() {
            read(KUBELET_CLIENT_TOKEN)?.trim().to_string()
        } else {
            let t = random_token()?;
            write_private(&kubelet, t.as_bytes())?;
            t
        };
        Ok(Pki {
            kubelet_token,
            ..pki
        })
    }

    fn generate() -> Result<Pki> {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params()?.self_signed(&ca_key)?;
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
            ca_key: ca_key.serialize_pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            token: random_token()?,
            kubelet_token: String::new(),
        })
    }
}

/// The CA's parameters. Signing needs the issuer as an rcgen certificate:
/// the same parameters self-signed again with the kept key give the same
/// subject and key identifier as the `ca.crt` clients trust.
fn ca_params() -> Result<CertificateParams> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "hako-kube-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca)
}

/// A serving certificate for the kubelet of `node_name`, signed by the
/// cluster CA in `pki_dir` (`$ROOT/kube/pki`, created by `hako kube up`):
/// subject `system:node:NAME` / `system:nodes`, SANs the node name and
/// `ips`. The API server verifies kubelets against that CA. Returns
/// (certificate PEM, key PEM).
pub fn issue_kubelet_serving_cert(
    pki_dir: &Path,
    node_name: &str,
    ips: &[std::net::IpAddr],
) -> Result<(String, String)> {
    let what = || format!("issuing a serving certificate for the kubelet of node {node_name:?}");
    let ca_key_pem = std::fs::read_to_string(pki_dir.join("ca.key"))
        .with_context(|| {
            format!(
                "reading {} (has `hako kube up` run?)",
                pki_dir.join("ca.key").display()
            )
        })
        .with_context(what)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .context("the CA key is not a valid PEM key")
        .with_context(what)?;
    let ca = ca_params()?.self_signed(&ca_key).with_context(what)?;
    let mut sans = vec![node_name.to_string()];
    sans.extend(ips.iter().map(|ip| ip.to_string()));
    let mut params = CertificateParams::new(sans).with_context(what)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node_name}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().with_context(what)?;
    let cert = params.signed_by(&key, &ca, &ca_key).with_context(what)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A client certificate for `user` in `groups` (subject CN=user, one O per
/// group, as Kubernetes reads them), signed by the cluster CA in `pki_dir`.
/// Returns (certificate PEM, key PEM).
pub fn issue_client_cert(
    pki_dir: &Path,
    user: &str,
    groups: &[String],
) -> Result<(String, String)> {
    let what = || format!("issuing a client certificate for user {user:?}");
    if user.is_empty() || user.chars().any(char::is_control) {
        anyhow::bail!("{}: the user name must be non-empty printable text", what());
    }
    let ca_key_pem = std::fs::read_to_string(pki_dir.join("ca.key"))
        .with_context(|| {
            format!(
                "reading {} (has `hako kube up` run?)",
                pki_dir.join("ca.key").display()
            )
        })
        .with_context(what)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .context("the CA key is not a valid PEM key")
        .with_context(what)?;
    let ca = ca_params()?.self_signed(&ca_key).with_context(what)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).with_context(what)?;
    params.distinguished_name.push(DnType::CommonName, user);
    if let Some(g) = groups.first() {
        params
            .distinguished_name
            .push(DnType::OrganizationName, g.as_str());
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().with_context(what)?;
    let cert = params.signed_by(&key, &ca, &ca_key).with_context(what)?;
    if groups.len() < 2 {
        return Ok((cert.pem(), key.serialize_pem()));
    }
    // rcgen keeps one value per attribute type: a subject with several O
    // (groups) is written here and the certificate signed again.
    let der = multi_group_cert(cert.der(), &ca_key_pem, user, groups).with_context(what)?;
    let pem = pem_encode("CERTIFICATE", &der);
    Ok((pem, key.serialize_pem()))
}

/// A DER element at the start of `buf`: (its whole length, its header length).
fn der_element(buf: &[u8]) -> Result<(usize, usize)> {
    let bad = || anyhow::anyhow!("malformed DER in the issued certificate");
    let first = *buf.get(1).ok_or_else(bad)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(bad());
        }
        let bytes = buf.get(2..2 + n).ok_or_else(bad)?;
        (
            bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize),
            2 + n,
        )
    };
    let total = header + len;
    if total > buf.len() {
        return Err(bad());
    }
    Ok((total, header))
}

/// The elements inside a constructed DER element.
fn der_children(elem: &[u8]) -> Result<Vec<&[u8]>> {
    let (total, header) = der_element(elem)?;
    let mut rest = &elem[header..total];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (n, _) = der_element(rest)?;
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    Ok(out)
}

fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// One RDN: SET { SEQUENCE { OID 2.5.4.x, UTF8String value } }.
fn rdn(attr: u8, value: &str) -> Vec<u8> {
    let oid = der_wrap(0x06, &[0x55, 0x04, attr]);
    let val = der_wrap(0x0c, value.as_bytes());
    der_wrap(0x31, &der_wrap(0x30, &[oid, val].concat()))
}

/// `cert` with the subject CN=user, O=each group, signed again by the CA
/// key (ECDSA P-256, as `Pki::generate` makes it).
fn multi_group_cert(
    cert: &[u8],
    ca_key_pem: &str,
    user: &str,
    groups: &[String],
) -> Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    let parts = der_children(cert)?;
    let [tbs, alg, _sig] = parts.as_slice() else {
        anyhow::bail!("malformed DER in the issued certificate");
    };
    let mut fields: Vec<Vec<u8>> = der_children(tbs)?.into_iter().map(<[u8]>::to_vec).collect();
    // version [0], serial, signature, issuer, validity, subject, ...
    if fields.len() < 6 || fields[0].first() != Some(&0xa0) {
        anyhow::bail!("unexpected layout of the issued certificate");
    }
    let mut subject = rdn(3, user);
    for g in groups {
        subject.extend(rdn(10, g));
    }
    fields[5] = der_wrap(0x30, &subject);
    let tbs = der_wrap(0x30, &fields.concat());
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(ca_key_pem.as_bytes())
        .context("reading the CA key")?;
    let rng = ring::rand::SystemRandom::new();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        key.secret_pkcs8_der(),
        &rng,
    )
    .map_err(|e| anyhow::anyhow!("the CA key is not an ECDSA P-256 key: {e}"))?;
    let sig = signer
        .sign(&rng, &tbs)
        .map_err(|e| anyhow::anyhow!("signing the certificate: {e}"))?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig.as_ref());
    Ok(der_wrap(
        0x30,
        &[tbs, alg.to_vec(), der_wrap(0x03, &bits)].concat(),
    ))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The user and groups of a client certificate (CN, O), as the API server
/// authenticates it; None if it has no CN.
pub fn client_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    (!user.is_empty()).then_some((user, groups))
}

/// The API server's TLS: its serving certificate, and client certificates
/// signed by the cluster CA accepted (not required: tokens work too).
pub fn server_tls(pki: &Pki) -> Result<std::sync::Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_cert.as_bytes()) {
        roots
            .add(c.context("reading the cluster CA")?)
            .context("trusting the cluster CA for client certificates")?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("configuring client certificate verification")?;
    let chain = CertificateDer::pem_slice_iter(pki.server_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes())
        .context("reading the serving key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("loading the serving certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(cfg))
}

/// A kubeconfig for the server at `server` (an https URL) authenticating
/// with a client certificate.
pub fn client_cert_kubeconfig(
    ca_pem: &str,
    server: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: hako
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user_json}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: hako
  context:
    cluster: hako
    user: {user_json}
    namespace: default
current-context: hako
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
        user_json = serde_json::to_string(user).unwrap_or_default(),
    )
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

/// Write a kubeconfig for `server` authenticating as `user` in `groups`
/// with a new client certificate signed by the CA in `pki_dir`.
pub fn write_client_kubeconfig(
    pki_dir: &Path,
    server: &str,
    path: &Path,
    user: &str,
    groups: &[String],
) -> Result<()> {
    let ca = std::fs::read_to_string(pki_dir.join("ca.crt"))
        .with_context(|| format!("reading {}", pki_dir.join("ca.crt").display()))?;
    let (cert, key) = issue_client_cert(pki_dir, user, groups)?;
    write_private(
        path,
        client_cert_kubeconfig(&ca, server, user, &cert, &key).as_bytes(),
    )
}

pub fn write_kubeconfig(path: &Path, pki: &Pki, addr: SocketAddr) -> Result<()> {
    write_private(path, kubeconfig(pki, addr).as_bytes())
}
