//! `hako pull`, `push`, `login`, `logout` against real registries: Debian's
//! docker-registry (plain and with htpasswd auth), `hako registry serve`
//! (bearer tokens), cross-checked with skopeo both ways; plus a registry that
//! serves wrong bytes and one that is killed mid-layer.

mod common;
mod registry_peers;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{busybox_rootfs, describe, skopeo, tar_dir, Hako, Mounted};
use registry_peers::{fails, hako, ok, sha256, Server, TestImage, TinyRegistry};

/// Import a busybox image named `name` into `h`.
fn import_busybox(h: &Hako, name: &str) {
    let rootfs = h.dir().join("bb-rootfs");
    if !rootfs.exists() {
        busybox_rootfs(&rootfs);
    }
    let tarball = h.dir().join("bb.tar");
    tar_dir(&rootfs, &tarball, true);
    ok(h, &["import", &tarball.display().to_string(), name]);
}

fn image_id(h: &Hako, name: &str) -> String {
    ok(h, &["images", "--format", "json"]);
    let out = ok(h, &["image", "inspect", name]);
    let v: serde_json::Value =
        serde_json::from_str(out.lines().collect::<Vec<_>>().join("\n").trim_end())
            .unwrap_or_else(|e| panic!("inspect output is not JSON ({e}): {out}"));
    let v = if v.is_array() { v[0].clone() } else { v };
    v["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no Id in {v}"))
        .to_string()
}

fn line_with<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[test]
fn push_then_pull_through_docker_registry_with_mounts_and_skips() {
    let reg = Server::docker_registry(None);
    let a = Hako::new();
    let name = format!("{}/demo/busybox:1", reg.host());
    import_busybox(&a, &name);
    let out = ok(&a, &["push", &name]);
    let pushed = line_with(&out, "1: digest: ")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    assert_eq!(out.matches(": pushed").count(), 2, "{out}");

    // Again: the registry has every blob.
    let out = ok(&a, &["push", &name]);
    assert_eq!(out.matches(": already exists").count(), 2, "{out}");

    // To another repository of the same registry: blobs are mounted, not uploaded.
    let other = format!("{}/other/copy:2", reg.host());
    let out = ok(&a, &["push", "--dest", &other, &name]);
    assert_eq!(out.matches(": mounted").count(), 2, "{out}");
    assert!(out.contains(&pushed), "{out}");

    let b = Hako::new();
    let out = ok(&b, &["pull", &other]);
    assert_eq!(line_with(&out, "Digest: "), format!("Digest: {pushed}"));
    let id_a = image_id(&a, &name);
    assert_eq!(image_id(&b, &other), id_a);
    let ma = Mounted::new(&a, &name);
    let mb = Mounted::new(&b, &other);
    common::assert_same_tree(&describe(&ma.path), &describe(&mb.path));
    drop((ma, mb));

    // Pulling again is a no-op that still answers with the same image; by digest too.
    let out = ok(&b, &["pull", &other]);
    assert!(out.contains(&id_a), "{out}");
    let by_digest = format!("{}/other/copy@{pushed}", reg.host());
    let out = ok(&b, &["pull", "-q", &by_digest]);
    assert_eq!(out.lines().next().unwrap(), id_a);

    // A missing tag is an error naming it.
    let err = fails(&b, &["pull", &format!("{}/other/copy:nope", reg.host())]);
    assert!(
        err.contains("other/copy:nope") && err.contains("404"),
        "{err}"
    );
}

#[test]
fn chunked_upload_of_a_large_layer() {
    let reg = Server::docker_registry(None);
    let a = Hako::new();
    let name = format!("{}/chunked/img:1", reg.host());
    import_busybox(&a, &name);
    // busybox is ~2 MB: 256 KiB chunks make it a multi-PATCH upload.
    ok(&a, &["push", "--chunk-size", "262144", &name]);
    let b = Hako::new();
    ok(&b, &["pull", &name]);
    assert_eq!(image_id(&a, &name), image_id(&b, &name));
}

