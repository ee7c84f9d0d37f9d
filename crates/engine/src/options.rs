//! What a caller asks of `create`, and parsers for docker's textual forms of
//! it ("512m", "/host:/ctr:ro", env files), shared by every front end.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::record::{
    Bind, BindOptions, DriverConfig, Mount, MountType, RestartPolicy, Tmpfs, TmpfsOptions,
    VolumeOptions,
};
use crate::volume;

/// The user's options for a new container; unset fields come from the image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image: replace the image's Cmd.
    pub cmd: Vec<String>,
    /// `--entrypoint`: Some("") clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// `-e` and `--env-file` entries, in order ("KEY=value", or "KEY" to take the caller's value).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub expose: Vec<String>,
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<Tmpfs>,
    /// `--mount`, and `-v` with a volume (an empty source is anonymous).
    pub mounts: Vec<Mount>,
    /// `--volumes-from CONTAINER[:ro|:rw]`: that container's volumes and binds.
    pub volumes_from: Vec<String>,
    pub read_only: bool,
    /// The writable layer is a `volatile` overlay: never synced to disk
    /// (no sync at unmount); lost, not remounted, after a host crash or
    /// reboot. For containers nobody starts again after one (CRI's).
    pub volatile_rootfs: bool,
    /// The caller takes the container's own network down after each stop
    /// ([`Engine::release_network`](crate::Engine::release_network), the
    /// CRI's StopPodSandbox): no exit command (a whole hako process) is
    /// run after its exits. One that exits by itself keeps its network
    /// namespace until the caller's release, its next start or `rm`.
    pub network_released_by_caller: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    /// `--cpu-quota` / `--cpu-period` (microseconds; 0: unset).
    pub cpu_quota: i64,
    pub cpu_period: i64,
    /// `--memory-reservation` in bytes (0: unset).
    pub memory_reservation: i64,
    /// `--oom-kill-disable`.
    pub oom_kill_disable: bool,
    /// `--cgroup-parent`.
    pub cgroup_parent: Option<String>,
    /// `--device` (see [`parse_device`]).
    pub devices: Vec<crate::record::DeviceMapping>,
    /// `--blkio-weight` (10 to 1000; 0: unset).
    pub blkio_weight: u16,
    pub pids_limit: i64,
    /// `--oom-score-adj` (-1000..=1000); below the engine's own value it is
    /// raised to it (see [`crate::config::oom_score_adj`]).
    pub oom_score_adj: Option<i32>,
    /// "none", "host" or a network's name; None is the default network.
    pub network: Option<String>,
    /// `--network-alias`.
    pub network_aliases: Vec<String>,
    /// `--pid` and `--ipc`: "host", or None for the container's own.
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    /// `--cgroupns host|private`.
    pub cgroupns_mode: Option<String>,
    /// `--group-add`.
    pub group_add: Vec<String>,
    /// `--shm-size` in bytes (0: 64 MiB).
    pub shm_size: i64,
    /// `--sysctl KEY=VALUE`.
    pub sysctls: Vec<String>,
    /// `--ip`: the address on the (first) network.
    pub ip: Option<std::net::Ipv4Addr>,
    /// `--mac-address`: the MAC of the (first) network's interface.
    pub mac_address: Option<String>,
    /// `-p` (see [`crate::network::ports::parse_publish`]).
    pub publish: Vec<crate::network::ports::PortBinding>,
    /// `-P`.
    pub publish_all: bool,
    /// `--add-host NAME:IP`.
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--security-opt` values (seccomp=..., no-new-privileges, ...).
    pub security_opt: Vec<String>,
    /// Paths to mask / make read-only instead of the engine's defaults
    /// (None: the defaults; CRI's security context sets them).
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// Images (names or ids) mounted read-only at a path: (image, destination).
    pub image_mounts: Vec<(String, String)>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<crate::record::Ulimit>,
    /// `--init`: tini as the container's pid 1.
    pub init: bool,
    /// `--cpu-shares` (relative weight, 2..262144; 0 unset).
    pub cpu_shares: u64,
    /// `--cpuset-cpus`, `--cpuset-mems` ("0-1", "0,2").
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// A runtime name or path; None is hako-runtime.
    pub runtime: Option<String>,
    pub auto_remove: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// `--restart` (see [`parse_restart`]).
    pub restart: RestartPolicy,
    /// `--log-driver` / `--log-opt` (see [`parse_log_config`]).
    pub log_config: crate::record::LogConfig,
    /// `--health-*` and `--no-healthcheck`.
    pub health: HealthOptions,
    /// `-t`, `-i`, and docker's StdinOnce (a foreground `run -i`).
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// docker's Attach* of the config: which streams the client attaches.
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
}

/// The user's health check options; unset ones come from the image.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// `--health-cmd`, run by /bin/sh -c.
    pub cmd: Option<String>,
    /// Nanoseconds (see [`parse_duration`]).
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
    /// `--no-healthcheck`: none, not even the image's.
    pub disabled: bool,
}

/// `--restart no|on-failure[:N]|always|unless-stopped`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let bad = |why: &str| Error::Invalid(format!("invalid restart policy {s:?}: {why}"));
    match (name, count) {
        ("no" | "always" | "unless-stopped", None) => Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: 0,
        }),
        ("no" | "always" | "unless-stopped", Some(_)) => {
            Err(bad("only on-failure takes a maximum retry count"))
        }
        ("on-failure", c) => Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: match c {
                None => 0,
                Some(c) => c
                    .parse()
                    .map_err(|_| bad("the maximum retry count must be a number"))?,
            },
        }),
        _ => Err(bad("expected no, on-failure[:N], always or unless-stopped")),
    }
}

/// `--log-driver DRIVER` and `--log-opt KEY=VALUE`s, checked as docker does
/// for json-file: `max-size` a size with k/m/g, `max-file` a count that needs
/// `max-size`, `labels`/`env` comma-separated keys (see [`log_details`]).
pub fn parse_log_config(driver: Option<&str>, opts: &[String]) -> Result<crate::record::LogConfig> {
    let typ = driver.unwrap_or("json-file");
    // `local` is kept in the json-file format (uncompressed) with docker's
    // local defaults: 5 files of 20 MB.
    if typ != "json-file" && typ != "local" && typ != crate::record::NO_LOG_DRIVER {
        return Err(Error::Invalid(format!(
            "logging driver {typ:?} is not supported: json-file, local and none are"
        )));
    }
    let mut config = BTreeMap::new();
    if typ == "local" {
        config.insert("max-size".to_string(), "20m".to_string());
        config.insert("max-file".to_string(), "5".to_string());
    }
    for o in opts {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            Error::Invalid(format!("invalid --log-opt {o:?}: expected KEY=VALUE"))
        })?;
        // docker's none driver takes no options at all.
        if typ == crate::record::NO_LOG_DRIVER {
            return Err(Error::Invalid(format!(
                "unknown log opt {k:?} for the none driver: it takes none"
            )));
        }
        match k {
            "max-size" => {
                if parse_bytes(v)? == 0 {
                    return Err(Error::Invalid(format!(
                        "invalid --log-opt {o:?}: max-size must be above 0"
                    )));
                }
            }
            "max-file" => match v.parse::<u32>() {
                Ok(n) if n >= 1 => {}
                _ => {
                    return Err(Error::Invalid(format!(
                        "invalid --log-opt {o:?}: max-file must be a whole number of at least 1"
                    )))
                }
            },
            // local's compression: accepted, its files are not compressed.
            "compress" if typ == "local" && (v == "true" || v == "false") => {}
            // Label and env keys whose values `logs --details` shows, as json-file's.
            "labels" | "env" if typ == "json-file" => {}
            other => {
                let also = if typ == "json-file" {
                    ", labels or env"
                } else {
                    ""
                };
                return Err(Error::Invalid(format!(
                    "unknown log opt {other:?} for the {typ} driver: use max-size, max-file{also}"
                )));
            }
        }
        config.insert(k.to_string(), v.to_string());
    }
    if config.contains_key("max-file") && !config.contains_key("max-size") {
        return Err(Error::Invalid("--log-opt max-file needs max-size".into()));
    }
    Ok(crate::record::LogConfig {
        typ: typ.to_string(),
        config,
    })
}

/// What `logs --details` prints before each line, as docker's json-file
/// driver: the container labels named by the `labels` log opt and the
/// environment variables named by `env` that the container has, sorted by
/// key, `key=value` query-escaped, joined by ','.
pub fn log_details(c: &crate::record::Container) -> String {
    let opts = &c.host.log_config.config;
    let keys = |k: &str| -> Vec<String> {
        opts.get(k)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    for k in keys("labels") {
        if let Some(v) = c.config.labels.get(&k) {
            attrs.insert(k, v.clone());
        }
    }
    for k in keys("env") {
        let found = c
            .config
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .rfind(|(n, _)| *n == k);
        if let Some((_, v)) = found {
            attrs.insert(k, v.to_string());
        }
    }
    attrs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Go's `url.QueryEscape`: unreserved bytes kept, ' ' as '+', others %XX.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A Go duration as docker takes it ("30s", "1m30s", "500ms", "2h") in
/// nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let bad = || {
        Error::Invalid(format!(
            "invalid duration {s:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. 30s"
        ))
    };
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let mut rest = t;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    if t.is_empty() {
        return Err(bad());
    }
    Ok(total as i64)
}

/// "512m", "1g", "1024" (bytes), as docker's `--memory`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid size {s:?}: expected a number with an optional k, m, g or t suffix"
        ))
    })?;
    if n.is_nan() || n < 0.0 {
        return Err(Error::Invalid(format!(
            "invalid size {s:?}: must not be negative"
        )));
    }
    Ok((n * mult as f64) as i64)
}

/// "1.5" CPUs → 1_500_000_000 nano CPUs (docker's `--cpus`).
pub fn parse_cpus(s: &str) -> Result<i64> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid --cpus value {s:?}: expected a number")))?;
    if n.is_nan() || n <= 0.0 {
        return Err(Error::Invalid(format!(
            "invalid --cpus value {s:?}: must be positive"
        )));
    }
    Ok((n * 1e9) as i64)
}

/// `--ip 10.1.0.5` (IPv4 only: hako's networks have no IPv6).
pub fn parse_ip(s: &str) -> Result<std::net::Ipv4Addr> {
    let t = s.trim();
    match t.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Ok(a),
        Ok(std::net::IpAddr::V6(_)) => Err(Error::Invalid(format!(
            "invalid --ip {s:?}: IPv6 addresses are not supported (hako networks are IPv4)"
        ))),
        Err(_) => Err(Error::Invalid(format!(
            "invalid --ip {s:?}: not an IPv4 address"
        ))),
    }
}

/// `--mac-address 02:42:ac:11:00:02`: six hex octets, unicast; returned
/// lower-case, as the kernel prints it.
pub fn parse_mac(s: &str) -> Result<String> {
    let t = s.trim().to_ascii_lowercase().replace('-', ":");
    let octets: Vec<&str> = t.split(':').collect();
    let ok = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(Error::Invalid(format!(
            "invalid MAC address {s:?}: expected six hex octets such as 02:42:ac:11:00:02"
        )));
    }
    let first = u8::from_str_radix(octets[0], 16).expect("checked hex");
    if first & 1 == 1 {
        return Err(Error::Invalid(format!(
            "invalid MAC address {s:?}: a multicast address cannot name an interface"
        )));
    }
    Ok(t)
}

/// What one `-v` asks for: a host path or a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeArg {
    Bind(Bind),
    /// A volume mount; an empty source is an anonymous volume.
    Volume(Mount),
}

/// `-v` as docker reads it: `/host:/ctr[:opts]` binds a host path,
/// `name:/ctr[:opts]` mounts (creating on first use) a named volume, and
/// `/ctr` alone an anonymous volume. Options: `ro`/`rw`, `nocopy` (volumes:
/// no pre-fill), SELinux `z`/`Z` (accepted, no SELinux here) and, for binds,
/// one propagation mode (as `--mount bind-propagation`; default rprivate).
pub fn parse_volume(s: &str) -> Result<VolumeArg> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => {
            return Err(Error::Invalid(format!(
                "invalid volume specification {s:?}: expected [SOURCE:]CONTAINER-PATH[:OPTIONS]"
            )))
        }
    };
    if !dst.starts_with('/') {
        return Err(Error::Invalid(format!(
            "invalid volume specification {s:?}: the container path must be absolute"
        )));
    }
    if parts.len() > 1 && src.is_empty() {
        return Err(Error::Invalid(format!(
            "invalid volume specification {s:?}: empty source"
        )));
    }
    let bind = src.starts_with('/');
    let (mut read_only, mut no_copy) = (false, false);
    let mut propagation = String::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" | "z" | "Z" => {}
            "nocopy" if !bind => no_copy = true,
            "nocopy" if bind => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" if bind => {
                if !propagation.is_empty() && propagation != o {
                    return Err(Error::Invalid(format!(
                        "invalid volume specification {s:?}: conflicting propagation modes {propagation:?} and {o:?}"
                    )));
                }
                propagation = o.to_string();
            }
            other => {
                return Err(Error::Invalid(format!(
                    "invalid volume specification {s:?}: unknown option {other:?}"
                )))
            }
        }
    }
    if bind {
        return Ok(VolumeArg::Bind(Bind {
            source: src.to_string(),
            destination: dst.to_string(),
            read_only,
            propagation,
        }));
    }
    if !src.is_empty() {
        volume::validate_name(src)
            .map_err(|e| Error::Invalid(format!("invalid volume specification {s:?}: {e}")))?;
    }
    Ok(VolumeArg::Volume(Mount::volume(
        src, dst, read_only, no_copy,
    )))
}

/// `-v HOST:CTR[:OPTS]` that must be a bind of an absolute host path.
pub fn parse_bind(s: &str) -> Result<Bind> {
    match parse_volume(s)? {
        VolumeArg::Bind(b) => Ok(b),
        VolumeArg::Volume(_) => Err(Error::Invalid(format!(
            "volume {s:?}: the source must be an absolute host path"
        ))),
    }
}

/// Fields of a `--mount` value: comma-separated, double quotes protecting
/// commas (docker reads it as one CSV record).
fn csv_fields(s: &str) -> Result<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    if quoted {
        return Err(Error::Invalid(format!(
            "invalid --mount {s:?}: unterminated quote"
        )));
    }
    Ok(fields)
}

fn mount_bool(s: &str, key: &str, value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(Error::Invalid(format!(
            "invalid --mount {s:?}: {key}={v:?} is not a boolean"
        ))),
    }
}

/// `--mount` in docker's syntax: `type=volume|bind|tmpfs` (default volume),
/// `source`/`src`, `target`/`destination`/`dst`, `readonly`/`ro`,
/// `bind-propagation`, `volume-nocopy`, `volume-label`, `volume-driver`,
/// `volume-opt`, `tmpfs-size`, `tmpfs-mode` (octal).
pub fn parse_mount(s: &str) -> Result<Mount> {
    let bad = |why: String| Error::Invalid(format!("invalid --mount {s:?}: {why}"));
    let mut typ = MountType::Volume;
    let (mut source, mut target) = (String::new(), String::new());
    let mut read_only = false;
    let mut propagation = None;
    let mut recursive = None;
    let mut vol = VolumeOptions::default();
    let mut driver = None;
    let mut driver_opts = BTreeMap::new();
    let mut tmpfs = TmpfsOptions::default();
    let mut saw_volume_opt = false;
    let mut saw_tmpfs_opt = false;
    for field in csv_fields(s)? {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_string)
                .ok_or_else(|| bad(format!("field {key:?} must be a key=value pair")))
        };
        match key.as_str() {
            "type" => {
                typ = match need(value)?.as_str() {
                    "volume" => MountType::Volume,
                    "bind" => MountType::Bind,
                    "tmpfs" => MountType::Tmpfs,
                    t => return Err(bad(format!("mount type {t:?}: use bind, volume or tmpfs"))),
                }
            }
            "source" | "src" => source = need(value)?,
            "target" | "destination" | "dst" => target = need(value)?,
            "readonly" | "ro" => read_only = mount_bool(s, &key, value)?,
            "bind-propagation" => {
                let p = need(value)?;
                if !matches!(
                    p.as_str(),
                    "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                ) {
                    return Err(bad(format!("bind-propagation {p:?}: use one of private, rprivate, shared, rshared, slave, rslave")));
                }
                propagation = Some(p);
            }
            "bind-recursive" => {
                let r = need(value)?;
                if !matches!(r.as_str(), "enabled" | "disabled" | "writable" | "readonly") {
                    return Err(bad(format!(
                        "bind-recursive {r:?}: use enabled, disabled, writable or readonly"
                    )));
                }
                recursive = Some(r);
            }
            // The older spelling of bind-recursive=disabled.
            "bind-nonrecursive" => {
                if mount_bool(s, &key, value)? {
                    recursive = Some("disabled".into());
                }
            }
            "volume-nocopy" => {
                vol.no_copy = mount_bool(s, &key, value)?;
                saw_volume_opt = true;
            }
            "volume-label" => {
                let (k, v) = parse_label(&need(value)?);
                vol.labels.insert(k, v);
                saw_volume_opt = true;
            }
            "volume-driver" => {
                driver = Some(need(value)?);
                saw_volume_opt = true;
            }
            "volume-opt" => {
                let opt = need(value)?;
                let (k, v) = opt
                    .split_once('=')
                    .ok_or_else(|| bad(format!("volume-opt {opt:?} must be KEY=VALUE")))?;
                driver_opts.insert(k.to_string(), v.to_string());
                saw_volume_opt = true;
            }
            "tmpfs-size" => {
                tmpfs.size_bytes = parse_bytes(&need(value)?).map_err(|e| bad(e.to_string()))?;
                saw_tmpfs_opt = true;
            }
            "tmpfs-mode" => {
                let m = need(value)?;
                tmpfs.mode = u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| bad(format!("tmpfs-mode {m:?} is not an octal mode")))?;
                saw_tmpfs_opt = true;
            }
            // Docker accepts and ignores it on Linux.
            "consistency" => {}
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
    }
    if target.is_empty() {
        return Err(bad("target is required".into()));
    }
    if !target.starts_with('/') {
        return Err(bad(format!("target {target:?} must be an absolute path")));
    }
    if saw_volume_opt && typ != MountType::Volume {
        return Err(bad(format!(
            "volume options are for type=volume, not {}",
            typ.as_str()
        )));
    }
    if saw_tmpfs_opt && typ != MountType::Tmpfs {
        return Err(bad(format!(
            "tmpfs options are for type=tmpfs, not {}",
            typ.as_str()
        )));
    }
    if propagation.is_some() && typ != MountType::Bind {
        return Err(bad(format!(
            "bind-propagation is for type=bind, not {}",
            typ.as_str()
        )));
    }
    if recursive.is_some() && typ != MountType::Bind {
        return Err(bad(format!(
            "bind-recursive is for type=bind, not {}",
            typ.as_str()
        )));
    }
    if recursive.as_deref() == Some("readonly") && !read_only {
        return Err(bad("bind-recursive=readonly needs readonly".into()));
    }
    let mut m = Mount {
        typ,
        source: source.clone(),
        target,
        read_only,
        bind_options: None,
        volume_options: None,
        tmpfs_options: None,
    };
    match typ {
        MountType::Bind => {
            if !source.starts_with('/') {
                return Err(bad(if source.is_empty() {
                    "a bind mount needs a source".into()
                } else {
                    format!("bind source {source:?} must be an absolute path")
                }));
            }
            m.bind_options = Some(BindOptions {
                propagation: propagation.unwrap_or_else(|| "rprivate".into()),
                recursive: recursive.unwrap_or_default(),
            });
        }
        MountType::Volume => {
            if !source.is_empty() {
                volume::validate_name(&source).map_err(|e| bad(e.to_string()))?;
            }
            if driver.is_some() || !driver_opts.is_empty() {
                vol.driver_config = Some(DriverConfig {
                    name: driver.unwrap_or_else(|| volume::DRIVER.into()),
                    options: driver_opts,
                });
            }
            m.volume_options = Some(vol);
        }
        MountType::Tmpfs => {
            if !source.is_empty() {
                return Err(bad("a tmpfs mount takes no source".into()));
            }
            m.tmpfs_options = Some(tmpfs);
        }
    }
    Ok(m)
}

/// `--tmpfs /path[:opts]`.
pub fn parse_tmpfs(s: &str) -> Result<Tmpfs> {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    if !dst.starts_with('/') {
        return Err(Error::Invalid(format!(
            "tmpfs {s:?}: the container path must be absolute"
        )));
    }
    Ok(Tmpfs {
        destination: dst.to_string(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Lines of an `--env-file`: KEY=value or KEY; blank lines and # comments skipped.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).ctx(|| format!("reading env file {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` as docker reads it: the
