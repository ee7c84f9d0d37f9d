//! A Pod's spec as CRI configurations: the sandbox (hostname, DNS, ports, namespaces,
//! labels, log directory) and each container (image, command, env, mounts, resources,
//! security context), with the CRI labels upstream kubelet puts on them so a restarted
//! kubelet finds its pods again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use sha2::Digest as _;

use crate::env::{command_args, container_env, EnvContext};
use crate::quantity::{parse_milli, parse_units};
use crate::volumes::container_mounts;

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const ANN_CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const ANN_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const ANN_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}
pub fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}
pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// `terminationGracePeriodSeconds` (30 when unset), or the deletion's own grace.
pub fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0)
}

/// A sidecar: an init container with `restartPolicy: Always` (KEP-753), which keeps
/// running beside the containers.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The per-pod directory under the kubelet root (volumes live there).
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// The pod's log directory, as upstream's /var/log/pods/NS_NAME_UID.
pub fn log_dir(root: &Path, pod: &Pod) -> PathBuf {
    root.join("logs")
        .join(format!("{}_{}_{}", namespace(pod), name(pod), uid(pod)))
}

/// A container's log file relative to the log directory: NAME/ATTEMPT.log.
pub fn log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

/// A short hash of the container's spec: a changed spec restarts the container.
pub fn container_hash(c: &Container) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    let d = sha2::Sha256::digest(&json);
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_POD_NAME.to_string(), name(pod).to_string()),
        (LABEL_POD_NAMESPACE.to_string(), namespace(pod).to_string()),
        (LABEL_POD_UID.to_string(), uid(pod).to_string()),
    ])
}

/// The QoS class: Guaranteed (every container limits cpu and memory and requests what it
/// limits), BestEffort (no requests or limits anywhere), else Burstable.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.as_ref();
        let limits = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        let requests = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        for res in ["cpu", "memory"] {
            let l = limits.get(res).and_then(|q| parse_milli(&q.0));
            let q = requests.get(res).and_then(|q| parse_milli(&q.0)).or(l);
            if l.is_some_and(|v| v != 0) || q.is_some_and(|v| v != 0) {
                any = true;
            }
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The pod's requests (cpu millicores, memory bytes) as the scheduler counts them: the
/// containers' sum plus the sidecars' (restartable init containers run beside them for
/// the pod's life), or, if larger, the most any init container needs while it runs
/// beside the sidecars started before it.
pub fn pod_requests(pod: &Pod) -> (i128, i128) {
    let Some(spec) = pod.spec.as_ref() else {
        return (0, 0);
    };
    let req = |c: &Container, res: &str| -> i128 {
        let r = c.resources.as_ref();
        let q = r
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(res))
            .or_else(|| r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(res)));
        q.and_then(|q| parse_milli(&q.0)).unwrap_or(0)
    };
    let mut cpu: i128 = spec.containers.iter().map(|c| req(c, "cpu")).sum();
    let mut mem: i128 = spec.containers.iter().map(|c| req(c, "memory")).sum();
    let (mut side_cpu, mut side_mem, mut init_cpu, mut init_mem) = (0, 0, 0, 0);
    for c in spec.init_containers.iter().flatten() {
        let (c_cpu, c_mem) = (req(c, "cpu"), req(c, "memory"));
        if is_sidecar(c) {
            (cpu, mem) = (cpu + c_cpu, mem + c_mem);
            (side_cpu, side_mem) = (side_cpu + c_cpu, side_mem + c_mem);
            (init_cpu, init_mem) = (init_cpu.max(side_cpu), init_mem.max(side_mem));
        } else {
            init_cpu = init_cpu.max(c_cpu + side_cpu);
            init_mem = init_mem.max(c_mem + side_mem);
        }
    }
    (cpu.max(init_cpu), (mem.max(init_mem) + 999) / 1000)
}

