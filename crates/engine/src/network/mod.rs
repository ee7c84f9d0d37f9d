//! Container networks through CNI, as podman does: a network is a record
//! (name, subnet, bridge) from which a CNI configuration list is made; a
//! container on it gets a network namespace of its own, configured by the
//! standard plugins (bridge + host-local IPAM, portmap for `-p`)
//! before the runtime creates the container into it.
//!
//! - [`store`]: the `networks` table;
//! - [`subnet`]: IPv4 prefixes and choosing a free one;
//! - [`cni`]: executing plugin chains;
//! - [`isolation`]: forwarding, masquerading and isolation between networks;
//! - [`netns`]: persistent network namespaces;
//! - [`ports`]: published ports (`-p`, `-P`);
//! - [`setup`]: bringing a container's networks up and down, /etc/hosts;
//! - [`dns`]: the name server of user networks;
//! - [`joined`]: `--network container:ID`, another container's namespace;
//! - [`manage`]: `network create/ls/inspect/rm/prune/connect/disconnect`.

pub mod cni;
pub mod dns;
pub mod isolation;
mod joined;
mod manage;
pub mod netns;
pub mod ports;
mod setup;
pub(crate) mod store;
pub mod subnet;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use manage::NetworkCreate;
pub(crate) use setup::check_requested_ip;
pub use setup::{Attached, NetworkState};

/// The network containers join when none is named (docker's default).
pub const DEFAULT_NETWORK: &str = "bridge";

/// Network modes that are not CNI networks.
pub fn is_special_mode(mode: &str) -> bool {
    matches!(mode, "none" | "host") || mode.starts_with("container:")
}

/// A network of this root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// "bridge" (the only driver).
    pub driver: String,
    /// The Linux bridge interface.
    pub bridge: String,
    /// IPv4 prefix, "10.88.0.0/16".
    pub subnet: String,
    pub gateway: String,
    /// No masquerading and no default route: containers reach only each other.
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub created: String,
    /// `--ip-range`: the part of the subnet addresses are given from ("" = all).
    #[serde(default)]
    pub ip_range: String,
    /// `-o com.docker.network.driver.mtu` (0: the kernel's default).
    #[serde(default)]
    pub mtu: u32,
    /// The `-o` options as given (docker's `Options`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// One `network ls --filter` (docker's `GET /networks?filters=`): terms
/// of different keys must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// The name contains this text (docker matches names by substring).
    Name(String),
    /// The id starts with this.
    Id(String),
    Label(String, Option<String>),
    Driver(String),
    /// custom (true) or builtin (false: host, none, the default network).
    Custom(bool),
}

impl ListFilter {
    /// `name=`, `id=`, `label=KEY[=VALUE]`, `driver=`, `type=custom|builtin`.
    pub fn parse(f: &str) -> crate::Result<ListFilter> {
        let bad = |why: &str| crate::Error::Invalid(format!("invalid filter {f:?}: {why}"));
        let (k, v) = f.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
        Ok(match k {
            "name" => ListFilter::Name(v.into()),
            "id" => ListFilter::Id(v.into()),
            "label" => match v.split_once('=') {
                Some((a, b)) => ListFilter::Label(a.into(), Some(b.into())),
                None => ListFilter::Label(v.into(), None),
            },
            "driver" => ListFilter::Driver(v.into()),
            "type" => ListFilter::Custom(match v {
                "custom" => true,
                "builtin" => false,
                _ => return Err(bad("type is custom or builtin")),
            }),
            _ => return Err(bad("use name, id, label, driver or type")),
        })
    }

    /// Whether network `n` passes.
    pub fn matches_network(&self, n: &Network) -> bool {
        match self {
            ListFilter::Name(s) => n.name.contains(s.as_str()),
            ListFilter::Id(p) => n.id.starts_with(p.as_str()),
            ListFilter::Label(k, v) => n
                .labels
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|v| v == have)),
            ListFilter::Driver(d) => &n.driver == d,
            ListFilter::Custom(custom) => *custom != n.is_default(),
        }
    }

    /// Whether the network mode `name` (host, none: builtin, no id, no
    /// labels) with `driver` passes.
    pub fn matches_mode(&self, name: &str, driver: &str) -> bool {
        match self {
            ListFilter::Name(s) => name.contains(s.as_str()),
            ListFilter::Id(_) | ListFilter::Label(..) => false,
            ListFilter::Driver(d) => d == driver,
            ListFilter::Custom(custom) => !*custom,
        }
    }
}

impl Network {
    /// The predefined network, which has no name resolution between
    /// containers (as docker's default bridge); user networks do.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    /// The CNI configuration list of this network. host-local keeps its
    /// leases under `ipam_dir`, so separate roots never share them.
    pub fn conflist(&self, ipam_dir: &std::path::Path) -> Value {
        let mut range = json!({"subnet": self.subnet, "gateway": self.gateway});
        if let Some((start, end)) = subnet::range_bounds(&self.subnet, &self.ip_range) {
            range["rangeStart"] = json!(start.to_string());
            range["rangeEnd"] = json!(end.to_string());
        }
        let mut ipam = json!({
            "type": "host-local",
            "ranges": [[range]],
            "dataDir": ipam_dir,
        });
        if !self.internal {
            ipam["routes"] = json!([{"dst": "0.0.0.0/0"}]);
        }
        let mut conf = json!({
            "cniVersion": cni::CNI_VERSION,
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    // Masquerading and forwarding are hako's static chains
                    // (isolation.rs), not per-container rules.
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": ipam,
                    // `--ip` reaches host-local and `--mac-address` the bridge
                    // plugin as runtime values.
                    "capabilities": {"ips": true, "mac": true},
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        });
        if self.mtu != 0 {
            conf["plugins"][0]["mtu"] = json!(self.mtu);
        }
        conf
    }
}
