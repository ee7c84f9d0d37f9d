//! `hako cri serve` driven the way kubelet drives a runtime: a real server
//! process on a unix socket in a temp root, and the k8s-cri crate's
//! generated tonic clients (RuntimeService, ImageService) over it.

mod engine_common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use engine_common::{wait_for, Root};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

fn hako() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hako"))
}

/// A `hako cri serve` process; SIGTERM and wait on drop.
struct Server {
    child: Child,
    socket: PathBuf,
}

impl Server {
    /// Serve `root` on `<dir>/cri.sock` with `config` (written to `<dir>/cri.toml`).
    fn start(root: &Path, dir: &Path, config: &str) -> Server {
        let socket = dir.join("cri.sock");
        let conf = dir.join("cri.toml");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(hako())
            .arg("--root")
            .arg(root)
            .args(["cri", "serve", "--socket"])
            .arg(&socket)
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server { child, socket };
        let s = server.socket.clone();
        wait_for("the CRI socket", || {
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!("hako cri serve exited early: {st}");
            }
            std::os::unix::net::UnixStream::connect(&s).is_ok()
        });
        server
    }

    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    async fn channel(&self) -> Channel {
        let path = self.socket.clone();
        Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap()
    }

    async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A config whose CNI directory is `dir/net.d` (written by the server).
fn config_in(dir: &Path, extra: &str) -> String {
    format!(
        "cni_conf_dir = \"{}\"\n{extra}",
        dir.join("net.d").display()
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A `hako registry serve` on 127.0.0.1 (a free port) with its own root.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let mut child = Command::new(hako())
            .arg("--root")
            .arg(dir.join("registry-root"))
            .args(["registry", "serve", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_string();
        Registry { child, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cri_serve_runs_as_its_own_executable_without_the_cli_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("root"),
        tmp.path(),
        &config_in(tmp.path(), ""),
    );
    // `hako cri serve` execs hako-cri (beside hako): same process, none of
    // the whole CLI's code mapped (crates/cri/src/process.rs).
    let pid = server.child.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe.file_name().unwrap(), "hako-cri", "{}", exe.display());
    let hako = hako().canonicalize().unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        !maps.contains(&format!("{}\n", hako.display())),
        "the server maps {}",
        hako.display()
    );
    // The options crossed the exec: it serves the socket it was given.
    rt().block_on(async {
        let mut c = server.runtime().await;
        let v = c
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.runtime_name, "hako");
    });
}

#[test]
fn cri_version_status_and_runtime_config() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("root"),
        tmp.path(),
        &config_in(tmp.path(), ""),
    );
    rt().block_on(async {
        let mut c = server.runtime().await;
        let v = c
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.runtime_name, "hako");
        assert_eq!(v.runtime_api_version, "v1");
        assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));

        let s = c
            .status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
        let conds = s.status.unwrap().conditions;
        for t in ["RuntimeReady", "NetworkReady"] {
            let cond = conds.iter().find(|c| c.r#type == t).unwrap();
            assert!(cond.status, "{t}: {cond:?}");
        }
        // The default bridge configuration went into the empty CNI directory.
        let written = tmp.path().join("net.d/10-hako-cri.conflist");
        let conf: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&written).unwrap()).unwrap();
        assert_eq!(conf["plugins"][0]["type"], "bridge");
        assert!(s.info["config"].contains("net.d"), "{:?}", s.info);

        let rc = c
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            rc.linux.unwrap().cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );
    });
}

#[test]
fn cri_serve_refuses_unknown_config_keys_with_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("cri.toml");
    std::fs::write(&conf, "cni_conf_dir = \"/x\"\n[registry]\nmirors = {}\n").unwrap();
    let socket = tmp.path().join("cri.sock");
    let out = Command::new(hako())
        .arg("--root")
        .arg(tmp.path().join("root"))
        .args(["cri", "serve", "--socket"])
        .arg(&socket)
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "configuration {} line 3: unknown field `mirors`",
            conf.display()
        )),
        "{err}"
    );
    assert!(!socket.exists());
}

#[test]
fn cri_images_list_status_remove_and_fs_info() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.images().await;
        let spec = |s: &str| {
            Some(cri::ImageSpec {
                image: s.into(),
                ..Default::default()
            })
        };
        let list = c
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .images;
        let bb = list
            .iter()
            .find(|i| {
                i.repo_tags
                    .contains(&"docker.io/library/busybox:latest".to_string())
            })
            .unwrap_or_else(|| panic!("busybox not listed: {list:?}"));
        assert!(bb.id.starts_with("sha256:"));
        assert!(bb.size > 0);

        let st = c
            .image_status(cri::ImageStatusRequest {
                image: spec("busybox"),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.image.unwrap().id, bb.id);
        // By id too, and an absent image is "none", not an error.
        let st = c
            .image_status(cri::ImageStatusRequest {
                image: spec(&bb.id),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.image.unwrap().id, bb.id);
        let st = c
            .image_status(cri::ImageStatusRequest {
                image: spec("nosuch:1"),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(st.image.is_none());

        let fs = c
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        let used = fs.image_filesystems[0].used_bytes.unwrap().value;
        assert!(used >= bb.size, "{fs:?}");
        assert!(fs.image_filesystems[0]
            .fs_id
            .as_ref()
            .unwrap()
            .mountpoint
            .starts_with(root.root().to_str().unwrap()));

        c.remove_image(cri::RemoveImageRequest {
            image: spec("busybox"),
        })
        .await
        .unwrap();
        let list = c
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .images;
        assert!(list.iter().all(|i| i.id != bb.id), "{list:?}");
        // Removing it again succeeds (kubelet retries).
        c.remove_image(cri::RemoveImageRequest {
            image: spec("busybox"),
        })
        .await
        .unwrap();
    });
    // The CLI sees the same store, and the removal in its events.
    assert!(!root.ok(&["images"]).contains("busybox"));
    let events = root.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert!(
        events.lines().any(|l| l == "untag busybox:latest"),
        "{events}"
    );
    assert!(
        events.lines().any(|l| l.starts_with("delete sha256:")),
        "{events}"
    );
}

#[test]
fn cri_pull_from_loopback_registry_and_through_a_mirror() {
    let root = Root::new();
    let reg = Registry::start(root.dir());
    let pushed = format!("{}/cri/busybox:1", reg.addr);
    root.ok(&["tag", "busybox", &pushed]);
    root.ok(&["push", &pushed]);
    root.ok(&["rmi", &pushed]);
    root.ok(&["rmi", "busybox"]);
    // registry.k8s.io is mirrored to the loopback registry and never asked itself.
    let server = Server::start(
        &root.root(),
        root.dir(),
        &config_in(
            root.dir(),
            &format!(
                "[registry.mirrors.\"registry.k8s.io\"]\nendpoints = [\"http://{}\"]\n",
                reg.addr
            ),
        ),
    );
    rt().block_on(async {
        let mut c = server.images().await;
        let pull = |name: &str| cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Plain HTTP on 127.0.0.0/8 without configuration.
        let id = c
            .pull_image(pull(&pushed))
            .await
            .unwrap()
            .into_inner()
            .image_ref;
        assert!(id.starts_with("sha256:"), "{id}");
        let mirrored = c
            .pull_image(pull("registry.k8s.io/cri/busybox:1"))
            .await
            .unwrap()
            .into_inner()
            .image_ref;
        assert_eq!(mirrored, id);
        let img = c
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: id.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        let mut tags = img.repo_tags.clone();
        tags.sort();
        assert_eq!(
            tags,
            vec![pushed.clone(), "registry.k8s.io/cri/busybox:1".to_string()]
        );
        assert!(
            img.repo_digests
                .iter()
                .any(|d| d.starts_with("registry.k8s.io/cri/busybox@sha256:")),
            "{img:?}"
        );
    });
    // `hako events` saw the pulls.
    let events = root.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "type=image",
        "--filter",
        "event=pull",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert!(events.lines().any(|l| l == pushed), "{events}");
    assert!(
        events.lines().any(|l| l == "registry.k8s.io/cri/busybox:1"),
        "{events}"
    );
    // The pulled image runs with the engine.
    let out = root.ok(&["run", "--rm", &pushed, "echo", "pulled-over-cri"]);
    assert_eq!(out.trim(), "pulled-over-cri");
}

#[test]
fn cri_pull_errors_are_coded_one_line_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = Server::start(
        &tmp.path().join("root"),
        tmp.path(),
        &config_in(
            tmp.path(),
            &format!("[registry.mirrors.\"mirrored.example\"]\nendpoints = [\"http://{dead}\"]\n"),
        ),
    );
    rt().block_on(async {
        let mut c = server.images().await;
        let pull = |name: &str| cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = c.pull_image(pull("Bad//Name\n")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(!e.message().contains('\n'), "{e:?}");

        let e = c
            .pull_image(pull(&format!("{dead}/x/y:1")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(
            e.message()
                .starts_with(&format!("pulling image {dead}/x/y:1: ")),
            "{e:?}"
        );
        assert!(!e.message().contains('\n'), "{e:?}");

        // A mirrored name is never looked up upstream: only the dead mirror is tried.
        let e = c
            .pull_image(pull("mirrored.example/x:1"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.message().contains(&dead.to_string()), "{e:?}");
        assert!(!e.message().contains("https://mirrored.example"), "{e:?}");

        let e = c
            .pull_image(cri::PullImageRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

        let list = c
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .images;
        assert!(list.is_empty(), "{list:?}");
    });
}

/// A CNI configuration of the test's own: a bridge and a subnet no other
/// test uses, host-local leases in the temp dir, no masquerading (no
/// iptables rules to clean). Deletes its bridge on drop.
struct PodNet {
    bridge: String,
    subnet_prefix: String,
}

impl PodNet {
    fn write(dir: &Path) -> PodNet {
        Self::write_with(dir, Vec::new())
    }

    /// With `extra` plugins chained after the bridge (portmap).
    fn write_with(dir: &Path, extra: Vec<serde_json::Value>) -> PodNet {
        let n = std::process::id() as u64 * 31
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64;
        let bridge = format!("hcri{:x}", n % 0xffff_ffff);
        let subnet_prefix = format!("10.{}.{}", 200 + (n % 50), (n / 50) % 250);
        let netd = dir.join("net.d");
        std::fs::create_dir_all(&netd).unwrap();
        let mut conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": bridge,
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{subnet_prefix}.0/24")}]],
                    "dataDir": dir.join("ipam"),
                }
            }]
        });
        conf["plugins"].as_array_mut().unwrap().extend(extra);
        std::fs::write(netd.join("10-test.conflist"), conf.to_string()).unwrap();
        PodNet {
            bridge,
            subnet_prefix,
        }
    }
}

