//! A whole single-node cluster for the kube suites that run real pods: `hako kube
//! up` (API server, CRI, kubelet, scheduler, controllers) on a temp hako root with
//! the busybox image, which a `hako registry serve` on 127.0.0.1 serves as
//! `REGISTRY/kube/busybox:1` for the pods to pull. Drop deletes what the test named
//! through the kubelet, stops the control plane and its children, undoes an `up`
//! that had to be killed (`kube down`), and the root resets itself.
//! Needs `mod engine_common; mod kube_common;` beside it.

#![allow(dead_code)]

use std::process::Command;

use crate::engine_common::Root;
use crate::kube_common::{condition, hako, node_name, wait_for, Kube, Registry};

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
