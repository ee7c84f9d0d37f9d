//! Container commands: run, create, start, stop, kill, rm, ps, logs,
//! inspect, wait, exec, attach (and the monitor's hidden `container-cleanup`).
//! Thin over hako-engine; exit codes as docker's: 125 when hako itself
//! fails, 126/127 when the command cannot be invoked / is not found, else
//! the container's own.

use std::io::Write;
use std::path::PathBuf;
use std::process::exit;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hako_engine::ps::{self, PsFilter};
use hako_engine::{options, Container, CreateOptions, Engine, ExecOptions, Programs, Status};

use super::interactive;
use hako_image::ImageStore;

use crate::Global;

/// The container commands, flattened into `hako`'s top level as docker has them.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and start a container from an image.
    #[command(
        after_help = "Examples:\n  hako run --rm busybox echo hi\n  hako run -d --name web --memory 64m busybox httpd -f"
    )]
    Run(Box<RunArgs>),
    /// Create a container without starting it.
    Create(Box<CreateArgs>),
    /// Start created or stopped containers.
    #[command(after_help = "Examples:\n  hako start web\n  hako start -ai shell")]
    Start(StartArgs),
    /// Attach to a running container's input and output.
    #[command(
        after_help = "Examples:\n  hako attach web\n  hako attach --no-stdin --detach-keys ctrl-x shell\nDetach with ctrl-p ctrl-q (or --detach-keys)."
    )]
    Attach(AttachArgs),
    /// Stop running containers: the stop signal, then SIGKILL after the timeout.
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// List containers.
    #[command(visible_aliases = ["ls", "list"])]
    Ps(PsArgs),
    /// Show a container's output.
    Logs(LogsArgs),
    /// Show containers in detail (JSON, as docker's inspect).
    ///
    /// Examples:
    ///   hako inspect web
    ///   hako inspect -f '{{.State.Pid}}' web
    ///   hako inspect -f '{{json .NetworkSettings.Networks}}' web
    Inspect(InspectArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(NamesArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Pause every process of running containers.
    Pause(NamesArgs),
    /// Resume paused containers.
    Unpause(NamesArgs),
    /// Stop then start containers.
    Restart(StopArgs),
    /// Give a container a new name.
    Rename(super::container_ops::RenameArgs),
    /// Show the processes of a running container.
    #[command(after_help = "Examples:\n  hako top web\n  hako top web -o pid,comm")]
    Top(super::container_ops::TopArgs),
    /// Show resource usage of running containers.
    #[command(
        after_help = "Examples:\n  hako stats --no-stream\n  hako stats --no-stream --format json web"
    )]
    Stats(super::container_ops::StatsArgs),
    /// Copy files between a container and the host.
    Cp(super::cp::CpArgs),
    /// Change the resource limits or restart policy of containers.
    #[command(
        after_help = "Examples:\n  hako update --memory 256m --cpus 1.5 web\n  hako update --restart unless-stopped web db"
    )]
    Update(super::container_ops::UpdateArgs),
    /// Make an image of a container's changes (on top of its image).
    #[command(
        after_help = "Examples:\n  hako commit web web:v2\n  hako commit -m 'add config' -a 'Ann <ann@example.com>' -c 'CMD [\"httpd\", \"-f\"]' -c 'EXPOSE 80' web"
    )]
    Commit(super::container_ops::CommitArgs),
    /// List the paths a container added (A), changed (C) or deleted (D).
    Diff(super::container_ops::DiffArgs),
    /// Write a container's root filesystem as a tar archive.
    #[command(after_help = "Examples:\n  hako export -o web.tar web\n  hako export web | tar -t")]
    Export(super::container_ops::ExportArgs),
    /// List a container's published ports, or the host address of one.
    #[command(after_help = "Examples:\n  hako port web\n  hako port web 80/tcp")]
    Port(PortArgs),
    /// Run by a container's monitor when the container exited.
    #[command(hide = true)]
    ContainerCleanup { id: String },
}