/// container path defaults to the host's, the permissions (some of "rwm")
/// to "rwm"; a middle part made only of r, w and m is the permissions.
pub fn parse_device(s: &str) -> Result<crate::record::DeviceMapping> {
    let bad = |why: &str| Error::Invalid(format!("invalid --device {s:?}: {why}"));
    let perms_like = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = s.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms_like(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(bad("expected HOST[:CONTAINER][:PERMISSIONS]")),
    };
    if !host.starts_with('/') || !ctr.starts_with('/') {
        return Err(bad("the paths must be absolute"));
    }
    if !perms_like(perms) {
        return Err(bad("the permissions are some of r, w and m"));
    }
    Ok(crate::record::DeviceMapping {
        path_on_host: host.to_string(),
        path_in_container: ctr.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

/// `--label k=v` (a bare key gets an empty value).
pub fn parse_label(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// `--ulimit NAME=SOFT[:HARD]` (docker's names: nofile, nproc, core, ...;
/// -1 is unlimited).
pub fn parse_ulimit(s: &str) -> Result<crate::record::Ulimit> {
    const NAMES: &[&str] = &[
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let bad = |why: &str| Error::Invalid(format!("invalid --ulimit {s:?}: {why}"));
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    if !NAMES.contains(&name) {
        return Err(bad(&format!("unknown limit {name:?}")));
    }
    let num = |v: &str| -> Result<i64> {
        v.parse::<i64>()
            .ok()
            .filter(|n| *n >= -1)
            .ok_or_else(|| bad(&format!("{v:?} is not a number")))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    let as_u = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if as_u(soft) > as_u(hard) {
        return Err(bad("the soft limit is above the hard limit"));
    }
    Ok(crate::record::Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_macs() {
        assert_eq!(parse_ip("10.1.0.5").unwrap().to_string(), "10.1.0.5");
        assert!(parse_ip("10.1.0")
            .unwrap_err()
            .to_string()
            .contains("not an IPv4"));
        assert!(parse_ip("fd00::5")
            .unwrap_err()
            .to_string()
            .contains("IPv6"));
        assert_eq!(parse_mac("02:42:AC:11:00:02").unwrap(), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02-42-ac-11-00-02").unwrap(), "02:42:ac:11:00:02");
        for bad in [
            "02:42:ac:11:00",
            "02:42:ac:11:00:0g",
            "0242ac110002",
            "2:42:ac:11:0:2",
        ] {
            assert!(
                parse_mac(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("six hex octets"),
                "{bad}"
            );
        }
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .to_string()
            .contains("multicast"));
    }

    #[test]
    fn sizes_cpus_binds() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        let b = parse_bind("/srv:/data:ro").unwrap();
        assert_eq!(
            (b.source.as_str(), b.destination.as_str(), b.read_only),
            ("/srv", "/data", true)
        );
        assert!(parse_bind("vol:/data").is_err());
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert_eq!(parse_ulimit("nproc=-1").unwrap().hard, -1);
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=x"] {
            assert!(
                parse_ulimit(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("--ulimit"),
                "{bad}"
            );
        }
        assert_eq!(
            parse_restart("on-failure:2").unwrap().maximum_retry_count,
            2
        );
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("").is_err());
        let t = parse_tmpfs("/run:size=64m,mode=755").unwrap();
        assert_eq!(t.options, vec!["size=64m", "mode=755"]);
    }

    #[test]
    fn volume_flags_as_docker() {
        match parse_volume("data:/srv:ro,nocopy").unwrap() {
            VolumeArg::Volume(m) => {
                assert_eq!((m.source.as_str(), m.target.as_str()), ("data", "/srv"));
                assert!(m.read_only && m.no_copy());
            }
            other => panic!("{other:?}"),
        }
        match parse_volume("/cache").unwrap() {
            VolumeArg::Volume(m) => assert!(m.source.is_empty() && !m.read_only),
            other => panic!("{other:?}"),
        }
        match parse_volume("/h:/c:ro,rshared").unwrap() {
            VolumeArg::Bind(b) => assert_eq!((b.propagation(), b.read_only), ("rshared", true)),
            other => panic!("{other:?}"),
        }
        match parse_volume("/h:/c").unwrap() {
            VolumeArg::Bind(b) => assert_eq!(b.propagation(), "rprivate"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "a:/x",
            "bad name:/x",
            "data:rel",
            "rel",
            ":/x",
            "v1:/x:bogus",
            "a:b:c:d",
            "v1:/x:rshared",
            "/h:/x:shared,slave",
        ] {
            let e = parse_volume(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_flags_as_docker() {
        let m = parse_mount("type=volume,src=data,dst=/srv,readonly,volume-nocopy").unwrap();
        assert_eq!(m.typ, MountType::Volume);
        assert_eq!((m.source.as_str(), m.target.as_str()), ("data", "/srv"));
        assert!(m.read_only && m.no_copy());
        // type defaults to volume; no source is anonymous.
        let m = parse_mount("target=/cache,ro=false").unwrap();
        assert!(m.typ == MountType::Volume && m.source.is_empty() && !m.read_only);
        let m =
            parse_mount("type=bind,source=/srv,destination=/x,bind-propagation=rslave").unwrap();
        assert_eq!(m.bind_options.unwrap().propagation, "rslave");
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        let t = m.tmpfs_options.unwrap();
        assert_eq!((t.size_bytes, t.mode), (64 << 20, 0o1770));
        let m = parse_mount("type=volume,target=/v,\"volume-opt=o=size=1m,uid=1\",volume-opt=type=tmpfs,volume-label=a=b").unwrap();
        let v = m.volume_options.unwrap();
        let d = v.driver_config.unwrap();
        assert_eq!(d.options["o"], "size=1m,uid=1");
        assert_eq!(d.options["type"], "tmpfs");
        assert_eq!(v.labels["a"], "b");
        for bad in [
            "type=volume,src=data",
            "type=nfs,target=/x",
            "type=bind,target=/x",
            "type=bind,src=rel,target=/x",
            "type=tmpfs,src=x,target=/x",
            "type=bind,src=/a,target=/x,volume-nocopy",
            "type=volume,target=/x,tmpfs-size=1m",
            "type=tmpfs,target=/x,tmpfs-mode=999",
            "target=/x,colour=red",
            "target=/x,source",
            "target=rel",
            "src=a b,target=/x",
            "target=/x,readonly=maybe",
            "type=volume,target=\"/x",
        ] {
            let e = parse_mount(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid --mount") && !e.contains('\n'),
                "{bad}: {e}"
            );
        }
    }
}