/// GET / over plain TCP; the whole answer.
fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

impl Drop for PodNet {
    fn drop(&mut self) {
        // portmap rules of a pod a failed test did not remove (the rule
        // lines of iptables-save are shell-quoted: handed to sh as they are).
        let rules = Command::new("iptables-save").args(["-t", "nat"]).output();
        let rules = rules.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let name = format!("dnat name: \\\"{}\\\"", self.bridge);
        for line in rules
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&name))
        {
            let Some(rule) = line.strip_prefix("-A ") else {
                continue;
            };
            let Some(chain) = line.rsplit(' ').next() else {
                continue;
            };
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "iptables -t nat -D {rule} && iptables -t nat -F {chain} && iptables -t nat -X {chain}"
                ))
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", "dev", &self.bridge])
            .output();
    }
}

fn pod_config(name: &str, host_network: bool) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        labels: [("app".to_string(), name.to_string())].into(),
        annotations: [("note".to_string(), "kept".to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: if host_network {
                        cri::NamespaceMode::Node as i32
                    } else {
                        cri::NamespaceMode::Pod as i32
                    },
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sandbox_pid(st: &cri::PodSandboxStatusResponse) -> i64 {
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    info["pid"].as_i64().unwrap()
}

#[test]
fn cri_pod_sandbox_lifecycle_with_cni_survives_restart_and_leaves_nothing() {
    let root = Root::new();
    let net = PodNet::write(root.dir());
    let config = format!(
        "cni_conf_dir = \"{}\"\n",
        root.dir().join("net.d").display()
    );
    let mut server = Server::start(&root.root(), root.dir(), &config);
    let id = rt().block_on(async {
        let mut c = server.runtime().await;
        let id = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config("web", false)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let st = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let s = st.status.clone().unwrap();
        assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(s.metadata.unwrap().name, "web");
        assert_eq!(s.annotations["note"], "kept");
        let ip = s.network.unwrap().ip;
        assert!(ip.starts_with(&format!("{}.", net.subnet_prefix)), "{ip}");
        // The infra process is hako's built-in pause, in a network namespace of its own.
        let pid = sandbox_pid(&st);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("cri\0pause"),
            "{cmdline:?}"
        );
        assert_ne!(
            std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
            std::fs::read_link("/proc/self/ns/net").unwrap()
        );

        // Filters: by label, by state, by id prefix.
        let list = |f: cri::PodSandboxFilter| {
            let mut c = c.clone();
            async move {
                c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(f) })
                    .await
                    .unwrap()
                    .into_inner()
                    .items
            }
        };
        let by_label = list(cri::PodSandboxFilter {
            label_selector: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        })
        .await;
        assert_eq!(by_label.len(), 1);
        assert_eq!(by_label[0].id, id);
        assert!(list(cri::PodSandboxFilter {
            label_selector: [("app".to_string(), "other".to_string())].into(),
            ..Default::default()
        })
        .await
        .is_empty());
        assert!(list(cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue {
                state: cri::PodSandboxState::SandboxNotready as i32
            }),
            ..Default::default()
        })
        .await
        .is_empty());
        assert_eq!(
            list(cri::PodSandboxFilter {
                id: id[..12].to_string(),
                ..Default::default()
            })
            .await
            .len(),
            1
        );
        id
    });

    // A new server finds the pod as it was.
    server.stop();
    let server = Server::start(&root.root(), root.dir(), &config);
    rt().block_on(async {
        let mut c = server.runtime().await;
        let st = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            st.status.as_ref().unwrap().state,
            cri::PodSandboxState::SandboxReady as i32
        );
        let pid = sandbox_pid(&st);
        assert!(engine_common::pid_alive(pid));
        let netns = root.root().join("run/netns").join(&id);
        assert!(netns.exists());

        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        let st = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            st.status.unwrap().state,
            cri::PodSandboxState::SandboxNotready as i32
        );
        wait_for("the pause process to end", || {
            !engine_common::pid_alive(pid)
        });
        // The engine's cleanup (run by the monitor after the exit) unmounts it.
        wait_for("the sandbox's netns to go", || !netns.exists());
        // The address went back to host-local.
        let leases: Vec<_> = std::fs::read_dir(root.dir().join("ipam").join(&net.bridge))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            leases
                .iter()
                .all(|l| !l.to_string_lossy().starts_with(&net.subnet_prefix)),
            "{leases:?}"
        );

        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        let e = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert_eq!(e.message(), format!("pod sandbox {id} not found"));
        // Removing again is fine (kubelet retries).
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    });
    assert!(!root.root().join("containers").join(&id).exists());
    assert!(!Path::new("/sys/fs/cgroup/hako").join(&id).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount of the sandbox is left");
}

#[test]
fn cri_host_network_sandbox_and_bad_requests() {
    let root = Root::new();
    let config = config_in(root.dir(), "[runtimes.runc]\npath = \"/usr/sbin/runc\"\n");
    let server = Server::start(&root.root(), root.dir(), &config);
    rt().block_on(async {
        let mut c = server.runtime().await;
        // hostNetwork, on the runc RuntimeClass handler.
        let id = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config("hostnet", true)),
                runtime_handler: "runc".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let st = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.status.as_ref().unwrap().runtime_handler, "runc");
        let pid = sandbox_pid(&st);
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
            std::fs::read_link("/proc/self/ns/net").unwrap()
        );
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        wait_for("the pause process to end", || {
            !engine_common::pid_alive(pid)
        });

        // Bad requests: coded, one line, nothing left.
        let e = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config("x", true)),
                runtime_handler: "nosuch".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("runtime handler \"nosuch\""), "{e:?}");
        let e = c
            .run_pod_sandbox(cri::RunPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        let e = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: "0123456789ab".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        let items = c
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(items.is_empty(), "{items:?}");
    });
}

fn container_config(
    name: &str,
    command: &[&str],
    log: &str,
    mounts: Vec<cri::Mount>,
) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        envs: vec![cri::KeyValue {
            key: "GREETING".into(),
            value: format!("hello-from-{name}"),
        }],
        log_path: log.into(),
        labels: [("container".to_string(), name.to_string())].into(),
        mounts,
        ..Default::default()
    }
}

/// CreateContainer then StartContainer, as kubelet does; the container's id.
async fn create_and_start(
    c: &mut RuntimeServiceClient<Channel>,
    sandbox: &str,
    pod: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id = c
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.to_string(),
            config: Some(config),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    c.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    id
}

