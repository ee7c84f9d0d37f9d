//! Interoperability with real peers: skopeo (and podman) push to and pull from hako's
//! registry, plain, with basic auth, with bearer tokens and over TLS.

mod common;

use common::{args, layer_tar_gz, layout_manifest_digest, run, write_oci_layout, TestRegistry};
use hako_distribution::config::{Config, TokenSettings};

fn skopeo_available() -> bool {
    std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok()
}

/// A small multi-layer OCI image in a temp layout; returns (dir, manifest digest).
fn sample_image(tag: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new()
        .prefix("hako-peer-img")
        .tempdir()
        .unwrap();
    let layers = vec![
        layer_tar_gz("hello.txt", b"hello from hako\n"),
        layer_tar_gz(
            "data.bin",
            &(0..200_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
        ),
    ];
    let d = write_oci_layout(dir.path(), tag, &layers);
    (dir, d)
}

/// Push the sample to `dest` and pull it back into a fresh layout, checking digests.
async fn roundtrip(dest: &str, push_flags: &[&str], pull_flags: &[&str]) {
    let (src, digest) = sample_image("v1");
    let mut a = args(&["--insecure-policy", "copy"]);
    a.extend(args(push_flags));
    a.push(format!("oci:{}:v1", src.path().display()));
    a.push(format!("docker://{dest}"));
    let (ok, out) = run("skopeo", a).await;
    assert!(ok, "push failed:\n{out}");

    let back = tempfile::Builder::new()
        .prefix("hako-peer-back")
        .tempdir()
        .unwrap();
    let mut a = args(&["--insecure-policy", "copy"]);
    a.extend(args(pull_flags));
    a.push(format!("docker://{dest}"));
    a.push(format!("oci:{}:v1", back.path().display()));
    let (ok, out) = run("skopeo", a).await;
    assert!(ok, "pull failed:\n{out}");
    assert_eq!(
        layout_manifest_digest(back.path()),
        digest,
        "manifest digest changed on the round trip"
    );
    // Every blob came back byte-identical (the layout names blobs by their digest).
    for entry in std::fs::read_dir(back.path().join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            common::sha256(&data),
            format!("sha256:{}", entry.file_name().to_string_lossy())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_push_and_pull() {
    assert!(
        skopeo_available(),
        "skopeo is required (Debian package skopeo)"
    );
    let reg = TestRegistry::start().await;
    let dest = format!("{}/peers/img:v1", reg.host());
    roundtrip(
        &dest,
        &["--dest-tls-verify=false"],
        &["--src-tls-verify=false"],
    )
    .await;
    // skopeo sees the tag through the tags API.
    let (ok, out) = run(
        "skopeo",
        args(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/peers/img", reg.host()),
        ]),
    )
    .await;
    assert!(ok && out.contains("\"v1\""), "{out}");
    // A second push of the same image only mounts/skips existing blobs and still succeeds.
    roundtrip(
        &dest,
        &["--dest-tls-verify=false"],
        &["--src-tls-verify=false"],
    )
    .await;
    // Copy between repositories inside hako (exercises cross-repository mounts).
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{dest}"),
            &format!("docker://{}/peers/copy:v1", reg.host()),
        ]),
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = run(
        "skopeo",
        args(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{}/peers/copy:v1", reg.host()),
        ]),
    )
    .await;
    assert!(
        ok && out.contains("application/vnd.oci.image.manifest.v1+json"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_with_basic_auth() {
    assert!(skopeo_available(), "skopeo is required");
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        htpasswd: Some(common::write_htpasswd(dir.path(), "alice", "wonderland")),
        ..Config::default()
    };
    let reg = TestRegistry::start_with(config).await;
    let dest = format!("{}/private/img:v1", reg.host());
    // Without credentials the push is refused.
    let (src, _) = sample_image("v1");
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--dest-no-creds",
            &format!("oci:{}:v1", src.path().display()),
            &format!("docker://{dest}"),
        ]),
    )
    .await;
    assert!(!ok, "anonymous push was accepted:\n{out}");
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:wrong",
            &format!("oci:{}:v1", src.path().display()),
            &format!("docker://{dest}"),
        ]),
    )
    .await;
    assert!(!ok, "push with a wrong password was accepted:\n{out}");
    roundtrip(
        &dest,
        &[
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:wonderland",
        ],
        &["--src-tls-verify=false", "--src-creds", "alice:wonderland"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_with_bearer_tokens() {
    assert!(skopeo_available(), "skopeo is required");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, [42u8; 48]).unwrap();
    let config = Config {
        htpasswd: Some(common::write_htpasswd(dir.path(), "bob", "builder")),
        anonymous_pull: true,
        token: Some(TokenSettings {
            secret_file: key,
            ttl_secs: 300,
            service: "hako-test".into(),
        }),
        ..Config::default()
    };
    let reg = TestRegistry::start_with(config).await;
    let dest = format!("{}/tok/img:v1", reg.host());
    // Push needs credentials; pull works anonymously because anonymous_pull is on.
    roundtrip(
        &dest,
        &["--dest-tls-verify=false", "--dest-creds", "bob:builder"],
        &["--src-tls-verify=false", "--src-no-creds"],
    )
    .await;
    let (src, _) = sample_image("v1");
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--dest-no-creds",
            &format!("oci:{}:v1", src.path().display()),
            &format!("docker://{}/tok/anon:v1", reg.host()),
        ]),
    )
    .await;
    assert!(!ok, "anonymous push was accepted:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_over_tls_with_verified_certificate() {
    assert!(skopeo_available(), "skopeo is required");
    let dir = tempfile::tempdir().unwrap();
    let certs = common::make_certs(dir.path());
    let config = Config {
        tls_cert: Some(certs.cert.clone()),
        tls_key: Some(certs.key.clone()),
        htpasswd: Some(common::write_htpasswd(dir.path(), "carol", "secret")),
        ..Config::default()
    };
    let reg = TestRegistry::start_with(config).await;
    let cert_dir = certs.ca_dir.display().to_string();
    let dest = format!("{}/tls/img:v1", reg.host());
    roundtrip(
        &dest,
        &["--dest-cert-dir", &cert_dir, "--dest-creds", "carol:secret"],
        &["--src-cert-dir", &cert_dir, "--src-creds", "carol:secret"],
    )
    .await;
    // Without trusting the CA, verification fails: TLS is real.
    let (ok, out) = run(
        "skopeo",
        args(&[
            "inspect",
            "--creds",
            "carol:secret",
            &format!("docker://{dest}"),
        ]),
    )
    .await;
    assert!(!ok, "untrusted certificate was accepted:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pull_and_push() {
    if std::process::Command::new("podman")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("podman is required (Debian package podman)");
    }
    let reg = TestRegistry::start().await;
    let (src, digest) = sample_image("v1");
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.path().display()),
            &format!("docker://{}/pod/img:v1", reg.host()),
        ]),
    )
    .await;
    assert!(ok, "{out}");
    let proot = tempfile::Builder::new()
        .prefix("hako-podman")
        .tempdir()
        .unwrap();
    let podman = |extra: &[&str]| {
        let mut a = args(&[
            "--root",
            &proot.path().join("root").display().to_string(),
            "--runroot",
            &proot.path().join("runroot").display().to_string(),
            "--storage-driver",
            "vfs",
        ]);
        a.extend(args(extra));
        a
    };
    let image = format!("{}/pod/img:v1", reg.host());
    let (ok, out) = run("podman", podman(&["pull", "--tls-verify=false", &image])).await;
    assert!(ok, "{out}");
    let pushed = format!("{}/pod/pushed:v2", reg.host());
    let (ok, out) = run("podman", podman(&["tag", &image, &pushed])).await;
    assert!(ok, "{out}");
    let (ok, out) = run("podman", podman(&["push", "--tls-verify=false", &pushed])).await;
    assert!(ok, "{out}");
    // The pushed image is complete in hako: skopeo can copy it out again.
    let back = tempfile::tempdir().unwrap();
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{pushed}"),
            &format!("oci:{}:v2", back.path().display()),
        ]),
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = run("podman", podman(&["rmi", "-a", "-f"])).await;
    assert!(ok, "{out}");
    let _ = digest;
}

