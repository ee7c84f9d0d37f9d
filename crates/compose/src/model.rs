//! The normalised model of a compose project: every short form expanded to
//! its long form, every field checked, errors naming the field's path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{field, shown, Result};
use crate::numbers;

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: String,
    #[serde(skip)]
    pub dir: PathBuf,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, NetworkDef>,
    pub volumes: BTreeMap<String, VolumeDef>,
    /// Top-level configs and secrets: name → absolute host file.
    pub configs: BTreeMap<String, PathBuf>,
    pub secrets: BTreeMap<String, PathBuf>,
}

/// A service's entry under its `networks:`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Service {
    pub image: Option<String>,
    /// `container_name`: the one container's name instead of `PROJECT-SERVICE-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Value>,
    /// `pull_policy` as written (checked at load): always, never, missing,
    /// if_not_present, build, daily, weekly, every_N.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub expose: Vec<String>,
    pub volumes: Vec<VolumeMount>,
    /// Network name (in the file) → the service's settings there.
    pub networks: BTreeMap<String, ServiceNetwork>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Service → condition.
    pub depends_on: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    pub replicas: u32,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub extra_hosts: Vec<String>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub privileged: bool,
    pub tmpfs: Vec<String>,
    pub init: bool,
    /// "nofile=1024:2048" forms.
    pub ulimits: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    pub sysctls: BTreeMap<String, String>,
    pub profiles: Vec<String>,
    /// Configs and secrets the service mounts (read-only files).
    pub configs: Vec<FileMount>,
    pub secrets: Vec<FileMount>,
}

/// A config or secret in a service: which one and where (configs default to
/// `/<name>`, secrets to `/run/secrets/<name>`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileMount {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Port {
    pub target: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub protocol: String,
}

impl Port {
    /// The `-p` form of this port (`[IP:][HOST:]TARGET/PROTO`).
    pub fn spec(&self) -> String {
        match (&self.host_ip, &self.published) {
            (Some(ip), Some(h)) => format!("{ip}:{h}:{}/{}", self.target, self.protocol),
            (Some(ip), None) => format!("{ip}::{}/{}", self.target, self.protocol),
            (None, Some(h)) => format!("{h}:{}/{}", self.target, self.protocol),
            (None, None) => format!("{}/{}", self.target, self.protocol),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VolumeMount {
    /// "volume", "bind" or "tmpfs".
    #[serde(rename = "type")]
    pub typ: String,
    /// A volume name in the file, an absolute host path, or empty.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// `logging:` (driver and its options, e.g. json-file max-size/max-file).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Logging {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Healthcheck {
    /// Docker's forms: ["CMD", ...], ["CMD-SHELL", "..."], ["NONE"].
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<String>,
    pub disable: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NetworkDef {
    /// The engine's name for it.
    pub name: String,
    pub external: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VolumeDef {
    pub name: String,
    pub external: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Compose's rule for the names of services, networks, volumes, configs
/// and secrets (they become parts of engine names and DNS aliases).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Compose's project-name rule: lowercase letters, digits, `-` and `_`.
pub fn normalize_name(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>()
        .trim_start_matches(['-', '_'])
        .to_string()
}

fn string(v: &Value, path: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(field(path, "must be a string")),
    }
}

fn opt_string(v: &Value, key: &str, path: &str) -> Result<Option<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => string(x, &format!("{path}.{key}")).map(Some),
    }
}

fn boolean(v: &Value, key: &str, path: &str) -> Result<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(field(format!("{path}.{key}"), "must be true or false")),
    }
}

fn string_list(v: Option<&Value>, path: &str) -> Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| string(x, &format!("{path}[{i}]")))
            .collect(),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => Err(field(path, "must be a list of strings")),
    }
}

/// `env_file`: a path, or a list of paths and `{path, required}` mappings.
fn env_files(v: Option<&Value>, path: &str) -> Result<Vec<(String, bool)>> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, x)| {
            let here = format!("{path}[{i}]");
            match x {
                Value::Object(m) => {
                    if let Some(k) = m
                        .keys()
                        .find(|k| !["path", "required"].contains(&k.as_str()))
                    {
                        return Err(field(
                            format!("{here}.{k}"),
                            "is not supported by hako compose",
                        ));
                    }
                    let p = opt_string(x, "path", &here)?
                        .ok_or_else(|| field(format!("{here}.path"), "is required"))?;
                    let required = match x.get("required") {
                        None | Some(Value::Null) => true,
                        Some(_) => boolean(x, "required", &here)?,
                    };
                    Ok((p, required))
                }
                other => Ok((string(other, &here)?, true)),
            }
        })
        .collect()
}

/// A command: a list, or a string split as a shell would (quotes honoured).
fn command(v: Option<&Value>, path: &str) -> Result<Option<Vec<String>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => split_shell(s).map(Some).map_err(|m| field(path, m)),
        Some(other) => string_list(Some(other), path).map(Some),
    }
}

