//! `POST /containers/create`: docker's create body (Config with HostConfig
//! and NetworkingConfig) turned into the engine's [`CreateOptions`], through
//! the same parsers the CLI's flags go through.

use std::collections::BTreeMap;

use hako_engine::network::ports::parse_publish;
use hako_engine::options::{self, HealthOptions, VolumeArg};
use hako_engine::CreateOptions;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{printable, ApiError, ApiResult};

/// The fields of docker's create body hako uses; the rest is ignored, as
/// docker ignores what it does not know.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub image: String,
    pub hostname: String,
    pub user: String,
    pub env: Option<Vec<String>>,
    pub cmd: Option<StrOrVec>,
    pub entrypoint: Option<StrOrVec>,
    pub working_dir: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub healthcheck: Option<Healthcheck>,
    pub stop_signal: String,
    pub stop_timeout: Option<u32>,
    pub mac_address: String,
    pub host_config: HostConfigBody,
    pub networking_config: Option<NetworkingConfig>,
}

/// docker accepts `"Cmd": "ls -l"` from old clients as well as a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StrOrVec {
    Str(String),
    Vec(Vec<String>),
}

impl StrOrVec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrVec::Str(s) => s.split_whitespace().map(str::to_string).collect(),
            StrOrVec::Vec(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    pub test: Option<Vec<String>>,
    #[serde(deserialize_with = "null_as_zero")]
    pub interval: i64,
    #[serde(deserialize_with = "null_as_zero")]
    pub timeout: i64,
    #[serde(deserialize_with = "null_as_zero")]
    pub start_period: i64,
    #[serde(deserialize_with = "null_as_zero")]
    pub start_interval: i64,
    #[serde(deserialize_with = "null_as_zero")]
    pub retries: i64,
}

