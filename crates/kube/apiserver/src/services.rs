//! Service cluster IPs and node ports: allocated from the service CIDR
//! (`--service-cluster-ip-range`, default 10.43.0.0/16) and 30000-32767,
//! a requested one checked, released when the Service goes.
//!
//! Each allocation is a key in the store (`/hako/allocations/...`), created
//! atomically, so two Services never get the same IP or port, and it
//! survives restarts (upstream keeps IPAddress objects for the same reason).
//! Keys a crash left without a Service are found again by [`repair`].

use std::net::Ipv4Addr;

use hako_kube_store::{ListOptions, Store, StoreError};
use serde_json::{json, Value};

use crate::handler::ApiResult;
use crate::status::{quoted, ApiError};

const IP_PREFIX: &str = "/hako/allocations/serviceips/";
const PORT_PREFIX: &str = "/hako/allocations/nodeports/";
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The IPv4 range Services get their cluster IPs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    prefix: u8,
}

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr {
            base: u32::from(Ipv4Addr::new(10, 43, 0, 0)),
            prefix: 16,
        }
    }
}

impl std::str::FromStr for ServiceCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{} is not an IPv4 CIDR such as 10.43.0.0/16", quoted(s));
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        // Upstream wants room for at least a few services (and the network
        // and broadcast addresses are never handed out).
        if !(8..=29).contains(&prefix) {
            return Err(format!(
                "{}: the prefix length must be between 8 and 29",
                quoted(s)
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ServiceCidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl ServiceCidr {
    /// The `n`th address of the range (k3s's cluster DNS is the 10th), if it
    /// is one of the addresses Services get.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        self.dynamic()
            .contains(&n)
            .then(|| Ipv4Addr::from(self.base + n))
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.base
    }

    /// Addresses handed out when none is asked for: not the network or
    /// broadcast address, not the first one (upstream's `kubernetes`
    /// Service has it).
    fn dynamic(&self) -> std::ops::Range<u32> {
        2..self.size() - 1
    }
}

/// The range of this process's API server (one per process), set at start.
static CIDR: std::sync::OnceLock<ServiceCidr> = std::sync::OnceLock::new();

pub fn set_cidr(cidr: ServiceCidr) {
    let _ = CIDR.set(cidr);
}

pub fn cidr() -> ServiceCidr {
    CIDR.get().copied().unwrap_or_default()
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b)
}

fn svc_ref(svc: &Value) -> Value {
    json!({"namespace": svc["metadata"]["namespace"], "name": svc["metadata"]["name"]})
}

fn invalid(svc: &Value, field: String, msg: String) -> ApiError {
    let name = svc["metadata"]["name"].as_str().unwrap_or("");
    ApiError::invalid(
        "",
        "Service",
        name,
        vec![(field, "FieldValueInvalid".into(), msg)],
    )
}

/// Reservations made for one write, released if the write fails.
#[derive(Default)]
pub struct Reserved(Vec<String>);

impl Reserved {
    pub fn release(self, store: &dyn Store) {
        for k in self.0 {
            let _ = store.delete(&k, None);
        }
    }
}

fn reserve(store: &dyn Store, key: String, svc: &Value, dry_run: bool) -> Result<bool, StoreError> {
    if dry_run {
        return match store.get(&key) {
            Ok(_) => Ok(false),
            Err(StoreError::NotFound { .. }) => Ok(true),
            Err(e) => Err(e),
        };
    }
    match store.create(&key, &svc_ref(svc)) {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn backend(e: StoreError) -> ApiError {
    ApiError::internal(format!("allocating for a service: {e}"))
}

fn needs_cluster_ip(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(
        svc.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

fn cluster_ip(svc: &Value) -> Option<String> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            svc.pointer("/spec/clusterIPs/0")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(String::from)
}

/// Give a Service being created (or updated from `old`) its cluster IP and
/// node ports; on update the allocated values are kept when the new object
/// leaves them out, and may not change.
pub fn allocate(
    store: &dyn Store,
    old: Option<&Value>,
    svc: &mut Value,
    dry_run: bool,
) -> ApiResult<Reserved> {
    let mut reserved = Reserved::default();
    match allocate_into(store, cidr(), old, svc, dry_run, &mut reserved) {
        Ok(()) => Ok(reserved),
        Err(e) => {
            reserved.release(store);
            Err(e)
        }
    }
}

fn allocate_into(
    store: &dyn Store,
    cidr: ServiceCidr,
    old: Option<&Value>,
    svc: &mut Value,
    dry_run: bool,
    reserved: &mut Reserved,
) -> ApiResult<()> {
    // Cluster IP.
    let old_ip = old.and_then(cluster_ip);
    let asked = cluster_ip(svc);
    if needs_cluster_ip(svc) {
        let ip = match (&old_ip, asked) {
            (Some(o), None) => o.clone(),
            (Some(o), Some(a)) if *o != a => {
                return Err(invalid(
                    svc,
                    "spec.clusterIPs[0]".into(),
                    format!(
                        "Invalid value: []string{{{}}}: may not change once set",
                        quoted(&a)
                    ),
                ));
            }
            (Some(o), Some(_)) => o.clone(),
            (None, Some(a)) if a == "None" => a,
            (None, Some(a)) => {
                let ip: Ipv4Addr = a.parse().map_err(|_| {
                    invalid(
                        svc,
                        "spec.clusterIPs[0]".into(),
                        format!("Invalid value: {}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)", quoted(&a)),
                    )
                })?;
                if !cidr.contains(ip) {
                    return Err(invalid(
                        svc,
                        "spec.clusterIPs[0]".into(),
                        format!("Invalid value: {}: failed to allocate IP {a}: provided IP is not in the valid range. The range of valid IPs is {cidr}", quoted(&a)),
                    ));
                }
                if !reserve(store, format!("{IP_PREFIX}{ip}"), svc, dry_run).map_err(backend)? {
                    return Err(invalid(
                        svc,
                        "spec.clusterIPs[0]".into(),
                        format!("Invalid value: {}: failed to allocate IP {a}: provided IP is already allocated", quoted(&a)),
                    ));
                }
                if !dry_run {
                    reserved.0.push(format!("{IP_PREFIX}{ip}"));
                }
                a
            }
            (None, None) => {
                let range = cidr.dynamic();
                let n = range.end - range.start;
                let start = random_u32() % n;
                let mut found = None;
                // Random start, then the next free one (a few probes suffice
                // until the range is nearly full).
                for i in 0..n {
                    let ip = Ipv4Addr::from(cidr.base + range.start + (start + i) % n);
                    if reserve(store, format!("{IP_PREFIX}{ip}"), svc, dry_run).map_err(backend)? {
                        found = Some(ip.to_string());
                        break;
                    }
                }
                let ip = found.ok_or_else(|| {
                    ApiError::internal(
                        "Internal error occurred: failed to allocate a serviceIP: range is full",
                    )
                })?;
                if !dry_run {
                    reserved.0.push(format!("{IP_PREFIX}{ip}"));
                }
                ip
            }
        };
        svc["spec"]["clusterIP"] = json!(ip);
        svc["spec"]["clusterIPs"] = json!([ip]);
    }

    // Node ports: kept from the old port with the same port and protocol
    // when left out; new ones allocated or checked.
    if needs_node_ports(svc) {
        let old_ports: Vec<(i64, String, i64)> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p["port"].as_i64().unwrap_or(0),
                            p["protocol"].as_str().unwrap_or("TCP").to_string(),
                            p["nodePort"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let owned: Vec<i64> = old_ports.iter().map(|p| p.2).filter(|p| *p > 0).collect();
        let n = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut taken_here: Vec<i64> = Vec::new();
        for i in 0..n {
            let p = svc["spec"]["ports"][i].clone();
            let port = p["port"].as_i64().unwrap_or(0);
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            let mut node_port = p["nodePort"].as_i64().unwrap_or(0);
            if node_port == 0 {
                node_port = old_ports
                    .iter()
                    .find(|(op, opr, np)| *op == port && opr == proto && *np > 0)
                    .map_or(0, |o| o.2);
            }
            let field = format!("spec.ports[{i}].nodePort");
            if node_port != 0 {
                if !(i64::from(*NODE_PORTS.start())..=i64::from(*NODE_PORTS.end()))
                    .contains(&node_port)
                {
                    return Err(invalid(svc, field, format!("Invalid value: {node_port}: provided port is not in the valid range. The range of valid ports is 30000-32767")));
                }
                // Ports this Service already holds (or took for another of
                // its ports, e.g. TCP and UDP on one number) need no new key.
                if !owned.contains(&node_port) && !taken_here.contains(&node_port) {
                    if !reserve(store, format!("{PORT_PREFIX}{node_port}"), svc, dry_run)
                        .map_err(backend)?
                    {
                        return Err(invalid(
                            svc,
                            field,
                            format!(
                                "Invalid value: {node_port}: provided port is already allocated"
                            ),
                        ));
                    }
                    if !dry_run {
                        reserved.0.push(format!("{PORT_PREFIX}{node_port}"));
                    }
                }
            } else {
                let size = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
                let start = random_u32() % size;
                for k in 0..size {
                    let candidate = i64::from(*NODE_PORTS.start()) + i64::from((start + k) % size);
                    if reserve(store, format!("{PORT_PREFIX}{candidate}"), svc, dry_run)
                        .map_err(backend)?
                    {
                        node_port = candidate;
                        break;
                    }
                }
                if node_port == 0 {
                    return Err(ApiError::internal(
                        "Internal error occurred: failed to allocate a nodePort: range is full",
                    ));
                }
                if !dry_run {
                    reserved.0.push(format!("{PORT_PREFIX}{node_port}"));
                }
            }
            taken_here.push(node_port);
            svc["spec"]["ports"][i]["nodePort"] = json!(node_port);
        }
    } else if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        // A ClusterIP Service holds no node ports (upstream drops them on a
        // type change).
        for p in ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    Ok(())
}

/// The keys `svc` holds.
fn held(svc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(ip) = cluster_ip(svc).filter(|ip| ip != "None") {
        if needs_cluster_ip(svc) {
            out.push(format!("{IP_PREFIX}{ip}"));
        }
    }
    if let Some(ports) = svc.pointer("/spec/ports").and_then(Value::as_array) {
        for p in ports {
            if let Some(np) = p["nodePort"].as_i64().filter(|n| *n > 0) {
                out.push(format!("{PORT_PREFIX}{np}"));
            }
        }
    }
    out.dedup();
    out
}

/// Release what `old` held and `new` (the stored update, or None once the
/// Service is gone) no longer does.
pub fn release(store: &dyn Store, old: &Value, new: Option<&Value>) {
    let keep = new.map(held).unwrap_or_default();
    for k in held(old) {
        if !keep.contains(&k) {
            if let Err(e) = store.delete(&k, None) {
                if !matches!(e, StoreError::NotFound { .. }) {
                    tracing::warn!("releasing {k}: {e}");
                }
            }
        }
    }
}

/// At start: every Service holds its keys (Services from before the
/// allocator, or a crash between a reservation and its Service), and keys
/// no Service holds are freed.
pub fn repair(store: &dyn Store, services_prefix: &str) -> Result<(), StoreError> {
    let services = store.list(services_prefix, &ListOptions::default())?;
    let mut wanted = Vec::new();
    for s in &services.items {
        for k in held(&s.value) {
            match store.create(&k, &svc_ref(&s.value)) {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            wanted.push(k);
        }
    }
    for prefix in [IP_PREFIX, PORT_PREFIX] {
        for k in store.list(prefix, &ListOptions::default())?.items {
            if !wanted.contains(&k.key) {
                let _ = store.delete(&k.key, Some(k.revision));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_ranges() {
        let c: ServiceCidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert!(c.contains("10.43.255.254".parse().unwrap()));
        assert!(!c.contains("10.44.0.1".parse().unwrap()));
        assert_eq!(c.dynamic(), 2..65535);
        assert!("10.43.0.0".parse::<ServiceCidr>().is_err());
        assert!("10.43.0.0/31".parse::<ServiceCidr>().is_err());
        assert!("x/16".parse::<ServiceCidr>().is_err());
    }
}
