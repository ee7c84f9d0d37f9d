//! What the engine knows of a container, shaped after the Docker Engine
//! API's container inspect object (Config, HostConfig, State) so that the
//! Docker API service of a later slice can serve it as is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Lifecycle status, as docker names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
    /// Being removed (a removal was interrupted if it stays so).
    Removing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Removing => "removing",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "created" => Status::Created,
            "running" => Status::Running,
            "exited" => Status::Exited,
            "removing" => Status::Removing,
            _ => return None,
        })
    }
}

/// The image's configuration merged with the user's options: what the
/// container runs (docker's `Config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    pub hostname: String,
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// "80/tcp" style keys, from the image and `--expose` (publishing is a later slice).
    pub exposed_ports: Vec<String>,
    /// Anonymous volume paths declared by the image (made into volumes in a later slice).
    pub volumes: Vec<String>,
    pub stop_signal: String,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u32,
    /// The image's health check with the user's options merged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `-t`: the process has a terminal (its output is one stream, stdout).
    #[serde(default)]
    pub tty: bool,
    /// `-i`: stdin stays open for attached clients.
    #[serde(default)]
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client's ends
    /// (docker sets it for a foreground `run -i`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Which streams the creating client meant to attach (docker's
    /// AttachStdin/AttachStdout/AttachStderr; false for a detached run).
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
}

/// docker's `HealthConfig`: `Test` is `["CMD", arg...]`, `["CMD-SHELL",
/// "command"]` or `["NONE"]`; durations in nanoseconds, 0 meaning the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    /// How often to check during the start period (docker 25+).
    pub start_interval: i64,
    pub retries: i64,
}

impl HealthConfig {
    /// Docker's defaults for fields left at 0.
    pub const DEFAULT_INTERVAL_NS: i64 = 30_000_000_000;
    pub const DEFAULT_START_INTERVAL_NS: i64 = 5_000_000_000;
    pub const DEFAULT_TIMEOUT_NS: i64 = 30_000_000_000;
    pub const DEFAULT_RETRIES: i64 = 3;

    /// The command the check runs, None when there is no check ("NONE", empty).
    pub fn argv(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
            }
            _ => None,
        }
    }
}

/// docker's `RestartPolicy`: "no", "on-failure" (at most
/// `MaximumRetryCount` retries when non-zero), "always", "unless-stopped".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        }
    }
}

impl RestartPolicy {
    /// Whether the policy may ever restart the container.
    pub fn restarts(&self) -> bool {
        !matches!(self.name.as_str(), "" | "no")
    }
}

/// A bind mount from the host (`-v /host:/ctr[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Bind {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// `-v`'s propagation option ("rshared", "slave", ...); empty is
    /// docker's default, rprivate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub propagation: String,
}

impl Bind {
    /// The propagation mode in effect.
    pub fn propagation(&self) -> &str {
        if self.propagation.is_empty() {
            "rprivate"
        } else {
            &self.propagation
        }
    }
}

/// A tmpfs mount (`--tmpfs /path[:options]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tmpfs {
    pub destination: String,
    pub options: Vec<String>,
}

/// A resource limit (`--ulimit`): docker's name ("nofile"), -1 unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// A network a container is attached to, with its names there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttach {
    pub network: String,
    /// `--network-alias`: more names other containers on it resolve.
    pub aliases: Vec<String>,
    /// `--ip`: the address asked for on this network (else IPAM chooses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<std::net::Ipv4Addr>,
    /// `--mac-address`: the interface's MAC on this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// What a [`Mount`] mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A host path.
    Bind,
    /// A volume of the engine, named or anonymous.
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// Bind-specific options of a [`Mount`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindOptions {
    /// "rprivate" (docker's default), "private", "rshared", "shared", "rslave", "slave".
    pub propagation: String,
    /// docker's `bind-recursive`: "enabled" (default: submounts too, read-only
    /// applying to the top), "disabled" (no submounts), "writable" (as
    /// enabled), "readonly" (every submount read-only as well).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recursive: String,
}

/// Volume-specific options of a [`Mount`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeOptions {
    /// Do not pre-fill an empty volume from the image's content at the target.
    pub no_copy: bool,
    /// Labels for the volume if this mount creates it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver and its options for the volume if this mount creates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<DriverConfig>,
}