/// The host's resolver configuration (servers, search domains, options).
fn host_dns() -> cri::DnsConfig {
    let mut d = cri::DnsConfig::default();
    if let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("nameserver") => d.servers.extend(f.next().map(str::to_string)),
                Some("search") => d.searches = f.map(str::to_string).collect(),
                Some("options") => d.options.extend(f.map(str::to_string)),
                _ => {}
            }
        }
    }
    d
}

/// The kubelet's `--cluster-dns` and `--cluster-domain`.
#[derive(Debug, Clone, Default)]
pub struct ClusterDns {
    pub servers: Vec<String>,
    pub domain: String,
}

/// Set once by the kubelet at start (one kubelet per process).
static CLUSTER_DNS: std::sync::OnceLock<ClusterDns> = std::sync::OnceLock::new();

pub fn set_cluster_dns(c: ClusterDns) {
    let _ = CLUSTER_DNS.set(c);
}

/// Upstream's limits on a resolv.conf: 3 nameservers, 32 search domains.
const MAX_SERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

fn dns_config(pod: &Pod) -> cri::DnsConfig {
    dns_config_with(
        pod,
        CLUSTER_DNS.get().cloned().unwrap_or_default(),
        host_dns(),
    )
}

/// A pod's resolv.conf as upstream's kubelet writes it: ClusterFirst (and
/// ClusterFirstWithHostNet on the host network) → the cluster DNS with the
/// namespace's search path and `ndots:5`, the host's search domains after;
/// Default (and ClusterFirst on the host network, or without `--cluster-dns`)
/// → the node's resolver; None → only `dnsConfig`, which is merged into the
/// others too.
fn dns_config_with(pod: &Pod, cluster: ClusterDns, host: cri::DnsConfig) -> cri::DnsConfig {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network(pod),
        _ => false,
    };
    let mut d = if policy == "None" {
        cri::DnsConfig::default()
    } else if cluster_first && !cluster.servers.is_empty() {
        let domain = if cluster.domain.is_empty() {
            "cluster.local"
        } else {
            cluster.domain.trim_end_matches('.')
        };
        let mut searches = vec![
            format!("{}.svc.{domain}", namespace(pod)),
            format!("svc.{domain}"),
            domain.to_string(),
        ];
        for s in host.searches {
            if !searches.contains(&s) {
                searches.push(s);
            }
        }
        cri::DnsConfig {
            servers: cluster.servers,
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        host
    };
    if let Some(c) = spec.and_then(|s| s.dns_config.as_ref()) {
        for s in c.nameservers.iter().flatten() {
            if !d.servers.contains(s) {
                d.servers.push(s.clone());
            }
        }
        for s in c.searches.iter().flatten() {
            if !d.searches.contains(s) {
                d.searches.push(s.clone());
            }
        }
        for o in c.options.iter().flatten() {
            let name = o.name.as_deref().unwrap_or("");
            let opt = match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            // A pod's option replaces the same option (ndots:2 over ndots:5).
            d.options
                .retain(|x| x.split(':').next() != Some(name) || name.is_empty());
            d.options.push(opt);
        }
    }
    d.servers.truncate(MAX_SERVERS);
    d.searches.truncate(MAX_SEARCHES);
    d
}