#[test]
fn cri_pod_with_two_containers_sharing_localhost_a_volume_exec_and_logs() {
    let root = Root::new();
    let net = PodNet::write(root.dir());
    let config = format!(
        "cni_conf_dir = \"{}\"\n",
        root.dir().join("net.d").display()
    );
    let server = Server::start(&root.root(), root.dir(), &config);
    let logs = root.dir().join("pod-logs");
    let volume = root.dir().join("shared");
    std::fs::create_dir_all(&volume).unwrap();
    let (sandbox, pids) = rt().block_on(async {
        let mut c = server.runtime().await;
        let mut pod = pod_config("twins", false);
        pod.log_directory = logs.to_string_lossy().into_owned();
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let mount = |ro: bool| {
            vec![cri::Mount {
                container_path: "/shared".into(),
                host_path: volume.to_string_lossy().into_owned(),
                readonly: ro,
                ..Default::default()
            }]
        };
        let mut ids = Vec::new();
        for (name, cmd, m) in [
            (
                "web",
                vec![
                    "sh",
                    "-c",
                    "echo served-$GREETING > /shared/index.html; echo web-up; httpd -f -p 127.0.0.1:8080 -h /shared",
                ],
                mount(false),
            ),
            ("client", vec!["sleep", "3600"], mount(true)),
        ] {
            let mut config = container_config(name, &cmd, &format!("{name}/0.log"), m);
            // Each its own PID namespace (httpd as pid 1 ignores SIGTERM:
            // the stop below times out), as kubelet asks without
            // shareProcessNamespace.
            config.linux = Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let id = c
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sandbox.clone(),
                    config: Some(config),
                    sandbox_config: Some(pod.clone()),
                })
                .await
                .unwrap()
                .into_inner()
                .container_id;
            let st = c
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            assert_eq!(st.state, cri::ContainerState::ContainerCreated as i32);
            c.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            ids.push(id);
        }
        let (web, client) = (ids[0].clone(), ids[1].clone());

        // The client reaches the web container on the pod's localhost.
        let mut page = Vec::new();
        for _ in 0..200 {
            let r = c
                .exec_sync(cri::ExecSyncRequest {
                    container_id: client.clone(),
                    cmd: vec![
                        "wget".into(),
                        "-q".into(),
                        "-O".into(),
                        "-".into(),
                        "http://127.0.0.1:8080/index.html".into(),
                    ],
                    timeout: 10,
                })
                .await
                .unwrap()
                .into_inner();
            if r.exit_code == 0 {
                page = r.stdout;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(String::from_utf8_lossy(&page).trim(), "served-hello-from-web");
        // The read-only mount is read-only in the client.
        let r = c
            .exec_sync(cri::ExecSyncRequest {
                container_id: client.clone(),
                cmd: vec!["sh".into(), "-c".into(), "echo x > /shared/y; echo $GREETING; exit 3".into()],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.exit_code, 3);
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "hello-from-client");
        assert!(String::from_utf8_lossy(&r.stderr).contains("Read-only"), "{r:?}");
        // Same hostname (the pod's) in both containers; same IPC namespace.
        for id in [&web, &client] {
            let r = c
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["hostname".into()],
                    timeout: 10,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "twins");
        }
        // An exec past its timeout: DeadlineExceeded.
        let e = c
            .exec_sync(cri::ExecSyncRequest {
                container_id: client.clone(),
                cmd: vec!["sleep".into(), "30".into()],
                timeout: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");

        // The web container's output, in kubelet's CRI log format.
        let log = logs.join("web/0.log");
        wait_for("the web log", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("web-up"))
        });
        let text = std::fs::read_to_string(&log).unwrap();
        let first = text.lines().next().unwrap();
        let parts: Vec<&str> = first.splitn(4, ' ').collect();
        assert_eq!(&parts[1..], ["stdout", "F", "web-up"], "{text}");
        assert!(parts[0].ends_with('Z') && parts[0].contains('T'), "{first}");

        // Listing by sandbox and by label.
        let listed = c
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sandbox.clone(),
                    label_selector: [("container".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, web);
        assert_eq!(listed[0].state, cri::ContainerState::ContainerRunning as i32);

        // The pod's stats: both containers, the pod's processes, its eth0.
        let ps = c
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let linux = ps.linux.unwrap();
        let mut in_pod: Vec<String> = linux
            .containers
            .iter()
            .map(|s| s.attributes.as_ref().unwrap().id.clone())
            .collect();
        in_pod.sort();
        let mut both = vec![web.clone(), client.clone()];
        both.sort();
        assert_eq!(in_pod, both);
        // pause, httpd, sleep.
        assert!(linux.process.unwrap().process_count.unwrap().value >= 3);
        assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
        assert_eq!(linux.network.unwrap().default_interface.unwrap().name, "eth0");
        let listed = c
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    label_selector: [("app".to_string(), "twins".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].attributes.as_ref().unwrap().id, sandbox);

        // Stop with a timeout: httpd as PID 1 ignores SIGTERM, so SIGKILL ends it.
        let pids: Vec<i64> = {
            let mut v = Vec::new();
            for id in [&web, &client] {
                let st = c
                    .container_status(cri::ContainerStatusRequest {
                        container_id: id.clone(),
                        verbose: true,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
                v.push(info["pid"].as_i64().unwrap());
            }
            v
        };
        c.stop_container(cri::StopContainerRequest {
            container_id: web.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
        let st = c
            .container_status(cri::ContainerStatusRequest {
                container_id: web.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!(st.exit_code, 137, "{st:?}");
        assert_eq!(st.reason, "Error");
        assert!(st.finished_at >= st.started_at && st.started_at > 0);
        assert_eq!(st.log_path, log.to_string_lossy());

        // Bad ids: NotFound, one line.
        let e = c
            .container_status(cri::ContainerStatusRequest {
                container_id: "feedfacefeed".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(e.message(), "container feedfacefeed not found");
        let e = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(container_config("x", &["true"], "x.log", Vec::new()))
                    .map(|mut cc| {
                        cc.image = Some(cri::ImageSpec {
                            image: "nosuch:1".into(),
                            ..Default::default()
                        });
                        cc
                    }),
                sandbox_config: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert_eq!(e.message(), "image nosuch:1 not found");
        // Stopping a container that is gone succeeds (critest's idempotence).
        c.stop_container(cri::StopContainerRequest {
            container_id: "feedfacefeed".into(),
            timeout: 1,
        })
        .await
        .unwrap();
        // A group without a user is refused, as containerd does.
        let mut grouped = container_config("grouped", &["true"], "g.log", Vec::new());
        grouped.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_group: Some(cri::Int64Value { value: 1000 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(grouped),
                sandbox_config: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert_eq!(
            e.message(),
            "creating container grouped: run_as_group is set without run_as_user or run_as_username"
        );

        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
        let left = c
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "{left:?}");
        (sandbox, pids)
    });
    // Nothing left: processes, netns, cgroups, mounts, containers.
    for pid in pids {
        wait_for("the container processes to end", || {
            !engine_common::pid_alive(pid)
        });
    }
    assert!(!root.root().join("run/netns").join(&sandbox).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.root().to_str().unwrap()),
        "mounts left under the root"
    );
    let cgroups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/hako")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(!cgroups.contains(&sandbox), "{cgroups:?}");
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
    drop(net);
}

#[test]
fn cri_resources_oom_reason_stats_and_update() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let pod = pod_config("limited", true);
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let with_memory = |name: &str, cmd: &[&str], bytes: i64| {
            let mut cc = container_config(name, cmd, "", Vec::new());
            cc.linux = Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: bytes,
                    memory_swap_limit_in_bytes: bytes,
                    ..Default::default()
                }),
                ..Default::default()
            });
            cc
        };
        let mut ids = Vec::new();
        for cc in [
            with_memory("hog", &["sh", "-c", "x=$(yes 2>/dev/null)"], 32 << 20),
            with_memory("idle", &["sleep", "3600"], 64 << 20),
        ] {
            let id = create_and_start(&mut c, &sandbox, &pod, cc).await;
            ids.push(id);
        }
        let (hog, idle) = (ids[0].clone(), ids[1].clone());
        // The memory limit ends the hog: OOMKilled.
        let mut st = None;
        for _ in 0..1200 {
            let s = c
                .container_status(cri::ContainerStatusRequest {
                    container_id: hog.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            if s.state == cri::ContainerState::ContainerExited as i32 {
                st = Some(s);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let st = st.expect("the hog exits");
        assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));

        // Stats of the running one: CPU time and memory in use.
        let s = c
            .container_stats(cri::ContainerStatsRequest {
                container_id: idle.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        assert_eq!(s.attributes.unwrap().id, idle);
        assert!(s.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
        let mem = s.memory.unwrap();
        assert!(mem.usage_bytes.unwrap().value > 0);
        assert!(mem.working_set_bytes.unwrap().value <= mem.usage_bytes.unwrap().value);
        let all = c
            .list_container_stats(cri::ListContainerStatsRequest {
                filter: Some(cri::ContainerStatsFilter {
                    pod_sandbox_id: sandbox.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        let mut listed: Vec<String> = all.into_iter().map(|s| s.attributes.unwrap().id).collect();
        listed.sort();
        let mut want = vec![hog.clone(), idle.clone()];
        want.sort();
        assert_eq!(listed, want);

        // A new limit reaches the engine record (and the running cgroup).
        c.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: idle.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                memory_swap_limit_in_bytes: 128 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(
            root.inspect(&idle)["HostConfig"]["Memory"].as_i64(),
            Some(128 << 20)
        );
        let e = c
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: "feedfacefeed".into(),
                linux: Some(cri::LinuxContainerResources::default()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);

        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

#[test]
fn cri_container_events_follow_the_lifecycle() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let mut events = c
            .get_container_events(cri::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
        let pod = pod_config("evented", true);
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        // It exits by itself: its die comes from the monitor, not from a CRI call.
        let id = create_and_start(
            &mut c,
            &sandbox,
            &pod,
            container_config("brief", &["sh", "-c", "exit 4"], "", Vec::new()),
        )
        .await;
        let mut seen = Vec::new();
        let mut exit_seen = None;
        while let Some(e) = events.message().await.unwrap() {
            if e.container_id != id {
                continue;
            }
            let kind = cri::ContainerEventType::try_from(e.container_event_type).unwrap();
            if kind == cri::ContainerEventType::ContainerStoppedEvent {
                exit_seen = e.containers_statuses.first().map(|s| s.exit_code);
                c.remove_container(cri::RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .unwrap();
            }
            assert!(e.pod_sandbox_status.is_some(), "{e:?}");
            seen.push(kind);
            if kind == cri::ContainerEventType::ContainerDeletedEvent {
                break;
            }
        }
        use cri::ContainerEventType::*;
        assert_eq!(
            seen,
            [
                ContainerCreatedEvent,
                ContainerStartedEvent,
                ContainerStoppedEvent,
                ContainerDeletedEvent
            ]
        );
        assert_eq!(exit_seen, Some(4));
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
}

#[test]
fn cri_reopen_container_log_after_kubelet_style_rotation() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    let logs = root.dir().join("pod-logs");
    rt().block_on(async {
        let mut c = server.runtime().await;
        let mut pod = pod_config("rotating", true);
        pod.log_directory = logs.to_string_lossy().into_owned();
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let id = create_and_start(
            &mut c,
            &sandbox,
            &pod,
            container_config(
                "ticker",
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.05; done",
                ],
                "ticker/0.log",
                Vec::new(),
            ),
        )
        .await;
        let log = logs.join("ticker/0.log");
        wait_for("ticks", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("tick1"))
        });
        // kubelet's rotation: rename, then ask the runtime to reopen.
        let rotated = logs.join("ticker/0.log.20260101-000000");
        std::fs::rename(&log, &rotated).unwrap();
        c.reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        wait_for("ticks in the new file", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains(" stdout F tick"))
        });
        let old_last = std::fs::read_to_string(&rotated).unwrap();
        let old_last = old_last
            .lines()
            .last()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string();
        let new_first = std::fs::read_to_string(&log).unwrap();
        let new_first = new_first
            .lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string();
        let n = |t: &str| t.trim_start_matches("tick").parse::<u64>().unwrap();
        assert!(n(&new_first) > n(&old_last), "{old_last} then {new_first}");

        c.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        let e = c
            .reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
}

#[test]
fn cri_security_context_seccomp_user_groups_readonly_rootfs() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let pod = pod_config("secure", true);
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let with_sec = |name: &str, sec: cri::LinuxContainerSecurityContext| {
            let mut cc = container_config(name, &["sleep", "3600"], "", Vec::new());
            cc.linux = Some(cri::LinuxContainerConfig {
                security_context: Some(sec),
                ..Default::default()
            });
            cc
        };
        let profile = |t: cri::security_profile::ProfileType, r: &str| {
            Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            })
        };
        let run = |cc: cri::ContainerConfig| {
            let mut c = c.clone();
            let (sandbox, pod) = (sandbox.clone(), pod.clone());
            async move {
                let id = c
                    .create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: sandbox,
                        config: Some(cc),
                        sandbox_config: Some(pod),
                    })
                    .await?
                    .into_inner()
                    .container_id;
                c.start_container(cri::StartContainerRequest {
                    container_id: id.clone(),
                })
                .await?;
                Ok::<_, tonic::Status>(id)
            }
        };
        let plain = run(with_sec("plain", Default::default())).await.unwrap();
        let strict = run(with_sec(
            "strict",
            cri::LinuxContainerSecurityContext {
                seccomp: profile(cri::security_profile::ProfileType::RuntimeDefault, ""),
                no_new_privs: true,
                run_as_user: Some(cri::Int64Value { value: 1000 }),
                run_as_group: Some(cri::Int64Value { value: 1000 }),
                supplemental_groups: vec![1234],
                readonly_rootfs: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
        let sh = |id: &str, script: &str| {
            let mut c = c.clone();
            let req = cri::ExecSyncRequest {
                container_id: id.to_string(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 10,
            };
            async move {
                let r = c.exec_sync(req).await.unwrap().into_inner();
                (
                    r.exit_code,
                    String::from_utf8_lossy(&r.stdout).trim().to_string(),
                )
            }
        };
        let status = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -s '\\t ' ' '";
        assert_eq!(sh(&plain, status).await.1, "NoNewPrivs: 0\nSeccomp: 0");
        assert_eq!(sh(&strict, status).await.1, "NoNewPrivs: 1\nSeccomp: 2");
        assert_eq!(
            sh(&strict, "id -u; id -g; id -G").await.1,
            "1000\n1000\n1000 1234"
        );
        let (code, _) = sh(&strict, "touch /rootfs-is-writable").await;
        assert_ne!(code, 0);
        assert_eq!(
            sh(&plain, "touch /rootfs-is-writable && echo ok").await.1,
            "ok"
        );

        // A Localhost profile must name a file by absolute path.
        let e = run(with_sec(
            "bad",
            cri::LinuxContainerSecurityContext {
                seccomp: profile(cri::security_profile::ProfileType::Localhost, "rel.json"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("\"rel.json\""), "{e:?}");

        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    });
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

#[test]
fn cri_host_port_reaches_the_pod_and_goes_with_it() {
    let root = Root::new();
    let net = PodNet::write_with(
        root.dir(),
        vec![
            serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        ],
    );
    let config = format!(
        "cni_conf_dir = \"{}\"\n",
        root.dir().join("net.d").display()
    );
    let server = Server::start(&root.root(), root.dir(), &config);
    let host_port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let www = root.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "through-the-host-port\n").unwrap();
    // The host's own address on the pod's bridge (the pods of this test
    // network route nothing else).
    let host_ip = format!("{}.1", net.subnet_prefix);
    rt().block_on(async {
        let mut c = server.runtime().await;
        let mut pod = pod_config("ported", false);
        pod.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: host_port as i32,
            host_ip: String::new(),
        }];
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        create_and_start(
            &mut c,
            &sandbox,
            &pod,
            container_config(
                "web",
                &["httpd", "-f", "-p", "8080", "-h", "/www"],
                "",
                vec![cri::Mount {
                    container_path: "/www".into(),
                    host_path: www.to_string_lossy().into_owned(),
                    readonly: true,
                    ..Default::default()
                }],
            ),
        )
        .await;
        let url = format!("http://{host_ip}:{host_port}/index.html");
        let mut body = String::new();
        wait_for("the host port to answer", || {
            body = http_get(&format!("{host_ip}:{host_port}")).unwrap_or_default();
            body.contains("through-the-host-port")
        });
        assert!(body.starts_with("HTTP/1.1 200"), "{url}: {body}");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
    // The port mapping went with the pod.
    let rules = Command::new("iptables-save").output().unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        !rules.contains(&format!("--dport {host_port} ")),
        "a rule for port {host_port} is left"
    );
}

#[test]
fn cri_configured_sandbox_image_is_the_infra_container() {
    let root = Root::new();
    let tar = root.dir().join("busybox.tar");
    root.ok(&[
        "import",
        "--change",
        "CMD [\"sleep\", \"3600\"]",
        tar.to_str().unwrap(),
        "registry.k8s.io/pause:3.9",
    ]);
    let server = Server::start(
        &root.root(),
        root.dir(),
        &config_in(
            root.dir(),
            "sandbox_image = \"registry.k8s.io/pause:3.9\"\n",
        ),
    );
    rt().block_on(async {
        let mut c = server.runtime().await;
        let id = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config("imaged", true)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let st = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
        assert_eq!(info["image"], "registry.k8s.io/pause:3.9");
        let pid = info["pid"].as_i64().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert_eq!(cmdline, b"sleep\x003600\x00");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
        wait_for("the infra process to end", || {
            !engine_common::pid_alive(pid)
        });
    });
}

#[test]
fn cri_pod_network_goes_with_an_engine_removal_too() {
    let root = Root::new();
    let net = PodNet::write_with(
        root.dir(),
        vec![serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}})],
    );
    let config = format!(
        "cni_conf_dir = \"{}\"\n",
        root.dir().join("net.d").display()
    );
    let server = Server::start(&root.root(), root.dir(), &config);
    let host_port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = rt().block_on(async {
        let mut c = server.runtime().await;
        let mut pod = pod_config("orphan", false);
        pod.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: host_port as i32,
            host_ip: String::new(),
        }];
        c.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id
    });
    let rules = || {
        let out = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("--dport {host_port} "))
    };
    let leases = || {
        std::fs::read_dir(root.dir().join("ipam").join(&net.bridge))
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&net.subnet_prefix)
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(rules());
    assert_eq!(leases(), 1);
    // Removed behind the CRI's back, with the engine's own verb.
    root.ok(&["rm", "-f", &id]);
    assert!(!rules(), "the host port's rules are left");
    assert_eq!(leases(), 0, "the pod's address is still leased");
    assert!(!root.root().join("run/netns").join(&id).exists());
}

#[test]
fn cri_oom_score_adj_is_set_and_clamped_to_what_the_runtime_may() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    let own: i64 = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", server.child.id()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rt().block_on(async {
        let mut c = server.runtime().await;
        let pod = pod_config("scored", true);
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        // Without CAP_SYS_RESOURCE (as on these machines) a value below the
        // server's own is raised to it, as containerd's restrict_oom_score_adj.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let caps = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .unwrap();
        let lowest = if caps & (1 << 24) != 0 { -1000 } else { own };
        // kubelet's -997 for a guaranteed pod, and a burstable 500.
        for (name, asked, want) in [
            ("guaranteed", -997, lowest.max(-997)),
            ("burstable", 500, 500),
        ] {
            let mut cc = container_config(name, &["sleep", "3600"], "", Vec::new());
            cc.linux = Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    oom_score_adj: asked,
                    ..Default::default()
                }),
                // Its own PID namespace (pid 1 is the command), as kubelet asks.
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            });
            let id = create_and_start(&mut c, &sandbox, &pod, cc).await;
            let r = c
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id,
                    cmd: vec!["cat".into(), "/proc/1/oom_score_adj".into()],
                    timeout: 10,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                String::from_utf8_lossy(&r.stdout).trim(),
                want.to_string(),
                "{name}"
            );
        }
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
    // The same through the command line; out of range is refused in one line.
    let out = root.ok(&[
        "run",
        "--rm",
        "--oom-score-adj",
        "300",
        "busybox",
        "cat",
        "/proc/self/oom_score_adj",
    ]);
    assert_eq!(out.trim(), "300");
    let bad = root.run(&["run", "--rm", "--oom-score-adj", "-1001", "busybox", "true"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.lines().count() == 1 && err.contains("invalid oom_score_adj -1001"),
        "{err}"
    );
}