/// Debian's docker-registry (distribution 2.8) on a free loopback port with a temp root;
/// killed and removed on drop.
struct DockerRegistry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    async fn start() -> DockerRegistry {
        let dir = tempfile::Builder::new()
            .prefix("hako-dr")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("root").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry is required (Debian package docker-registry)");
        let dr = DockerRegistry {
            child,
            port,
            _dir: dir,
        };
        let url = format!("http://127.0.0.1:{port}/v2/");
        for _ in 0..100 {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return dr;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("docker-registry did not come up on port {port}");
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn manifest_digest(host: &str, repo: &str, tag: &str) -> String {
    let r = reqwest::Client::new()
        .head(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "HEAD {host}/{repo}:{tag}: {}",
        r.status()
    );
    r.headers()["Docker-Content-Digest"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_to_and_from_docker_registry() {
    assert!(skopeo_available(), "skopeo is required");
    let dr = DockerRegistry::start().await;
    let reg = TestRegistry::start().await;
    let dr_host = format!("127.0.0.1:{}", dr.port);
    let (src, digest) = sample_image("v1");
    let copy = |from: String, to: String| {
        run(
            "skopeo",
            args(&[
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &from,
                &to,
            ]),
        )
    };
    let (ok, out) = copy(
        format!("oci:{}:v1", src.path().display()),
        format!("docker://{dr_host}/origin/img:v1"),
    )
    .await;
    assert!(ok, "{out}");
    // docker-registry → hako → docker-registry, byte for byte.
    let (ok, out) = copy(
        format!("docker://{dr_host}/origin/img:v1"),
        format!("docker://{}/mirror/img:v1", reg.host()),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(
        manifest_digest(&reg.host(), "mirror/img", "v1").await,
        digest
    );
    let (ok, out) = copy(
        format!("docker://{}/mirror/img:v1", reg.host()),
        format!("docker://{dr_host}/back/img:v1"),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(manifest_digest(&dr_host, "back/img", "v1").await, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_with_basic_auth_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::make_certs(dir.path());
    let config = Config {
        tls_cert: Some(certs.cert.clone()),
        tls_key: Some(certs.key.clone()),
        htpasswd: Some(common::write_htpasswd(dir.path(), "pat", "podpass")),
        ..Config::default()
    };
    let reg = TestRegistry::start_with(config).await;
    let cert_dir = certs.ca_dir.display().to_string();
    let (src, digest) = sample_image("v1");
    let image = format!("{}/podtls/img:v1", reg.host());
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--dest-cert-dir",
            &cert_dir,
            "--dest-creds",
            "pat:podpass",
            &format!("oci:{}:v1", src.path().display()),
            &format!("docker://{image}"),
        ]),
    )
    .await;
    assert!(ok, "{out}");
    let proot = tempfile::Builder::new()
        .prefix("hako-podman-tls")
        .tempdir()
        .unwrap();
    let podman = |extra: &[&str]| {
        let mut a = args(&[
            "--root",
            &proot.path().join("root").display().to_string(),
            "--runroot",
            &proot.path().join("runroot").display().to_string(),
            "--storage-driver",
            "vfs",
        ]);
        a.extend(args(extra));
        a
    };
    // Wrong password: refused.
    let (ok, out) = run(
        "podman",
        podman(&[
            "pull",
            "--cert-dir",
            &cert_dir,
            "--creds",
            "pat:nope",
            &image,
        ]),
    )
    .await;
    assert!(!ok, "pull with a wrong password succeeded:\n{out}");
    let (ok, out) = run(
        "podman",
        podman(&[
            "pull",
            "--cert-dir",
            &cert_dir,
            "--creds",
            "pat:podpass",
            &image,
        ]),
    )
    .await;
    assert!(ok, "{out}");
    let pushed = format!("{}/podtls/pushed:v2", reg.host());
    let (ok, out) = run("podman", podman(&["tag", &image, &pushed])).await;
    assert!(ok, "{out}");
    let (ok, out) = run(
        "podman",
        podman(&[
            "push",
            "--cert-dir",
            &cert_dir,
            "--creds",
            "pat:podpass",
            &pushed,
        ]),
    )
    .await;
    assert!(ok, "{out}");
    // The image podman pulled over TLS is the one pushed: same manifest digest.
    let (ok, out) = run(
        "podman",
        podman(&["image", "inspect", "--format", "{{.Digest}}", &image]),
    )
    .await;
    assert!(ok && out.contains(&digest), "{out}");
    let (ok, out) = run("podman", podman(&["rmi", "-a", "-f"])).await;
    assert!(ok, "{out}");
}

const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// curl over HTTP/2 (`proto` flags select h2c prior knowledge or TLS+ALPN):
/// returns (HTTP version, status, Location header).
async fn curl_h2(proto: &[&str], method: &str, url: &str, extra: &[&str]) -> (String, u16, String) {
    let mut a = args(&["-s", "-o", "/dev/null", "-D", "-", "-X", method]);
    a.extend(args(proto));
    a.extend(args(extra));
    a.extend(args(&[
        "-w",
        "\nRESULT %{http_version} %{http_code}\n",
        url,
    ]));
    let (ok, out) = run("curl", a).await;
    assert!(ok, "curl failed:\n{out}");
    // The last one: the echoed command line holds the format too.
    let result = out
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result line:\n{out}"));
    let (version, code) = result.split_once(' ').unwrap();
    let location = out
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (version.to_string(), code.trim().parse().unwrap(), location)
}

/// The three empty-body uploads over HTTP/2: monolithic POST of the empty
/// blob, an empty PATCH then a closing PUT, and a PUT with Content-Length 0.
async fn empty_uploads(proto: &[&str], base: &str, repo: &str) {
    let empty = ["--data-binary", ""];
    let (v, code, _) = curl_h2(
        proto,
        "POST",
        &format!("{base}/v2/{repo}/blobs/uploads/?digest={EMPTY}"),
        &empty,
    )
    .await;
    assert_eq!((v.as_str(), code), ("2", 201), "monolithic empty POST");

    let (_, code, loc) = curl_h2(
        proto,
        "POST",
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        &empty,
    )
    .await;
    assert_eq!(code, 202);
    let (v, code, _) = curl_h2(
        proto,
        "PATCH",
        &format!("{base}{loc}"),
        &[
            "--data-binary",
            "",
            "-H",
            "Content-Type: application/octet-stream",
        ],
    )
    .await;
    assert_eq!((v.as_str(), code), ("2", 202), "empty PATCH");
    let (_, code, _) = curl_h2(proto, "PUT", &format!("{base}{loc}?digest={EMPTY}"), &empty).await;
    assert_eq!(code, 201, "closing PUT after an empty PATCH");

    let (_, code, loc) = curl_h2(
        proto,
        "POST",
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        &empty,
    )
    .await;
    assert_eq!(code, 202);
    let (v, code, _) = curl_h2(
        proto,
        "PUT",
        &format!("{base}{loc}?digest={EMPTY}"),
        &["-H", "Content-Length: 0"],
    )
    .await;
    assert_eq!((v.as_str(), code), ("2", 201), "PUT with Content-Length 0");

    let (_, code, _) = curl_h2(
        proto,
        "HEAD",
        &format!("{base}/v2/{repo}/blobs/{EMPTY}"),
        &["-I"],
    )
    .await;
    assert_eq!(code, 200, "the empty blob is stored");
}

/// An OCI artifact whose only layer is the empty blob (an image's layer
/// would be recompressed by skopeo on the way): skopeo pushes it as is.
fn empty_blob_artifact() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hako-peer-empty")
        .tempdir()
        .unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = common::sha256(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    put(b"");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.hako.test",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": put(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": EMPTY, "size": 0}],
    }))
    .unwrap();
    let md = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_uploads_over_h2c() {
    let reg = TestRegistry::start().await;
    empty_uploads(
        &["--http2-prior-knowledge"],
        &format!("http://{}", reg.host()),
        "empty/h2c",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_uploads_over_tls_http2_with_curl_and_skopeo() {
    assert!(skopeo_available(), "skopeo is required");
    let dir = tempfile::tempdir().unwrap();
    let certs = common::make_certs(dir.path());
    let config = Config {
        tls_cert: Some(certs.cert.clone()),
        tls_key: Some(certs.key.clone()),
        ..Config::default()
    };
    let reg = TestRegistry::start_with(config).await;
    let ca = certs.ca_dir.join("ca.crt").display().to_string();
    empty_uploads(
        &["--http2", "--cacert", &ca],
        &format!("https://{}", reg.host()),
        "empty/tls",
    )
    .await;

    // skopeo (Go's HTTP/2 client over TLS) pushes and pulls an empty blob.
    let src = empty_blob_artifact();
    let cert_dir = certs.ca_dir.display().to_string();
    let dest = format!("docker://{}/empty/skopeo:v1", reg.host());
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--dest-cert-dir",
            &cert_dir,
            &format!("oci:{}:v1", src.path().display()),
            &dest,
        ]),
    )
    .await;
    assert!(ok, "push failed:\n{out}");
    let back = tempfile::tempdir().unwrap();
    let (ok, out) = run(
        "skopeo",
        args(&[
            "--insecure-policy",
            "copy",
            "--src-cert-dir",
            &cert_dir,
            &dest,
            &format!("oci:{}:v1", back.path().display()),
        ]),
    )
    .await;
    assert!(ok, "pull failed:\n{out}");
    let blob = back
        .path()
        .join("blobs/sha256")
        .join(EMPTY.trim_start_matches("sha256:"));
    assert_eq!(std::fs::metadata(blob).unwrap().len(), 0);
}
