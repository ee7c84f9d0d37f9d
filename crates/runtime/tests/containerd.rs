//! Interop: Debian's containerd 1.6 with its runc shim (io.containerd.runc.v2)
//! pointed at hako-runtime through the runtime option `BinaryName`, driven the
//! way kubelet drives it: over CRI (the k8s-cri client), with a pod sandbox
//! run, a container created, started, exec'd, stopped and removed, and the pod
//! stopped and removed.
//!
//! Each test starts its own containerd (temp root, state, socket and runtime
//! root; host network, so no CNI) and imports a busybox image built from
//! Debian's busybox-static as a docker archive with `ctr images import`.
//! Everything is torn down even when the test fails: containerd and its shims
//! are killed, containers deleted through hako-runtime, mounts and cgroups
//! removed.
//!
//! Run as root: `cargo test -p hako-runtime --test containerd`.

mod common;
use common::{kill_processes_mentioning, unique_id, unmount_under, Bundle, RUNTIME};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

const IMAGE: &str = "hako.test/busybox:latest";

/// Bounds a call that could hang (the defect this file guards against) so a
/// failure reports instead of blocking the suite; nothing here measures time.
const HANG: Duration = Duration::from_secs(120);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A containerd of this test's own.
struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The pods' cgroup parent, removed on drop.
    cgroup_parent: String,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("hako-containerd-")
            .tempdir()
            .expect("creating the containerd directory");
        let d = dir.path().to_path_buf();
        for sub in ["cni", "logs"] {
            std::fs::create_dir_all(d.join(sub)).expect("creating containerd dirs");
        }
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  # No CAP_SYS_RESOURCE here: nothing may get an oom_score_adj below ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "hako"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hako.options]
        BinaryName = "{RUNTIME}"
        Root = "{d}/hako"