// ---- The streaming server (Exec / Attach / PortForward URLs), driven by
// in-test clients of both protocols kubelet's clients speak: SPDY/3.1
// (hako_cri's own framing module, as hako's kubelet will use it) and
// websocket (tungstenite).

mod streaming {
    use std::collections::HashMap;

    use futures_util::{SinkExt, StreamExt};
    use hako_cri::stream::spdy::{self, Event};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    pub type Spdy = spdy::Session<tokio::io::WriteHalf<TcpStream>>;

    fn split_url(url: &str) -> (String, String) {
        let rest = url.strip_prefix("http://").expect("an http URL");
        let (host, path) = rest.split_once('/').unwrap();
        (host.to_string(), format!("/{path}"))
    }

    /// Upgrade a request on `url` to SPDY/3.1 offering `protocol`.
    pub async fn spdy_connect(url: &str, protocol: &str) -> Spdy {
        let (host, path) = split_url(url);
        let mut tcp = TcpStream::connect(&host).await.unwrap();
        tcp.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
                 Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        // The answer's head, a byte at a time: what follows is SPDY.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains(&format!("x-stream-protocol-version: {protocol}")),
            "{head}"
        );
        spdy::session(tcp)
    }

    /// What a session gave back: bytes per stream type (or channel name).
    #[derive(Debug, Default)]
    pub struct Got {
        pub streams: HashMap<String, Vec<u8>>,
    }

    impl Got {
        pub fn text(&self, s: &str) -> String {
            String::from_utf8_lossy(self.streams.get(s).map(Vec::as_slice).unwrap_or(&[]))
                .into_owned()
        }

        pub fn status(&self) -> serde_json::Value {
            serde_json::from_str(&self.text("error")).unwrap()
        }
    }

    /// Exec or attach over SPDY as client-go does: open the streams by
    /// type, send a resize and stdin (then its end), read until the
    /// server goes away. `during` runs once the streams are open.
    pub async fn spdy_remote(
        url: &str,
        types: &[&str],
        stdin: Option<&[u8]>,
        resize: Option<(u16, u16)>,
        during: impl std::future::Future<Output = ()>,
    ) -> Got {
        let mut s = spdy_connect(url, "v4.channel.k8s.io").await;
        let mut ids = HashMap::new();
        for (i, t) in types.iter().enumerate() {
            let id = 1 + 2 * i as u32;
            s.writer
                .open(id, vec![("streamtype".into(), t.to_string())], false)
                .await
                .unwrap();
            ids.insert(id, t.to_string());
        }
        let id_of = |t: &str| *ids.iter().find(|(_, v)| *v == t).unwrap().0;
        if let Some((w, h)) = resize {
            let size = serde_json::json!({"Width": w, "Height": h}).to_string();
            s.writer
                .data(id_of("resize"), size.as_bytes())
                .await
                .unwrap();
        }
        if let Some(b) = stdin {
            s.writer.data(id_of("stdin"), b).await.unwrap();
            s.writer.fin(id_of("stdin")).await.unwrap();
        }
        let events = async {
            let mut got = Got::default();
            let mut replies = 0;
            while let Some(ev) = s.events.recv().await {
                match ev {
                    Event::Reply { .. } => replies += 1,
                    Event::Data {
                        stream_id, data, ..
                    } => got
                        .streams
                        .entry(ids[&stream_id].clone())
                        .or_default()
                        .extend(data),
                    Event::Closed => break,
                    _ => {}
                }
            }
            assert_eq!(replies, types.len(), "every stream was accepted");
            got
        };
        let (got, ()) = tokio::join!(events, during);
        got
    }

    /// A websocket on `url` offering `protocol`; the one the server chose
    /// must be it.
    pub async fn ws_connect(url: &str, protocol: &str) -> WebSocketStream<TcpStream> {
        let (host, _) = split_url(url);
        let mut req = url
            .replacen("http://", "ws://", 1)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let tcp = TcpStream::connect(&host).await.unwrap();
        let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
        ws
    }

    pub const CHANNELS: [&str; 5] = ["stdin", "stdout", "stderr", "error", "resize"];

    /// Exec or attach over websocket v5: stdin then its close signal, read
    /// until the server closes; `until` ends the read early (attach).
    pub async fn ws_remote(
        url: &str,
        stdin: Option<&[u8]>,
        until: impl Fn(&Got) -> bool,
    ) -> (Got, Option<u16>) {
        let mut ws = ws_connect(url, "v5.channel.k8s.io").await;
        if let Some(b) = stdin {
            let mut m = vec![0u8];
            m.extend_from_slice(b);
            ws.send(Message::Binary(m.into())).await.unwrap();
            ws.send(Message::Binary(vec![255u8, 0].into()))
                .await
                .unwrap();
        }
        let mut got = Got::default();
        let mut close_code = None;
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) if !b.is_empty() => {
                    let name = CHANNELS.get(b[0] as usize).copied().unwrap_or("other");
                    got.streams
                        .entry(name.to_string())
                        .or_default()
                        .extend_from_slice(&b[1..]);
                    if until(&got) {
                        break;
                    }
                }
                Message::Close(f) => {
                    close_code = f.map(|f| u16::from(f.code));
                    break;
                }
                _ => {}
            }
        }
        (got, close_code)
    }
}

