//! Registries for the pull/push tests, each on 127.0.0.1 with an ephemeral
//! port and a temp storage root, stopped and removed on drop (also when a
//! test panics): Debian's docker-registry (plain or htpasswd), `hako registry
//! serve`, and a tiny in-test HTTP registry that can lie or go slowly.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::common::Hako;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port}");
}

/// A fresh CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
pub fn make_certs() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// Write an htpasswd file with one bcrypt entry.
pub fn htpasswd(path: &Path, user: &str, password: &str) {
    let hash = bcrypt::hash_with_result(password, 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(path, format!("{user}:{hash}\n")).unwrap();
}

/// A registry process; killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry process's id (to stop or kill it mid-transfer).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Debian's docker-registry (distribution 2.8); with `auth`, htpasswd basic auth.
    pub fn docker_registry(auth: Option<(&str, &str)>) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("hako-dreg")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some((user, password)) = auth {
            let file = dir.path().join("htpasswd");
            htpasswd(&file, user, password);
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: hako-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("Debian's docker-registry must be installed");
        wait_listening(port, &mut child, "docker-registry");
        Server { child, port, dir }
    }

    /// `hako registry serve`; with `auth`, htpasswd credentials and bearer tokens.
    pub fn hako_registry(auth: Option<(&str, &str)>) -> Server {
        Self::hako_registry_with(auth, false).0
    }

    /// `hako registry serve` over TLS with a certificate for 127.0.0.1 from a
    /// fresh CA; returns the CA's PEM too.
    pub fn hako_registry_tls() -> (Server, String) {
        let (s, ca) = Self::hako_registry_with(None, true);
        (s, ca.unwrap())
    }

    fn hako_registry_with(auth: Option<(&str, &str)>, tls: bool) -> (Server, Option<String>) {
        let dir = tempfile::Builder::new()
            .prefix("hako-hreg")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hako"));
        cmd.arg("--root").arg(dir.path().join("root")).args([
            "registry",
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ]);
        if let Some((user, password)) = auth {
            let file = dir.path().join("htpasswd");
            htpasswd(&file, user, password);
            cmd.arg("--htpasswd").arg(&file);
        }
        let mut ca_pem = None;
        if tls {
            let (ca, cert, key) = make_certs();
            std::fs::write(dir.path().join("server.crt"), cert).unwrap();
            std::fs::write(dir.path().join("server.key"), key).unwrap();
            cmd.arg("--tls-cert")
                .arg(dir.path().join("server.crt"))
                .arg("--tls-key")
                .arg(dir.path().join("server.key"));
            ca_pem = Some(ca);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child, "hako registry serve");
        (Server { child, port, dir }, ca_pem)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run hako with its own auth file and HOME (so no real credentials are read).
pub fn hako(h: &Hako, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .args(args)
        .env("HAKO_AUTH_FILE", h.dir().join("auth.json"))
        .env("HAKO_CERTS_DIR", h.dir().join("certs.d"))
        .env("HOME", h.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn ok(h: &Hako, args: &[&str]) -> String {
    let out = hako(h, args, None);
    assert!(
        out.status.success(),
        "hako {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr)
}

pub fn fails(h: &Hako, args: &[&str]) -> String {
    let out = hako(h, args, None);
    assert!(
        !out.status.success(),
        "hako {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(data))
}

/// An image made by the test: its layers as blobs, config and manifest.
pub struct TestImage {
    pub layers: Vec<(String, Vec<u8>, String)>, // media type, blob, diff id
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    /// The root filesystem the layers stack up to.
    pub expected: PathBuf,
}

impl TestImage {
    pub fn manifest_digest(&self) -> String {
        sha256(&self.manifest)
    }

    pub fn config_digest(&self) -> String {
        sha256(&self.config)
    }

    /// Three layers: the busybox rootfs gzip-compressed, a zstd layer and an
    /// uncompressed one, under `dir`.
    pub fn build(dir: &Path) -> TestImage {
        let l1 = dir.join("l1");
        crate::common::busybox_rootfs(&l1);
        let l2 = dir.join("l2");
        std::fs::create_dir_all(l2.join("opt/z")).unwrap();
        // Compressible and incompressible content.
        std::fs::write(l2.join("opt/z/text"), "hako ".repeat(50_000)).unwrap();
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(l2.join("opt/z/noise.bin"), noise).unwrap();
        let l3 = dir.join("l3");
        std::fs::create_dir_all(l3.join("srv/p")).unwrap();
        std::fs::write(l3.join("srv/p/hello.txt"), "hello from layer 3\n").unwrap();
        std::os::unix::fs::chown(l3.join("srv/p/hello.txt"), Some(1000), Some(1000)).unwrap();
        for d in [&l2, &l3] {
            let s = Command::new("find")
                .arg(d)
                .args(["-exec", "touch", "-h", "-d", "@1700000000", "{}", "+"])
                .status()
                .unwrap();
            assert!(s.success());
        }
        let expected = dir.join("expected");
        std::fs::create_dir_all(&expected).unwrap();
        for l in [&l1, &l2, &l3] {
            let s = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", l.display()))
                .arg(&expected)
                .status()
                .unwrap();
            assert!(s.success());
        }
        let tar = |d: &Path| -> Vec<u8> {
            let out = Command::new("tar")
                .args(["--numeric-owner", "-C"])
                .arg(d)
                .args(["-cf", "-", "."])
                .output()
                .unwrap();
            assert!(out.status.success());
            out.stdout
        };
        let t1 = tar(&l1);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t1).unwrap();
        let b1 = gz.finish().unwrap();
        let t2 = tar(&l2);
        let mut zstd = Command::new("zstd")
            .args(["-q", "-c", "-3"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut zin = zstd.stdin.take().unwrap();
        let t2c = t2.clone();
        let writer = std::thread::spawn(move || zin.write_all(&t2c).unwrap());
        let b2 = zstd.wait_with_output().unwrap().stdout;
        writer.join().unwrap();
        let t3 = tar(&l3);
        let layers = vec![
            (
                "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
                b1,
                sha256(&t1),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd".to_string(),
                b2,
                sha256(&t2),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar".to_string(),
                t3.clone(),
                sha256(&t3),
            ),
        ];
        let config = serde_json::to_vec(&serde_json::json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": host_arch(),
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.2.clone()).collect::<Vec<_>>()},
            "history": [{"created_by": "test"}, {"created_by": "test"}, {"created_by": "test"}]
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": sha256(&config)},
            "layers": layers.iter().map(|(mt, b, _)| serde_json::json!({"mediaType": mt, "size": b.len(), "digest": sha256(b)})).collect::<Vec<_>>()
        }))
        .unwrap();
        TestImage {
            layers,
            config,
            manifest,
            expected,
        }
    }

    /// Write as an OCI image layout with the tag `tag`.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| {
            let d = sha256(data);
            std::fs::write(blobs.join(&d[7..]), data).unwrap();
        };
        for (_, b, _) in &self.layers {
            put(b);
        }
        put(&self.config);
        put(&self.manifest);
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": self.manifest.len(),
                "digest": self.manifest_digest(),
                "annotations": {"org.opencontainers.image.ref.name": tag}
            }]
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What the tiny registry serves at one path: content type and body.
#[derive(Clone)]
pub struct Route {
    pub content_type: String,
    pub body: Arc<Vec<u8>>,
    /// Send the body in 16 KiB pieces with a pause after each while this is set.
    pub slow: Option<Arc<AtomicBool>>,
    /// Answer 503 this many more times before serving.
    pub unavailable: Arc<AtomicU64>,
    /// While set, cut the connection after half the body (once: it clears itself).
    pub cut: Arc<AtomicBool>,
    /// While set, stop sending for 5 s after half the body (once: it clears itself).
    pub stall: Arc<AtomicBool>,
}

/// A minimal HTTP/1.1 registry in the test process: fixed routes, anything else 404.
pub struct TinyRegistry {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Body bytes sent on slow routes so far.
    pub slow_sent: Arc<AtomicU64>,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    seen: Arc<Seen>,
}

/// Counters of what the tiny registry saw.
#[derive(Default)]
pub struct Seen {
    pub ranges: AtomicU64,
    pub unavailable: AtomicU64,
}

impl TinyRegistry {
    pub fn start() -> TinyRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let slow_sent = Arc::new(AtomicU64::new(0));
        let seen: Arc<Seen> = Arc::default();
        let (s, r, sent, seen2) = (
            stop.clone(),
            routes.clone(),
            slow_sent.clone(),
            seen.clone(),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, sent, seen) = (r.clone(), sent.clone(), seen2.clone());
                        std::thread::spawn(move || {
                            let _ = serve(conn, &r, &sent, &seen);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TinyRegistry {
            port,
            stop,
            slow_sent,
            routes,
            seen,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn route(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        slow: Option<Arc<AtomicBool>>,
    ) {
        self.routes.lock().unwrap().insert(
            path.to_string(),
            Route {
                content_type: content_type.to_string(),
                body: Arc::new(body),
                slow,
                unavailable: Arc::default(),
                cut: Arc::default(),
                stall: Arc::default(),
            },
        );
    }

    /// The route at `path` (to make it misbehave).
    pub fn get(&self, path: &str) -> Route {
        self.routes.lock().unwrap()[path].clone()
    }

    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    /// Serve `image` as `repo:tag`, with `layer_bytes` overriding what a layer path returns.
    pub fn serve_image(&self, repo: &str, tag: &str, image: &TestImage) {
        let mt = "application/vnd.oci.image.manifest.v1+json";
        self.route("/v2/", "application/json", b"{}".to_vec(), None);
        self.route(
            &format!("/v2/{repo}/manifests/{tag}"),
            mt,
            image.manifest.clone(),
            None,
        );
        self.route(
            &format!("/v2/{repo}/manifests/{}", image.manifest_digest()),
            mt,
            image.manifest.clone(),
            None,
        );
        self.route(
            &format!("/v2/{repo}/blobs/{}", image.config_digest()),
            "application/octet-stream",
            image.config.clone(),
            None,
        );
        for (_, b, _) in &image.layers {
            self.route(
                &format!("/v2/{repo}/blobs/{}", sha256(b)),
                "application/octet-stream",
                b.clone(),
                None,
            );
        }
    }
}

impl Drop for TinyRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    mut conn: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    slow_sent: &AtomicU64,
    seen: &Seen,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut range_start: Option<usize> = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range_start = v
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse().ok());
            }
        }
    }
    let route = routes.lock().unwrap().get(&path).cloned();
    let Some(route) = route else {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}"#;
        write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        if method != "HEAD" {
            conn.write_all(body)?;
        }
        return Ok(());
    };
    if route
        .unavailable
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        seen.unavailable.fetch_add(1, Ordering::SeqCst);
        write!(
            conn,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    if let Some(start) = range_start.filter(|s| *s < route.body.len()) {
        seen.ranges.fetch_add(1, Ordering::SeqCst);
        let rest = &route.body[start..];
        write!(
            conn,
            "HTTP/1.1 206 Partial Content\r\nContent-Type: {}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            route.content_type,
            rest.len(),
            route.body.len() - 1,
            route.body.len()
        )?;
        return conn.write_all(rest);
    }
    let digest = sha256(&route.body);
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nDocker-Content-Digest: {digest}\r\nConnection: close\r\n\r\n",
        route.content_type,
        route.body.len()
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    if route.cut.swap(false, Ordering::SeqCst) {
        // Half the body, then the connection drops: the client must resume.
        conn.write_all(&route.body[..route.body.len() / 2])?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    if route.stall.swap(false, Ordering::SeqCst) {
        // Half the body, then silence: the client's read timeout must fire.
        conn.write_all(&route.body[..route.body.len() / 2])?;
        std::thread::sleep(Duration::from_secs(5));
        return Ok(());
    }
    match &route.slow {
        Some(flag) => {
            for piece in route.body.chunks(16 << 10) {
                conn.write_all(piece)?;
                if flag.load(Ordering::SeqCst) {
                    slow_sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        None => conn.write_all(&route.body)?,
    }
    Ok(())
}
