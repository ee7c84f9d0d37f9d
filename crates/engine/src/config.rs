//! Merging the image's configuration with the user's options, as docker does:
//! `--entrypoint` replaces the image's Entrypoint and then drops its Cmd;
//! arguments replace Cmd; `-e` overrides the image's Env by key; `-w`, `-u`
//! override WorkingDir and User; labels add to the image's.

use oci_spec::image::ImageConfiguration;

use crate::error::{Error, Result};
use crate::options::{CreateOptions, HealthOptions};
use crate::record::{Config, HealthConfig, HostConfig};

/// The PATH a container gets when neither the image nor the user sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default stop timeout in seconds.
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;

/// The merged Config of a new container with id `id`.
pub fn merge(image: &ImageConfiguration, o: &CreateOptions, id: &str) -> Result<Config> {
    let ic = image.config().clone().unwrap_or_default();
    let (entrypoint, cmd) = match &o.entrypoint {
        Some(ep) => {
            let ep = if ep.is_empty() {
                vec![]
            } else {
                vec![ep.clone()]
            };
            (ep, o.cmd.clone())
        }
        None => {
            let ep = ic.entrypoint().clone().unwrap_or_default();
            let cmd = if o.cmd.is_empty() {
                ic.cmd().clone().unwrap_or_default()
            } else {
                o.cmd.clone()
            };
            (ep, cmd)
        }
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(Error::Invalid(format!(
            "creating a container from image {}: no command specified (the image has neither Entrypoint nor Cmd)",
            o.image
        )));
    }
    let hostname = match (&o.hostname, o.network.as_deref()) {
        (Some(h), _) => h.clone(),
        // The host's network shares the host's name, as docker does.
        (None, Some("host")) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| id[..12].to_string()),
        (None, _) => id[..12].to_string(),
    };
    let mut env: Vec<String> = ic.env().clone().unwrap_or_default();
    for e in &o.env {
        let entry = if e.contains('=') {
            e.clone()
        } else {
            // "-e KEY" passes the caller's value, and nothing when it has none.
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            }
        };
        set_env(&mut env, entry);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    set_env(&mut env, format!("HOSTNAME={hostname}"));
    // A terminal needs a type for full-screen programs; docker's default.
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let mut labels = ic
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>();
    labels.extend(o.labels.clone());
    let mut exposed_ports: Vec<String> = ic.exposed_ports().clone().unwrap_or_default();
    for p in &o.expose {
        let p = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        if !exposed_ports.contains(&p) {
            exposed_ports.push(p);
        }
    }
    Ok(Config {
        hostname,
        user: o
            .user
            .clone()
            .or_else(|| ic.user().clone())
            .unwrap_or_default(),
        env,
        cmd,
        entrypoint,
        working_dir: o
            .workdir
            .clone()
            .or_else(|| ic.working_dir().clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into()),
        image: o.image.clone(),
        labels,
        exposed_ports,
        volumes: ic.volumes().clone().unwrap_or_default(),
        stop_signal: o
            .stop_signal
            .clone()
            .or_else(|| ic.stop_signal().clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        stop_timeout: o.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        healthcheck: None,
        tty: o.tty,
        open_stdin: o.open_stdin,
        stdin_once: o.stdin_once,
        attach_stdin: o.attach_stdin,
        attach_stdout: o.attach_stdout,
        attach_stderr: o.attach_stderr,
    })
}