/// A pod with a busybox container serving /etc on 8080 inside the pod and
/// printing "tick" every 200 ms (for attach); (server, sandbox, container).
async fn streaming_pod(
    c: &mut RuntimeServiceClient<Channel>,
    name: &str,
) -> (String, String, cri::PodSandboxConfig) {
    let pod = pod_config(name, false);
    let sandbox = c
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let id = create_and_start(
        c,
        &sandbox,
        &pod,
        container_config(
            "web",
            &[
                "sh",
                "-c",
                "httpd -f -p 127.0.0.1:8080 -h /etc & while true; do echo tick; sleep 0.2; done",
            ],
            "web.log",
            Vec::new(),
        ),
    )
    .await;
    (sandbox, id, pod)
}

fn exit_code_of(status: &serde_json::Value) -> Option<String> {
    status["details"]["causes"]
        .as_array()?
        .iter()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str())
        .map(str::to_string)
}

#[test]
fn cri_exec_and_attach_through_the_streaming_url_over_spdy_and_websocket() {
    let root = Root::new();
    let _net = PodNet::write(root.dir());
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let (sandbox, id, _) = streaming_pod(&mut c, "streams").await;
        let exec = |cmd: &[&str], stdin: bool, tty: bool| cri::ExecRequest {
            container_id: id.clone(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        };
        let script = ["sh", "-c", "cat; echo to-stderr >&2; exit 3"];

        // SPDY, v4: stdin in, both outputs, the exit code as kubelet's
        // NonZeroExitCode status.
        let mut c2 = c.clone();
        let url = c2
            .exec(exec(&script, true, false))
            .await
            .unwrap()
            .into_inner()
            .url;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let got = streaming::spdy_remote(
            &url,
            &["error", "stdin", "stdout", "stderr"],
            Some(b"from-stdin\n"),
            None,
            async {},
        )
        .await;
        assert_eq!(got.text("stdout"), "from-stdin\n");
        assert_eq!(got.text("stderr"), "to-stderr\n");
        let st = got.status();
        assert_eq!(st["status"], "Failure", "{st}");
        assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
        assert_eq!(exit_code_of(&st).as_deref(), Some("3"), "{st}");

        // The URL was single-use: a second upgrade is refused.
        let (host, path) = url
            .strip_prefix("http://")
            .unwrap()
            .split_once('/')
            .unwrap();
        let again = http_get_path(host, &format!("/{path}"));
        assert!(again.starts_with("HTTP/1.1 404"), "{again}");
        assert!(
            again.contains("unknown or expired streaming token"),
            "{again}"
        );

        // A command that succeeds: Success.
        let url = c2
            .exec(exec(&["echo", "fine"], false, false))
            .await
            .unwrap()
            .into_inner()
            .url;
        let got =
            streaming::spdy_remote(&url, &["error", "stdout", "stderr"], None, None, async {})
                .await;
        assert_eq!(got.text("stdout"), "fine\n");
        assert_eq!(got.status()["status"], "Success");

        // Websocket, v5: the same exec, stdin closed with the v5 signal.
        let url = c2
            .exec(exec(&script, true, false))
            .await
            .unwrap()
            .into_inner()
            .url;
        let (got, close) = streaming::ws_remote(&url, Some(b"over-ws\n"), |_| false).await;
        assert_eq!(got.text("stdout"), "over-ws\n");
        assert_eq!(got.text("stderr"), "to-stderr\n");
        assert_eq!(exit_code_of(&got.status()).as_deref(), Some("3"));
        assert_eq!(close, Some(1000), "a normal closure");

        // A terminal over SPDY: the process has a pty, and the resize sent
        // by the client is its window size.
        let marker = format!("tty-{}", std::process::id());
        let url = c2
            .exec(exec(
                &["sh", "-c", "tty; stty size; sleep 3; exit 4", &marker],
                false,
                true,
            ))
            .await
            .unwrap()
            .into_inner()
            .url;
        let size = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = size.clone();
        let watch = async move {
            // The exec'd shell, by its $0, and its terminal's size.
            for _ in 0..100 {
                if let Some(ws) = winsize_of_process_with(&marker) {
                    if ws != (0, 0) {
                        *seen.lock().unwrap() = Some(ws);
                        return;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        let got = streaming::spdy_remote(
            &url,
            &["error", "stdout", "resize"],
            None,
            Some((100, 30)),
            watch,
        )
        .await;
        assert!(got.text("stdout").contains("/dev/pts/"), "{got:?}");
        // The process started with the client's size (busybox's stty fails
        // on a 0x0 terminal).
        assert!(got.text("stdout").contains("30 100"), "{got:?}");
        assert_eq!(exit_code_of(&got.status()).as_deref(), Some("4"));
        assert_eq!(*size.lock().unwrap(), Some((30, 100)), "rows, cols");

        // Attach over websocket: the container's live output.
        let url = c2
            .attach(cri::AttachRequest {
                container_id: id.clone(),
                stdin: false,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        assert!(url.contains("/attach/"), "{url}");
        let (got, _) =
            streaming::ws_remote(&url, None, |g| g.text("stdout").contains("tick\ntick\n")).await;
        assert!(got.text("stdout").contains("tick\n"), "{got:?}");
        // And over SPDY, ended by the container stopping (Success).
        let url = c2
            .attach(cri::AttachRequest {
                container_id: id.clone(),
                stdin: false,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let mut c3 = c.clone();
        let stop_id = id.clone();
        let stopper = async move {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            c3.stop_container(cri::StopContainerRequest {
                container_id: stop_id,
                timeout: 1,
            })
            .await
            .unwrap();
        };
        let got =
            streaming::spdy_remote(&url, &["error", "stdout", "stderr"], None, None, stopper).await;
        assert!(got.text("stdout").contains("tick\n"), "{got:?}");
        assert_eq!(got.status()["status"], "Success");

        // Bad requests: kubelet's rules, the container's state, unknown ids.
        let mut bad = exec(&["true"], false, true);
        bad.stderr = true;
        let e2 = c2.exec(bad).await.unwrap_err();
        assert_eq!(e2.code(), tonic::Code::InvalidArgument);
        assert_eq!(e2.message(), "exec: tty and stderr cannot both be true");
        let e = c2.exec(exec(&["true"], false, false)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        let mut gone = exec(&["true"], false, false);
        gone.container_id = "nosuch".into();
        let e = c2.exec(gone).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(e.message(), "container nosuch not found");

        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
}

/// The window size (rows, cols) of the terminal on fd 0 of the process
/// whose command line holds `marker`.
fn winsize_of_process_with(marker: &str) -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !cmdline.split(|b| *b == 0).any(|a| a == marker.as_bytes()) {
            continue;
        }
        let tty = std::fs::File::open(e.path().join("fd/0")).ok()?;
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize into the valid pointer.
        if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } != 0 {
            return None;
        }
        return Some((ws.ws_row, ws.ws_col));
    }
    None
}

/// GET `path` on `host` (HTTP/1.1, connection closed); the whole answer.
fn http_get_path(host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn cri_port_forward_through_the_streaming_url_over_spdy_and_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use hako_cri::stream::spdy::Event;
    use std::collections::HashMap;
    use tokio_tungstenite::tungstenite::Message;

    let root = Root::new();
    let _net = PodNet::write(root.dir());
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let (sandbox, _, _) = streaming_pod(&mut c, "forward").await;
        let request = b"GET /passwd HTTP/1.0\r\n\r\n";
        let pf = |c: &mut RuntimeServiceClient<Channel>| {
            let mut c = c.clone();
            let sandbox = sandbox.clone();
            async move {
                c.port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: sandbox,
                    port: vec![8080],
                })
                .await
                .unwrap()
                .into_inner()
                .url
            }
        };

        // SPDY (portforward.k8s.io): a stream pair per connection; httpd
        // listens on the pod's 127.0.0.1 only, so the answer proves the
        // connection was made inside the pod's network namespace.
        let url = pf(&mut c).await;
        assert!(url.contains("/portforward/"), "{url}");
        let mut s = streaming::spdy_connect(&url, "portforward.k8s.io").await;
        let pair = |kind: &str, port: &str, rid: &str| {
            vec![
                ("streamtype".to_string(), kind.to_string()),
                ("port".to_string(), port.to_string()),
                ("requestid".to_string(), rid.to_string()),
            ]
        };
        s.writer
            .open(1, pair("error", "8080", "0"), false)
            .await
            .unwrap();
        s.writer
            .open(3, pair("data", "8080", "0"), false)
            .await
            .unwrap();
        s.writer.data(3, request).await.unwrap();
        // A second connection, to a port nothing listens on.
        s.writer
            .open(5, pair("error", "1", "1"), false)
            .await
            .unwrap();
        s.writer
            .open(7, pair("data", "1", "1"), false)
            .await
            .unwrap();
        let mut data = Vec::new();
        let mut errors = String::new();
        let mut fins = 0;
        while fins < 4 {
            match s.events.recv().await.unwrap() {
                Event::Data {
                    stream_id,
                    data: d,
                    fin,
                } => {
                    match stream_id {
                        3 => data.extend(d),
                        5 => errors.push_str(&String::from_utf8_lossy(&d)),
                        _ => assert!(d.is_empty(), "stream {stream_id}: {d:?}"),
                    }
                    fins += fin as usize;
                }
                Event::Closed => panic!("the server went away"),
                _ => {}
            }
        }
        let data = String::from_utf8_lossy(&data);
        assert!(data.starts_with("HTTP/1.1 200 OK"), "{data}");
        assert!(data.contains("root:x:0:0:root:/root:/bin/sh"), "{data}");
        assert!(
            errors.starts_with(&format!(
                "error forwarding port 1 to pod sandbox {sandbox}: connecting to port 1 in the pod:"
            )),
            "{errors}"
        );
        assert_eq!(errors.lines().count(), 1, "{errors}");

        // Websocket (v4.channel.k8s.io): two channels per port, each
        // opened by the port, little-endian.
        let url = pf(&mut c).await;
        let mut ws = streaming::ws_connect(&format!("{url}?port=8080"), "v4.channel.k8s.io").await;
        let mut m = vec![0u8];
        m.extend_from_slice(request);
        let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
        let mut sent = false;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(b) = msg else { break };
            got.entry(b[0]).or_default().extend_from_slice(&b[1..]);
            if !sent && got.contains_key(&1) {
                ws.send(Message::Binary(m.clone().into())).await.unwrap();
                sent = true;
            }
            if String::from_utf8_lossy(&got[&0]).contains("/bin/sh\n") {
                break;
            }
        }
        assert_eq!(
            got[&1],
            8080u16.to_le_bytes(),
            "the error channel: only the port"
        );
        assert_eq!(&got[&0][..2], 8080u16.to_le_bytes());
        let data = String::from_utf8_lossy(&got[&0][2..]);
        assert!(data.starts_with("HTTP/1.1 200 OK"), "{data}");
        assert!(data.contains("root:x:0:0"), "{data}");

        // A stopped pod cannot be forwarded to; an unknown one is NotFound.
        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
        let e = c
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: sandbox.clone(),
                port: vec![8080],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        let e = c
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: "nosuch".into(),
                port: vec![8080],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    });
}

/// How many inotify instances process `pid` holds (each event follower
/// of the server has one).
fn inotify_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.to_string_lossy() == "anon_inode:inotify")
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn cri_sandbox_events_and_a_follower_ends_with_its_client() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    let pid = server.child.id();
    let idle = inotify_fds(pid);
    rt().block_on(async {
        let mut c = server.runtime().await;
        let mut events = c
            .get_container_events(cri::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
        wait_for("the follower to start", || inotify_fds(pid) == idle + 1);
        let pod = pod_config("sandbox-events", true);
        let sandbox = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let mut seen = Vec::new();
        while let Some(e) = events.message().await.unwrap() {
            if e.container_id != sandbox {
                continue;
            }
            let kind = cri::ContainerEventType::try_from(e.container_event_type).unwrap();
            use cri::ContainerEventType::*;
            match kind {
                ContainerStartedEvent => {
                    let st = e.pod_sandbox_status.as_ref().expect("the sandbox's status");
                    assert_eq!(st.id, sandbox);
                    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
                    c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: sandbox.clone(),
                    })
                    .await
                    .unwrap();
                }
                ContainerStoppedEvent => {
                    let st = e.pod_sandbox_status.as_ref().expect("the sandbox's status");
                    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
                    c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: sandbox.clone(),
                    })
                    .await
                    .unwrap();
                }
                _ => {}
            }
            seen.push(kind);
            if kind == ContainerDeletedEvent {
                break;
            }
        }
        use cri::ContainerEventType::*;
        assert_eq!(
            seen,
            [
                ContainerCreatedEvent,
                ContainerStartedEvent,
                ContainerStoppedEvent,
                ContainerDeletedEvent
            ]
        );
        // The client leaves while nothing happens: its follower goes anyway.
        drop(events);
        drop(c);
    });
    wait_for("the follower to end with its client", || {
        inotify_fds(pid) == idle
    });
}