#[test]
fn login_logout_against_htpasswd_docker_registry() {
    let reg = Server::docker_registry(Some(("alice", "s3cret")));
    let a = Hako::new();
    let name = format!("{}/private/busybox:1", reg.host());
    import_busybox(&a, &name);

    let err = fails(&a, &["push", &name]);
    assert!(err.contains("hako login"), "{err}");
    let err = String::from_utf8(
        hako(
            &a,
            &["login", "-u", "alice", "--password-stdin", &reg.host()],
            Some("wrong\n"),
        )
        .stderr,
    )
    .unwrap();
    assert!(err.contains("alice"), "{err}");
    assert!(!a.dir().join("auth.json").exists());

    let out = hako(
        &a,
        &["login", "-u", "alice", "--password-stdin", &reg.host()],
        Some("s3cret\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let auth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.dir().join("auth.json")).unwrap()).unwrap();
    assert!(auth["auths"][reg.host()]["auth"].is_string(), "{auth}");

    ok(&a, &["push", &name]);
    ok(&a, &["rmi", &name]);
    ok(&a, &["pull", &name]);

    ok(&a, &["logout", &reg.host()]);
    let err = fails(&a, &["pull", &name]);
    assert!(err.contains("hako login"), "{err}");
    let err = fails(&a, &["logout", &reg.host()]);
    assert!(err.contains("not logged in"), "{err}");

    // Credentials from docker's config file work too.
    let docker = a.dir().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    ok(&a, &["pull", &name]);
}

#[test]
fn hako_registry_with_bearer_tokens() {
    let reg = Server::hako_registry(Some(("bob", "pw")));
    let a = Hako::new();
    let name = format!("{}/team/busybox:v1", reg.host());
    import_busybox(&a, &name);
    let err = fails(&a, &["push", &name]);
    assert!(err.contains("hako login"), "{err}");
    ok(&a, &["login", "-u", "bob", "-p", "pw", &reg.host()]);
    ok(&a, &["push", &name]);
    let out = ok(
        &a,
        &[
            "push",
            "--dest",
            &format!("{}/team/copy:v1", reg.host()),
            &name,
        ],
    );
    assert_eq!(
        out.matches(": mounted").count() + out.matches(": already exists").count(),
        2,
        "{out}"
    );
    let b = Hako::new();
    std::fs::copy(a.dir().join("auth.json"), b.dir().join("auth.json")).unwrap();
    ok(&b, &["pull", &format!("{}/team/copy:v1", reg.host())]);
    assert_eq!(
        image_id(&a, &name),
        image_id(&b, &format!("{}/team/copy:v1", reg.host()))
    );
}

#[test]
fn skopeo_pushes_hako_pulls_gzip_zstd_and_plain_layers() {
    let reg = Server::docker_registry(None);
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::build(work.path());
    let layout = work.path().join("layout");
    image.write_layout(&layout, "1");
    let dest = format!("{}/from/skopeo:1", reg.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{dest}"),
    ]);
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    let digest = inspected["Digest"].as_str().unwrap().to_string();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]);
    // skopeo gzips the uncompressed layer on the way, so its manifest is its own.
    assert_eq!(sha256(raw.trim_end().as_bytes()), digest);
    assert!(raw.contains("tar+zstd"), "{raw}");

    let h = Hako::new();
    let out = ok(&h, &["pull", &dest]);
    assert_eq!(line_with(&out, "Digest: "), format!("Digest: {digest}"));
    assert_eq!(image_id(&h, &dest), image.config_digest());
    let stored_config = std::fs::read(
        h.root()
            .join("blobs/sha256")
            .join(&image.config_digest()[7..]),
    )
    .unwrap();
    assert_eq!(stored_config, image.config);
    let m = Mounted::new(&h, &dest);
    common::assert_same_tree(&describe(&image.expected), &describe(&m.path));
}

#[test]
fn hako_pushes_skopeo_reads_and_copies_back() {
    let reg = Server::docker_registry(None);
    let h = Hako::new();
    let name = format!("{}/to/skopeo:2", reg.host());
    import_busybox(&h, &name);
    let out = ok(&h, &["push", &name]);
    let pushed = line_with(&out, "2: digest: ")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .unwrap();
    assert_eq!(inspected["Digest"].as_str().unwrap(), pushed);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]);
    assert_eq!(sha256(raw.trim_end().as_bytes()), pushed);

    let work = tempfile::tempdir().unwrap();
    let oci = work.path().join("copy");
    // (skopeo would gzip the uncompressed layer of an imported image without --preserve-digests.)
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:2", oci.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"].as_str().unwrap(), pushed);
    // And back through skopeo into another repository, which hako pulls.
    let back = format!("{}/back/again:3", reg.host());
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:2", oci.display()),
        &format!("docker://{back}"),
    ]);
    let g = Hako::new();
    let out = ok(&g, &["pull", &back]);
    assert_eq!(line_with(&out, "Digest: "), format!("Digest: {pushed}"));
}