/// docker-py (and so docker-compose 1.29) sends unset healthcheck durations as
/// null: the engine's default, as 0 is.
fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or(0))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBindingBody {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicyBody {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountBody {
    #[serde(rename = "Type")]
    pub typ: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfigBody {
    #[serde(rename = "Type")]
    pub typ: String,
    pub config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UlimitBody {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Soft")]
    pub soft: i64,
    #[serde(rename = "Hard")]
    pub hard: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfigBody {
    pub binds: Option<Vec<String>>,
    pub mounts: Option<Vec<MountBody>>,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingBody>>>>,
    pub publish_all_ports: bool,
    pub restart_policy: Option<RestartPolicyBody>,
    pub auto_remove: bool,
    pub network_mode: String,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    pub init: Option<bool>,
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub cpu_shares: u64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub oom_score_adj: i32,
    pub shm_size: i64,
    pub security_opt: Option<Vec<String>>,
    pub sysctls: Option<BTreeMap<String, String>>,
    pub ulimits: Option<Vec<UlimitBody>>,
    pub group_add: Option<Vec<String>>,
    pub pid_mode: String,
    pub ipc_mode: String,
    pub cgroupns_mode: String,
    pub cgroup_parent: String,
    pub runtime: String,
    pub volumes_from: Option<Vec<String>>,
    pub log_config: Option<LogConfigBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, Option<EndpointBody>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointBody {
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<IpamBody>,
    pub mac_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IpamBody {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// A health test as the engine's shell command: `CMD-SHELL cmd` is the
/// command, `CMD a b` its words quoted for the shell, `NONE` disables.
fn health(h: Option<Healthcheck>) -> ApiResult<HealthOptions> {
    let Some(h) = h else {
        return Ok(HealthOptions::default());
    };
    let nz = |v: i64| (v != 0).then_some(v);
    let mut o = HealthOptions {
        interval: nz(h.interval),
        timeout: nz(h.timeout),
        start_period: nz(h.start_period),
        start_interval: nz(h.start_interval),
        retries: nz(h.retries),
        ..Default::default()
    };
    match h.test.as_deref() {
        None | Some([]) => {}
        Some([kind, rest @ ..]) => match kind.as_str() {
            "NONE" => o.disabled = true,
            "CMD-SHELL" => o.cmd = Some(rest.join(" ")),
            "CMD" => {
                o.cmd = Some(
                    rest.iter()
                        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid Healthcheck.Test: {:?} is not NONE, CMD or CMD-SHELL",
                    printable(other)
                )))
            }
        },
    }
    Ok(o)
}

/// docker's create body as the engine's options for a container `name`.
pub fn options(b: CreateBody, name: Option<String>) -> ApiResult<CreateOptions> {
    if b.image.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container: no Image",
        ));
    }
    let h = b.host_config;
    let (mut binds, mut mounts) = (Vec::new(), Vec::new());
    for v in h.binds.unwrap_or_default() {
        match options::parse_volume(&v)? {
            VolumeArg::Bind(b) => binds.push(b),
            VolumeArg::Volume(m) => mounts.push(m),
        }
    }
    for m in h.mounts.unwrap_or_default() {
        let mut spec = format!("type={},target={}", m.typ, m.target);
        if !m.source.is_empty() {
            spec.push_str(&format!(",source={}", m.source));
        }
        if m.read_only {
            spec.push_str(",readonly");
        }
        mounts.push(options::parse_mount(&spec)?);
    }
    let mut publish = Vec::new();
    for (port, list) in h.port_bindings.unwrap_or_default() {
        let list = list.unwrap_or_default();
        if list.is_empty() {
            publish.extend(parse_publish(&port)?);
        }
        for p in list {
            let spec = match (p.host_ip.as_str(), p.host_port.as_str()) {
                ("", "") => port.clone(),
                ("", hp) => format!("{hp}:{port}"),
                (ip, hp) if ip.contains(':') => format!("[{ip}]:{hp}:{port}"),
                (ip, hp) => format!("{ip}:{hp}:{port}"),
            };
            publish.extend(parse_publish(&spec)?);
        }
    }
    let (mut network_aliases, mut ip, mut mac) = (Vec::new(), None, opt(&b.mac_address));
    let mut network = opt(&h.network_mode).filter(|n| n != "default");
    if let Some(nc) = b.networking_config {
        for (net, ep) in nc.endpoints_config.unwrap_or_default() {
            if network.is_none() && net != "default" {
                network = Some(net.clone());
            }
            let ep = ep.unwrap_or_default();
            network_aliases.extend(ep.aliases.unwrap_or_default());
            if let Some(a) = ep.ipam_config.filter(|i| !i.ipv4_address.is_empty()) {
                ip = Some(options::parse_ip(&a.ipv4_address)?);
            }
            if mac.is_none() {
                mac = opt(&ep.mac_address);
            }
        }
    }
    let log = h.log_config.unwrap_or_default();
    let log_opts: Vec<String> = log
        .config
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let restart = match h.restart_policy {
        Some(r) if !r.name.is_empty() => options::parse_restart(&if r.maximum_retry_count > 0 {
            format!("{}:{}", r.name, r.maximum_retry_count)
        } else {
            r.name.clone()
        })?,
        _ => Default::default(),
    };
    Ok(CreateOptions {
        image: b.image,
        name,
        cmd: b.cmd.map(StrOrVec::into_vec).unwrap_or_default(),
        // docker's `--entrypoint ""` arrives as [""]: clear the image's.
        entrypoint: b.entrypoint.map(|e| {
            let v = e.into_vec();
            if v.len() == 1 {
                v[0].clone()
            } else {
                v.join(" ")
            }
        }),
        // A bare KEY would take the service's own value: the client
        // resolves those, so any left mean "unset".
        env: b
            .env
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.contains('='))
            .collect(),
        workdir: opt(&b.working_dir),
        user: opt(&b.user),
        hostname: opt(&b.hostname),
        labels: b.labels.unwrap_or_default(),
        expose: b.exposed_ports.unwrap_or_default().into_keys().collect(),
        binds,
        tmpfs: h
            .tmpfs
            .unwrap_or_default()
            .into_iter()
            .map(|(p, o)| options::parse_tmpfs(&if o.is_empty() { p } else { format!("{p}:{o}") }))
            .collect::<Result<_, _>>()?,
        mounts,
        volumes_from: h.volumes_from.unwrap_or_default(),
        read_only: h.readonly_rootfs,
        privileged: h.privileged,
        cap_add: h.cap_add.unwrap_or_default(),
        cap_drop: h.cap_drop.unwrap_or_default(),
        memory: h.memory,
        memory_swap: h.memory_swap,
        nano_cpus: h.nano_cpus,
        cpu_quota: h.cpu_quota,
        cpu_period: h.cpu_period,
        memory_reservation: h.memory_reservation,
        oom_kill_disable: h.oom_kill_disable.unwrap_or(false),
        cgroup_parent: opt(&h.cgroup_parent),
        pids_limit: h.pids_limit.unwrap_or(0).max(0),
        oom_score_adj: (h.oom_score_adj != 0).then_some(h.oom_score_adj),
        network,
        network_aliases,
        pid_mode: opt(&h.pid_mode),
        ipc_mode: opt(&h.ipc_mode).filter(|m| m != "private" && m != "shareable"),
        cgroupns_mode: opt(&h.cgroupns_mode),
        group_add: h.group_add.unwrap_or_default(),
        shm_size: h.shm_size,
        sysctls: h
            .sysctls
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        ip,
        mac_address: mac.map(|m| options::parse_mac(&m)).transpose()?,
        publish,
        publish_all: h.publish_all_ports,
        extra_hosts: h.extra_hosts.unwrap_or_default(),
        dns: h.dns.unwrap_or_default(),
        dns_search: h.dns_search.unwrap_or_default(),
        dns_options: h.dns_options.unwrap_or_default(),
        security_opt: h.security_opt.unwrap_or_default(),
        ulimits: h
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| options::parse_ulimit(&format!("{}={}:{}", u.name, u.soft, u.hard)))
            .collect::<Result<_, _>>()?,
        init: h.init.unwrap_or(false),
        cpu_shares: h.cpu_shares,
        cpuset_cpus: h.cpuset_cpus,
        cpuset_mems: h.cpuset_mems,
        runtime: opt(&h.runtime)
            .filter(|r| r != "runc" || hako_engine::runtime::resolve("runc").is_ok()),
        auto_remove: h.auto_remove,
        stop_signal: opt(&b.stop_signal),
        stop_timeout: b.stop_timeout,
        restart,
        log_config: options::parse_log_config(opt(&log.typ).as_deref(), &log_opts)?,
        health: health(b.healthcheck)?,
        tty: b.tty,
        open_stdin: b.open_stdin,
        stdin_once: b.stdin_once,
        attach_stdin: b.attach_stdin,
        attach_stdout: b.attach_stdout,
        attach_stderr: b.attach_stderr,
        ..Default::default()
    })
}