fn split_shell(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unclosed quote in {s:?}"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `KEY: value` mappings or `KEY=value` lists (a bare `KEY` takes the
/// environment's value; unset, it is left out).
fn key_values(
    v: Option<&Value>,
    path: &str,
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, x) in m {
                match x {
                    Value::Null => {
                        if let Some(e) = env.get(k) {
                            out.insert(k.clone(), e.clone());
                        }
                    }
                    x => {
                        out.insert(k.clone(), string(x, &format!("{path}.{k}"))?);
                    }
                }
            }
        }
        Some(Value::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                let s = string(x, &format!("{path}[{i}]"))?;
                match s.split_once('=') {
                    Some((k, v)) => {
                        out.insert(k.to_string(), v.to_string());
                    }
                    None => {
                        if let Some(e) = env.get(&s) {
                            out.insert(s.clone(), e.clone());
                        }
                    }
                }
            }
        }
        Some(_) => return Err(field(path, "must be a mapping or a list of KEY=VALUE")),
    }
    Ok(out)
}

/// "1m30s", "10s", "500ms" → whole seconds (rounded up), range-checked.
pub fn duration_secs(s: &str, path: &str) -> Result<u32> {
    numbers::duration_secs(s, path)
}

fn ports(v: Option<&Value>, path: &str) -> Result<Vec<Port>> {
    let mut out = Vec::new();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Value::Array(a) = v else {
        return Err(field(path, "must be a list"));
    };
    for (i, p) in a.iter().enumerate() {
        let here = format!("{path}[{i}]");
        match p {
            Value::Object(_) => {
                let target = match p.get("target") {
                    None | Some(Value::Null) => {
                        return Err(field(format!("{here}.target"), "is required"))
                    }
                    Some(t) => numbers::integer(t, &format!("{here}.target"), 1, 65535)? as u16,
                };
                let port = Port {
                    target,
                    published: opt_string(p, "published", &here)?,
                    host_ip: opt_string(p, "host_ip", &here)?,
                    protocol: opt_string(p, "protocol", &here)?.unwrap_or_else(|| "tcp".into()),
                };
                if let Some(h) = &port.published {
                    numbers::port_or_range(h, &format!("{here}.published"))?;
                }
                // The same check `up` makes (host address, protocol), now.
                hako_engine::network::ports::parse_publish(&port.spec())
                    .map_err(|e| field(&here, e.to_string()))?;
                out.push(port);
            }
            other => {
                let s = string(other, &here)?;
                let b = hako_engine::network::ports::parse_publish(&s)
                    .map_err(|e| field(&here, e.to_string()))?;
                // Keep the short form's meaning (ranges become one entry per port).
                for x in b {
                    out.push(Port {
                        target: x.container_port,
                        published: (x.host_port != 0).then(|| x.host_port.to_string()),
                        host_ip: (!x.host_ip.is_empty()).then(|| x.host_ip.clone()),
                        protocol: x.protocol.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn volume_mounts(v: Option<&Value>, path: &str, dir: &Path) -> Result<Vec<VolumeMount>> {
    let mut out = Vec::new();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Value::Array(a) = v else {
        return Err(field(path, "must be a list"));
    };
    let host = |s: &str| -> String {
        let p = Path::new(s);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else if let Some(rest) = s.strip_prefix("~/") {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
        } else {
            dir.join(p)
        };
        // "./site" and "../x" are taken lexically, as compose does.
        let mut clean = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        clean.display().to_string()
    };
    for (i, m) in a.iter().enumerate() {
        let here = format!("{path}[{i}]");
        match m {
            Value::Object(_) => {
                let typ = opt_string(m, "type", &here)?.unwrap_or_else(|| "volume".into());
                if !matches!(typ.as_str(), "volume" | "bind" | "tmpfs") {
                    return Err(field(
                        format!("{here}.type"),
                        format!("unsupported mount type {typ:?}"),
                    ));
                }
                let target = opt_string(m, "target", &here)?
                    .ok_or_else(|| field(&here, "target is required"))?;
                let mut source = opt_string(m, "source", &here)?.unwrap_or_default();
                if typ == "bind" {
                    source = host(&source);
                }
                out.push(VolumeMount {
                    typ,
                    source,
                    target,
                    read_only: boolean(m, "read_only", &here)?,
                });
            }
            other => {
                let s = string(other, &here)?;
                let parts: Vec<&str> = s.split(':').collect();
                let (src, dst, mode) = match parts.as_slice() {
                    [d] => ("", *d, ""),
                    [s, d] => (*s, *d, ""),
                    [s, d, m] => (*s, *d, *m),
                    _ => return Err(field(&here, format!("invalid volume {s:?}"))),
                };
                if !dst.starts_with('/') {
                    return Err(field(
                        &here,
                        format!("container path {dst:?} must be absolute"),
                    ));
                }
                let read_only = mode.split(',').any(|o| o == "ro");
                let is_path = src.starts_with('/') || src.starts_with('.') || src.starts_with('~');
                out.push(VolumeMount {
                    typ: if is_path { "bind" } else { "volume" }.into(),
                    source: if is_path { host(src) } else { src.to_string() },
                    target: dst.to_string(),
                    read_only,
                });
            }
        }
    }
    Ok(out)
}

fn service(name: &str, v: &Value, dir: &Path, env: &BTreeMap<String, String>) -> Result<Service> {
    let path = format!("services.{name}");
    if !v.is_object() {
        return Err(field(&path, "must be a mapping"));
    }
    const KNOWN: &[&str] = &[
        "image",
        "configs",
        "secrets",
        "build",
        "command",
        "entrypoint",
        "environment",
        "env_file",
        "ports",
        "expose",
        "volumes",
        "networks",
        "network_mode",
        "depends_on",
        "healthcheck",
        "restart",
        "logging",
        "deploy",
        "scale",
        "labels",
        "user",
        "working_dir",
        "hostname",
        "mac_address",
        "extra_hosts",
        "stop_grace_period",
        "stop_signal",
        "cap_add",
        "cap_drop",
        "read_only",
        "privileged",
        "tmpfs",
        "init",
        "ulimits",
        "mem_limit",
        "shm_size",
        "sysctls",
        "cpus",
        "profiles",
        "container_name",
        "pull_policy",
        "dns",
        "tty",
        "stdin_open",
    ];
    for k in v.as_object().expect("checked").keys() {
        if !KNOWN.contains(&k.as_str()) && !k.starts_with("x-") {
            return Err(field(
                format!("{path}.{k}"),
                "is not supported by hako compose",
            ));
        }
    }
    let mut environment = BTreeMap::new();
    for (i, (f, required)) in env_files(v.get("env_file"), &format!("{path}.env_file"))?
        .into_iter()
        .enumerate()
    {
        let p = dir.join(f);
        // `required: false` skips a file that is not there (only that).
        if !required && std::fs::symlink_metadata(&p).is_err() {
            continue;
        }
        environment.extend(
            crate::load::parse_env_file(&p)
                .map_err(|e| field(format!("{path}.env_file[{i}]"), e.to_string()))?,
        );
    }
    environment.extend(key_values(
        v.get("environment"),
        &format!("{path}.environment"),
        env,
    )?);
    let mut networks = BTreeMap::new();
    match v.get("networks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, n) in a.iter().enumerate() {
                networks.insert(
                    string(n, &format!("{path}.networks[{i}]"))?,
                    ServiceNetwork::default(),
                );
            }
        }
        Some(Value::Object(m)) => {
            for (n, cfg) in m {
                let here = format!("{path}.networks.{n}");
                if let Some(k) = cfg.as_object().and_then(|o| {
                    o.keys()
                        .find(|k| !["aliases", "ipv4_address"].contains(&k.as_str()))
                }) {
                    return Err(field(
                        format!("{here}.{k}"),
                        "is not supported by hako compose",
                    ));
                }
                let ipv4_address = match opt_string(cfg, "ipv4_address", &here)? {
                    None => None,
                    Some(a) => Some(a.parse::<std::net::Ipv4Addr>().map_err(|_| {
                        field(format!("{here}.ipv4_address"), "is not an IPv4 address")
                    })?),
                };
                networks.insert(
                    n.clone(),
                    ServiceNetwork {
                        aliases: string_list(cfg.get("aliases"), &format!("{here}.aliases"))?,
                        ipv4_address,
                    },
                );
            }
        }
        Some(_) => {
            return Err(field(
                format!("{path}.networks"),
                "must be a list or a mapping",
            ))
        }
    }
    let mut depends_on = BTreeMap::new();
    match v.get("depends_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, d) in a.iter().enumerate() {
                depends_on.insert(
                    string(d, &format!("{path}.depends_on[{i}]"))?,
                    "service_started".to_string(),
                );
            }
        }
        Some(Value::Object(m)) => {
            for (d, cfg) in m {
                let here = format!("{path}.depends_on.{d}");
                let cond = opt_string(cfg, "condition", &here)?
                    .unwrap_or_else(|| "service_started".into());
                if !matches!(
                    cond.as_str(),
                    "service_started" | "service_healthy" | "service_completed_successfully"
                ) {
                    return Err(field(
                        format!("{here}.condition"),
                        format!("unknown condition {cond:?}"),
                    ));
                }
                depends_on.insert(d.clone(), cond);
            }
        }
        Some(_) => {
            return Err(field(
                format!("{path}.depends_on"),
                "must be a list or a mapping",
            ))
        }
    }
    let network_mode = opt_string(v, "network_mode", &path)?;
    if network_mode.is_some() && !networks.is_empty() {
        return Err(field(
            format!("{path}.network_mode"),
            "cannot be combined with networks",
        ));
    }
    // `service:NAME` runs in NAME's network namespace, so NAME starts first.
    if let Some(dep) = network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("service:"))
    {
        depends_on
            .entry(dep.to_string())
            .or_insert_with(|| "service_started".to_string());
    }
    let healthcheck = match v.get("healthcheck") {
        None | Some(Value::Null) => None,
        Some(h) => {
            let here = format!("{path}.healthcheck");
            let test = match h.get("test") {
                Some(Value::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
                other => string_list(other, &format!("{here}.test"))?,
            };
            let dur = |k: &str| -> Result<Option<String>> {
                let d = opt_string(h, k, &here)?;
                if let Some(d) = &d {
                    numbers::duration_ns(d, &format!("{here}.{k}"))?;
                }
                Ok(d)
            };
            Some(Healthcheck {
                test,
                interval: dur("interval")?,
                timeout: dur("timeout")?,
                retries: match h.get("retries") {
                    None | Some(Value::Null) => None,
                    Some(r) => Some(numbers::integer(
                        r,
                        &format!("{here}.retries"),
                        0,
                        i32::MAX as i64,
                    )?),
                },
                start_period: dur("start_period")?,
                start_interval: dur("start_interval")?,
                disable: boolean(h, "disable", &here)?,
            })
        }
    };
    let deploy = match v.get("deploy") {
        None | Some(Value::Null) => None,
        Some(d @ Value::Object(_)) => Some(d),
        Some(_) => return Err(field(format!("{path}.deploy"), "must be a mapping")),
    };
    let replicas = match (deploy.and_then(|d| d.get("replicas")), v.get("scale")) {
        (Some(r), _) => numbers::replicas(r, &format!("{path}.deploy.replicas"))?,
        (None, Some(r)) => numbers::replicas(r, &format!("{path}.scale"))?,
        (None, None) => 1,
    };
    // deploy.resources.limits: what compose applies outside a swarm too.
    let limits = deploy
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("limits"));
    let limit = |k: &str| -> Result<Option<String>> {
        match limits {
            Some(l) => opt_string(l, k, &format!("{path}.deploy.resources.limits")),
            None => Ok(None),
        }
    };
    let mem_limit = match opt_string(v, "mem_limit", &path)? {
        Some(m) => Some((m, format!("{path}.mem_limit"))),
        None => limit("memory")?.map(|m| (m, format!("{path}.deploy.resources.limits.memory"))),
    };
    if let Some((m, here)) = &mem_limit {
        numbers::bytes(m, here)?;
    }
    let cpus = match opt_string(v, "cpus", &path)? {
        Some(c) => Some((c, format!("{path}.cpus"))),
        None => limit("cpus")?.map(|c| (c, format!("{path}.deploy.resources.limits.cpus"))),
    };
    if let Some((c, here)) = &cpus {
        numbers::cpus(c, here)?;
    }
    let shm_size = opt_string(v, "shm_size", &path)?;
    if let Some(s) = &shm_size {
        numbers::bytes(s, &format!("{path}.shm_size"))?;
    }
    let ulimits = match v.get("ulimits") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, x)| {
                let here = format!("{path}.ulimits.{k}");
                let n = |x: &Value, f: &str| numbers::integer(x, f, -1, i64::MAX);
                let u = match x {
                    Value::Object(_) => {
                        let part = |which: &str| -> Result<i64> {
                            let f = format!("{here}.{which}");
                            match x.get(which) {
                                None | Some(Value::Null) => Err(field(f, "is required")),
                                Some(v) => n(v, &f),
                            }
                        };
                        format!("{k}={}:{}", part("soft")?, part("hard")?)
                    }
                    x => format!("{k}={}", n(x, &here)?),
                };
                // Names and soft <= hard, as `run --ulimit` checks them.
                hako_engine::options::parse_ulimit(&u).map_err(|e| field(&here, e.to_string()))?;
                Ok(u)
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(field(format!("{path}.ulimits"), "must be a mapping")),
    };
    let image = opt_string(v, "image", &path)?;
    if let Some(i) = &image {
        if i.is_empty() || i.len() > 512 || i.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(field(
                format!("{path}.image"),
                format!("{} is not an image reference", crate::error::quoted(i)),
            ));
        }
    }
    let build = v.get("build").filter(|b| !b.is_null()).cloned();
    if image.is_none() && build.is_none() {
        return Err(field(&path, "needs an image (or a build section)"));
    }
    let container_name = opt_string(v, "container_name", &path)?;
    if let Some(n) = &container_name {
        let here = format!("{path}.container_name");
        // Docker's rule for container names.
        let valid = n.len() >= 2
            && n.len() <= 128
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(field(
                here,
                format!(
                    "{} is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)",
                    crate::error::quoted(n)
                ),
            ));
        }
        if replicas > 1 {
            return Err(field(
                here,
                format!("cannot be used with {replicas} replicas (deploy.replicas or scale): a container name must be unique"),
            ));
        }
    }
    let pull_policy = opt_string(v, "pull_policy", &path)?;
    if let Some(pp) = &pull_policy {
        hako_image::on_demand::PullPolicy::parse(pp)
            .map_err(|e| field(format!("{path}.pull_policy"), e.to_string()))?;
    }
    let svc = Service {
        image,
        container_name,
        pull_policy,
        build,
        command: command(v.get("command"), &format!("{path}.command"))?,
        entrypoint: command(v.get("entrypoint"), &format!("{path}.entrypoint"))?,
        environment,
        ports: ports(v.get("ports"), &format!("{path}.ports"))?,
        expose: string_list(v.get("expose"), &format!("{path}.expose"))?,
        volumes: volume_mounts(v.get("volumes"), &format!("{path}.volumes"), dir)?,
        networks,
        network_mode,
        depends_on,
        healthcheck,
        restart: opt_string(v, "restart", &path)?,
        logging: match v.get("logging").filter(|l| !l.is_null()) {
            None => None,
            Some(l) => Some(Logging {
                driver: opt_string(l, "driver", &format!("{path}.logging"))?,
                options: key_values(l.get("options"), &format!("{path}.logging.options"), env)?,
            }),
        },
        replicas,
        labels: key_values(v.get("labels"), &format!("{path}.labels"), env)?,
        user: opt_string(v, "user", &path)?,
        working_dir: opt_string(v, "working_dir", &path)?,
        hostname: opt_string(v, "hostname", &path)?,
        mac_address: opt_string(v, "mac_address", &path)?,
        extra_hosts: match v.get("extra_hosts") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, x)| {
                    Ok(format!(
                        "{k}:{}",
                        string(x, &format!("{path}.extra_hosts.{k}"))?
                    ))
                })
                .collect::<Result<_>>()?,
            other => string_list(other, &format!("{path}.extra_hosts"))?
                .into_iter()
                .map(|h| h.replacen('=', ":", 1))
                .collect(),
        },
        stop_grace_period: opt_string(v, "stop_grace_period", &path)?
            .map(|s| duration_secs(&s, &format!("{path}.stop_grace_period")))
            .transpose()?,
        stop_signal: opt_string(v, "stop_signal", &path)?,
        cap_add: string_list(v.get("cap_add"), &format!("{path}.cap_add"))?,
        cap_drop: string_list(v.get("cap_drop"), &format!("{path}.cap_drop"))?,
        read_only: boolean(v, "read_only", &path)?,
        privileged: boolean(v, "privileged", &path)?,
        tmpfs: string_list(v.get("tmpfs"), &format!("{path}.tmpfs"))?,
        init: boolean(v, "init", &path)?,
        ulimits,
        mem_limit: mem_limit.map(|(m, _)| m),
        cpus: cpus.map(|(c, _)| c),
        shm_size,
        sysctls: key_values(v.get("sysctls"), &format!("{path}.sysctls"), env)?,
        profiles: string_list(v.get("profiles"), &format!("{path}.profiles"))?,
        configs: file_mounts(v.get("configs"), &format!("{path}.configs"), "/")?,
        secrets: file_mounts(
            v.get("secrets"),
            &format!("{path}.secrets"),
            "/run/secrets/",
        )?,
    };
    check(&path, &svc)?;
    Ok(svc)
}