/// The health check: the image's `Healthcheck` (docker's extension of the
/// image config, read from its JSON) with the user's options over it field
/// by field, as docker merges them; `["NONE"]` when disabled.
pub fn healthcheck(
    image_config: &serde_json::Value,
    o: &HealthOptions,
) -> Result<Option<HealthConfig>> {
    if o.disabled {
        if o.cmd.is_some() {
            return Err(Error::Invalid(
                "conflicting options: --no-healthcheck and --health-cmd".into(),
            ));
        }
        return Ok(Some(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        }));
    }
    let image: Option<HealthConfig> = image_config
        .get("config")
        .and_then(|c| c.get("Healthcheck"))
        .filter(|h| !h.is_null())
        .and_then(|h| serde_json::from_value(h.clone()).ok());
    let given = o.cmd.is_some()
        || o.interval.is_some()
        || o.timeout.is_some()
        || o.start_period.is_some()
        || o.start_interval.is_some()
        || o.retries.is_some();
    if image.is_none() && !given {
        return Ok(None);
    }
    let mut h = image.unwrap_or_default();
    if let Some(cmd) = &o.cmd {
        h.test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    for (name, v, slot) in [
        ("--health-interval", o.interval, &mut h.interval),
        ("--health-timeout", o.timeout, &mut h.timeout),
        ("--health-start-period", o.start_period, &mut h.start_period),
        (
            "--health-start-interval",
            o.start_interval,
            &mut h.start_interval,
        ),
    ] {
        if let Some(v) = v {
            // Docker's floor: a check every nanosecond would be a busy loop.
            if v != 0 && v < 1_000_000 {
                return Err(Error::Invalid(format!(
                    "invalid {name}: must be at least 1ms"
                )));
            }
            *slot = v;
        }
    }
    if let Some(r) = o.retries {
        if r < 0 {
            return Err(Error::Invalid(
                "invalid --health-retries: must not be negative".into(),
            ));
        }
        h.retries = r;
    }
    Ok(Some(h))
}

/// `--network container:NAME` shares NAME's network namespace and its /etc/hosts,
/// /etc/resolv.conf and hostname, so whatever would set those is refused, with
/// docker's words.
fn check_joined_network(o: &CreateOptions, target: &str) -> Result<()> {
    let conflict = |what: &str| {
        Err(Error::Invalid(format!(
            "conflicting options: {what} and the network mode (--network container:{target})"
        )))
    };
    if target.is_empty() {
        return Err(Error::Invalid(
            "--network container: needs the name or id of the container to join".into(),
        ));
    }
    if o.hostname.is_some() {
        return conflict("hostname");
    }
    if !o.dns.is_empty() || !o.dns_search.is_empty() || !o.dns_options.is_empty() {
        return conflict("dns");
    }
    if !o.extra_hosts.is_empty() {
        return conflict("custom host-to-IP mapping");
    }
    if !o.publish.is_empty() || o.publish_all {
        return conflict("port publishing");
    }
    if !o.expose.is_empty() {
        return conflict("port exposing");
    }
    Ok(())
}

/// The HostConfig of a new container; `runtime_path` is the resolved runtime.
/// docker's checks of `--cpu-quota`/`--cpu-period` and `--memory-reservation`.
fn check_cpu_and_reservation(o: &CreateOptions) -> Result<()> {
    if o.nano_cpus > 0 && (o.cpu_quota != 0 || o.cpu_period != 0) {
        return Err(Error::Invalid(
            "conflicting options: --cpus and --cpu-quota/--cpu-period cannot both be set".into(),
        ));
    }
    if o.cpu_period != 0 && !(1000..=1_000_000).contains(&o.cpu_period) {
        return Err(Error::Invalid(format!(
            "invalid --cpu-period {}: it must be between 1000 and 1000000 microseconds",
            o.cpu_period
        )));
    }
    if o.cpu_quota != 0 && o.cpu_quota != -1 && o.cpu_quota < 1000 {
        return Err(Error::Invalid(format!(
            "invalid --cpu-quota {}: it must be at least 1000 microseconds (or -1)",
            o.cpu_quota
        )));
    }
    if o.blkio_weight != 0 && !(10..=1000).contains(&o.blkio_weight) {
        return Err(Error::Invalid(format!(
            "invalid --blkio-weight {}: it must be between 10 and 1000",
            o.blkio_weight
        )));
    }
    // A v1 blkio hierarchy without a weight file (no CFQ/BFQ scheduler):
    // said here in one line for every runtime (runc's own error is a path).
    let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
    if o.blkio_weight != 0
        && blkio.is_dir()
        && !blkio.join("blkio.weight").exists()
        && !blkio.join("blkio.bfq.weight").exists()
    {
        return Err(Error::Invalid(
            "--blkio-weight: this host's kernel has no blkio.weight (no CFQ/BFQ I/O scheduler)"
                .into(),
        ));
    }
    if o.memory_reservation < 0 {
        return Err(Error::Invalid(
            "invalid --memory-reservation: below 0".into(),
        ));
    }
    if o.memory > 0 && o.memory_reservation > o.memory {
        return Err(Error::Invalid(
            "minimum memory limit can not be less than memory reservation limit: set --memory-reservation below --memory".into(),
        ));
    }
    Ok(())
}

