//! The kubelet's Node: registration (capacity, allocatable, addresses, nodeInfo, daemon
//! endpoint), status updates with conditions, and the heartbeat Lease in kube-node-lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_cri::v1 as cri;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::kubelet::Kubelet;

/// What the machine has, read once at start.
pub struct Machine {
    pub cpus: usize,
    pub memory: i128,
    pub storage: i128,
}

pub fn machine(root: &std::path::Path) -> Machine {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i128>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let storage = nix_statvfs(root);
    Machine {
        cpus,
        memory,
        storage,
    }
}

fn nix_statvfs(p: &std::path::Path) -> i128 {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs(3) fills the zeroed struct we own from a NUL-terminated path.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) == 0 {
            s.f_blocks as i128 * s.f_frsize as i128
        } else {
            0
        }
    }
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The host's primary IPv4 address: the source address of the default route (a UDP
/// connect sends nothing), else loopback.
pub fn host_ip() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

fn quantities(m: &Machine) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(m.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", m.memory / 1024)),
        ),
        ("pods".to_string(), Quantity("110".into())),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", m.storage / 1024)),
        ),
    ])
}

impl Kubelet {
    fn node_status(&self, runtime_ready: Option<String>, old: Option<&NodeStatus>) -> NodeStatus {
        let now = Time(Utc::now());
        let old_conds = old.and_then(|s| s.conditions.clone()).unwrap_or_default();
        let cond = |t: &str, status: bool, reason: &str, message: &str| {
            let s = if status { "True" } else { "False" };
            let since = old_conds
                .iter()
                .find(|c| c.type_ == t && c.status == s)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: t.into(),
                status: s.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(since),
            }
        };
        let ready = match &runtime_ready {
            None => cond(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
            ),
            Some(why) => cond("Ready", false, "KubeletNotReady", why),
        };
        let q = quantities(&self.machine);
        NodeStatus {
            capacity: Some(q.clone()),
            allocatable: Some(q),
            conditions: Some(vec![
                cond(
                    "MemoryPressure",
                    false,
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond(
                    "DiskPressure",
                    false,
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                cond(
                    "PIDPressure",
                    false,
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                ready,
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.host_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.node_name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: self.port as i32,
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: match std::env::consts::ARCH {
                    "x86_64" => "amd64".into(),
                    "aarch64" => "arm64".into(),
                    a => a.into(),
                },
                boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
                container_runtime_version: format!(
                    "{}://{}",
                    self.cri.runtime_name, self.cri.runtime_version
                ),
                kernel_version: read_trim("/proc/sys/kernel/osrelease"),
                kube_proxy_version: String::new(),
                kubelet_version: crate::kubelet::VERSION.into(),
                machine_id: read_trim("/etc/machine-id"),
                operating_system: "linux".into(),
                os_image: os_image(),
                system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Why the runtime is not ready (None when it is), from CRI Status.
    async fn runtime_problem(&self) -> Option<String> {
        match self
            .cri
            .rt
            .clone()
            .status(cri::StatusRequest { verbose: false })
            .await
        {
            Err(e) => Some(format!("container runtime is down: {}", e.message())),
            Ok(r) => {
                let conds = r
                    .into_inner()
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default();
                conds.iter().find(|c| !c.status).map(|c| {
                    format!(
                        "container runtime not ready: {} {}: {}",
                        c.r#type, c.reason, c.message
                    )
                })
            }
        }
    }

    /// Create the Node, or take over an existing one of the same name.
    pub async fn register_node(&self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.node_name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "kubernetes.io/arch".to_string(),
                self.node_status(None, None)
                    .node_info
                    .map(|i| i.architecture)
                    .unwrap_or_default(),
            ),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ]);
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.node_name.clone()),
                labels: Some(labels.clone()),
                annotations: Some(BTreeMap::from([(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = serde_json::json!({"metadata": {"labels": labels}});
                api.patch(
                    &self.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .with_context(|| format!("updating node {:?}", self.node_name))?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("registering node {:?}", self.node_name))
            }
        }
        self.update_node_status().await
    }

    pub async fn update_node_status(&self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let old = api
            .get_opt(&self.node_name)
            .await
            .with_context(|| format!("reading node {:?}", self.node_name))?;
        let Some(old) = old else {
            // Deleted under us: register again, as upstream does.
            return Box::pin(self.register_node()).await;
        };
        let status = self.node_status(self.runtime_problem().await, old.status.as_ref());
        let patch = serde_json::json!({ "status": status });
        api.patch_status(
            &self.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .with_context(|| format!("writing the status of node {:?}", self.node_name))?;
        Ok(())
    }

    /// Renew (or create) the node's Lease in kube-node-lease.
    pub async fn renew_lease(&self) -> Result<()> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = MicroTime(Utc::now());
        match api.get_opt(&self.node_name).await? {
            Some(_) => {
                let patch = serde_json::json!({"spec": {"renewTime": now, "holderIdentity": self.node_name, "leaseDurationSeconds": 40}});
                api.patch(
                    &self.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            }
            None => {
                let node_uid = Api::<Node>::all(self.client.clone())
                    .get_opt(&self.node_name)
                    .await?
                    .and_then(|n| n.metadata.uid);
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.node_name.clone()),
                        namespace: Some("kube-node-lease".into()),
                        owner_references: node_uid.map(|uid| {
                            vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: self.node_name.clone(),
                                uid,
                                ..Default::default()
                            }]
                        }),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.node_name.clone()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &lease).await?;
            }
        }
        Ok(())
    }

    /// Heartbeats: the Lease and the node's status every 10 s (upstream's defaults).
    pub async fn heartbeat(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if let Err(e) = self.renew_lease().await {
                tracing::warn!("renewing the node lease: {e:#}");
            }
            if let Err(e) = self.update_node_status().await {
                tracing::warn!("{e:#}");
            }
        }
    }
}