#[test]
fn wrong_layer_bytes_fail_clearly_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::build(work.path());
    let reg = TinyRegistry::start();
    reg.serve_image("demo", "1", &image);
    // The zstd layer's path serves the gzip layer's (well-formed) bytes instead.
    let wrong = image.layers[0].1.clone();
    let layer = sha256(&image.layers[1].1);
    reg.route(
        &format!("/v2/demo/blobs/{layer}"),
        "application/octet-stream",
        wrong.clone(),
        None,
    );
    let h = Hako::new();
    let err = fails(&h, &["pull", &format!("{}/demo:1", reg.host())]);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let err = errors[0];
    assert!(
        err.contains(&format!("pulling {}/demo:1", reg.host())),
        "{err}"
    );
    assert!(err.contains(&format!("layer {layer}")), "{err}");
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(err.contains(&sha256(&wrong)), "{err}");
    for sub in ["blobs/sha256", "snapshots", "ingest"] {
        assert!(
            dir_is_empty(&h.root().join(sub)),
            "{sub} is not empty after a failed pull"
        );
    }
    assert!(!ok(&h, &["images", "-q"])
        .lines()
        .any(|l| !l.trim().is_empty()));
}

#[test]
fn pull_killed_mid_layer_restarts_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::build(work.path());
    let reg = TinyRegistry::start();
    reg.serve_image("slow", "1", &image);
    let slow = Arc::new(AtomicBool::new(true));
    // Every layer is slow while the flag is up.
    for (_, b, _) in &image.layers {
        reg.route(
            &format!("/v2/slow/blobs/{}", sha256(b)),
            "application/octet-stream",
            b.clone(),
            Some(slow.clone()),
        );
    }
    let h = Hako::new();
    let name = format!("{}/slow:1", reg.host());
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .args(["pull", &name])
        .env("HOME", h.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reg.slow_sent.load(Ordering::SeqCst) < 64 << 10 {
        assert!(Instant::now() < deadline, "the pull never got into a layer");
        assert!(child.try_wait().unwrap().is_none(), "the pull ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Killed mid-layer: no image, and the big layer's blob is not under its name.
    assert!(!ok(&h, &["images", "-q"])
        .lines()
        .any(|l| !l.trim().is_empty()));
    let big = sha256(&image.layers[0].1);
    assert!(!h.root().join("blobs/sha256").join(&big[7..]).exists());

    slow.store(false, Ordering::SeqCst);
    ok(&h, &["pull", &name]);
    assert_eq!(image_id(&h, &name), image.config_digest());
    {
        let m = Mounted::new(&h, &name);
        common::assert_same_tree(&describe(&image.expected), &describe(&m.path));
    }
    // Garbage collection clears what the killed pull left in temporary names.
    ok(&h, &["image", "prune"]);
    assert!(dir_is_empty(&h.root().join("ingest")));
    let tmp_snapshots = std::fs::read_dir(h.root().join("snapshots"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("tmp-")
        })
        .count();
    assert_eq!(tmp_snapshots, 0);
    assert_eq!(image_id(&h, &name), image.config_digest());
}

#[test]
fn broken_downloads_resume_and_unavailable_registries_are_retried() {
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::build(work.path());
    let reg = TinyRegistry::start();
    reg.serve_image("flaky", "1", &image);
    let big = format!("/v2/flaky/blobs/{}", sha256(&image.layers[0].1));
    // The big layer's connection drops halfway; the manifest answers 503 twice.
    reg.get(&big).cut.store(true, Ordering::SeqCst);
    reg.get("/v2/flaky/manifests/1")
        .unavailable
        .store(2, Ordering::SeqCst);
    let ranges = reg.seen().ranges.load(Ordering::SeqCst);
    let unavailable = reg.seen().unavailable.load(Ordering::SeqCst);
    let h = Hako::new();
    let name = format!("{}/flaky:1", reg.host());
    ok(&h, &["pull", &name]);
    assert!(
        reg.seen().ranges.load(Ordering::SeqCst) > ranges,
        "no Range request resumed the layer"
    );
    assert!(reg.seen().unavailable.load(Ordering::SeqCst) >= unavailable + 2);
    assert_eq!(image_id(&h, &name), image.config_digest());
    let m = Mounted::new(&h, &name);
    common::assert_same_tree(&describe(&image.expected), &describe(&m.path));
}

#[test]
fn a_stalled_download_times_out_and_resumes() {
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::build(work.path());
    let reg = TinyRegistry::start();
    reg.serve_image("stall", "1", &image);
    let big = format!("/v2/stall/blobs/{}", sha256(&image.layers[0].1));
    reg.get(&big).stall.store(true, Ordering::SeqCst);
    let ranges = reg.seen().ranges.load(Ordering::SeqCst);
    let h = Hako::new();
    let name = format!("{}/stall:1", reg.host());
    ok(&h, &["pull", "--read-timeout", "1", &name]);
    assert!(
        reg.seen().ranges.load(Ordering::SeqCst) > ranges,
        "the stalled layer was not resumed"
    );
    assert_eq!(image_id(&h, &name), image.config_digest());
}

#[test]
fn platform_selection_from_an_index() {
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::build(work.path());
    let reg = TinyRegistry::start();
    reg.serve_image("multi", "host-only", &image);
    // A second platform: the same layers under a config naming another architecture.
    let other_arch = if registry_peers::host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["architecture"] = other_arch.into();
    let other_config = serde_json::to_vec(&config).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["config"]["digest"] = sha256(&other_config).into();
    manifest["config"]["size"] = other_config.len().into();
    let other_manifest = serde_json::to_vec(&manifest).unwrap();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    reg.route(
        &format!("/v2/multi/blobs/{}", sha256(&other_config)),
        "application/octet-stream",
        other_config.clone(),
        None,
    );
    reg.route(
        &format!("/v2/multi/manifests/{}", sha256(&other_manifest)),
        mt,
        other_manifest.clone(),
        None,
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "size": other_manifest.len(), "digest": sha256(&other_manifest),
             "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": mt, "size": image.manifest.len(), "digest": image.manifest_digest(),
             "platform": {"os": "linux", "architecture": registry_peers::host_arch()}}
        ]
    }))
    .unwrap();
    reg.route(
        "/v2/multi/manifests/1",
        "application/vnd.oci.image.index.v1+json",
        index.clone(),
        None,
    );
    let name = format!("{}/multi:1", reg.host());

    let h = Hako::new();
    let out = ok(&h, &["pull", &name]);
    assert_eq!(
        line_with(&out, "Digest: "),
        format!("Digest: {}", sha256(&index))
    );
    assert_eq!(image_id(&h, &name), image.config_digest());
    assert!(!h
        .root()
        .join("blobs/sha256")
        .join(&sha256(&other_manifest)[7..])
        .exists());

    let h = Hako::new();
    ok(
        &h,
        &["pull", "--platform", &format!("linux/{other_arch}"), &name],
    );
    assert_eq!(image_id(&h, &name), sha256(&other_config));

    let h = Hako::new();
    let out = ok(&h, &["pull", "--all-platforms", &name]);
    assert!(out.contains("Other platforms stored: 1"), "{out}");
    assert_eq!(image_id(&h, &name), image.config_digest());
    for blob in [&other_manifest, &other_config] {
        assert!(h
            .root()
            .join("blobs/sha256")
            .join(&sha256(blob)[7..])
            .exists());
    }
    // The other platform's content outlives garbage collection with the image.
    ok(&h, &["image", "prune"]);
    assert!(h
        .root()
        .join("blobs/sha256")
        .join(&sha256(&other_config)[7..])
        .exists());

    let err = fails(&Hako::new(), &["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("linux/s390x") && err.contains(&format!("linux/{other_arch}")),
        "{err}"
    );
}