/// What `up` would refuse later, refused at load with the field's path.
fn check(path: &str, svc: &Service) -> Result<()> {
    use hako_engine::options;
    for (i, e) in svc.expose.iter().enumerate() {
        let here = format!("{path}.expose[{i}]");
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        numbers::port_or_range(ports, &here)?;
        if !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(field(here, "the protocol must be tcp, udp or sctp"));
        }
    }
    if let Some(r) = &svc.restart {
        options::parse_restart(r).map_err(|e| field(format!("{path}.restart"), e.to_string()))?;
    }
    if let Some(l) = &svc.logging {
        let opts: Vec<String> = l.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        options::parse_log_config(l.driver.as_deref(), &opts)
            .map_err(|e| field(format!("{path}.logging"), e.to_string()))?;
    }
    for (i, t) in svc.tmpfs.iter().enumerate() {
        options::parse_tmpfs(t).map_err(|e| field(format!("{path}.tmpfs[{i}]"), e.to_string()))?;
    }
    if let Some(m) = &svc.mac_address {
        options::parse_mac(m).map_err(|e| field(format!("{path}.mac_address"), e.to_string()))?;
    }
    Ok(())
}

/// `configs:`/`secrets:` of a service: names, or {source, target}.
fn file_mounts(v: Option<&Value>, path: &str, default_dir: &str) -> Result<Vec<FileMount>> {
    let mut out = Vec::new();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Value::Array(a) = v else {
        return Err(field(path, "must be a list"));
    };
    for (i, m) in a.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let (source, target) = match m {
            Value::Object(_) => {
                let source = opt_string(m, "source", &here)?
                    .ok_or_else(|| field(&here, "source is required"))?;
                let target = opt_string(m, "target", &here)?;
                (source, target)
            }
            other => (string(other, &here)?, None),
        };
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("{default_dir}{t}"),
            None => format!("{default_dir}{source}"),
        };
        out.push(FileMount { source, target });
    }
    Ok(out)
}