pub fn host_config(o: &CreateOptions, runtime_path: &str) -> Result<HostConfig> {
    check_cpu_and_reservation(o)?;
    let network_mode = o
        .network
        .clone()
        .unwrap_or_else(|| crate::network::DEFAULT_NETWORK.into());
    if let Some(target) = network_mode.strip_prefix("container:") {
        check_joined_network(o, target)?;
    }
    let cni = !crate::network::is_special_mode(&network_mode);
    if !o.network_aliases.is_empty() && (!cni || network_mode == crate::network::DEFAULT_NETWORK) {
        return Err(Error::Invalid(
            "network-scoped aliases are supported only for containers in user-defined networks"
                .into(),
        ));
    }
    if o.ip.is_some() || o.mac_address.is_some() {
        let what = if o.ip.is_some() {
            "user specified IP address"
        } else {
            "a user specified MAC address"
        };
        if !cni {
            return Err(Error::Invalid(format!(
                "{what} is not supported with network mode {network_mode}"
            )));
        }
        if o.ip.is_some() && network_mode == crate::network::DEFAULT_NETWORK {
            return Err(Error::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
    }
    if network_mode == "none" && (!o.publish.is_empty() || o.publish_all) {
        return Err(Error::Invalid(
            "ports cannot be published with --network none".into(),
        ));
    }
    for h in &o.extra_hosts {
        let ok = h.split_once(':').is_some_and(|(n, ip)| {
            !n.is_empty() && (ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok())
        });
        if !ok {
            return Err(Error::Invalid(format!(
                "invalid --add-host {h:?}: expected NAME:IP or NAME:host-gateway"
            )));
        }
    }
    for d in &o.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::Invalid(format!(
                "invalid --dns {d:?}: not an IP address"
            )));
        }
    }
    let mut sysctls = std::collections::BTreeMap::new();
    for s in &o.sysctls {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                sysctls.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "invalid --sysctl {s:?}: expected KEY=VALUE"
                )))
            }
        }
    }
    let mode = |flag: &str, v: &Option<String>, allowed: &[&str]| -> Result<String> {
        match v.as_deref() {
            None | Some("") => Ok(String::new()),
            // `--pid private` is the default; `--ipc private` is kept: such
            // a container's IPC cannot be joined.
            Some(m) if allowed.contains(&m) => Ok(if m == "private" && flag == "pid" {
                String::new()
            } else {
                m.to_string()
            }),
            // Another container's namespace (the containers of a pod join
            // their sandbox's), recorded by id at create.
            Some(m) if m.strip_prefix("container:").is_some_and(|t| !t.is_empty()) => {
                Ok(m.to_string())
            }
            Some(m) => Err(Error::Invalid(format!(
                "invalid --{flag} {m:?}: use {} or container:NAME",
                allowed.join(", ")
            ))),
        }
    };
    let pid_mode = mode("pid", &o.pid_mode, &["host"])?;
    let ipc_mode = mode(
        "ipc",
        &o.ipc_mode,
        &["host", "private", "shareable", "none"],
    )?;
    let cgroupns_mode = match o.cgroupns_mode.as_deref() {
        None | Some("") => String::new(),
        Some(m @ ("host" | "private")) => m.to_string(),
        Some(m) => {
            return Err(Error::Invalid(format!(
                "invalid --cgroupns {m:?}: use host or private"
            )))
        }
    };
    if ipc_mode == "host" && o.shm_size > 0 {
        return Err(Error::Invalid(
            "conflicting options: --shm-size and --ipc host (the host's /dev/shm is used)".into(),
        ));
    }
    if o.shm_size < 0 {
        return Err(Error::Invalid(
            "invalid --shm-size: must not be negative".into(),
        ));
    }
    if o.auto_remove && o.restart.restarts() {
        return Err(Error::Invalid(
            "conflicting options: a restart policy cannot be combined with --rm (auto-remove)"
                .into(),
        ));
    }
    Ok(HostConfig {
        runtime: o
            .runtime
            .clone()
            .unwrap_or_else(|| crate::runtime::DEFAULT.into()),
        runtime_path: runtime_path.to_string(),
        binds: o.binds.clone(),
        tmpfs: o.tmpfs.clone(),
        mounts: o.mounts.clone(),
        volumes_from: o.volumes_from.clone(),
        read_only_rootfs: o.read_only,
        volatile_rootfs: o.volatile_rootfs,
        network_released_by_caller: o.network_released_by_caller,
        privileged: o.privileged,
        cap_add: o.cap_add.clone(),
        cap_drop: o.cap_drop.clone(),
        memory: o.memory,
        memory_swap: o.memory_swap,
        nano_cpus: o.nano_cpus,
        cpu_quota: o.cpu_quota,
        cpu_period: o.cpu_period,
        memory_reservation: o.memory_reservation,
        oom_kill_disable: o.oom_kill_disable,
        devices: o.devices.clone(),
        cgroup_parent: match o.cgroup_parent.as_deref() {
            None => String::new(),
            Some(p)
                if !p.trim_matches('/').is_empty()
                    && p.split('/').all(|c| c != ".." && c != ".")
                    && p
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c)) =>
            {
                p.to_string()
            }
            Some(p) => {
                return Err(Error::Invalid(format!(
                    "invalid --cgroup-parent {p:?}: a cgroup path of letters, digits, '_', '.', '-' and '/' without '.' or '..' parts"
                )))
            }
        },
        blkio_weight: o.blkio_weight,
        pids_limit: o.pids_limit,
        oom_score_adj: o.oom_score_adj.map(oom_score_adj).transpose()?,
        networks: if cni {
            vec![crate::record::NetworkAttach {
                network: network_mode.clone(),
                aliases: o.network_aliases.clone(),
                ipv4_address: o.ip,
                mac_address: o.mac_address.clone(),
            }]
        } else {
            Vec::new()
        },
        // Host networking publishes nothing: the ports are the host's (docker
        // discards them too).
        port_bindings: if cni { o.publish.clone() } else { Vec::new() },
        publish_all_ports: cni && o.publish_all,
        extra_hosts: o.extra_hosts.clone(),
        dns: o.dns.clone(),
        dns_search: o.dns_search.clone(),
        dns_options: o.dns_options.clone(),
        security_opt: o
            .security_opt
            .iter()
            .map(|v| check_security_opt(v))
            .collect::<Result<_>>()?,
        ulimits: o.ulimits.clone(),
        shm_size: o.shm_size,
        sysctls,
        masked_paths: o.masked_paths.clone(),
        readonly_paths: o.readonly_paths.clone(),
        // Resolved to image ids by `create`, which has the image store.
        image_mounts: Vec::new(),
        pid_mode,
        ipc_mode,
        cgroupns_mode,
        group_add: o.group_add.clone(),
        init: o.init,
        cpu_shares: match o.cpu_shares {
            0 => 0,
            // The kernel's range (v1 cpu.shares).
            n => n.clamp(2, 262_144),
        },
        cpuset_cpus: o.cpuset_cpus.clone(),
        cpuset_mems: o.cpuset_mems.clone(),
        network_mode,
        auto_remove: o.auto_remove,
        restart_policy: o.restart.clone(),
        log_config: o.log_config.clone(),
    })
}