#[test]
fn tls_registry_with_a_ca_from_certs_d() {
    let (reg, ca) = Server::hako_registry_tls();
    let a = Hako::new();
    let name = format!("{}/tls/busybox:1", reg.host());
    import_busybox(&a, &name);
    // No certificate for it: loopback means plain HTTP, which a TLS server refuses.
    fails(&a, &["push", &name]);
    // A certificate of another CA: TLS is used, and the server's certificate refused.
    let host_dir = a.dir().join("certs.d").join(reg.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("other.crt"), registry_peers::make_certs().0).unwrap();
    let err = fails(&a, &["push", &name]);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The registry's CA: push and pull over TLS.
    std::fs::write(host_dir.join("other.crt"), ca).unwrap();
    ok(&a, &["push", &name]);
    ok(&a, &["rmi", &name]);
    ok(&a, &["pull", &name]);
    assert!(ok(&a, &["images"]).contains("tls/busybox"));
}

/// Files named `data` under `dir` (upload sessions of a registry) with bytes in them.
fn uploads_with_data(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            uploads_with_data(&p)
        } else {
            p.file_name().is_some_and(|n| n == "data")
                && p.to_string_lossy().contains("/uploads/")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        }
    })
}

#[test]
fn push_to_a_registry_killed_mid_upload_fails_in_one_line() {
    let reg = Server::hako_registry(None);
    let h = Hako::new();
    // One big incompressible layer, so the upload is surely under way when the
    // registry dies.
    let rootfs = h.dir().join("big-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut data = vec![0u8; 96 << 20];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(rootfs.join("big"), &data).unwrap();
    drop(data);
    let tarball = h.dir().join("big.tar");
    tar_dir(&rootfs, &tarball, false);
    let name = format!("{}/big:1", reg.host());
    ok(&h, &["import", &tarball.display().to_string(), &name]);

    let child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .args(["push", &name])
        .env("HOME", h.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !uploads_with_data(reg.dir.path()) {
        assert!(
            Instant::now() < deadline,
            "the push never started uploading"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Freeze it first so it dies mid-upload, not just after.
    let pid = nix::unistd::Pid::from_raw(reg.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An error, not a death by SIGPIPE (exit 141 with nothing said).
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&name), "{stderr}");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let h = Hako::new();
    import_busybox(&h, "localhost/quiet:1");
    // A pipe nobody reads any more: the first write meets EPIPE.
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .args(["images"])
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    // As `ls | true` would: ended by SIGPIPE, nothing on stderr (no panic).
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc_sigpipe()),
        "{:?}",
        out.status
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn libc_sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}

#[test]
fn a_manifest_with_a_wrong_layer_size_is_refused_even_when_the_blob_is_here() {
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::build(work.path());
    let reg = TinyRegistry::start();
    reg.serve_image("good", "1", &image);
    reg.serve_image("bad", "1", &image);
    // The same config and layers; the first layer's descriptor announces one byte more.
    let mut m: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    let size = m["layers"][0]["size"].as_u64().unwrap();
    m["layers"][0]["size"] = serde_json::Value::from(size + 1);
    let bad = serde_json::to_vec(&m).unwrap();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    reg.route("/v2/bad/manifests/1", mt, bad.clone(), None);
    reg.route(
        &format!("/v2/bad/manifests/{}", sha256(&bad)),
        mt,
        bad,
        None,
    );

    let h = Hako::new();
    let good = format!("{}/good:1", reg.host());
    ok(&h, &["pull", &good]);
    // Every blob is already here: only the descriptor's size is wrong.
    let err = fails(&h, &["pull", &format!("{}/bad:1", reg.host())]);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("size mismatch"), "{err}");
    let names = ok(&h, &["images", "--format", "json"]);
    assert!(!names.contains("bad"), "{names}");
    assert_eq!(image_id(&h, &good), image.config_digest());
}

#[test]
fn pull_all_tags_fetches_every_tag_of_the_repository() {
    let reg = Server::docker_registry(None);
    let a = Hako::new();
    let repo = format!("{}/multi/busybox", reg.host());
    import_busybox(&a, &format!("{repo}:1"));
    for t in ["2", "latest"] {
        ok(&a, &["tag", &format!("{repo}:1"), &format!("{repo}:{t}")]);
    }
    for t in ["1", "2", "latest"] {
        ok(&a, &["push", "-q", &format!("{repo}:{t}")]);
    }
    // Another repository's tags stay out.
    ok(
        &a,
        &[
            "tag",
            &format!("{repo}:1"),
            &format!("{}/other/x:9", reg.host()),
        ],
    );
    ok(&a, &["push", "-q", &format!("{}/other/x:9", reg.host())]);

    let b = Hako::new();
    let out = ok(&b, &["pull", "-a", &repo]);
    for t in ["1", "2", "latest"] {
        assert!(out.contains(&format!("{t}: Digest: sha256:")), "{out}");
        assert_eq!(
            image_id(&b, &format!("{repo}:{t}")),
            image_id(&a, &format!("{repo}:1"))
        );
    }
    assert!(fails(
        &b,
        &["image", "inspect", &format!("{}/other/x:9", reg.host())]
    )
    .contains("x:9"));
    let err = fails(&b, &["pull", "--all-tags", &format!("{repo}:1")]);
    assert!(err.contains("can not be used with --all-tags"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