#[test]
fn cri_simultaneous_remove_image_calls_all_succeed() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let c = server.images().await;
        // As critest's "should not fail on simultaneous RemoveImage calls":
        // whichever call comes second finds nothing left, which is success.
        let calls = (0..10).map(|_| {
            let mut c = c.clone();
            async move {
                c.remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    }),
                })
                .await
            }
        });
        for r in futures_util::future::join_all(calls).await {
            r.unwrap();
        }
    });
    assert!(!root.ok(&["images"]).contains("busybox"));
}

/// ExecSync `sh -c script` in container `id`: (exit code, stdout, stderr).
async fn sh_in(
    c: &mut RuntimeServiceClient<Channel>,
    id: &str,
    script: &str,
) -> (i32, String, String) {
    let r = c
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 20,
        })
        .await
        .unwrap()
        .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).trim().to_string(),
        String::from_utf8_lossy(&r.stderr).trim().to_string(),
    )
}

async fn run_pod(c: &mut RuntimeServiceClient<Channel>, pod: &cri::PodSandboxConfig) -> String {
    c.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(pod.clone()),
        runtime_handler: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .pod_sandbox_id
}

/// Masked and read-only paths come from the request (its lists replace
/// the defaults, empty meaning none, as containerd); an unset PID mode is
/// the pod's (the proto's zero value); the containers of a pod share the
/// sandbox's /dev/shm with its IPC namespace.
#[test]
fn cri_masked_readonly_paths_pod_pid_namespace_and_shared_dev_shm() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let pod = pod_config("paths", false);
        let sandbox = run_pod(&mut c, &pod).await;
        let with_sec = |name: &str, sec: Option<cri::LinuxContainerSecurityContext>| {
            let mut cc = container_config(name, &["sleep", "3600"], "", Vec::new());
            cc.linux = sec.map(|s| cri::LinuxContainerConfig {
                security_context: Some(s),
                ..Default::default()
            });
            cc
        };
        let masked = create_and_start(
            &mut c,
            &sandbox,
            &pod,
            with_sec(
                "masked",
                Some(cri::LinuxContainerSecurityContext {
                    masked_paths: vec!["/etc/hostname".into(), "/srv/hidden".into()],
                    readonly_paths: vec!["/tmp".into()],
                    ..Default::default()
                }),
            ),
        )
        .await;
        // No security context at all: no namespace options either.
        let plain = create_and_start(&mut c, &sandbox, &pod, with_sec("plain", None)).await;

        // The masked file reads empty (/dev/null over it), the read-only
        // path refuses writes; the plain container has neither, nor the
        // engine's default masks (an empty list is none).
        assert_eq!(
            sh_in(&mut c, &masked, "cat /etc/hostname | wc -c").await.1,
            "0"
        );
        let (code, _, err) = sh_in(&mut c, &masked, "touch /tmp/x").await;
        assert_ne!(code, 0);
        assert!(err.contains("Read-only file system"), "{err}");
        assert_ne!(
            sh_in(&mut c, &plain, "cat /etc/hostname | wc -c").await.1,
            "0"
        );
        assert_eq!(
            sh_in(&mut c, &plain, "touch /tmp/x && echo ok").await.1,
            "ok"
        );
        assert_eq!(
            sh_in(
                &mut c,
                &plain,
                "grep -c ' /proc/kcore ' /proc/self/mountinfo"
            )
            .await
            .1,
            "0"
        );

        // Unset PID mode: the pod's namespace, whose pid 1 is the pause.
        let (_, cmdline, _) = sh_in(&mut c, &plain, "tr '\\0' ' ' < /proc/1/cmdline").await;
        assert!(cmdline.contains("cri pause"), "pid 1 is {cmdline:?}");
        let (_, ps, _) = sh_in(&mut c, &masked, "ls -d /proc/[0-9]* | wc -l").await;
        assert!(ps.parse::<u32>().unwrap() >= 3, "{ps} processes");

        // One /dev/shm for the pod.
        sh_in(&mut c, &masked, "echo shared > /dev/shm/note").await;
        assert_eq!(sh_in(&mut c, &plain, "cat /dev/shm/note").await.1, "shared");

        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    });
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.root().to_str().unwrap()),
        "mounts left under the root"
    );
}

