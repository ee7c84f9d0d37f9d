//! Where the service listens: the unix socket, and `--tcp ADDR` as dockerd
//! serves it — with `--tlsverify` clients must present a certificate signed
//! by `--tlscacert`; with `--tls` (or only `--tlscert`/`--tlskey`) the
//! connection is encrypted but clients are not checked; without TLS only a
//! loopback address is served (with a warning), since the API gives root
//! on the host to whoever reaches it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;

use crate::error::SetupError;

/// `--tcp ADDR` and its TLS flags.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// `HOST:PORT`, optionally `tcp://HOST[:PORT]` (dockerd's -H form).
    pub addr: String,
    pub tls: Option<TlsFiles>,
}

/// The PEM files of `--tlscert`, `--tlskey` and, with `--tlsverify`,
/// `--tlscacert` (the CA client certificates must be signed by).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub verify_ca: Option<PathBuf>,
}

/// A bound TCP listener and, with TLS, the acceptor each connection goes through.
pub struct Tcp {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub addr: SocketAddr,
}

/// The address of `--tcp`: dockerd's default ports (2376 with TLS, 2375
/// without) when none is given.
fn resolve(addr: &str, tls: bool) -> Result<SocketAddr, SetupError> {
    let bare = addr.strip_prefix("tcp://").unwrap_or(addr);
    let bare = bare.trim_end_matches('/');
    let with_port = if bare.parse::<SocketAddr>().is_ok()
        || bare
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok())
    {
        bare.to_string()
    } else {
        let port = if tls { 2376 } else { 2375 };
        format!("{bare}:{port}")
    };
    let shown = crate::error::printable(addr);
    with_port
        .to_socket_addrs()
        .map_err(|e| SetupError(format!("--tcp {shown:?}: not a HOST:PORT address ({e})")))?
        .next()
        .ok_or_else(|| SetupError(format!("--tcp {shown:?}: the host has no address")))
}

/// Bind `--tcp`: refuse plain TCP beyond loopback, load the TLS files.
pub async fn bind_tcp(o: &TcpOptions) -> Result<Tcp, SetupError> {
    let addr = resolve(&o.addr, o.tls.is_some())?;
    let tls = match &o.tls {
        Some(files) => Some(TlsAcceptor::from(server_config(files)?)),
        None if addr.ip().is_loopback() => {
            eprintln!(
                "warning: serving the API on tcp://{addr} without TLS: any local user can reach it and gets root on this host; use --tlsverify --tlscacert --tlscert --tlskey"
            );
            None
        }
        None => {
            return Err(SetupError(format!(
                "--tcp {addr}: refusing to serve the API without TLS on a non-loopback address (it gives root on this host to whoever reaches it): add --tlsverify --tlscacert CA --tlscert CERT --tlskey KEY"
            )))
        }
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| SetupError(format!("listening on tcp://{addr}: {e}")))?;
    let addr = listener.local_addr().unwrap_or(addr);
    Ok(Tcp {
        listener,
        tls,
        addr,
    })
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|e| SetupError(format!("reading {what} {}: {e}", path.display())))
}

/// The rustls configuration of `files` (ring, TLS 1.2 and 1.3).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert_pem = read("the certificate (--tlscert)", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            SetupError(format!(
                "reading the certificate {}: {e}",
                files.cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(SetupError(format!(
            "reading the certificate {}: no PEM certificate in it",
            files.cert.display()
        )));
    }
    let key_pem = read("the key (--tlskey)", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| SetupError(format!("reading the key {}: {e}", files.key.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError(format!("configuring TLS: {e}")))?;
    let builder = match &files.verify_ca {
        Some(ca) => {
            let ca_pem = read("the CA (--tlscacert)", ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca_pem) {
                let c =
                    c.map_err(|e| SetupError(format!("reading the CA {}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| SetupError(format!("trusting the CA {}: {e}", ca.display())))?;
            }
            if roots.is_empty() {
                return Err(SetupError(format!(
                    "reading the CA {}: no PEM certificate in it",
                    ca.display()
                )));
            }
            // --tlsverify: a certificate signed by the CA is required.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| SetupError(format!("configuring client certificate checks: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).map_err(|e| {
        SetupError(format!(
            "loading the certificate {} with the key {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Bind the socket: a stale socket (nobody answering) is replaced, a live
/// one is an error; mode 0660 and group `hako` when that group exists.
pub fn bind_unix(socket: &Path) -> Result<UnixListener, SetupError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            SetupError(format!(
                "creating the socket's directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    if let Ok(m) = std::fs::symlink_metadata(socket) {
        if !m.file_type().is_socket() {
            return Err(SetupError(format!(
                "serving on {}: it exists and is not a socket",
                socket.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(SetupError(format!(
                "serving on {}: another service is listening there",
                socket.display()
            )));
        }
        std::fs::remove_file(socket).map_err(|e| {
            SetupError(format!(
                "removing the stale socket {}: {e}",
                socket.display()
            ))
        })?;
    }
    let l = UnixListener::bind(socket)
        .map_err(|e| SetupError(format!("listening on {}: {e}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| SetupError(format!("setting the mode of {}: {e}", socket.display())))?;
    if let Ok(Some(g)) = nix::unistd::Group::from_name("hako") {
        nix::unistd::chown(socket, None, Some(g.gid))
            .map_err(|e| SetupError(format!("giving {} to group hako: {e}", socket.display())))?;
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_and_default_ports() {
        assert_eq!(
            resolve("127.0.0.1:2000", true).unwrap(),
            "127.0.0.1:2000".parse().unwrap()
        );
        assert_eq!(
            resolve("tcp://127.0.0.1", true).unwrap(),
            "127.0.0.1:2376".parse().unwrap()
        );
        assert_eq!(
            resolve("127.0.0.1", false).unwrap(),
            "127.0.0.1:2375".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:7", false).unwrap(),
            "[::1]:7".parse().unwrap()
        );
        assert!(resolve("no such host\u{1b}:x", true).is_err());
    }
}