#[cfg(test)]
mod dns_tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).unwrap()
    }

    fn host() -> cri::DnsConfig {
        cri::DnsConfig {
            servers: vec!["192.0.2.53".into()],
            searches: vec!["example.org".into()],
            options: vec!["edns0".into()],
        }
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.43.0.10".into()],
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn cluster_first_gets_the_cluster_dns_search_path_and_ndots() {
        let p =
            pod(serde_json::json!({"metadata": {"namespace": "shop"}, "spec": {"containers": []}}));
        let d = dns_config_with(&p, cluster(), host());
        assert_eq!(d.servers, ["10.43.0.10"]);
        assert_eq!(
            d.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.org"
            ]
        );
        assert_eq!(d.options, ["ndots:5"]);
        // Without --cluster-dns: the node's resolver, as upstream.
        assert_eq!(dns_config_with(&p, ClusterDns::default(), host()), host());
    }

    #[test]
    fn host_network_default_none_and_dns_config() {
        let hostnet = pod(serde_json::json!({"spec": {"containers": [], "hostNetwork": true}}));
        assert_eq!(dns_config_with(&hostnet, cluster(), host()), host());
        let with = pod(
            serde_json::json!({"spec": {"containers": [], "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet"}}),
        );
        assert_eq!(
            dns_config_with(&with, cluster(), host()).servers,
            ["10.43.0.10"]
        );
        let default = pod(serde_json::json!({"spec": {"containers": [], "dnsPolicy": "Default"}}));
        assert_eq!(dns_config_with(&default, cluster(), host()), host());
        let none = pod(
            serde_json::json!({"spec": {"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a.b"],
                          "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}}),
        );
        let d = dns_config_with(&none, cluster(), host());
        assert_eq!(d.servers, ["1.1.1.1"]);
        assert_eq!(d.searches, ["a.b"]);
        assert_eq!(d.options, ["ndots:2", "rotate"]);
        let merged = pod(serde_json::json!({"spec": {"containers": [],
            "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}}));
        assert_eq!(
            dns_config_with(&merged, cluster(), host()).options,
            ["ndots:1"]
        );
    }
}

fn seccomp(
    pod_sc: Option<&PodSecurityContext>,
    sc: Option<&SecurityContext>,
    root: &Path,
) -> Option<cri::SecurityProfile> {
    let p = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod_sc.and_then(|s| s.seccomp_profile.as_ref()))?;
    use cri::security_profile::ProfileType;
    Some(match p.type_.as_str() {
        "RuntimeDefault" => cri::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            ..Default::default()
        },
        "Localhost" => cri::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: root
                .join("seccomp")
                .join(p.localhost_profile.as_deref().unwrap_or(""))
                .display()
                .to_string(),
        },
        _ => cri::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            ..Default::default()
        },
    })
}

fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let s = pod.spec.as_ref();
    let mode = |node: bool, pod_mode: cri::NamespaceMode| {
        if node {
            cri::NamespaceMode::Node as i32
        } else {
            pod_mode as i32
        }
    };
    cri::NamespaceOption {
        network: mode(host_network(pod), cri::NamespaceMode::Pod),
        pid: mode(
            s.and_then(|s| s.host_pid).unwrap_or(false),
            if s.and_then(|s| s.share_process_namespace).unwrap_or(false) {
                cri::NamespaceMode::Pod
            } else {
                cri::NamespaceMode::Container
            },
        ),
        ipc: mode(
            s.and_then(|s| s.host_ipc).unwrap_or(false),
            cri::NamespaceMode::Pod,
        ),
        ..Default::default()
    }
}

/// RunPodSandbox's configuration for `pod` at sandbox attempt `attempt`.
pub fn sandbox_config(pod: &Pod, attempt: u32, root: &Path) -> cri::PodSandboxConfig {
    let spec = pod.spec.as_ref();
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(pod_labels(pod));
    let annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut ports = Vec::new();
    for c in spec.into_iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            };
            ports.push(cri::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port: hp,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let hostname = if host_network(pod) {
        String::new()
    } else {
        let mut h = spec
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| name(pod).to_string());
        h.truncate(63);
        h.trim_end_matches(['-', '.']).to_string()
    };
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let mut groups: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(g) = psc.and_then(|s| s.fs_group) {
        groups.push(g);
    }
    let sysctls = psc
        .and_then(|s| s.sysctls.as_ref())
        .map(|v| {
            v.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name(pod).to_string(),
            uid: uid(pod).to_string(),
            namespace: namespace(pod).to_string(),
            attempt,
        }),
        hostname,
        log_directory: log_dir(root, pod).display().to_string(),
        dns_config: Some(dns_config(pod)),
        port_mappings: ports,
        labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc
                    .and_then(|s| s.run_as_user)
                    .map(|v| cri::Int64Value { value: v }),
                run_as_group: psc
                    .and_then(|s| s.run_as_group)
                    .map(|v| cri::Int64Value { value: v }),
                supplemental_groups: groups,
                seccomp: seccomp(psc, None, root),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// CRI resources from the container's requests and limits, as upstream computes them.