/// The options of `create` and `run`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Name of the container (unique).
    #[arg(long)]
    pub name: Option<String>,
    /// Pull the image: missing (if not stored), always, or never.
    #[arg(long, default_value = "missing", value_name = "POLICY")]
    pub pull: String,
    /// The image's platform, os/arch[/variant]: pulled for it; a stored image
    /// of another platform is refused.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Environment variable KEY=value (or KEY to pass the caller's value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=value lines).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Bind a host path (/HOST:CONTAINER), mount a named volume (NAME:CONTAINER,
    /// created on first use) or an anonymous one (CONTAINER); options ro, nocopy.
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "[HOST|NAME:]CONTAINER[:ro,nocopy]"
    )]
    pub volume: Vec<String>,
    /// Mount: type=volume|bind|tmpfs,source=..,target=..[,readonly][,volume-nocopy]
    /// [,bind-propagation=..][,tmpfs-size=..][,tmpfs-mode=..] (docker's syntax).
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Mount the volumes and binds of another container (CONTAINER[:ro|:rw]).
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|:rw]")]
    pub volumes_from: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Set a label KEY=value.
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read labels from a file (KEY=value lines; # comments).
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// Write the container's id to this file (which must not exist).
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// Record an exposed port (PORT[/PROTO]).
    #[arg(long)]
    pub expose: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// All capabilities, all devices, no masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability (or ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Memory limit (e.g. 64m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// CFS quota in microseconds per period (-1: unlimited).
    #[arg(
        long = "cpu-quota",
        allow_hyphen_values = true,
        value_name = "MICROSECONDS"
    )]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (1000 to 1000000).
    #[arg(long = "cpu-period", value_name = "MICROSECONDS")]
    pub cpu_period: Option<i64>,
    /// Soft memory limit (e.g. 32m), below --memory.
    #[arg(long = "memory-reservation", value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// The cgroup to put the container's under (default: /hako).
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// A host device in the container: HOST[:CONTAINER][:PERMISSIONS] (rwm).
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:PERMS]")]
    pub device: Vec<String>,
    /// Do not let the kernel's OOM killer end the container's processes.
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Block I/O weight, 10 to 1000 (needs a weighted I/O scheduler on the host).
    #[arg(long = "blkio-weight", value_name = "WEIGHT")]
    pub blkio_weight: Option<u16>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// The process's OOM score adjustment, -1000..1000 (never below hako's own).
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// Network: bridge (default), a user-defined network, none or host.
    #[arg(long = "network", visible_alias = "net")]
    pub network: Option<String>,
    /// Another name of the container on its user-defined network.
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Process namespace: "host" shares the host's (ps sees every process).
    #[arg(long, value_name = "MODE")]
    pub pid: Option<String>,
    /// IPC namespace: "host" shares the host's (and its /dev/shm), "private".
    #[arg(long, value_name = "MODE")]
    pub ipc: Option<String>,
    /// Cgroup namespace: "host" (the default here, a cgroup v1 host) or "private".
    #[arg(long, value_name = "MODE")]
    pub cgroupns: Option<String>,
    /// Another group for the process (a name in the image's /etc/group, or a gid).
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Size of /dev/shm (default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// A namespaced kernel parameter, e.g. net.ipv4.ip_forward=1.
    #[arg(long, value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
    /// IPv4 address on the (user-defined) network, e.g. 10.5.0.20.
    #[arg(long, value_name = "IPV4")]
    pub ip: Option<String>,
    /// MAC address of the container's interface, e.g. 02:42:0a:05:00:14.
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO].
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOST:]PORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Publish every exposed port to a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add a line to /etc/hosts: NAME:IP (IP may be host-gateway).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// DNS server for /etc/resolv.conf.
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// DNS resolver option.
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Security options: seccomp=unconfined|PROFILE.json, no-new-privileges,
    /// apparmor=unconfined, label=disable.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Resource limit NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Run an init (tini) as pid 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Relative CPU weight.
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (e.g. 0-1, 0,2).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// OCI runtime: hako-runtime (default), runc, crun, or a path.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Signal that stops the container (default: the image's, else SIGTERM).
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u32>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open: attached clients' input reaches the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal (pseudo-TTY).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Restart policy: no, on-failure[:MAX_RETRIES], always, unless-stopped.
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Logging driver (json-file, the only one).
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Log option: max-size=SIZE (rotate past it, e.g. 10m), max-file=N (files kept).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Command to run to check health (by /bin/sh -c in the container).
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s, 1m30s).
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Maximum time a health check may run (e.g. 30s).
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<i64>,
    /// Start period during which failures are not counted (e.g. 5s).
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between checks during the start period (default 5s).
    #[arg(long = "health-start-interval", value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// Disable any health check, also the image's.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Image to create the container from.
    pub image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keys that detach from the container, leaving it running (docker's form).
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Forward signals a foreground run receives to the container (not with -t).
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output (and, with -i, its input).
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach the caller's stdin (with -a, for a container created with -i).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Keys that detach from the container, leaving it running.
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Forward signals to the container (not for a container with a terminal).
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Keys that detach from the container, leaving it running.
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PORT[/PROTO] to show (default: all).
    pub private_port: Option<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A Go-style template per object ('{{.State.Status}}', '{{json .Config}}'), or json.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only this kind of object: container, image, network or volume
    /// (default: the first kind, in that order, with an object of the name).
    #[arg(long = "type", value_name = "TYPE", value_parser = ["container", "image", "network", "volume"])]
    pub kind: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing (default: the container's stop timeout, 10).
    #[arg(short = 't', long = "time")]
    pub time: Option<u32>,
    /// Signal to stop with (default: the container's stop signal, SIGTERM).
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove running containers.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the containers' anonymous volumes too (named volumes stay).
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running only).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: "json" (one object per line), a Go-style template
    /// ("{{.Names}}\t{{.Status}}") or "table TEMPLATE".
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate ids and commands.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter: id=, name=, label=KEY[=VALUE], status=, exited=CODE, ancestor=IMAGE, network=.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show the N most recently created containers (all states).
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Show the most recently created container (all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Show each container's size: its writable layer, and with its image.
    #[arg(short = 's', long)]
    pub size: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow new output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines from the end ("all").
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only entries at or after this time (RFC 3339, unix seconds, or a duration ago: 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Show the attributes the log opts `labels` and `env` name before each line.
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin attached (else the process reads /dev/null).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a terminal (pseudo-TTY).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Start the process and return at once.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keys that detach from the process, leaving it running.
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Environment variable KEY=value.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Read environment variables from a file (KEY=value lines).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Give the process every capability.
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Run a container command; failures exit with docker's codes: `run`'s
/// (and `create`'s) own failures 125 (126/127 when the command cannot be run / is not
/// found), `exec`'s 126/127 for those, everything else 1.
pub fn run(g: &Global, cmd: ContainerCommand) -> Result<()> {
    // `create` too: docker's create exits 125 for its options' errors.
    let (is_run, is_exec) = (
        matches!(cmd, ContainerCommand::Run(_) | ContainerCommand::Create(_)),
        matches!(cmd, ContainerCommand::Exec(_)),
    );
    let result = dispatch(g, cmd);
    if let Err(e) = result {
        let engine = e
            .chain()
            .find_map(|c| c.downcast_ref::<hako_engine::Error>());
        let code = match engine {
            Some(err) if is_run => err.exit_code(),
            Some(hako_engine::Error::Exec { code, .. }) if is_exec => *code,
            _ if is_run => 125,
            _ => 1,
        };
        eprintln!("Error: {}", crate::output::error_line(&e));
        exit(code);
    }
    Ok(())
}

fn dispatch(g: &Global, cmd: ContainerCommand) -> Result<()> {
    let engine = Engine::open(&g.root)?;
    match cmd {
        ContainerCommand::Run(a) => run_container(g, &engine, a),
        ContainerCommand::Create(a) => {
            let mut images = open_images(g)?;
            let opts = create_options(&a)?;
            check_cidfile(&a.cidfile)?;
            super::distribution::pull_for_run(
                g,
                &mut images,
                &opts.image,
                &a.pull,
                a.platform.as_deref(),
            )?;
            let c = engine.create(&mut images, &opts)?;
            write_cidfile(&a.cidfile, &c.id)?;
            println!("{}", c.id);
            Ok(())
        }
        ContainerCommand::Start(a) => {
            let mut images = open_images(g)?;
            let programs = programs(g)?;
            if a.attach || a.interactive {
                return start_attached(&engine, &mut images, &programs, a);
            }
            for name in &a.containers {
                engine.start(&mut images, name, &programs)?;
                println!("{name}");
            }
            Ok(())
        }
        ContainerCommand::Attach(a) => attach(&engine, a),
        ContainerCommand::Stop(a) => each(&a.containers, |n| {
            engine.stop_with_signal(n, a.time, a.signal.as_deref())
        }),
        ContainerCommand::Kill(a) => each(&a.containers, |n| engine.kill(n, &a.signal)),
        ContainerCommand::Rm(a) => {
            let mut images = open_images(g)?;
            let mut errors = Vec::new();
            for n in &a.containers {
                match engine.remove_with_volumes(&mut images, n, a.force, a.volumes) {
                    Ok(()) => println!("{n}"),
                    // docker's `rm -f` of a missing container: said, not a failure.
                    Err(e @ hako_engine::Error::NotFound { .. }) if a.force => eprintln!("{e}"),
                    Err(e) => errors.push(e),
                }
            }
            fail_with_all(errors)
        }
        ContainerCommand::Ps(a) => ps(g, &engine, a),
        ContainerCommand::Logs(a) => logs(&engine, a),
        ContainerCommand::Inspect(a) => {
            // As docker: what was found is printed, then the others fail.
            let mut out = Vec::new();
            let mut errors = Vec::new();
            let mut images = None;
            for n in &a.containers {
                match inspect_any(g, &engine, &mut images, a.kind.as_deref(), n)? {
                    Some(o) => out.push(o),
                    None => errors.push(hako_engine::Error::NotFound {
                        what: format!("{} {n}", a.kind.as_deref().unwrap_or("object")),
                    }),
                }
            }
            crate::output::print_inspected(&out, a.format.as_deref())?;
            fail_with_all(errors)
        }
        ContainerCommand::Wait(a) => {
            for n in &a.containers {
                println!("{}", engine.wait(n)?);
            }
            Ok(())
        }
        ContainerCommand::Exec(a) => exec(&engine, a),
        ContainerCommand::Pause(a) => each(&a.containers, |n| engine.pause(n)),
        ContainerCommand::Unpause(a) => each(&a.containers, |n| engine.unpause(n)),
        ContainerCommand::Restart(a) => {
            let mut images = open_images(g)?;
            let programs = programs(g)?;
            super::container_ops::restart(&engine, &mut images, &programs, &a)
        }
        ContainerCommand::Rename(a) => super::container_ops::rename(&engine, a),
        ContainerCommand::Top(a) => super::container_ops::top(&engine, a),
        ContainerCommand::Cp(a) => super::cp::run(&engine, a),
        ContainerCommand::Commit(a) => {
            let mut images = open_images(g)?;
            super::container_ops::commit(g, &engine, &mut images, a)
        }
        ContainerCommand::Update(a) => super::container_ops::update(&engine, a),
        ContainerCommand::Diff(a) => {
            let images = open_images(g)?;
            super::container_ops::diff(&engine, &images, a)
        }
        ContainerCommand::Export(a) => super::container_ops::export(&engine, a),
        ContainerCommand::Stats(a) => super::container_ops::stats(&engine, a),
        ContainerCommand::Port(a) => {
            let c = engine.get(&a.container)?;
            let want = a.private_port.as_deref().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            });
            let ports: Vec<_> = engine
                .ports(&c)
                .into_iter()
                .filter(|p| want.as_ref().is_none_or(|w| &p.key() == w))
                .collect();
            if ports.is_empty() {
                if let Some(w) = want {
                    anyhow::bail!("no public port {w} published for {}", c.name);
                }
            }
            for p in ports {
                let host = if p.host_ip.is_empty() {
                    "0.0.0.0"
                } else {
                    &p.host_ip
                };
                if a.private_port.is_some() {
                    println!("{host}:{}", p.host_port);
                } else {
                    println!("{} -> {host}:{}", p.key(), p.host_port);
                }
            }
            Ok(())
        }
        ContainerCommand::ContainerCleanup { id } => {
            let mut images = open_images(g)?;
            match engine.cleanup(&mut images, &id) {
                // Removed meanwhile by someone else: nothing left to clean.
                Err(hako_engine::Error::NotFound { .. }) => Ok(()),
                r => Ok(r?),
            }
        }
    }
}

pub(crate) fn open_images(g: &Global) -> Result<ImageStore> {
    ImageStore::open(&g.root)
        .with_context(|| format!("opening the image store in {}", g.root.display()))
}

/// Apply `f` to each name, printing it on success like docker; the first
/// failure is reported after trying the others.
fn each(names: &[String], mut f: impl FnMut(&str) -> hako_engine::Result<()>) -> Result<()> {
    let mut first = None;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                if first.is_some() {
                    eprintln!("Error: {e}");
                } else {
                    first = Some(e);
                }
            }
        }
    }
    match first {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// docker's `inspect NAME`: the container, image, network or volume of
/// that name (in that order, or only `kind`); None when there is none.
fn inspect_any(
    g: &Global,
    engine: &Engine,
    images: &mut Option<ImageStore>,
    kind: Option<&str>,
    name: &str,
) -> Result<Option<serde_json::Value>> {
    let want = |k: &str| kind.is_none_or(|w| w == k);
    let missing = |e: &hako_engine::Error| matches!(e, hako_engine::Error::NotFound { .. });
    if want("container") {
        match engine.get(name) {
            Ok(c) => return Ok(Some(engine.inspect(&c))),
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if want("image") {
        if images.is_none() {
            *images = Some(super::image::open_store(g)?);
        }
        let store = images.as_ref().expect("opened above");
        match super::image::inspect_object(store, name) {
            Ok(o) => return Ok(Some(o)),
            Err(e)
                if e.downcast_ref::<hako_image::Error>()
                    .is_some_and(|e| matches!(e, hako_image::Error::NotFound { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    if want("network") {
        match engine.network(name) {
            Ok(n) => return Ok(Some(engine.network_inspect(&n)?)),
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if want("volume") {
        match engine.volume(name) {
            Ok(v) => return Ok(Some(engine.inspect_volume(&v))),
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Fail with the last of `errors` after printing the others (in order), as
/// docker does for commands given several names.
fn fail_with_all(mut errors: Vec<hako_engine::Error>) -> Result<()> {
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    for e in errors {
        eprintln!("Error: {e}");
    }
    Err(last.into())
}

/// The monitor next to this program (or on PATH), and the exit command it
/// runs: this program, on the same root.
pub(crate) fn programs(g: &Global) -> Result<Programs> {
    let me = std::env::current_exe().context("finding the hako executable")?;
    let beside = me.with_file_name("hako-monitor");
    let monitor = if beside.is_file() {
        beside
    } else {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("hako-monitor"))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "finding hako-monitor: not next to {} nor on PATH",
                    me.display()
                )
            })?
    };
    let root = std::path::absolute(&g.root).unwrap_or_else(|_| g.root.clone());
    Ok(Programs {
        monitor,
        exit_command: vec![
            me.to_string_lossy().into_owned(),
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "container-cleanup".into(),
        ],
        dns_server: vec![
            me.to_string_lossy().into_owned(),
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "network".into(),
            "dns-serve".into(),
        ],
    })
}

/// docker 23's relative bind sources: `-v ./data:/data` (also ".", "../x")
/// is the caller's directory joined, made absolute.
fn relative_bind_source(v: &str) -> Result<String> {
    let (src, rest) = v.split_once(':').unwrap_or((v, ""));
    if !(src == "." || src == ".." || src.starts_with("./") || src.starts_with("../"))
        || rest.is_empty()
    {
        return Ok(v.to_string());
    }
    let abs = std::path::absolute(src)
        .with_context(|| format!("making the bind source {src:?} absolute"))?;
    let abs = abs
        .to_str()
        .with_context(|| format!("the bind source {src:?} is not UTF-8"))?;
    Ok(format!("{abs}:{rest}"))
}

/// `--cidfile`: refused at once when the file exists (docker's check, before
/// anything is created).
fn check_cidfile(path: &Option<PathBuf>) -> Result<()> {
    if let Some(p) = path {
        if std::fs::symlink_metadata(p).is_ok() {
            anyhow::bail!(
                "container ID file {} exists: make sure the other container is not running or delete it",
                p.display()
            );
        }
    }
    Ok(())
}

fn write_cidfile(path: &Option<PathBuf>, id: &str) -> Result<()> {
    let Some(p) = path else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .with_context(|| format!("creating container ID file {}", p.display()))?;
    f.write_all(id.as_bytes())
        .with_context(|| format!("writing container ID file {}", p.display()))
}

fn create_options(a: &CreateArgs) -> Result<CreateOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(options::read_env_file(f)?);
    }
    env.extend(a.env.iter().cloned());
    let mut labels = std::collections::BTreeMap::new();
    for f in &a.label_file {
        // The env-file format: KEY=value lines, blank and # lines skipped.
        labels.extend(
            options::read_env_file(f)
                .with_context(|| format!("reading label file {}", f.display()))?
                .iter()
                .map(|l| options::parse_label(l)),
        );
    }
    labels.extend(a.label.iter().map(|l| options::parse_label(l)));
    let (mut binds, mut mounts) = (Vec::new(), Vec::new());
    for v in &a.volume {
        match options::parse_volume(&relative_bind_source(v)?)? {
            options::VolumeArg::Bind(b) => binds.push(b),
            options::VolumeArg::Volume(m) => mounts.push(m),
        }
    }
    for m in &a.mount {
        mounts.push(options::parse_mount(m)?);
    }
    Ok(CreateOptions {
        image: a.image.clone(),
        name: a.name.clone(),
        cmd: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        labels,
        expose: a.expose.clone(),
        binds,
        mounts,
        volumes_from: a.volumes_from.clone(),
        tmpfs: a
            .tmpfs
            .iter()
            .map(|t| options::parse_tmpfs(t))
            .collect::<Result<_, _>>()?,
        read_only: a.read_only,
        volatile_rootfs: false,
        network_released_by_caller: false,
        privileged: a.privileged,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        memory: a
            .memory
            .as_deref()
            .map(options::parse_bytes)
            .transpose()?
            .unwrap_or(0),
        memory_swap: match a.memory_swap.as_deref() {
            Some("-1") => -1,
            Some(s) => options::parse_bytes(s)?,
            None => 0,
        },
        nano_cpus: a
            .cpus
            .as_deref()
            .map(options::parse_cpus)
            .transpose()?
            .unwrap_or(0),
        oom_kill_disable: a.oom_kill_disable,
        cgroup_parent: a.cgroup_parent.clone(),
        devices: a
            .device
            .iter()
            .map(|d| options::parse_device(d))
            .collect::<hako_engine::Result<Vec<_>>>()?,
        blkio_weight: a.blkio_weight.unwrap_or(0),
        cpu_quota: a.cpu_quota.unwrap_or(0),
        cpu_period: a.cpu_period.unwrap_or(0),
        memory_reservation: a
            .memory_reservation
            .as_deref()
            .map(options::parse_bytes)
            .transpose()?
            .unwrap_or(0),
        pids_limit: a.pids_limit.unwrap_or(0),
        oom_score_adj: a.oom_score_adj,
        network: a.network.clone(),
        network_aliases: a.network_alias.clone(),
        ip: a.ip.as_deref().map(options::parse_ip).transpose()?,
        shm_size: a
            .shm_size
            .as_deref()
            .map(options::parse_bytes)
            .transpose()?
            .unwrap_or(0),
        sysctls: a.sysctl.clone(),
        pid_mode: a.pid.clone(),
        group_add: a.group_add.clone(),
        ipc_mode: a.ipc.clone(),
        cgroupns_mode: a.cgroupns.clone(),
        mac_address: a
            .mac_address
            .as_deref()
            .map(options::parse_mac)
            .transpose()?,
        publish: a
            .publish
            .iter()
            .map(|p| hako_engine::network::ports::parse_publish(p))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
        publish_all: a.publish_all,
        extra_hosts: a.add_host.clone(),
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        security_opt: a.security_opt.clone(),
        // Set by CRI only (docker's `--security-opt systempaths` is not taken).
        masked_paths: None,
        readonly_paths: None,
        image_mounts: Vec::new(),
        ulimits: a
            .ulimit
            .iter()
            .map(|u| options::parse_ulimit(u))
            .collect::<Result<_, _>>()?,
        init: a.init,
        cpu_shares: a.cpu_shares.unwrap_or(0),
        cpuset_cpus: a.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: a.cpuset_mems.clone().unwrap_or_default(),
        runtime: a.runtime.clone(),
        auto_remove: a.rm,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        restart: a
            .restart
            .as_deref()
            .map(options::parse_restart)
            .transpose()?
            .unwrap_or_default(),
        log_config: options::parse_log_config(a.log_driver.as_deref(), &a.log_opt)?,
        health: options::HealthOptions {
            cmd: a.health_cmd.clone(),
            interval: duration(&a.health_interval)?,
            timeout: duration(&a.health_timeout)?,
            start_period: duration(&a.health_start_period)?,
            start_interval: duration(&a.health_start_interval)?,
            retries: a.health_retries,
            disabled: a.no_healthcheck,
        },
        tty: a.tty,
        open_stdin: a.interactive,
        // Docker's StdinOnce: the first attached client's EOF closes stdin
        // (a detached run clears it: nobody attaches first).
        stdin_once: a.interactive,
        attach_stdin: a.interactive,
        attach_stdout: true,
        attach_stderr: true,
    })
}

fn duration(s: &Option<String>) -> Result<Option<i64>> {
    Ok(s.as_deref().map(options::parse_duration).transpose()?)
}

fn run_container(g: &Global, engine: &Engine, a: Box<RunArgs>) -> Result<()> {
    let (tty, interactive) = (a.create.tty, a.create.interactive);
    if tty && interactive && !a.detach && !interactive::is_tty(0) {
        anyhow::bail!("the input device is not a TTY");
    }
    let detach_keys = detach_keys(&a.detach_keys)?;
    let mut images = open_images(g)?;
    let programs = programs(g)?;
    let mut opts = create_options(&a.create)?;
    if a.detach {
        opts.stdin_once = false;
        opts.attach_stdin = false;
        opts.attach_stdout = false;
        opts.attach_stderr = false;
    }
    check_cidfile(&a.create.cidfile)?;
    super::distribution::pull_for_run(
        g,
        &mut images,
        &opts.image,
        &a.create.pull,
        a.create.platform.as_deref(),
    )?;
    let c = engine.create(&mut images, &opts)?;
    write_cidfile(&a.create.cidfile, &c.id)?;
    // A foreground run is attached, as docker's: output comes live from the
    // monitor (partial lines too), stdin only with -i.
    let attached = !a.detach;
    let size = if tty {
        interactive::caller_size()
    } else {
        None
    };
    let res = if attached {
        engine.start_attached(&mut images, &c.id, &programs, size)
    } else {
        engine.start(&mut images, &c.id, &programs)
    };
    let started = match res {
        Ok(s) => s,
        Err(e) => {
            if a.create.rm {
                let _ = engine.remove_with_volumes(&mut images, &c.id, true, true);
            }
            return Err(e.into());
        }
    };
    if attached {
        drop(images);
        if a.sig_proxy && !tty {
            proxy_signals(engine.runtime_of(&c), c.id.clone())?;
        }
        let relay = interactive::Relay {
            stdin: interactive,
            close_stdin: interactive,
            tty,
            detach_keys,
        };
        return attached_session(engine, started, &relay);
    }
    println!("{}", c.id);
    Ok(())
}

/// Forward the signals a user sends a foreground `run` (Ctrl-C, kill) to
/// the container, as docker's --sig-proxy does: they are blocked in every
/// thread and a thread of their own waits for them.
fn proxy_signals(rt: hako_engine::runtime::Runtime, id: String) -> Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("blocking signals to forward them")?;
    std::thread::spawn(move || loop {
        match set.wait() {
            Ok(sig) => {
                let name = sig.as_str().trim_start_matches("SIG").to_string();
                if let Err(e) = rt.kill(&id, &name) {
                    // The container may have exited meanwhile.
                    tracing::debug!("forwarding {name}: {e}");
                }
            }
            Err(_) => return,
        }
    });
    Ok(())
}

fn detach_keys(s: &Option<String>) -> Result<Vec<u8>> {
    Ok(hako_engine::attachment::parse_detach_keys(
        s.as_deref()
            .unwrap_or(hako_engine::attachment::DEFAULT_DETACH_KEYS),
    )?)
}

/// `start -a [-i]`: start one container attached from its first output.
fn start_attached(
    engine: &Engine,
    images: &mut ImageStore,
    programs: &Programs,
    a: StartArgs,
) -> Result<()> {
    if a.containers.len() != 1 {
        anyhow::bail!("you cannot start and attach multiple containers at once");
    }
    let c = engine.get(&a.containers[0])?;
    let stdin = a.interactive && c.config.open_stdin;
    if stdin && c.config.tty && !interactive::is_tty(0) {
        anyhow::bail!("the input device is not a TTY");
    }
    let relay = interactive::Relay {
        stdin,
        close_stdin: stdin && c.config.stdin_once,
        tty: c.config.tty,
        detach_keys: detach_keys(&a.detach_keys)?,
    };
    let size = if c.config.tty {
        interactive::caller_size()
    } else {
        None
    };
    let started = engine.start_attached(images, &c.id, programs, size)?;
    attached_session(engine, started, &relay)
}

/// Relay an attached start to its end, then exit as the container did.
fn attached_session(
    engine: &Engine,
    mut started: hako_engine::Started,
    relay: &interactive::Relay,
) -> Result<()> {
    let mut att = started
        .attachment
        .take()
        .context("the engine attached no stream")?;
    let outcome = {
        let _raw = interactive::RawMode::enable(relay.tty && relay.stdin)?;
        let _out = interactive::RawMode::output(relay.tty && !relay.stdin)?;
        interactive::relay_attachment(&mut att, relay)?
    };
    drop(att);
    let _ = std::io::stdout().flush();
    match outcome {
        interactive::Outcome::Detached => exit(0),
        // Cleanup (--rm) is finished when the monitor closes its pipe.
        _ => {
            let id = started.container.id.clone();
            let auto_remove = started.container.host.auto_remove;
            let code = started.wait(engine)?;
            if auto_remove {
                // Still there: the removal failed (its error is in the record).
                if let Ok(c) = engine.find(&id) {
                    eprintln!(
                        "Error: container {}: {}",
                        c.name,
                        if c.state.error.is_empty() {
                            "--rm could not remove it"
                        } else {
                            c.state.error.as_str()
                        }
                    );
                    exit(if code == 0 { 125 } else { code });
                }
            }
            exit(code)
        }
    }
}

/// `attach CONTAINER`.
fn attach(engine: &Engine, a: AttachArgs) -> Result<()> {
    let c = engine.get(&a.container)?;
    let size = if c.config.tty {
        interactive::caller_size()
    } else {
        None
    };
    let keys = detach_keys(&a.detach_keys)?;
    // Connected first: a stopped container is the error to report then.
    let (c, mut att) = engine.attach_stream(&c.id, size)?;
    let stdin = !a.no_stdin && c.config.open_stdin;
    if stdin && c.config.tty && !interactive::is_tty(0) {
        anyhow::bail!("the input device is not a TTY");
    }
    if let Some((rows, cols)) = size {
        // As docker: a size change and back makes full-screen programs
        // redraw for the newcomer even when the size is the same.
        att.resize(rows + 1, cols + 1)?;
        att.resize(rows, cols)?;
    }
    if a.sig_proxy && !c.config.tty {
        proxy_signals(engine.runtime_of(&c), c.id.clone())?;
    }
    let relay = interactive::Relay {
        stdin,
        close_stdin: stdin && c.config.stdin_once,
        tty: c.config.tty,
        detach_keys: keys,
    };
    let outcome = {
        let _raw = interactive::RawMode::enable(relay.tty && relay.stdin)?;
        let _out = interactive::RawMode::output(relay.tty && !relay.stdin)?;
        interactive::relay_attachment(&mut att, &relay)?
    };
    drop(att);
    let _ = std::io::stdout().flush();
    match outcome {
        interactive::Outcome::Detached => exit(0),
        interactive::Outcome::Exited(code) => exit(code),
        interactive::Outcome::Closed => exit(engine.wait(&c.id)?),
    }
}

/// `exec [-i] [-t] [-d] CONTAINER COMMAND...`.
fn exec(engine: &Engine, a: ExecArgs) -> Result<()> {
    if a.tty && a.interactive && !a.detach && !interactive::is_tty(0) {
        anyhow::bail!("the input device is not a TTY");
    }
    let keys = detach_keys(&a.detach_keys)?;
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(options::read_env_file(f)?);
    }
    env.extend(a.env);
    let o = ExecOptions {
        privileged: a.privileged,
        cmd: a.command,
        env,
        user: a.user,
        workdir: a.workdir,
        interactive: a.interactive && !a.detach,
        tty: a.tty,
        detach: a.detach,
        console_size: if a.tty {
            interactive::caller_size()
        } else {
            None
        },
    };
    if !a.tty {
        exit(engine.exec(&a.container, &o)?);
    }
    let session = engine.exec_tty(&a.container, &o)?;
    if a.detach {
        // Nobody reads its terminal, but it must stay open.
        interactive::hold_in_background(&session.master)?;
        session.detach();
        exit(0);
    }
    let outcome = {
        let _raw = interactive::RawMode::enable(a.interactive)?;
        let _out = interactive::RawMode::output(!a.interactive)?;
        interactive::relay_pty(&session.master, a.interactive, keys)?
    };
    let _ = std::io::stdout().flush();
    if outcome == interactive::Outcome::Detached {
        interactive::hold_in_background(&session.master)?;
        session.detach();
        exit(0);
    }
    exit(session.wait()?)
}

fn ps(g: &Global, engine: &Engine, a: PsArgs) -> Result<()> {
    let filters = a
        .filter
        .iter()
        .map(|f| PsFilter::parse(f).and_then(|f| f.resolve(engine)))
        .collect::<hako_engine::Result<Vec<_>>>()?;
    // A status filter looks at stopped containers too, as in docker.
    let all = a.all || a.last.is_some() || a.latest || filters.iter().any(PsFilter::shows_stopped);
    let mut list: Vec<Container> = engine
        .list()?
        .into_iter()
        .filter(|c| all || c.state.status == Status::Running)
        .filter(|c| filters.iter().all(|f| f.matches(engine, c)))
        .collect();
    if let Some(n) = a.last {
        list.truncate(n);
    }
    if a.latest {
        list.truncate(1);
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for c in &list {
            writeln!(out, "{}", if a.no_trunc { &c.id } else { c.short_id() })?;
        }
        return Ok(());
    }
    let images = if a.size { Some(open_images(g)?) } else { None };
    let objects: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            let mut o = ps_object(engine, c, a.no_trunc);
            if let Some(images) = &images {
                o["Size"] = size_text(engine, images, c).into();
            }
            o
        })
        .collect();
    let row = if a.size {
        "{{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}\\t{{.Size}}"
    } else {
        "{{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}"
    };
    crate::template::print_list(&mut out, a.format.as_deref(), row, PS_HEADERS, &objects)
}

/// docker's `.CreatedAt`: "2024-01-02 03:04:05 +0000 UTC" (Go's time.String).
fn docker_time(rfc3339: &str) -> String {
    match hako_image::images::parse_rfc3339(rfc3339) {
        Some(secs) => format!(
            "{} +0000 UTC",
            hako_image::images::format_rfc3339(secs)
                .trim_end_matches('Z')
                .replace('T', " ")
        ),
        None => rfc3339.to_string(),
    }
}

/// docker's column titles of `ps` fields not named by their field.
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("RunningFor", "CREATED"),
    ("CreatedAt", "CREATED AT"),
];

/// The docker `ps` object a container is shown (and templated) as.
fn ps_object(engine: &Engine, c: &Container, no_trunc: bool) -> serde_json::Value {
    let labels: Vec<String> = c
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let networks: Vec<String> = if c.host.networks.is_empty() {
        vec![c.host.network_mode.clone()]
    } else {
        c.host.networks.iter().map(|n| n.network.clone()).collect()
    };
    serde_json::json!({
        "Command": command_of(c, !no_trunc),
        "CreatedAt": docker_time(&c.created),
        "ID": if no_trunc { c.id.as_str() } else { c.short_id() },
        "Image": c.image,
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes(c).to_string(),
        "Mounts": mount_names(c),
        "Names": c.name,
        "Networks": networks.join(","),
        "Ports": ports_text(engine, c),
        "RunningFor": ps::ago(&c.created),
        // docker's json has the key without -s too, "0B" (no size computed).
        "Size": "0B",
        "State": if engine.is_paused(c) { "paused" } else { c.state.status_text() },
        "Status": ps::status_text(engine, c) + if engine.is_paused(c) { " (Paused)" } else { "" },
    })
}

/// docker's SIZE: "2B (virtual 4.26MB)", the writable layer and that plus
/// the image.
fn size_text(engine: &Engine, images: &ImageStore, c: &Container) -> String {
    let rw = hako_engine::volume::disk_usage(&engine.container_dir(&c.id).join("upper"));
    let image = images.find(&c.image_id).map(|i| i.size).unwrap_or(0);
    format!(
        "{} (virtual {})",
        crate::output::human_size(rw),
        crate::output::human_size(rw + image)
    )
}

/// docker's PORTS column: "0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp".
fn ports_text(engine: &Engine, c: &Container) -> String {
    engine
        .ports(c)
        .iter()
        .map(|p| {
            let host = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            format!("{host}:{}->{}", p.host_port, p.key())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `ps` shows of a container's mounts: bind sources and volume names.
/// docker's LocalVolumes: how many volumes of the engine are mounted (a
/// `-v NAME:/dir` or a `--mount type=volume`).
fn local_volumes(c: &Container) -> usize {
    c.host
        .binds
        .iter()
        .filter(|b| !b.source.starts_with('/'))
        .count()
        + c.host
            .mounts
            .iter()
            .filter(|m| m.typ == hako_engine::MountType::Volume)
            .count()
}

fn mount_names(c: &Container) -> String {
    c.host
        .binds
        .iter()
        .map(|b| b.source.clone())
        .chain(
            c.host
                .mounts
                .iter()
                .filter(|m| m.typ != hako_engine::MountType::Tmpfs)
                .map(|m| m.source.clone()),
        )
        .collect::<Vec<_>>()
        .join(",")
}

/// `"echo hi"`, truncated to docker's 20 characters unless asked not to.
fn command_of(c: &Container, trunc: bool) -> String {
    let mut cmd = c.argv().join(" ");
    if trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    format!("\"{cmd}\"")
}

fn logs(engine: &Engine, a: LogsArgs) -> Result<()> {
    let c = engine.get(&a.container)?;
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .with_context(|| format!("invalid --tail {n:?}"))?,
        ),
    };
    let now = hako_engine::clock::unix_nanos_now();
    let bound = |flag: &str, v: &Option<String>| -> Result<Option<i128>> {
        v.as_deref()
            .map(|s| {
                hako_engine::clock::parse_time_arg(s, now).ok_or_else(|| {
                    anyhow::anyhow!(
                        "invalid --{flag} {s:?}: expected an RFC 3339 time, unix seconds or a duration like 10m"
                    )
                })
            })
            .transpose()
    };
    let since = bound("since", &a.since)?;
    let until = bound("until", &a.until)?;
    let in_window = |e: &hako_engine::logs::Entry| {
        let t = hako_engine::clock::unix_nanos(&e.time).unwrap_or(0);
        since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
    };
    // docker: the attributes and a space (also when there are none).
    let details = a
        .details
        .then(|| format!("{} ", hako_engine::options::log_details(&c)));
    let mut reader = engine.log_reader(&c)?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let show = |e: &hako_engine::logs::Entry| {
        if !in_window(e) {
            return;
        }
        let line = match &details {
            Some(d) => format!("{d}{}", e.log),
            None => e.log.clone(),
        };
        let text = if a.timestamps {
            format!("{} {line}", e.time)
        } else {
            line
        };
        let _ = match e.stream {
            hako_engine::logs::Stream::Stdout => stdout.lock().write_all(text.as_bytes()),
            hako_engine::logs::Stream::Stderr => stderr.lock().write_all(text.as_bytes()),
        };
    };
    let entries: Vec<_> = reader.read_new()?.into_iter().filter(in_window).collect();
    for e in hako_engine::logs::tail(entries, tail) {
        show(&e);
    }
    // Following past --until would print nothing more.
    if a.follow && until.is_none_or(|u| u > now) {
        engine.follow_log(&c.id, &mut reader, show)?;
    }
    Ok(())
}
