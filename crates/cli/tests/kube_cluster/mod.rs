//! A whole single-node cluster for the kube suites that run real pods: `hako kube
//! up` (API server, CRI, kubelet, scheduler, controllers) on a temp hako root with
//! the busybox image, which a `hako registry serve` on 127.0.0.1 serves as
//! `REGISTRY/kube/busybox:1` for the pods to pull. Drop deletes what the test named
//! through the kubelet, stops the control plane and its children, undoes an `up`
//! that had to be killed (`kube down`), and the root resets itself.
//! Needs `mod engine_common; mod kube_common;` beside it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::engine_common::Root;
use crate::kube_common::{condition, hako, node_name, terminate, wait_for, Kube, Registry};

pub struct Cluster {
    pub kube: Kube,
    /// `REGISTRY/kube/busybox:1`
    pub image: String,
    /// Kinds deleted (`--all`, waiting) through the kubelet before the control plane
    /// stops, so their sandboxes and network namespaces go the CRI's way.
    pub delete_on_drop: Option<String>,
    pub reg: Registry,
    pub root: Root,
}

impl std::ops::Deref for Cluster {
    type Target = Kube;
    fn deref(&self) -> &Kube {
        &self.kube
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(kinds) = &self.delete_on_drop {
            let _ = self.kube.run(
                &["delete", kinds, "--all", "--wait=true", "--timeout=60s"],
                None,
            );
        }
        self.kube.stop();
        // Children of an `up` that was killed (they die with it, but make sure).
        for name in ["kubelet", "scheduler", "cri"] {
            let pidfile = self.root.root().join(format!("kube/{name}.pid"));
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                // SAFETY: kill(2) on a pid this test's control plane wrote.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        // kube-proxy's rules of an `up` that had to be killed.
        let _ = Command::new(hako())
            .arg("--root")
            .arg(self.root.root())
            .args(["kube", "down"])
            .output();
    }
}

/// A root with busybox and a loopback registry serving it as `image`.
pub fn prepare() -> (Root, Registry, String) {
    let root = Root::new();
    let reg = Registry::start(&root.dir().join("registry-root"), &[]);
    let image = format!("{}/kube/busybox:1", reg.addr);
    root.ok(&["tag", "busybox", &image]);
    root.ok(&["push", &image]);
    root.ok(&["rmi", &image]);
    (root, reg, image)
}

impl Cluster {
    /// `kube up ARGS` on a fresh root; returns once the node is Ready.
    pub fn up(args: &[&str]) -> Cluster {
        let (root, reg, image) = prepare();
        Cluster::start(root, reg, image, args)
    }

    /// `kube up ARGS` on a root from [`prepare`]; returns once the node is Ready.
    pub fn start(root: Root, reg: Registry, image: String, args: &[&str]) -> Cluster {
        let kube = Kube::up_in(&root.root(), root.dir(), args, &[]);
        let c = Cluster {
            kube,
            image,
            delete_on_drop: None,
            reg,
            root,
        };
        wait_for("the node to be Ready", || c.node_ready(&node_name()));
        c
    }

    pub fn node_ready(&self, node: &str) -> bool {
        self.try_json(&["get", "node", node])
            .is_some_and(|n| condition(&n, "Ready")["status"] == "True")
    }
}

/// A second node on the cluster's API server: a `hako cri serve` and a `hako kube
/// kubelet` with their own root (in the test's temp dir) and node name. Drop stops them
/// and resets that root (the pods they left running).
pub struct SecondNode {
    pub name: String,
    pub root: PathBuf,
    procs: Vec<Child>,
}

impl Drop for SecondNode {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().rev() {
            terminate(c);
        }
        let _ = Command::new(hako())
            .arg("--root")
            .arg(&self.root)
            .args(["system", "reset", "-f"])
            .output();
    }
}

impl Cluster {
    /// Start a second node named `second-PID`; returns once it is Ready.
    pub fn second_node(&self) -> SecondNode {
        let dir = self.root.dir();
        let (sock, conf) = (dir.join("cri2.sock"), dir.join("cri2.toml"));
        let net = dir.join("net2.d").display().to_string();
        std::fs::write(&conf, format!("cni_conf_dir = {net:?}\n")).unwrap();
        let mut node = SecondNode {
            name: format!("second-{}", std::process::id()),
            root: dir.join("root2"),
            procs: Vec::new(),
        };
        let cri = Command::new(hako())
            .arg("--root")
            .arg(&node.root)
            .args(["cri", "serve", "--socket"])
            .arg(&sock)
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        node.procs.push(cri);
        let kubelet = Command::new(hako())
            .arg("--root")
            .arg(&node.root)
            .args(["kube", "kubelet", "--kubeconfig"])
            .arg(self.kubeconfig())
            .arg("--container-runtime-endpoint")
            .arg(format!("unix://{}", sock.display()))
            .args(["--node-name", &node.name, "--port", "0"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        node.procs.push(kubelet);
        wait_for("the second node to be Ready", || {
            self.node_ready(&node.name)
        });
        node
    }
}