pub fn linux_resources(
    c: &Container,
    qos: &str,
    node_memory: i128,
) -> cri::LinuxContainerResources {
    let r = c.resources.as_ref();
    let get = |limits: bool, res: &str| {
        let m = if limits {
            r.and_then(|r| r.limits.as_ref())
        } else {
            r.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(res)).map(|q| q.0.clone())
    };
    let cpu_limit = get(true, "cpu").and_then(|q| parse_milli(&q));
    let cpu_request = get(false, "cpu")
        .and_then(|q| parse_milli(&q))
        .or(cpu_limit);
    let mem_limit = get(true, "memory").and_then(|q| parse_units(&q));
    let mem_request = get(false, "memory")
        .and_then(|q| parse_units(&q))
        .or(mem_limit);
    let shares = cpu_request.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2);
    let mut out = cri::LinuxContainerResources {
        cpu_shares: shares as i64,
        ..Default::default()
    };
    if let Some(l) = cpu_limit {
        out.cpu_period = 100_000;
        out.cpu_quota = (l * 100_000 / 1000).max(1000) as i64;
    }
    if let Some(m) = mem_limit {
        out.memory_limit_in_bytes = m as i64;
    }
    out.oom_score_adj = match qos {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let req = mem_request.unwrap_or(0);
            let adj = 1000 - (1000 * req) / node_memory.max(1);
            adj.clamp(2, 999) as i64
        }
    };
    out
}

/// Everything CreateContainer needs besides the sandbox.
pub struct ContainerContext<'a> {
    pub pod: &'a Pod,
    pub env: EnvContext<'a>,
    pub volumes: &'a HashMap<String, PathBuf>,
    pub root: &'a Path,
    pub node_memory: i128,
}

/// CreateContainer's configuration for container `c` at `attempt`.
pub fn container_config(
    c: &Container,
    attempt: u32,
    cx: &ContainerContext,
) -> Result<cri::ContainerConfig> {
    let pod = cx.pod;
    let env = container_env(c, &cx.env)?;
    let (command, args) = command_args(c, &env);
    let mounts = container_mounts(pod, c, cx.volumes)?;
    let spec = pod.spec.as_ref();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group));
    let mut groups: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(g) = psc.and_then(|s| s.fs_group) {
        groups.push(g);
    }
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let security = cri::LinuxContainerSecurityContext {
        capabilities: sc
            .and_then(|s| s.capabilities.as_ref())
            .map(|c| cri::Capability {
                add_capabilities: c.add.clone().unwrap_or_default(),
                drop_capabilities: c.drop.clone().unwrap_or_default(),
                ..Default::default()
            }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|v| cri::Int64Value { value: v }),
        run_as_group: run_as_group.map(|v| cri::Int64Value { value: v }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: groups,
        // As upstream: only an explicit allowPrivilegeEscalation=false sets no_new_privs.
        no_new_privs: !privileged && sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: seccomp(psc, sc, cx.root),
        ..Default::default()
    };
    let mut labels = pod_labels(pod);
    labels.insert(LABEL_CONTAINER_NAME.to_string(), c.name.clone());
    let annotations = HashMap::from([
        (ANN_CONTAINER_HASH.to_string(), container_hash(c)),
        (ANN_RESTART_COUNT.to_string(), attempt.to_string()),
        (ANN_GRACE.to_string(), grace_seconds(pod).to_string()),
    ]);
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| cri::KeyValue { key, value })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: log_path(&c.name, attempt),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(c, qos_class(pod), cx.node_memory)),
            security_context: Some(security),
        }),
        ..Default::default()
    })
}

/// `runAsNonRoot`: refuse a container that would run as uid 0.
pub fn check_non_root(pod: &Pod, c: &Container, image_uid: Option<i64>) -> Result<()> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if !non_root {
        return Ok(());
    }
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user))
        .or(image_uid);
    match uid {
        Some(0) => bail!("container has runAsNonRoot and image will run as root"),
        None => bail!("container has runAsNonRoot and image has non-numeric user, cannot verify user is non-root"),
        _ => Ok(()),
    }
}

