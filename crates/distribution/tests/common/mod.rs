//! Test harness: a real registry server on 127.0.0.1 with an ephemeral port and a temp
//! root, shut down and removed when the handle drops (also when a test panics).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hako_distribution::config::Config;
use hako_distribution::server::Server;
use tokio::sync::oneshot;

pub struct TestRegistry {
    pub addr: std::net::SocketAddr,
    pub root: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRegistry {
    /// Start a registry with `config` (its addr and root are replaced by test ones).
    pub async fn start_with(mut config: Config) -> TestRegistry {
        let root = tempfile::Builder::new()
            .prefix("hako-reg-test")
            .tempdir()
            .unwrap();
        config.addr = "127.0.0.1:0".parse().unwrap();
        config.root = root.path().join("storage");
        let server = Server::bind(&config).expect("registry binds");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .expect("registry serves");
        });
        TestRegistry {
            addr,
            root,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn start() -> TestRegistry {
        TestRegistry::start_with(Config::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn storage(&self) -> PathBuf {
        self.root.path().join("storage")
    }

    /// Stop serving and wait for in-flight requests to finish. Returns the temp root so
    /// the caller can inspect storage afterwards (it is removed when dropped).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        // Swap in an empty placeholder so the real root outlives this handle.
        std::mem::replace(&mut self.root, tempfile::tempdir().unwrap())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub fn sha256(data: &[u8]) -> String {
    hako_distribution::digest::Digest::sha256_of(data).to_string()
}

/// A gzipped tar holding one file: a real image layer.
pub fn layer_tar_gz(file_name: &str, content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, file_name, content).unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

/// Write an OCI image layout at `dir` with one image tagged `tag` made of `layers`;
/// returns the manifest digest.
pub fn write_oci_layout(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = sha256(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let mut diff_ids = Vec::new();
    let mut layer_descs = Vec::new();
    for l in layers {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&l[..]), &mut raw).unwrap();
        diff_ids.push(sha256(&raw));
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": put(l),
            "size": l.len(),
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let md = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

/// Manifest digest recorded in an OCI layout's index.json.
pub fn layout_manifest_digest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Run a peer tool off the async runtime, returning (success, combined output).
pub async fn run(cmd: &str, args: Vec<String>) -> (bool, String) {
    let cmd = cmd.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&cmd)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
        let text = format!(
            "{cmd} {}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A throwaway CA and a server certificate for localhost/127.0.0.1 signed by it, written
/// into `dir` as `ca.crt`, `server.crt` and `server.key`.
pub struct TestCerts {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_dir: PathBuf,
}

pub fn make_certs(dir: &Path) -> TestCerts {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hako test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let ca_dir = dir.join("certs.d");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ca.crt"), ca.pem()).unwrap();
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    TestCerts {
        ca_pem: ca.pem(),
        cert,
        key,
        ca_dir,
    }
}

/// An htpasswd file with one bcrypt user.
pub fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash(password, 5).unwrap();
    std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
    path
}