/// One `--security-opt`, normalised to the `KEY=VALUE` form docker stores
/// (the old `KEY:VALUE` spelling is accepted).
fn check_security_opt(v: &str) -> Result<String> {
    let (k, val) = match v.split_once('=').or_else(|| v.split_once(':')) {
        Some((k, val)) => (k, Some(val)),
        None => (v, None),
    };
    let norm = |val: Option<&str>| match val {
        Some(x) => format!("{k}={x}"),
        None => k.to_string(),
    };
    match (k, val) {
        ("no-new-privileges", None | Some("true") | Some("false")) => Ok(norm(val)),
        ("seccomp", Some("unconfined")) => Ok(norm(val)),
        ("seccomp", Some(path)) => {
            if !std::path::Path::new(path).is_file() {
                return Err(Error::Invalid(format!(
                    "--security-opt seccomp={path}: no such profile file"
                )));
            }
            Ok(norm(val))
        }
        ("apparmor", Some("unconfined")) | ("label", Some("disable")) => Ok(norm(val)),
        ("apparmor", _) => Err(Error::Invalid(format!(
            "--security-opt {v}: AppArmor profiles are not supported by hako"
        ))),
        ("label", _) => Err(Error::Invalid(format!(
            "--security-opt {v}: SELinux labels are not supported by hako"
        ))),
        _ => Err(Error::Invalid(format!(
            "invalid --security-opt {v:?}: expected seccomp=unconfined|PROFILE, no-new-privileges[=true|false], apparmor=unconfined or label=disable"
        ))),
    }
}

