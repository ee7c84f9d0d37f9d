//! `network create/ls/inspect/rm/prune`: network records, their subnets and
//! bridges.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use super::subnet::{self, Prefix};
use super::{Network, DEFAULT_NETWORK};
use crate::engine::{Engine, DEFAULT_ROOT};
use crate::error::{Error, Result};
use crate::record::Status;

/// What `network create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    pub name: String,
    /// Only "bridge" exists.
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// `--ip-range` (needs `subnet`).
    pub ip_range: Option<String>,
    /// `-o KEY=VALUE`: docker's bridge options `com.docker.network.bridge.name`
    /// and `com.docker.network.driver.mtu`.
    pub options: BTreeMap<String, String>,
}

const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
const OPT_MTU: &str = "com.docker.network.driver.mtu";

fn validate_name(name: &str) -> Result<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::Invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

impl Engine {
    /// Where host-local keeps the address leases of this root's networks.
    pub(crate) fn ipam_dir(&self) -> PathBuf {
        self.run_root.join("cni").join("ipam")
    }

    /// Create a network. Without `--subnet` a free /24 is chosen.
    pub fn create_network(&self, o: &NetworkCreate) -> Result<Network> {
        validate_name(&o.name)?;
        if matches!(o.name.as_str(), "bridge" | "host" | "none") {
            return Err(Error::Conflict(format!(
                "network name {} is reserved for a predefined network",
                o.name
            )));
        }
        self.new_network(o)
    }

