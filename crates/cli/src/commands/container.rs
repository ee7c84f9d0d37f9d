//! Container commands: run, create, start, stop, kill, rm, ps, logs,
//! inspect, wait, exec (and the monitor's hidden `container-cleanup`).
//! Thin over hako-engine; exit codes as docker's: 125 when hako itself
//! fails, 126/127 when the command cannot be invoked / is not found, else
//! the container's own.

use std::io::Write;
use std::path::PathBuf;
use std::process::exit;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hako_engine::{options, Container, CreateOptions, Engine, ExecOptions, Programs, Status};
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
    Start(NamesArgs),
    /// Stop running containers: the stop signal, then SIGKILL after the timeout.
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// List containers.
    #[command(visible_alias = "ls")]
    Ps(PsArgs),
    /// Show a container's output.
    Logs(LogsArgs),
    /// Show containers in detail (JSON, as docker's inspect).
    Inspect(NamesArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(NamesArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
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
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Set a label KEY=value.
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
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
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Network: bridge (default), a user-defined network, none or host.
    #[arg(long = "network", visible_alias = "net")]
    pub network: Option<String>,
    /// Another name of the container on its user-defined network.
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
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
    /// Restart policy: no, on-failure[:MAX_RETRIES], always, unless-stopped.
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
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
    /// Keep stdin open (accepted; stdin forwarding is not implemented yet).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[command(flatten)]
    pub create: CreateArgs,
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
pub struct StopArgs {
    /// Seconds to wait before killing (default: the container's stop timeout, 10).
    #[arg(short = 't', long = "time")]
    pub time: Option<u32>,
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
    /// Output format: "json" (one object per line) or the table.
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate ids and commands.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
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
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin attached (the runtime inherits hako's stdin).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Environment variable KEY=value.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    pub container: String,
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Run a container command; engine failures exit with docker's codes.
pub fn run(g: &Global, cmd: ContainerCommand) -> Result<()> {
    let result = dispatch(g, cmd);
    if let Err(e) = result {
        let code = e
            .chain()
            .find_map(|c| c.downcast_ref::<hako_engine::Error>())
            .map(hako_engine::Error::exit_code)
            .unwrap_or(125);
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
            let c = engine.create(&mut images, &create_options(&a)?)?;
            println!("{}", c.id);
            Ok(())
        }
        ContainerCommand::Start(a) => {
            let mut images = open_images(g)?;
            let programs = programs(g)?;
            for name in &a.containers {
                engine.start(&mut images, name, &programs)?;
                println!("{name}");
            }
            Ok(())
        }
        ContainerCommand::Stop(a) => each(&a.containers, |n| engine.stop(n, a.time)),
        ContainerCommand::Kill(a) => each(&a.containers, |n| engine.kill(n, &a.signal)),
        ContainerCommand::Rm(a) => {
            let mut images = open_images(g)?;
            each(&a.containers, |n| engine.remove(&mut images, n, a.force))
        }
        ContainerCommand::Ps(a) => ps(&engine, a),
        ContainerCommand::Logs(a) => logs(&engine, a),
        ContainerCommand::Inspect(a) => {
            let mut out = Vec::new();
            for n in &a.containers {
                out.push(engine.inspect(&engine.get(n)?));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        ContainerCommand::Wait(a) => {
            for n in &a.containers {
                println!("{}", engine.wait(n)?);
            }
            Ok(())
        }
        ContainerCommand::Exec(a) => {
            let o = ExecOptions {
                cmd: a.command,
                env: a.env,
                user: a.user,
                workdir: a.workdir,
            };
            let code = engine.exec(&a.container, &o)?;
            exit(code)
        }
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

fn open_images(g: &Global) -> Result<ImageStore> {
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

/// The monitor next to this program (or on PATH), and the exit command it
/// runs: this program, on the same root.
fn programs(g: &Global) -> Result<Programs> {
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
    })
}

fn create_options(a: &CreateArgs) -> Result<CreateOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(options::read_env_file(f)?);
    }
    env.extend(a.env.iter().cloned());
    Ok(CreateOptions {
        image: a.image.clone(),
        name: a.name.clone(),
        cmd: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        labels: a.label.iter().map(|l| options::parse_label(l)).collect(),
        expose: a.expose.clone(),
        binds: a
            .volume
            .iter()
            .map(|v| options::parse_bind(v))
            .collect::<Result<_, _>>()?,
        tmpfs: a
            .tmpfs
            .iter()
            .map(|t| options::parse_tmpfs(t))
            .collect::<Result<_, _>>()?,
        read_only: a.read_only,
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
        pids_limit: a.pids_limit.unwrap_or(0),
        network: a.network.clone(),
        network_aliases: a.network_alias.clone(),
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
        health: options::HealthOptions {
            cmd: a.health_cmd.clone(),
            interval: duration(&a.health_interval)?,
            timeout: duration(&a.health_timeout)?,
            start_period: duration(&a.health_start_period)?,
            retries: a.health_retries,
            disabled: a.no_healthcheck,
        },
    })
}

fn duration(s: &Option<String>) -> Result<Option<i64>> {
    Ok(s.as_deref().map(options::parse_duration).transpose()?)
}

fn run_container(g: &Global, engine: &Engine, a: Box<RunArgs>) -> Result<()> {
    let mut images = open_images(g)?;
    let programs = programs(g)?;
    let c = engine.create(&mut images, &create_options(&a.create)?)?;
    let started = match engine.start(&mut images, &c.id, &programs) {
        Ok(s) => s,
        Err(e) => {
            if a.create.rm {
                let _ = engine.remove(&mut images, &c.id, true);
            }
            return Err(e.into());
        }
    };
    if a.detach {
        println!("{}", c.id);
        return Ok(());
    }
    drop(images);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = started.follow(engine, |e| {
        let _ = match e.stream {
            hako_engine::logs::Stream::Stdout => stdout.lock().write_all(e.log.as_bytes()),
            hako_engine::logs::Stream::Stderr => stderr.lock().write_all(e.log.as_bytes()),
        };
    })?;
    let _ = stdout.lock().flush();
    exit(code)
}

fn ps(engine: &Engine, a: PsArgs) -> Result<()> {
    let list: Vec<Container> = engine
        .list()?
        .into_iter()
        .filter(|c| a.all || c.state.status == Status::Running)
        .collect();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for c in &list {
            writeln!(out, "{}", if a.no_trunc { &c.id } else { c.short_id() })?;
        }
        return Ok(());
    }
    if a.format.as_deref() == Some("json") || a.format.as_deref() == Some("{{json .}}") {
        for c in &list {
            let labels: Vec<String> = c
                .config
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let obj = serde_json::json!({
                "Command": command_of(c, true),
                "CreatedAt": c.created,
                "ID": if a.no_trunc { c.id.as_str() } else { c.short_id() },
                "Image": c.image,
                "Labels": labels.join(","),
                "Mounts": c.host.binds.iter().map(|b| b.source.clone()).collect::<Vec<_>>().join(","),
                "Names": c.name,
                "Networks": c.host.network_mode,
                "Ports": ports_text(engine, c),
                "RunningFor": ago(&c.created),
                "State": c.state.status_text(),
                "Status": status_text(engine, c),
            });
            writeln!(out, "{obj}")?;
        }
        return Ok(());
    }
    if let Some(f) = &a.format {
        anyhow::bail!("unsupported --format {f:?}: use json (templates come later)");
    }
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|c| {
            [
                if a.no_trunc {
                    c.id.clone()
                } else {
                    c.short_id().to_string()
                },
                c.image.clone(),
                command_of(c, !a.no_trunc),
                ago(&c.created),
                status_text(engine, c),
                ports_text(engine, c),
                c.name.clone(),
            ]
        })
        .collect();
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in &rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
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

/// `"echo hi"`, truncated to docker's 20 characters unless asked not to.
fn command_of(c: &Container, trunc: bool) -> String {
    let mut cmd = c.argv().join(" ");
    if trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    format!("\"{cmd}\"")
}

fn ago(t: &str) -> String {
    match hako_engine::clock::unix(t) {
        Some(s) => format!("{} ago", human(hako_engine::clock::unix_now() - s)),
        None => String::new(),
    }
}

/// Docker's human durations: "3 seconds", "About a minute", "2 hours".
fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// docker's STATUS column: "Up 5 minutes (healthy)", "Restarting (3) 2
/// seconds ago", "Exited (0) 1 hour ago".
fn status_text(engine: &Engine, c: &Container) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Running if c.state.restarting => {
            format!(
                "Restarting ({}) {}",
                c.state.exit_code,
                ago(&c.state.finished_at)
            )
        }
        Status::Running => {
            let up = match hako_engine::clock::unix(&c.state.started_at) {
                Some(s) => format!("Up {}", human(hako_engine::clock::unix_now() - s)),
                None => "Up".into(),
            };
            match engine.health(c).map(|h| h.status) {
                Some(h) if h == "starting" => format!("{up} (health: starting)"),
                Some(h) => format!("{up} ({h})"),
                None => up,
            }
        }
        Status::Exited => match hako_engine::clock::unix(&c.state.finished_at) {
            Some(_) => format!(
                "Exited ({}) {}",
                c.state.exit_code,
                ago(&c.state.finished_at)
            ),
            None => format!("Exited ({})", c.state.exit_code),
        },
    }
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
    let mut reader = hako_engine::logs::Reader::open(&engine.log_path(&c.id))?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let show = |e: &hako_engine::logs::Entry| {
        let text = if a.timestamps {
            format!("{} {}", e.time, e.log)
        } else {
            e.log.clone()
        };
        let _ = match e.stream {
            hako_engine::logs::Stream::Stdout => stdout.lock().write_all(text.as_bytes()),
            hako_engine::logs::Stream::Stderr => stderr.lock().write_all(text.as_bytes()),
        };
    };
    for e in hako_engine::logs::tail(reader.read_new()?, tail) {
        show(&e);
    }
    if a.follow {
        engine.follow_log(&c.id, &mut reader, show)?;
    }
    Ok(())
}