/// Top-level `configs:`/`secrets:`: each from a file (relative to the project).
fn file_defs(doc: &Value, key: &str, dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let Some(Value::Object(m)) = doc.get(key) else {
        return Ok(out);
    };
    for (n, v) in m {
        let here = format!("{key}.{n}");
        let Some(f) = opt_string(v, "file", &here)? else {
            return Err(field(
                &here,
                "only file-based definitions are supported (file: PATH)",
            ));
        };
        let p = Path::new(&f);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        if !abs.is_file() {
            return Err(field(
                format!("{here}.file"),
                format!("{} does not exist", crate::error::shown_path(&abs)),
            ));
        }
        out.insert(n.clone(), abs);
    }
    Ok(out)
}

/// The engine's name of a top-level network or volume `n` and whether it
/// is external: its `name:`, else `n` itself when external, else `PROJECT_n`.
fn engine_name(v: &Value, n: &str, project: &str, here: &str) -> Result<(String, bool)> {
    let external = boolean(v, "external", here)?;
    let name = opt_string(v, "name", here)?.unwrap_or_else(|| {
        if external {
            n.to_string()
        } else {
            format!("{project}_{n}")
        }
    });
    Ok((name, external))
}

/// Build the model from the merged document.
pub fn project(
    doc: &Value,
    dir: &Path,
    name_override: Option<&str>,
    env: &BTreeMap<String, String>,
    profiles: &[String],
) -> Result<Project> {
    let name = name_override
        .map(str::to_string)
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").cloned())
        .or_else(|| doc.get("name").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "default".into())
        });
    let name = normalize_name(&name);
    if name.is_empty() {
        return Err(field(
            "name",
            "the project name is empty once normalised (use -p)",
        ));
    }
    let mut services = BTreeMap::new();
    for section in ["services", "networks", "volumes", "configs", "secrets"] {
        if let Some(Value::Object(m)) = doc.get(section) {
            if let Some(k) = m.keys().find(|k| !valid_name(k)) {
                return Err(field(
                    format!("{section}.{k}"),
                    "is not a valid name: use letters, digits, '.', '_' and '-'",
                ));
            }
        }
    }
    match doc.get("services") {
        Some(Value::Object(m)) => {
            for (s, v) in m {
                let svc = service(s, v, dir, env)?;
                // A service with profiles runs only when one of them is active.
                if svc.profiles.is_empty() || svc.profiles.iter().any(|p| profiles.contains(p)) {
                    services.insert(s.clone(), svc);
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(field("services", "must be a mapping")),
    }
    let mut networks = BTreeMap::new();
    if let Some(Value::Object(m)) = doc.get("networks") {
        for (n, v) in m {
            let here = format!("networks.{n}");
            let (name_in_engine, external) = engine_name(v, n, &name, &here)?;
            networks.insert(
                n.clone(),
                NetworkDef {
                    name: name_in_engine,
                    external,
                    subnet: v
                        .get("ipam")
                        .and_then(|i| i.get("config"))
                        .and_then(|c| c.get(0))
                        .and_then(|c| c.get("subnet"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    internal: boolean(v, "internal", &here)?,
                    labels: key_values(v.get("labels"), &format!("{here}.labels"), env)?,
                },
            );
        }
    }
    networks
        .entry("default".into())
        .or_insert_with(|| NetworkDef {
            name: format!("{name}_default"),
            ..Default::default()
        });
    let mut volumes = BTreeMap::new();
    if let Some(Value::Object(m)) = doc.get("volumes") {
        for (n, v) in m {
            let here = format!("volumes.{n}");
            let (name_in_engine, external) = engine_name(v, n, &name, &here)?;
            volumes.insert(
                n.clone(),
                VolumeDef {
                    name: name_in_engine,
                    external,
                    driver: opt_string(v, "driver", &here)?,
                    driver_opts: key_values(
                        v.get("driver_opts"),
                        &format!("{here}.driver_opts"),
                        env,
                    )?,
                    labels: key_values(v.get("labels"), &format!("{here}.labels"), env)?,
                },
            );
        }
    }
    let configs = file_defs(doc, "configs", dir)?;
    let secrets = file_defs(doc, "secrets", dir)?;
    // Container names are unique on the host, so within the project too.
    let mut named: BTreeMap<&str, &str> = BTreeMap::new();
    for (s, svc) in &services {
        if let Some(n) = &svc.container_name {
            if let Some(other) = named.insert(n, s) {
                return Err(field(
                    format!("services.{s}.container_name"),
                    format!("{n} is also the container_name of service {other}"),
                ));
            }
        }
    }
    // References must resolve before anything runs.
    for (s, svc) in &services {
        for (kind, list, defs) in [
            ("configs", &svc.configs, &configs),
            ("secrets", &svc.secrets, &secrets),
        ] {
            for (i, m) in list.iter().enumerate() {
                if !defs.contains_key(&m.source) {
                    return Err(field(
                        format!("services.{s}.{kind}[{i}]"),
                        format!(
                            "refers to undefined {} {}",
                            kind.trim_end_matches('s'),
                            shown(&m.source)
                        ),
                    ));
                }
            }
        }
        for (i, m) in svc.volumes.iter().enumerate() {
            if m.typ == "volume" && !m.source.is_empty() && !volumes.contains_key(&m.source) {
                return Err(field(
                    format!("services.{s}.volumes[{i}]"),
                    format!("refers to undefined volume {}", shown(&m.source)),
                ));
            }
        }
        for n in svc.networks.keys() {
            if !networks.contains_key(n) {
                return Err(field(
                    format!("services.{s}.networks"),
                    format!("refers to undefined network {}", shown(n)),
                ));
            }
        }
        if let Some(d) = svc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
        {
            if !services.contains_key(d) && doc.get("services").and_then(|m| m.get(d)).is_none() {
                return Err(field(
                    format!("services.{s}.network_mode"),
                    format!("refers to undefined service {}", shown(d)),
                ));
            }
        }
        for d in svc.depends_on.keys() {
            if !services.contains_key(d) && doc.get("services").and_then(|m| m.get(d)).is_none() {
                return Err(field(
                    format!("services.{s}.depends_on"),
                    format!("refers to undefined service {}", shown(d)),
                ));
            }
        }
    }
    Ok(Project {
        name,
        dir: dir.to_path_buf(),
        services,
        networks,
        volumes,
        configs,
        secrets,
    })
}

impl Project {
    /// The name of replica `n` of `service`: its `container_name`, else
    /// `PROJECT-SERVICE-N` as docker compose names them.
    pub fn container_name(&self, service: &str, n: u32) -> String {
        match self
            .services
            .get(service)
            .and_then(|s| s.container_name.as_ref())
        {
            Some(c) => c.clone(),
            None => format!("{}-{service}-{n}", self.name),
        }
    }

    /// Services in an order where each comes after what it depends on; a
    /// cycle is an error naming it.
    pub fn order(&self) -> Result<Vec<String>> {
        let mut done: Vec<String> = Vec::new();
        let mut visiting: Vec<String> = Vec::new();
        fn visit(
            p: &Project,
            s: &str,
            done: &mut Vec<String>,
            visiting: &mut Vec<String>,
        ) -> Result<()> {
            if done.iter().any(|d| d == s) {
                return Ok(());
            }
            if let Some(i) = visiting.iter().position(|v| v == s) {
                let mut cycle = visiting[i..].to_vec();
                cycle.push(s.to_string());
                return Err(crate::error::Error::Project(format!(
                    "dependency cycle: {}",
                    cycle.join(" -> ")
                )));
            }
            visiting.push(s.to_string());
            if let Some(svc) = p.services.get(s) {
                for d in svc.depends_on.keys() {
                    if p.services.contains_key(d) {
                        visit(p, d, done, visiting)?;
                    }
                }
            }
            visiting.pop();
            done.push(s.to_string());
            Ok(())
        }
        for s in self.services.keys() {
            visit(self, s, &mut done, &mut visiting)?;
        }
        Ok(done)
    }

    /// The networks a service joins (its own list, or the project default).
    pub fn service_networks(&self, svc: &Service) -> Vec<(String, ServiceNetwork)> {
        if svc.networks.is_empty() {
            return vec![("default".to_string(), ServiceNetwork::default())];
        }
        svc.networks
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(doc: Value) -> Result<Project> {
        project(&doc, Path::new("/srv/My App"), None, &BTreeMap::new(), &[])
    }

    #[test]
    fn short_and_long_forms() {
        let pr = p(json!({"services": {"web": {
            "image": "busybox",
            "command": "sh -c 'echo \"hi there\"'",
            "environment": ["A=1", "B"],
            "ports": ["127.0.0.1:8080:80", {"target": 443, "published": "8443"}],
            "volumes": ["data:/data:ro", "./site:/www", "/abs:/abs"],
            "depends_on": {"db": {"condition": "service_healthy"}},
            "stop_grace_period": "1m30s",
            "deploy": {"replicas": 2},
        }, "db": {"image": "busybox"}}, "volumes": {"data": null}}))
        .unwrap();
        assert_eq!(pr.name, "myapp");
        let w = &pr.services["web"];
        assert_eq!(
            w.command.as_ref().unwrap(),
            &vec!["sh", "-c", "echo \"hi there\""]
        );
        assert_eq!(w.environment.len(), 1);
        assert_eq!(w.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(w.ports[1].target, 443);
        assert_eq!(w.volumes[0].typ, "volume");
        assert!(w.volumes[0].read_only);
        assert_eq!(w.volumes[1].source, "/srv/My App/site");
        assert_eq!(w.depends_on["db"], "service_healthy");
        assert_eq!(w.stop_grace_period, Some(90));
        assert_eq!(w.replicas, 2);
        assert_eq!(pr.volumes["data"].name, "myapp_data");
        assert_eq!(pr.networks["default"].name, "myapp_default");
        assert_eq!(pr.order().unwrap(), vec!["db", "web"]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = |doc: Value| p(doc).unwrap_err().to_string();
        assert!(
            e(json!({"services": {"web": {"image": "x", "ports": ["80:x"]}}}))
                .starts_with("services.web.ports[0]: invalid port specification")
        );
        assert_eq!(
            e(json!({"services": {"web": {"image": "x", "volumes": ["nope:/d"]}}})),
            "services.web.volumes[0]: refers to undefined volume nope"
        );
        assert_eq!(
            e(json!({"services": {"web": {"image": "x", "depends_on": ["ghost"]}}})),
            "services.web.depends_on: refers to undefined service ghost"
        );
        assert_eq!(
            e(json!({"services": {"web": {"image": "x", "bogus": 1}}})),
            "services.web.bogus: is not supported by hako compose"
        );
        assert_eq!(
            e(json!({"services": {"web": {}}})),
            "services.web: needs an image (or a build section)"
        );
        assert_eq!(
            e(json!({"services": {"web": {"image": "busy box\u{1b}"}}})),
            "services.web.image: \"busy box\\u{1b}\" is not an image reference"
        );
        assert_eq!(
            e(json!({"services": {"web": {"image": "x", "network_mode": "service:ghost"}}})),
            "services.web.network_mode: refers to undefined service ghost"
        );
        assert_eq!(
            e(
                json!({"services": {"web": {"image": "x", "network_mode": "host", "networks": ["n"]}}})
            ),
            "services.web.network_mode: cannot be combined with networks"
        );
        // `service:` makes the other service start first.
        let side = p(json!({"services": {"app": {"image": "x", "network_mode": "service:web"}, "web": {"image": "x"}}})).unwrap();
        assert_eq!(side.services["app"].depends_on["web"], "service_started");
        assert_eq!(side.order().unwrap(), vec!["web", "app"]);
        let cyc = p(json!({"services": {"a": {"image": "x", "depends_on": ["b"]}, "b": {"image": "x", "depends_on": ["a"]}}})).unwrap();
        assert_eq!(
            cyc.order().unwrap_err().to_string(),
            "dependency cycle: a -> b -> a"
        );
    }

    /// Issue 13 point 8: every numeric field is range-checked and the error
    /// names the field (4294967296 replicas used to become 0).
    #[test]
    fn numbers_are_range_checked() {
        let e = |svc: Value| {
            let mut svc = svc;
            svc["image"] = json!("busybox");
            p(json!({"services": {"web": svc}}))
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string())
        };
        for (svc, want) in [
            (json!({"deploy": {"replicas": 4294967296u64}}), "services.web.deploy.replicas: must be a whole number from 0 to 10000"),
            (json!({"scale": 4294967296u64}), "services.web.scale: must be a whole number from 0 to 10000"),
            (json!({"scale": -1}), "services.web.scale: must be a whole number from 0 to 10000"),
            (json!({"scale": 1.5}), "services.web.scale: must be a whole number from 0 to 10000"),
            (json!({"ports": [{"target": 65536}]}), "services.web.ports[0].target: must be a whole number from 1 to 65535"),
            (json!({"ports": [{"target": 80, "published": 70000}]}), "services.web.ports[0].published: \"70000\" is not a port number (1 to 65535)"),
            (json!({"expose": ["70000"]}), "services.web.expose[0]: \"70000\" is not a port number (1 to 65535)"),
            (json!({"cpus": 1e12}), "services.web.cpus: \"1000000000000.0\" is out of range: above 0 and at most 1024"),
            (json!({"deploy": {"resources": {"limits": {"cpus": "0"}}}}), "services.web.deploy.resources.limits.cpus: \"0\" is out of range: above 0 and at most 1024"),
            (json!({"mem_limit": "1e30"}), "services.web.mem_limit: \"1e30\" is out of range: at most 1 PiB"),
            (json!({"shm_size": "99999999t"}), "services.web.shm_size: \"99999999t\" is out of range: at most 1 PiB"),
            (json!({"ulimits": {"nofile": {"soft": "x", "hard": 2}}}), "services.web.ulimits.nofile.soft: must be a whole number from -1 to 9223372036854775807"),
            (json!({"ulimits": {"nofile": {"soft": 1}}}), "services.web.ulimits.nofile.hard: is required"),
            (json!({"ulimits": {"nofile": 18446744073709551615u64}}), "services.web.ulimits.nofile: must be a whole number from -1 to 9223372036854775807"),
            (json!({"healthcheck": {"test": "true", "retries": -1}}), "services.web.healthcheck.retries: must be a whole number from 0 to 2147483647"),
            (json!({"healthcheck": {"test": "true", "interval": "9999999999h"}}), "services.web.healthcheck.interval: \"9999999999h\" is out of range: at most 2147483647s"),
            (json!({"stop_grace_period": "9999999999h"}), "services.web.stop_grace_period: \"9999999999h\" is out of range: at most 2147483647s"),
        ] {
            assert_eq!(e(svc.clone()), want, "{svc}");
        }
        // In range: kept.
        let ok = p(
            json!({"services": {"web": {"image": "b", "scale": "3", "cpus": 0.5,
            "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "core": -1},
            "deploy": {"resources": {"limits": {"memory": "64m"}}}}}}),
        )
        .unwrap();
        let w = &ok.services["web"];
        assert_eq!(w.replicas, 3);
        assert_eq!(w.mem_limit.as_deref(), Some("64m"));
        assert_eq!(w.ulimits, vec!["nofile=1024:2048", "core=-1"]);
    }

    /// Issue 13 point 9: container_name is honoured, and refused with more
    /// than one replica or twice in a project.
    #[test]
    fn container_name_rules() {
        let pr = p(json!({"services": {"web": {"image": "b", "container_name": "my-web"}, "db": {"image": "b"}}})).unwrap();
        assert_eq!(pr.container_name("web", 1), "my-web");
        assert_eq!(pr.container_name("db", 1), "myapp-db-1");
        let e = |doc: Value| p(doc).unwrap_err().to_string();
        assert_eq!(
            e(json!({"services": {"web": {"image": "b", "container_name": "w1", "scale": 2}}})),
            "services.web.container_name: cannot be used with 2 replicas (deploy.replicas or scale): a container name must be unique"
        );
        assert!(
            e(json!({"services": {"web": {"image": "b", "container_name": "a b\u{1b}"}}}))
                .starts_with(
                    "services.web.container_name: \"a b\\u{1b}\" is not a valid container name"
                )
        );
        assert_eq!(
            e(
                json!({"services": {"a": {"image": "b", "container_name": "same"}, "b": {"image": "b", "container_name": "same"}}})
            ),
            "services.b.container_name: same is also the container_name of service a"
        );
    }

    #[test]
    fn env_file_long_form() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.env"), "A=1\n").unwrap();
        let doc = json!({"services": {"web": {"image": "b", "env_file": [
            "a.env", {"path": "missing.env", "required": false}]}}});
        let pr = project(&doc, d.path(), None, &BTreeMap::new(), &[]).unwrap();
        assert_eq!(pr.services["web"].environment["A"], "1");
        let doc =
            json!({"services": {"web": {"image": "b", "env_file": [{"path": "missing.env"}]}}});
        let e = project(&doc, d.path(), None, &BTreeMap::new(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("services.web.env_file[0]: ")
                && e.ends_with("missing.env: cannot open: no such file"),
            "{e}"
        );
        // `required: false` does not excuse a device.
        let doc = json!({"services": {"web": {"image": "b", "env_file": [{"path": "/dev/zero", "required": false}]}}});
        assert!(project(&doc, d.path(), None, &BTreeMap::new(), &[]).is_err());
    }
}