/// The pull policy: as given, else Always for `:latest` or untagged, IfNotPresent otherwise.
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = &c.image_pull_policy {
        return p.clone();
    }
    let image = c.image.as_deref().unwrap_or("");
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always".into(),
        _ => "IfNotPresent".into(),
    }
}

/// The registry host of an image reference (docker.io for short names).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// The credentials of a `.dockerconfigjson` for `registry`, in file order.
pub fn docker_auths(json: &[u8], registry: &str) -> Vec<cri::AuthConfig> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let auths = v.get("auths").unwrap_or(&v);
    let Some(map) = auths.as_object() else {
        return Vec::new();
    };
    let norm = |k: &str| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = k.split('/').next().unwrap_or(k);
        match host {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            h => h.to_string(),
        }
    };
    map.iter()
        .filter(|(k, _)| norm(k) == registry)
        .map(|(k, e)| {
            let s = |f: &str| e.get(f).and_then(|x| x.as_str()).unwrap_or("").to_string();
            cri::AuthConfig {
                username: s("username"),
                password: s("password"),
                auth: s("auth"),
                server_address: k.clone(),
                identity_token: s("identitytoken"),
                registry_token: s("registrytoken"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sidecar_requests_add_to_the_containers() {
        let c = |name: &str, cpu: &str, sidecar: bool| {
            let mut c = serde_json::json!({"name": name, "resources": {"requests": {"cpu": cpu, "memory": "1Mi"}}});
            if sidecar {
                c["restartPolicy"] = "Always".into();
            }
            c
        };
        // Plain init containers: the largest one, or the containers' sum.
        let p = pod(serde_json::json!({"spec": {
            "initContainers": [c("i1", "300m", false), c("i2", "500m", false)],
            "containers": [c("a", "200m", false), c("b", "100m", false)]}}));
        assert_eq!(pod_requests(&p), (500, 2 << 20));
        // A sidecar runs beside the containers, and beside the init containers after it.
        let p = pod(serde_json::json!({"spec": {
            "initContainers": [c("i1", "300m", false), c("s", "200m", true), c("i2", "500m", false)],
            "containers": [c("a", "200m", false)]}}));
        assert_eq!(pod_requests(&p), (700, 2 << 20));
        let p = pod(serde_json::json!({"spec": {
            "initContainers": [c("s1", "200m", true), c("s2", "300m", true)],
            "containers": [c("a", "100m", false)]}}));
        assert_eq!(pod_requests(&p), (600, 3 << 20));
    }

    #[test]
    fn qos_classes() {
        let be = pod(serde_json::json!({"spec":{"containers":[{"name":"a"}]}}));
        assert_eq!(qos_class(&be), "BestEffort");
        let g = pod(
            serde_json::json!({"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}}),
        );
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = pod(
            serde_json::json!({"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"100m"}}}]}}),
        );
        assert_eq!(qos_class(&b), "Burstable");
        let r = linux_resources(
            &g.spec.as_ref().unwrap().containers[0],
            "Guaranteed",
            1 << 33,
        );
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (1024, 100_000, 100_000)
        );
        assert_eq!((r.memory_limit_in_bytes, r.oom_score_adj), (1 << 30, -997));
    }

    #[test]
    fn pull_policies_and_auths() {
        let c = |i: &str| Container {
            name: "a".into(),
            image: Some(i.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/busybox")), "Always");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/busybox:1")), "IfNotPresent");
        assert_eq!(registry_of("127.0.0.1:5000/x/y:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        let j = br#"{"auths":{"http://127.0.0.1:5000":{"username":"u","password":"p"},"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#;
        let a = docker_auths(j, "127.0.0.1:5000");
        assert_eq!((a.len(), a[0].username.as_str()), (1, "u"));
        assert_eq!(docker_auths(j, "docker.io")[0].auth, "dTpw");
    }
}