"#,
            d = d.display()
        );
        std::fs::write(d.join("config.toml"), config).expect("writing config.toml");
        let log = std::fs::File::create(d.join("containerd.log")).expect("creating the log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup of the log"))
            .stderr(log)
            .spawn()
            .expect("starting containerd (install Debian's containerd)");
        Containerd {
            dir,
            child: Some(child),
            cgroup_parent: format!("/{}", unique_id("hako-ctd")),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn socket(&self) -> PathBuf {
        self.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd, in the namespace CRI uses.
    fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr");
        assert!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// A docker archive of a busybox image (one layer: the test bundle's
    /// rootfs), imported under [`IMAGE`].
    fn import_busybox(&self) {
        use sha2::Digest;
        let work = self.path().join("image");
        std::fs::create_dir_all(&work).expect("creating the image dir");
        let bundle = Bundle::new();
        let layer = work.join("layer.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(bundle.rootfs())
            .arg("-cf")
            .arg(&layer)
            .arg(".")
            .output()
            .expect("running tar");
        assert!(out.status.success(), "tar: {}", text(&out.stderr));
        let digest = sha2::Sha256::digest(std::fs::read(&layer).expect("reading the layer"));
        let diff_id: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sleep", "1000000"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]}
        });
        std::fs::write(work.join("config.json"), config.to_string()).expect("image config");
        let manifest = serde_json::json!([
            {"Config": "config.json", "RepoTags": [IMAGE], "Layers": ["layer.tar"]}
        ]);
        std::fs::write(work.join("manifest.json"), manifest.to_string()).expect("manifest");
        let archive = self.path().join("busybox.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&work)
            .arg("-cf")
            .arg(&archive)
            .args(["manifest.json", "config.json", "layer.tar"])
            .output()
            .expect("running tar");
        assert!(out.status.success(), "tar: {}", text(&out.stderr));
        self.ctr(&["images", "import", archive.to_str().unwrap()]);
    }

    /// A CRI client, once containerd answers (polled: it starts in the
    /// background; the bound only reports a containerd that never comes up).
    async fn client(&self) -> RuntimeServiceClient<Channel> {
        let deadline = std::time::Instant::now() + HANG;
        loop {
            if let Ok(mut c) = connect(&self.socket()).await {
                let req = VersionRequest {
                    version: "v1".into(),
                };
                if c.version(req).await.is_ok() {
                    return c;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "containerd never answered CRI; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pod's sandbox config: host network (no CNI), the pod's own pid
    /// and ipc namespaces, and this test's cgroup parent.
    fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: unique_id("uid"),
                namespace: "hako-test".into(),
                attempt: 0,
            }),
            // With the host's network the pod has the host's uts namespace,
            // where a hostname cannot be set (runc refuses it too).
            hostname: String::new(),
            log_directory: self.path().join("logs").to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The shims (their command lines name the socket) and anything they run.
        kill_processes_mentioning(self.path());
        // Whatever hako-runtime still has: the shim's runtime root is
        // Root/<namespace>.
        for ns in std::fs::read_dir(self.path().join("hako"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                let _ = Command::new(RUNTIME)
                    .arg("--root")
                    .arg(ns.path())
                    .args(["delete", "--force"])
                    .arg(c.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        unmount_under(self.path());
        remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// Removes a cgroup directory and its children in every hierarchy (v1 and v2).
fn remove_cgroup_tree(path: &str) {
    fn rmdir_deep(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_deep(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let rel = path.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.to_path_buf()];
    roots.extend(
        std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for root in roots {
        let dir = root.join(rel);
        if dir.is_dir() {
            rmdir_deep(&dir);
        }
    }
}

async fn connect(socket: &Path) -> Result<RuntimeServiceClient<Channel>, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(RuntimeServiceClient::new(channel))
}

/// Awaits a CRI call, failing the test (with containerd's log) if it errors or
/// does not return within [`HANG`].
async fn call<T>(
    ctd: &Containerd,
    what: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    match tokio::time::timeout(HANG, fut).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => panic!("{what}: {status}\ncontainerd log:\n{}", ctd.log()),
        Err(_) => panic!("{what}: no answer (hung)\ncontainerd log:\n{}", ctd.log()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn pod_lifecycle_through_containerd_cri() {
    let ctd = Containerd::start();
    let mut cri = ctd.client().await;
    ctd.import_busybox();

    let sandbox_config = ctd.sandbox_config(&unique_id("pod"));
    let pod = call(
        &ctd,
        "RunPodSandbox",
        cri.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await
    .pod_sandbox_id;

    // The container shares the pod's pid namespace (joined by path), so when
    // its init exits the shim runs `kill --all` on the stopped container. Its
    // seccomp profile is containerd's default, written with Go's spec types
    // (SCMP_CMP_MASKED_EQ arguments without valueTwo).
    let container_config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "box".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into()],
        args: vec!["echo hello from hako; exec sleep 1000".into()],
        log_path: "box.log".into(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Pod as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                seccomp: Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = call(
        &ctd,
        "CreateContainer",
        cri.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config),
            sandbox_config: Some(sandbox_config),
        }),
    )
    .await
    .container_id;
    call(
        &ctd,
        "StartContainer",
        cri.start_container(StartContainerRequest {
            container_id: id.clone(),
        }),
    )
    .await;

    // The bundle containerd wrote for hako-runtime has the default profile.
    let bundle = ctd
        .path()
        .join(format!("state/io.containerd.runtime.v2.task/k8s.io/{id}"));
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json")).expect("reading the container's config.json"),
    )
    .expect("parsing the container's config.json");
    let masked: Vec<&serde_json::Value> = spec["linux"]["seccomp"]["syscalls"]
        .as_array()
        .expect("containerd's default seccomp profile")
        .iter()
        .flat_map(|r| r["args"].as_array().into_iter().flatten())
        .filter(|a| a["op"] == "SCMP_CMP_MASKED_EQ")
        .collect();
    assert!(!masked.is_empty(), "no MASKED_EQ argument in {spec}");
    assert!(masked.iter().any(|a| a.get("valueTwo").is_none()));

    let exec = call(
        &ctd,
        "ExecSync",
        cri.exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "hostname; grep Seccomp: /proc/self/status; exit 3".into(),
            ],
            timeout: 60,
        }),
    )
    .await;
    assert_eq!(exec.exit_code, 3, "stderr: {}", text(&exec.stderr));
    let exec_out = text(&exec.stdout);
    let lines: Vec<&str> = exec_out.lines().collect();
    assert_eq!(lines.len(), 2, "{exec_out}");
    assert_eq!(lines[1].split_whitespace().nth(1), Some("2"), "{exec_out}");

    let log_file = ctd.path().join("logs/box.log");
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(log.contains("hello from hako"), "container log: {log}");

    call(
        &ctd,
        "StopContainer",
        cri.stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        }),
    )
    .await;
    let status = call(
        &ctd,
        "ContainerStatus",
        cri.container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        }),
    )
    .await
    .status
    .expect("a container status");
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    // Not pid 1 of its namespace (the sandbox's process is), so SIGTERM ends it.
    assert_eq!(status.exit_code, 143, "{status:?}");
    call(
        &ctd,
        "RemoveContainer",
        cri.remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        }),
    )
    .await;
    call(
        &ctd,
        "StopPodSandbox",
        cri.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    )
    .await;
    call(
        &ctd,
        "RemovePodSandbox",
        cri.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    )
    .await;
    let left = call(
        &ctd,
        "ListContainers",
        cri.list_containers(ListContainersRequest { filter: None }),
    )
    .await;
    assert!(left.containers.is_empty(), "{:?}", left.containers);
    // hako-runtime holds no state for either.
    let root = ctd.path().join("hako/k8s.io");
    let states: Vec<_> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // The seccomp cache is no container.
                .filter(|n| !n.starts_with('@'))
                .collect()
        })
        .unwrap_or_default();
    assert!(states.is_empty(), "{states:?}");
}