/// A CRI mount with an image is an image volume: the image's root
/// filesystem, read-only, at the container path; it goes with the container.
#[test]
fn cri_image_volume_is_the_images_rootfs_read_only() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let pod = pod_config("imgvol", false);
        let sandbox = run_pod(&mut c, &pod).await;
        let volume = |image: &str| cri::Mount {
            container_path: "/image".into(),
            readonly: true,
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = create_and_start(
            &mut c,
            &sandbox,
            &pod,
            container_config("vol", &["sleep", "3600"], "", vec![volume("busybox")]),
        )
        .await;
        assert_eq!(
            sh_in(&mut c, &id, "ls /image/bin/sh && echo found").await.1,
            "/image/bin/sh\nfound"
        );
        let (code, _, err) = sh_in(&mut c, &id, "touch /image/written").await;
        assert_ne!(code, 0);
        assert!(err.contains("Read-only file system"), "{err}");
        let st = c
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.mounts[0].container_path, "/image");
        assert_eq!(st.mounts[0].image.as_ref().unwrap().image, "busybox");

        // An absent image is NotFound and leaves no container.
        let e = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(container_config(
                    "novol",
                    &["sleep", "3600"],
                    "",
                    vec![volume("nosuch:1")],
                )),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert!(e.message().contains("nosuch:1"), "{e:?}");

        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    });
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.root().to_str().unwrap()),
        "mounts left under the root"
    );
    // The image is free again.
    root.ok(&["rmi", "busybox"]);
}