/// Set KEY=value in an environment list, replacing an existing KEY.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or("").to_string();
    match env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(key.as_str()))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// An oom_score_adj for a container: -1000..=1000. Going below this
/// process's own value needs CAP_SYS_RESOURCE; without it (as on hosts
/// that withhold it) a lower request (kubelet asks -997 for guaranteed
/// pods) is raised to our own value, like containerd's
/// `restrict_oom_score_adj`, rather than failing the container.
pub fn oom_score_adj(v: i32) -> Result<i32> {
    if !(-1000..=1000).contains(&v) {
        return Err(Error::Invalid(format!(
            "invalid oom_score_adj {v}: expected -1000 to 1000"
        )));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    const CAP_SYS_RESOURCE: u32 = 24;
    let can_lower = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0);
    if can_lower {
        return Ok(v);
    }
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(-1000);
    Ok(v.max(own))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    fn image(ep: &[&str], cmd: &[&str]) -> ImageConfiguration {
        let cfg = ConfigBuilder::default()
            .entrypoint(ep.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .cmd(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["PATH=/bin".to_string(), "A=1".to_string()])
            .working_dir("/srv".to_string())
            .build()
            .unwrap();
        ImageConfigurationBuilder::default()
            .config(cfg)
            .build()
            .unwrap()
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_merge_rules() {
        let img = image(&["/entry"], &["default"]);
        let mut o = CreateOptions {
            image: "img".into(),
            ..Default::default()
        };
        let c = merge(&img, &o, ID).unwrap();
        assert_eq!(
            (c.entrypoint.clone(), c.cmd.clone()),
            (vec!["/entry".to_string()], vec!["default".to_string()])
        );
        assert_eq!(c.working_dir, "/srv");
        assert!(c.env.contains(&"HOSTNAME=0123456789ab".to_string()));
        o.cmd = vec!["other".into()];
        assert_eq!(merge(&img, &o, ID).unwrap().argv(), vec!["/entry", "other"]);
        // --entrypoint drops the image's Cmd.
        o.cmd = vec![];
        o.entrypoint = Some("/bin/sh".into());
        assert_eq!(merge(&img, &o, ID).unwrap().argv(), vec!["/bin/sh"]);
        o.env = vec!["A=2".into()];
        let c = merge(&img, &o, ID).unwrap();
        assert!(c.env.contains(&"A=2".to_string()) && !c.env.contains(&"A=1".to_string()));
        let empty = image(&[], &[]);
        let o = CreateOptions {
            image: "img".into(),
            ..Default::default()
        };
        assert!(merge(&empty, &o, ID).is_err());
    }

    #[test]
    fn healthcheck_merges_options_over_the_image() {
        let img = serde_json::json!({"config": {"Healthcheck": {
            "Test": ["CMD", "/check"], "Interval": 5_000_000_000i64, "Retries": 4
        }}});
        let none = HealthOptions::default();
        let h = healthcheck(&img, &none).unwrap().unwrap();
        assert_eq!(h.argv().unwrap(), vec!["/check"]);
        assert_eq!((h.interval, h.retries), (5_000_000_000, 4));
        let o = HealthOptions {
            cmd: Some("curl -f localhost".into()),
            retries: Some(1),
            ..Default::default()
        };
        let h = healthcheck(&img, &o).unwrap().unwrap();
        assert_eq!(
            h.argv().unwrap(),
            vec!["/bin/sh", "-c", "curl -f localhost"]
        );
        assert_eq!((h.interval, h.retries), (5_000_000_000, 1));
        let off = HealthOptions {
            disabled: true,
            ..Default::default()
        };
        assert!(healthcheck(&img, &off).unwrap().unwrap().argv().is_none());
        assert!(healthcheck(&serde_json::json!({}), &none)
            .unwrap()
            .is_none());
        let tiny = HealthOptions {
            interval: Some(10),
            ..Default::default()
        };
        assert!(healthcheck(&img, &tiny).is_err());
    }

    impl Config {
        fn argv(&self) -> Vec<String> {
            self.entrypoint
                .iter()
                .chain(self.cmd.iter())
                .cloned()
                .collect()
        }
    }
}