/// A volume driver and its options (`--mount volume-driver=,volume-opt=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DriverConfig {
    pub name: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Tmpfs-specific options of a [`Mount`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TmpfsOptions {
    /// Bytes; 0 is the kernel's default (half of RAM).
    pub size_bytes: i64,
    /// Permission bits of the tmpfs root; 0 is the kernel's default (1777).
    pub mode: u32,
}

/// A mount in docker's `HostConfig.Mounts` shape (`--mount`, and `-v` with a
/// volume). For a volume, an empty `source` asks for an anonymous volume;
/// a created container's mounts have every anonymous volume named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(rename = "Type")]
    pub typ: MountType,
    /// Volume name, absolute host path, or empty (tmpfs, anonymous volume).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

impl Mount {
    /// A volume mount of `source` (empty: anonymous) at `target`.
    pub fn volume(source: &str, target: &str, read_only: bool, no_copy: bool) -> Mount {
        Mount {
            typ: MountType::Volume,
            source: source.to_string(),
            target: target.to_string(),
            read_only,
            bind_options: None,
            volume_options: Some(VolumeOptions {
                no_copy,
                ..Default::default()
            }),
            tmpfs_options: None,
        }
    }

    pub fn no_copy(&self) -> bool {
        self.volume_options.as_ref().is_some_and(|v| v.no_copy)
    }
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` (docker's DeviceMapping).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    /// Some of "rwm".
    pub cgroup_permissions: String,
}

/// `--log-driver` / `--log-opt` (docker's `HostConfig.LogConfig`): json-file
/// (options `max-size`, `max-file`, `labels`, `env`), local (json-file with
/// local's defaults), none, and cri (CRI only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub typ: String,
    pub config: std::collections::BTreeMap<String, String>,
}

/// The log driver of CRI containers: kubelet's log format
/// (`TIMESTAMP STREAM P|F TEXT`) to the file its `path` option names. Set
/// by the CRI service only (the command line offers json-file).
pub const CRI_LOG_DRIVER: &str = "cri";

/// docker's `none` log driver: no log is kept (attached clients still get
/// the output live); `logs` refuses as docker does.
pub const NO_LOG_DRIVER: &str = "none";

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            typ: "json-file".into(),
            config: Default::default(),
        }
    }
}

impl LogConfig {
    /// Whether a log is kept that `logs` can read.
    pub fn readable(&self) -> bool {
        self.typ != NO_LOG_DRIVER
    }

    /// `max-size` in bytes, if set.
    pub fn max_size(&self) -> Option<u64> {
        self.config
            .get("max-size")
            .and_then(|v| crate::options::parse_bytes(v).ok())
            .map(|n| n as u64)
    }

    /// `max-file` (1 without rotation).
    pub fn max_files(&self) -> u32 {
        self.config
            .get("max-file")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }
}

/// How the container is run on this host (docker's `HostConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// Where and how the container's output is logged.
    pub log_config: LogConfig,
    /// The runtime as the user named it ("hako-runtime", "runc", a path).
    pub runtime: String,
    /// The runtime binary it resolved to when the container was created.
    pub runtime_path: String,
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<Tmpfs>,
    /// Volume, bind and tmpfs mounts in docker's `Mounts` shape, as resolved
    /// at create: anonymous volumes named, the image's volumes added.
    /// Default for records written before volumes existed.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// `--volumes-from` as given (its mounts are copied into `binds`/`mounts`).
    #[serde(default)]
    pub volumes_from: Vec<String>,
    pub read_only_rootfs: bool,
    /// The rootfs overlay is `volatile` (see `CreateOptions::volatile_rootfs`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub volatile_rootfs: bool,
    /// No exit command: see `CreateOptions::network_released_by_caller`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub network_released_by_caller: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Bytes; 0 is unlimited.
    pub memory: i64,
    /// Bytes of memory + swap; 0 is docker's default (twice `memory`), -1 unlimited.
    pub memory_swap: i64,
    /// CPUs in billionths (docker's NanoCpus); 0 is unlimited.
    pub nano_cpus: i64,
    /// CFS quota and period in microseconds (docker's CpuQuota, CpuPeriod); 0 unset.
    pub cpu_quota: i64,
    pub cpu_period: i64,
    /// Soft memory limit in bytes (docker's MemoryReservation); 0 unset.
    pub memory_reservation: i64,
    /// `--cgroup-parent`: the cgroup the container's goes under ("": /hako).
    pub cgroup_parent: String,
    /// `--device` mappings (docker's Devices).
    pub devices: Vec<DeviceMapping>,
    /// `--oom-kill-disable` (docker's OomKillDisable).
    pub oom_kill_disable: bool,
    /// Block I/O weight, 10-1000 (docker's BlkioWeight); 0 unset.
    pub blkio_weight: u16,
    /// 0 is unlimited.
    pub pids_limit: i64,
    /// The process's oom_score_adj; None leaves the runtime's (inherited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// "none", "host", or the first network's name ("bridge" by default).
    pub network_mode: String,
    /// CNI networks in interface order (eth0 first); empty for none/host.
    pub networks: Vec<NetworkAttach>,
    /// `-p`; a host port of 0 is chosen at start.
    pub port_bindings: Vec<crate::network::ports::PortBinding>,
    /// `-P`: every exposed port to a free host port.
    pub publish_all_ports: bool,
    /// `--add-host NAME:IP` (IP may be `host-gateway`).
    pub extra_hosts: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--security-opt` as given (docker's SecurityOpt).
    pub security_opt: Vec<String>,
    pub ulimits: Vec<Ulimit>,
    /// `--init`: tini runs as pid 1 and the command under it.
    pub init: bool,
    pub cpu_shares: u64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub auto_remove: bool,
    pub restart_policy: RestartPolicy,
    /// `--pid host`: the host's process namespace ("" is the container's own).
    pub pid_mode: String,
    /// `--ipc host`: the host's IPC namespace and /dev/shm ("" is private).
    pub ipc_mode: String,
    /// `--cgroupns private`: a cgroup namespace of its own ("" and "host":
    /// the host's, docker's default on cgroup v1 hosts such as this one).
    #[serde(rename = "CgroupnsMode")]
    pub cgroupns_mode: String,
    /// `--group-add`: more groups for the process (names or gids).
    pub group_add: Vec<String>,
    /// `--shm-size` in bytes; 0 is docker's 64 MiB.
    pub shm_size: i64,
    /// `--sysctl KEY=VALUE` (namespaced keys only; the runtime checks).
    pub sysctls: BTreeMap<String, String>,
    /// Paths hidden from the process (docker's MaskedPaths); None: the
    /// engine's defaults (none when privileged), an empty list: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only (docker's ReadonlyPaths); as `masked_paths`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    /// Images mounted read-only into the container (CRI image volumes,
    /// docker's `--mount type=image`), by image id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_mounts: Vec<ImageMount>,
}

/// An image's root filesystem mounted read-only at `destination` (mounted
/// on the host side at `<container dir>/image-mounts/<index>/rootfs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageMount {
    /// The image id (config digest).
    pub image: String,
    pub destination: String,
}

/// The run state (docker's `State`), kept current by the engine and the
/// monitor's exit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Container init pid while running, else 0.
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot), to tell it from a reused pid.
    pub pid_start: u64,
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    /// RFC 3339 times; empty when not yet.
    pub started_at: String,
    pub finished_at: String,
    /// Why the last start failed or why the exit status is unknown.
    pub error: String,
    /// Restarts by the restart policy since the last `start`.
    pub restart_count: i64,
    /// Exited and waiting to be restarted by its monitor (status stays Running).
    pub restarting: bool,
    /// The last exit was the kernel's OOM killer's doing.
    pub oom_killed: bool,
}

impl State {
    /// docker's `State.Status`: "restarting" between a run and its restart.
    pub fn status_text(&self) -> &'static str {
        if self.status == Status::Running && self.restarting {
            "restarting"
        } else {
            self.status.as_str()
        }
    }

    pub fn created() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            monitor_pid: 0,
            monitor_start: 0,
            exit_code: 0,
            started_at: String::new(),
            finished_at: String::new(),
            error: String::new(),
            restart_count: 0,
            restarting: false,
            oom_killed: false,
        }
    }
}

/// One container.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    /// Unique, without docker's leading slash.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image id (config digest).
    pub image_id: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub config: Config,
    pub host: HostConfig,
    pub state: State,
}

impl Container {
    /// The command line the container runs: entrypoint then cmd.
    pub fn argv(&self) -> Vec<String> {
        self.config
            .entrypoint
            .iter()
            .chain(self.config.cmd.iter())
            .cloned()
            .collect()
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}