/// Unmounts (lazily) on drop.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A bidirectional mount (`rshared`): a mount made in the container shows
/// on the host and one made on the host shows in the container; its host
/// side must be a shared mount, as containerd checks.
#[test]
fn cri_bidirectional_mount_propagates_both_ways() {
    use nix::mount::{mount, MsFlags};
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    let src = root.dir().join("shared-src");
    let flag_dir = root.dir().join("flag");
    std::fs::create_dir_all(src.join("from-host")).unwrap();
    std::fs::create_dir_all(src.join("from-container")).unwrap();
    std::fs::create_dir_all(&flag_dir).unwrap();
    std::fs::write(flag_dir.join("flag"), "host").unwrap();
    let not_shared = root.dir().join("not-shared");
    std::fs::create_dir_all(&not_shared).unwrap();
    let none = None::<&str>;
    mount(
        Some(&src),
        &src,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .unwrap();
    let _src = Unmount(src.clone());
    mount(none, &src, none, MsFlags::MS_SHARED | MsFlags::MS_REC, none).unwrap();
    mount(Some(&not_shared), &not_shared, none, MsFlags::MS_BIND, none).unwrap();
    let _not_shared = Unmount(not_shared.clone());
    mount(none, &not_shared, none, MsFlags::MS_PRIVATE, none).unwrap();
    let _inner = Unmount(src.join("from-container"));
    let _host = Unmount(src.join("from-host"));
    rt().block_on(async {
        let mut c = server.runtime().await;
        let pod = pod_config("propagation", false);
        let sandbox = run_pod(&mut c, &pod).await;
        let with_mount = |name: &str, host: &Path| {
            let mut cc = container_config(
                name,
                &["sleep", "3600"],
                "",
                vec![cri::Mount {
                    container_path: "/mnt/shared".into(),
                    host_path: host.to_string_lossy().into_owned(),
                    propagation: cri::MountPropagation::PropagationBidirectional as i32,
                    ..Default::default()
                }],
            );
            cc.linux = Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    privileged: true,
                    ..Default::default()
                }),
                ..Default::default()
            });
            cc
        };
        let id = create_and_start(&mut c, &sandbox, &pod, with_mount("both", &src)).await;
        // Container to host.
        let (code, _, err) =
            sh_in(&mut c, &id, "mount --bind /etc /mnt/shared/from-container").await;
        assert_eq!(code, 0, "{err}");
        assert!(src.join("from-container/hostname").exists());
        // Host to container.
        mount(
            Some(&flag_dir),
            &src.join("from-host"),
            none,
            MsFlags::MS_BIND,
            none,
        )
        .unwrap();
        assert_eq!(
            sh_in(&mut c, &id, "cat /mnt/shared/from-host/flag").await.1,
            "host"
        );
        // A host side that is not a shared mount is refused, one line.
        let e = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(with_mount("private", &not_shared)),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("not a shared mount"), "{e:?}");
        assert!(!e.message().contains('\n'), "{e:?}");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    });
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

/// The default pod network's bridge (`hako-cri0`, shared by every root) is a
/// host object no root owns: `system reset` deletes it once no pod of any root
/// is attached, and never while one is.
#[test]
fn cri_default_pod_bridge_goes_at_reset_once_no_pod_uses_it() {
    let bridge = Path::new("/sys/class/net/hako-cri0");
    let root = Root::new();
    // An empty CNI directory: the server writes the default network there.
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    let id = rt().block_on(async {
        let mut c = server.runtime().await;
        c.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("bridged", false)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id
    });
    let ports = || std::fs::read_dir(bridge.join("brif")).map_or(0, |d| d.count());
    assert!(ports() >= 1, "the pod is not on hako-cri0");
    // Resetting another root leaves the bridge: this root's pod is on it.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(hako())
        .arg("--root")
        .arg(other.path().join("root"))
        .args(["system", "reset", "-f"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bridge.exists() && ports() >= 1);
    rt().block_on(async {
        let mut c = server.runtime().await;
        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    });
    drop(server);
    root.ok(&["system", "reset", "-f"]);
    // Gone, unless a pod of a test running beside this one is on it now.
    assert!(
        !bridge.exists() || ports() >= 1,
        "system reset left an idle hako-cri0"
    );
}

/// The super options of the overlay mounted at `rootfs`, if mounted.
fn overlay_options(rootfs: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let at = format!(" {} ", rootfs.display());
    mounts
        .lines()
        .find(|l| l.contains(&at) && l.contains(" - overlay "))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
}

/// A sandbox's and a container's writable layers are `volatile` overlays
/// (no sync at unmount: nothing in them is needed after a crash, kubelet
/// makes new attempts); one found unmounted with its volatile marker, as
/// after a reboot, starts again from the image with a fresh layer; the
/// pod's removal leaves no mount.
#[test]
fn cri_pod_roots_are_volatile_overlays_fresh_after_a_reboot_and_go_with_the_pod() {
    let root = Root::new();
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    let containers = root.root().join("containers");
    rt().block_on(async {
        let mut c = server.runtime().await;
        let pod = pod_config("volatile", false);
        let sandbox = run_pod(&mut c, &pod).await;
        let ctr = create_and_start(
            &mut c,
            &sandbox,
            &pod,
            container_config("v", &["sleep", "3600"], "", Vec::new()),
        )
        .await;
        for id in [&sandbox, &ctr] {
            let opts = overlay_options(&containers.join(id).join("rootfs"))
                .unwrap_or_else(|| panic!("no overlay at the rootfs of {id}"));
            // Shown as `fsync=volatile` since Linux 6.6.
            assert!(
                opts.split(',')
                    .any(|o| o == "volatile" || o == "fsync=volatile"),
                "{id}: not volatile: {opts}"
            );
        }
        assert_eq!(
            sh_in(&mut c, &ctr, "echo kept > /written; cat /written")
                .await
                .0,
            0
        );
        c.stop_container(cri::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        // What a reboot leaves: no mount, the kernel's volatile marker.
        let rootfs = containers.join(&ctr).join("rootfs");
        nix::mount::umount(&rootfs).unwrap();
        assert!(containers
            .join(&ctr)
            .join("work/work/incompat/volatile")
            .exists());
        c.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
        let (code, out, _) = sh_in(&mut c, &ctr, "cat /written 2>&1; true").await;
        assert_eq!(code, 0);
        assert!(
            out.contains("No such file"),
            "the old layer was kept: {out}"
        );
        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    });
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.root().to_str().unwrap()),
        "mounts left under the root"
    );
}

/// The command lines of the processes whose arguments hold `needle`.
fn cmdlines_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn cri_sandbox_whose_pause_died_stops_and_goes_without_an_exit_command() {
    let root = Root::new();
    let net = PodNet::write(root.dir());
    let server = Server::start(&root.root(), root.dir(), &config_in(root.dir(), ""));
    let (id, pid) = rt().block_on(async {
        let mut c = server.runtime().await;
        let id = run_pod(&mut c, &pod_config("lone", false)).await;
        let st = c
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        (id, sandbox_pid(&st))
    });
    // StopPodSandbox takes the network down itself: the pause's monitor
    // starts no `hako container-cleanup` after its exit.
    let monitor: Vec<_> = cmdlines_with(&format!("--id {id} "))
        .into_iter()
        .filter(|c| c.contains("hako-monitor"))
        .collect();
    assert_eq!(monitor.len(), 1, "{monitor:?}");
    assert!(!monitor[0].contains("--exit-command"), "{}", monitor[0]);
    let netns = root.root().join("run/netns").join(&id);
    assert!(netns.exists());
    // The pause dies on its own; kubelet then stops and removes the pod.
    // SAFETY: kill(2) of the pod's pause, a process of this test's server.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    wait_for("the sandbox to be seen not ready", || {
        rt().block_on(async {
            let mut c = server.runtime().await;
            c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .state
                == cri::PodSandboxState::SandboxNotready as i32
        })
    });
    let leases = || {
        std::fs::read_dir(root.dir().join("ipam").join(&net.bridge))
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&net.subnet_prefix)
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(leases(), 1);
    rt().block_on(async {
        let mut c = server.runtime().await;
        c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    });
    // Gone when StopPodSandbox answers, not later.
    assert!(!netns.exists(), "the sandbox's netns is left");
    assert_eq!(leases(), 0, "the pod's address is still leased");
    rt().block_on(async {
        let mut c = server.runtime().await;
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    });
    assert!(cmdlines_with(&id).is_empty(), "{:?}", cmdlines_with(&id));
    assert!(!Path::new("/sys/fs/cgroup/hako").join(&id).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount of the sandbox is left");
    assert!(root.ok(&["ps", "-a", "-q"]).trim().is_empty());
}