    fn new_network(&self, o: &NetworkCreate) -> Result<Network> {
        match o.driver.as_deref() {
            None | Some("bridge") => {}
            Some(d) => {
                return Err(Error::Invalid(format!(
                    "network {}: driver {d:?} is not supported (only bridge)",
                    o.name
                )))
            }
        }
        let others = self.db.list_networks()?;
        let mut taken: Vec<(Prefix, String)> = others
            .iter()
            .filter_map(|n| Prefix::parse(&n.subnet).ok().map(|p| (p, n.name.clone())))
            .collect();
        taken.extend(
            subnet::host_routes()
                .into_iter()
                .map(|p| (p, "a route on the host".to_string())),
        );
        let prefix = match &o.subnet {
            Some(s) => {
                let p = Prefix::parse(s)?;
                if let Some((_, by)) = taken.iter().find(|(t, _)| t.overlaps(&p)) {
                    return Err(Error::Conflict(format!(
                        "network {}: subnet {p} overlaps with {by}",
                        o.name
                    )));
                }
                p
            }
            None => {
                let all: Vec<Prefix> = taken.iter().map(|t| t.0).collect();
                let classic = Prefix::parse("10.88.0.0/16").expect("valid");
                if self.root == std::path::Path::new(DEFAULT_ROOT)
                    && o.name == DEFAULT_NETWORK
                    && !all.iter().any(|t| t.overlaps(&classic))
                {
                    classic
                } else {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    (self.root.as_path(), &o.name).hash(&mut h);
                    subnet::choose(h.finish(), &all)?
                }
            }
        };
        let gateway = match &o.gateway {
            Some(g) => {
                let ip: std::net::Ipv4Addr = g.parse().map_err(|_| {
                    Error::Invalid(format!("network {}: invalid gateway {g:?}", o.name))
                })?;
                if !prefix.contains(ip) {
                    return Err(Error::Invalid(format!(
                        "network {}: gateway {ip} is not in subnet {prefix}",
                        o.name
                    )));
                }
                ip
            }
            None => prefix.first_host(),
        };
        let ip_range = match &o.ip_range {
            Some(r) => {
                if o.subnet.is_none() {
                    return Err(Error::Invalid(format!(
                        "network {}: --ip-range needs --subnet",
                        o.name
                    )));
                }
                subnet::parse_range(&prefix, r)
                    .map_err(|e| Error::Invalid(format!("network {}: {e}", o.name)))?
                    .to_string()
            }
            None => String::new(),
        };
        let mut mtu = 0;
        let mut bridge_name = None;
        for (k, v) in &o.options {
            match k.as_str() {
                OPT_MTU => {
                    mtu = v.parse::<u32>().ok().filter(|m| (68..=65535).contains(m)).ok_or_else(|| {
                        Error::Invalid(format!(
                            "network {}: invalid option {OPT_MTU}={v:?}: an MTU of 68 to 65535",
                            o.name
                        ))
                    })?;
                }
                OPT_BRIDGE_NAME => {
                    let ok = !v.is_empty()
                        && v.len() <= 15
                        && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                    if !ok {
                        return Err(Error::Invalid(format!(
                            "network {}: invalid option {OPT_BRIDGE_NAME}={v:?}: an interface name of 1 to 15 characters [a-zA-Z0-9_.-]",
                            o.name
                        )));
                    }
                    if let Some(other) = others.iter().find(|n| n.bridge == *v) {
                        return Err(Error::Conflict(format!(
                            "network {}: bridge {v} is already used by network {}",
                            o.name, other.name
                        )));
                    }
                    if std::path::Path::new("/sys/class/net").join(v).exists() {
                        return Err(Error::Conflict(format!(
                            "network {}: an interface named {v} already exists on the host",
                            o.name
                        )));
                    }
                    bridge_name = Some(v.clone());
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "network {}: option {other:?} is not supported (only {OPT_BRIDGE_NAME} and {OPT_MTU})",
                        o.name
                    )))
                }
            }
        }
        let id = crate::names::new_id();
        let bridge = if let Some(b) = bridge_name {
            b
        } else if self.root == std::path::Path::new(DEFAULT_ROOT) && o.name == DEFAULT_NETWORK {
            "hako0".to_string()
        } else {
            // Interface names have 15 bytes; the id keeps roots apart.
            format!("hk-{}", &id[..12])
        };
        let n = Network {
            id,
            name: o.name.clone(),
            driver: "bridge".into(),
            bridge,
            subnet: prefix.to_string(),
            gateway: gateway.to_string(),
            internal: o.internal,
            labels: o.labels.clone(),
            created: crate::clock::now(),
            ip_range,
            mtu,
            options: o.options.clone(),
        };
        self.db.insert_network(&n)?;
        self.network_event(&n, "create", None);
        Ok(n)
    }

    /// A network event (docker's attributes: name, type, and the container
    /// for connect/disconnect).
    pub(crate) fn network_event(&self, n: &Network, action: &str, container: Option<&str>) {
        let mut e = crate::events::Event::new("network", action, &n.id)
            .attr("name", n.name.clone())
            .attr("type", n.driver.clone());
        if let Some(c) = container {
            e = e.attr("container", c);
        }
        self.events().emit(&e);
    }

    /// The default network, made on first use.
    pub fn default_network(&self) -> Result<Network> {
        if let Some(n) = self.db.find_network(DEFAULT_NETWORK)? {
            return Ok(n);
        }
        match self.new_network(&NetworkCreate {
            name: DEFAULT_NETWORK.into(),
            ..Default::default()
        }) {
            Ok(n) => Ok(n),
            // Another process made it first.
            Err(Error::Conflict(_)) => self
                .db
                .find_network(DEFAULT_NETWORK)?
                .ok_or_else(|| Error::not_found("network: bridge")),
            Err(e) => Err(e),
        }
    }

    /// A network by name, id or id prefix.
    pub fn network(&self, what: &str) -> Result<Network> {
        if what == DEFAULT_NETWORK {
            return self.default_network();
        }
        self.db
            .find_network(what)?
            .ok_or_else(|| Error::not_found(format!("network: {what}")))
    }

    /// Every network, the default one included.
    pub fn networks(&self) -> Result<Vec<Network>> {
        self.default_network()?;
        self.db.list_networks()
    }

    /// Names of the containers attached to `net` (running ones if `running`).
    fn users_of(&self, net: &Network, running: bool) -> Result<Vec<String>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|c| c.host.networks.iter().any(|a| a.network == net.name))
            .filter(|c| !running || c.state.status == Status::Running)
            .map(|c| c.name)
            .collect())
    }

    /// Remove a network that no running container uses; its bridge goes too.
    pub fn remove_network(&self, what: &str) -> Result<String> {
        if matches!(what, "bridge" | "host" | "none") {
            return Err(Error::Conflict(format!(
                "{what} is a pre-defined network and cannot be removed"
            )));
        }
        let n = self.network(what)?;
        let users = self.users_of(&n, true)?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "error while removing network {}: network has active endpoints (containers {})",
                n.name,
                users.join(", ")
            )));
        }
        self.destroy_network(&n)?;
        Ok(n.name)
    }

    /// Delete the record, the bridge and the leases of a network.
    pub(crate) fn destroy_network(&self, n: &Network) -> Result<()> {
        self.db.delete_network(&n.id)?;
        super::dns::stop(&self.run_root, &n.name);
        delete_link(&n.bridge)?;
        let _ = std::fs::remove_dir_all(self.ipam_dir().join(&n.name));
        self.network_event(n, "destroy", None);
        Ok(())
    }

    /// Remove every user network no container refers to; returns their names.
    /// The default network stays, but its bridge goes while no container
    /// refers to it (the bridge plugin makes it again at the next start), so
    /// a pruned temporary root leaves no `hk-*` bridge on the host.
    /// Only networks passing `filter` go (the default network's bridge too).
    pub fn prune_networks(&self, filter: &crate::prune_filter::PruneFilter) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for n in self.db.list_networks()? {
            if !self.users_of(&n, false)?.is_empty() || !filter.matches(&n.created, &n.labels) {
                continue;
            }
            if n.is_default() {
                // hako0, the default root's, stays as docker0 does.
                if n.bridge.starts_with("hk-") {
                    delete_link(&n.bridge)?;
                }
                continue;
            }
            self.destroy_network(&n)?;
            gone.push(n.name);
        }
        Ok(gone)
    }

    /// A network as the Docker Engine API shows it (GET /networks/{id}).
    pub fn network_inspect(&self, n: &Network) -> Result<Value> {
        let mut containers = serde_json::Map::new();
        for c in self.list()? {
            if c.state.status != Status::Running {
                continue;
            }
            let Some(st) = self.network_state(&c.id) else {
                continue;
            };
            if let Some(a) = st.attached.iter().find(|a| a.network == n.name) {
                containers.insert(
                    c.id.clone(),
                    json!({
                        "Name": c.name,
                        "EndpointID": "",
                        "MacAddress": a.endpoint.mac,
                        "IPv4Address": format!("{}/{}", a.endpoint.ip, a.endpoint.prefix_len),
                        "IPv6Address": "",
                    }),
                );
            }
        }
        let mut ipam_config = json!({"Subnet": n.subnet, "Gateway": n.gateway});
        if !n.ip_range.is_empty() {
            ipam_config["IPRange"] = json!(n.ip_range);
        }
        let mut options = n.options.clone();
        options.insert(OPT_BRIDGE_NAME.to_string(), n.bridge.clone());
        Ok(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv6": false,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [ipam_config],
            },
            "Internal": n.internal,
            "Attachable": false,
            "Ingress": false,
            // docker's config-only networks (swarm): never here.
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": n.labels,
        }))
    }
}

/// `ip link delete` of a bridge; one that does not exist is fine.
fn delete_link(name: &str) -> Result<()> {
    if !std::path::Path::new("/sys/class/net").join(name).exists() {
        return Ok(());
    }
    let out = Command::new("ip")
        .args(["link", "delete", "dev", name])
        .output()
        .map_err(|e| Error::io(format!("deleting bridge {name}: running ip"), e))?;
    if !out.status.success() && std::path::Path::new("/sys/class/net").join(name).exists() {
        return Err(Error::Runtime {
            context: format!("deleting bridge {name}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("front-end_1.x").is_ok());
        for bad in ["", "-x", "a b", "a/b", "ü"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
