//! `hako compose`: multi-container applications from compose files. Thin
//! over hako-compose (loading, the model, up/down) and hako-engine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hako_compose::{Compose, LoadOptions, UpOptions};
use hako_engine::{Container, Engine, ExecOptions, Status};
use hako_image::ImageStore;

use crate::Global;

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compose file(s), merged in order (default: compose.yaml, compose.yml,
    /// docker-compose.yml or docker-compose.yaml here).
    #[arg(short = 'f', long = "file")]
    pub file: Vec<PathBuf>,
    /// Project name (default: the `name:` field, else the directory's name).
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// Activate a profile.
    #[arg(long)]
    pub profile: Vec<String>,
    /// Environment file for interpolation (default: .env beside the file).
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Create and start the services (recreating those whose configuration changed).
    #[command(
        after_help = "Examples:\n  hako compose up -d\n  hako compose up -d --scale web=3\n  hako compose -f compose.yaml -f prod.yaml up -d --wait"
    )]
    Up(UpArgs),
    /// Create the services' containers (pulling and building their images) without starting them.
    #[command(
        after_help = "Examples:\n  hako compose create\n  hako compose create --pull always web"
    )]
    Create(CreateArgs),
    /// Stop and remove the services' containers and the project's networks.
    Down(DownArgs),
    /// List the project's containers.
    Ps(PsArgs),
    /// Show the services' output, prefixed by container.
    Logs(LogsArgs),
    /// Run a command in a running service container.
    Exec(ExecArgs),
    /// Run a one-off command in a new container of a service.
    Run(RunArgs),
    /// Start the services' existing containers.
    Start(ServicesArgs),
    /// Stop the services' containers.
    Stop(StopArgs),
    /// Restart the services' containers.
    Restart(StopArgs),
    /// Send a signal to the services' containers.
    Kill(KillArgs),
    /// Remove stopped service containers.
    Rm(RmArgs),
    /// Show the normalised model (merged, interpolated).
    Config(ConfigArgs),
    /// Show the processes of the services' containers.
    Top(ServicesArgs),
    /// List the images the services' containers use.
    Images(ServicesArgs),
    /// Print the host address of a service's published port.
    Port(PortArgs),
    /// Pull the services' images.
    Pull(PullArgs),
    /// Push the services' images.
    Push(ServicesArgs),
    /// Build the services' images (needs hako build).
    Build(ServicesArgs),
    /// Follow the events of the services' containers.
    #[command(after_help = "Examples:\n  hako compose events\n  hako compose events --json web")]
    Events(EventsArgs),
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// One JSON object per line (docker compose's shape).
    #[arg(long)]
    pub json: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Run in the background (the containers always outlive the command).
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "force-recreate")]
    pub force_recreate: bool,
    /// Do not start the services' dependencies.
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    /// SERVICE=N replicas.
    #[arg(long)]
    pub scale: Vec<String>,
    /// Wait until the services run (healthy, where they have a check).
    #[arg(long)]
    pub wait: bool,
    /// Remove containers of services no longer in the file.
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    /// Build images first (needs hako build).
    #[arg(long)]
    pub build: bool,
    #[command(flatten)]
    pub pull: PullFlags,
    pub services: Vec<String>,
}

/// `--pull` and `--quiet-pull` of `up`, `create` and `run`.
#[derive(Debug, Args)]
pub struct PullFlags {
    /// Pull images: always, missing or never (default: each service's
    /// pull_policy, else missing).
    #[arg(long = "pull", value_name = "POLICY")]
    pub policy: Option<String>,
    /// Pull without progress output.
    #[arg(long = "quiet-pull")]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long = "force-recreate")]
    pub force_recreate: bool,
    /// SERVICE=N replicas.
    #[arg(long)]
    pub scale: Vec<String>,
    /// Remove containers of services no longer in the file.
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    /// Build images first (needs hako build).
    #[arg(long)]
    pub build: bool,
    #[command(flatten)]
    pub pull: PullFlags,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// No progress output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Leave out services that have a build section.
    #[arg(long = "ignore-buildable")]
    pub ignore_buildable: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Remove named volumes of the project and anonymous ones of its containers.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Seconds to wait for each container to stop before killing it (default: its
    /// stop_grace_period, else 10).
    #[arg(short = 't', long = "timeout")]
    pub timeout: Option<u32>,
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also stopped containers.
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// "json" for one object per line.
    #[arg(long)]
    pub format: Option<String>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// No colours in the prefixes.
    #[arg(long = "no-color")]
    pub no_color: bool,
    /// Lines from the end of each container's log ("all").
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Which replica (1 = the first).
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// Accepted (no TTY is allocated).
    #[arg(short = 'T')]
    pub no_tty: bool,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Accepted (no TTY is allocated).
    #[arg(short = 'T')]
    pub no_tty: bool,
    #[command(flatten)]
    pub pull: PullFlags,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[arg(short = 't', long = "timeout")]
    pub timeout: Option<u32>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not ask (hako never asks).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Stop the containers first.
    #[arg(short = 's', long)]
    pub stop: bool,
    /// Also their anonymous volumes.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// yaml (default) or json.
    #[arg(long, default_value = "yaml")]
    pub format: String,
    /// Only the service names.
    #[arg(long)]
    pub services: bool,
    /// Only the volume names.
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    pub service: String,
    pub private_port: u16,
}

pub fn run(g: &Global, a: ComposeArgs) -> Result<()> {
    let environment: BTreeMap<String, String> = std::env::vars().collect();
    let o = LoadOptions {
        files: a.file.clone(),
        project_name: a.project_name.clone(),
        env_files: a.env_file.clone(),
        profiles: a.profile.clone(),
        workdir: std::env::current_dir().context("finding the current directory")?,
        environment,
    };
    let project = hako_compose::open(&o)?;
    let engine = Engine::open(&g.root)?;
    let compose = Compose::new(&engine, &project);
    let images = || {
        ImageStore::open(&g.root)
            .with_context(|| format!("opening the image store in {}", g.root.display()))
    };
    let each =
        |cs: Vec<Container>, f: &dyn Fn(&Container) -> hako_engine::Result<()>| -> Result<()> {
            for c in cs {
                f(&c).with_context(|| format!("container {}", c.name))?;
                eprintln!(" Container {}  done", c.name);
            }
            Ok(())
        };
    match a.command {
        ComposeCommand::Up(u) => {
            let programs = super::container::programs(g)?;
            let events = up_or_create(
                g,
                &compose,
                &programs,
                &u.services,
                &u.pull,
                u.build,
                &UpOptions {
                    services: u.services.clone(),
                    force_recreate: u.force_recreate,
                    no_deps: u.no_deps,
                    scale: parse_scale(&u.scale)?,
                    remove_orphans: u.remove_orphans,
                    wait: u.wait,
                    no_start: false,
                },
            )?;
            for e in &events {
                eprintln!(" {} {}  {}", e.kind, e.name, e.action);
            }
            if !u.detach && !u.wait {
                // Attached: follow the logs until every container stops.
                logs(&engine, &compose, &u.services, true, false, true, None)?;
            }
            Ok(())
        }
        ComposeCommand::Create(c) => {
            let programs = super::container::programs(g)?;
            let events = up_or_create(
                g,
                &compose,
                &programs,
                &c.services,
                &c.pull,
                c.build,
                &UpOptions {
                    services: c.services.clone(),
                    force_recreate: c.force_recreate,
                    scale: parse_scale(&c.scale)?,
                    remove_orphans: c.remove_orphans,
                    no_start: true,
                    ..Default::default()
                },
            )?;
            for e in &events {
                eprintln!(" {} {}  {}", e.kind, e.name, e.action);
            }
            Ok(())
        }
        ComposeCommand::Down(d) => {
            let mut imgs = images()?;
            for e in compose.down(&mut imgs, d.volumes, d.remove_orphans, d.timeout)? {
                eprintln!(" {} {}  {}", e.kind, e.name, e.action);
            }
            Ok(())
        }
        ComposeCommand::Ps(p) => {
            // Every container of the project, also of services whose
            // profile is not active now, as docker compose lists them.
            let listed = if p.services.is_empty() {
                compose
                    .containers()?
                    .into_iter()
                    .filter(|c| {
                        c.config
                            .labels
                            .get(hako_compose::project::LABEL_ONEOFF)
                            .map(String::as_str)
                            != Some("True")
                    })
                    .collect()
            } else {
                compose.of_services(&p.services)?
            };
            let cs: Vec<Container> = listed
                .into_iter()
                .filter(|c| p.all || c.state.status == Status::Running)
                .collect();
            let mut out = std::io::stdout().lock();
            if p.quiet {
                for c in &cs {
                    writeln!(out, "{}", c.id)?;
                }
                return Ok(());
            }
            let rows: Vec<serde_json::Value> = cs
                .iter()
                .map(|c| {
                    let ports: Vec<String> = engine
                        .ports(c)
                        .iter()
                        .map(|p| {
                            format!(
                                "{}:{}->{}",
                                if p.host_ip.is_empty() {
                                    "0.0.0.0"
                                } else {
                                    &p.host_ip
                                },
                                p.host_port,
                                p.key()
                            )
                        })
                        .collect();
                    serde_json::json!({
                        "ID": c.id, "Name": c.name, "Image": c.image,
                        "Service": c.config.labels.get(hako_compose::project::LABEL_SERVICE),
                        "Project": project.name,
                        "State": c.state.status.as_str(),
                        "ExitCode": c.state.exit_code,
                        "Health": engine.health(c).map(|h| h.status).unwrap_or_default(),
                        "Publishers": ports.join(", "),
                    })
                })
                .collect();
            if p.format.as_deref() == Some("json") {
                for r in rows {
                    writeln!(out, "{r}")?;
                }
                return Ok(());
            }
            writeln!(
                out,
                "{:<30}{:<20}{:<12}{:<24}PORTS",
                "NAME", "IMAGE", "SERVICE", "STATUS"
            )?;
            for (r, c) in rows.iter().zip(&cs) {
                let status = match c.state.status {
                    Status::Exited => format!("exited ({})", c.state.exit_code),
                    s => {
                        let h = r["Health"].as_str().unwrap_or_default();
                        if h.is_empty() {
                            s.as_str().to_string()
                        } else {
                            format!("{} ({h})", s.as_str())
                        }
                    }
                };
                writeln!(
                    out,
                    "{:<30}{:<20}{:<12}{:<24}{}",
                    c.name,
                    c.image,
                    r["Service"].as_str().unwrap_or_default(),
                    status,
                    r["Publishers"].as_str().unwrap_or_default()
                )?;
            }
            Ok(())
        }
        ComposeCommand::Logs(l) => {
            let tail = match l.tail.as_str() {
                "all" | "-1" => None,
                n => Some(
                    n.parse::<usize>()
                        .with_context(|| format!("invalid --tail {n:?}"))?,
                ),
            };
            logs(
                &engine,
                &compose,
                &l.services,
                l.follow,
                l.timestamps,
                !l.no_color,
                tail,
            )
        }
        ComposeCommand::Exec(e) => {
            let c = compose.running(&e.service, e.index)?;
            let code = engine.exec(
                &c.id,
                &ExecOptions {
                    cmd: e.command,
                    env: e.env,
                    user: e.user,
                    workdir: e.workdir,
                    // Compose's exec keeps stdin attached; no terminal here (-T).
                    interactive: true,
                    ..Default::default()
                },
            )?;
            std::process::exit(code)
        }
        ComposeCommand::Run(r) => {
            pull_images(g, &compose, std::slice::from_ref(&r.service), &r.pull)?;
            build_services(g, &project, std::slice::from_ref(&r.service), true)?;
            let mut imgs = images()?;
            let programs = super::container::programs(g)?;
            let c = compose.create_run(&mut imgs, &r.service, r.command, &r.env)?;
            let started = engine.start(&mut imgs, &c.id, &programs)?;
            drop(imgs);
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            let code = started.follow(&engine, |e| {
                let _ = match e.stream {
                    hako_engine::logs::Stream::Stdout => stdout.lock().write_all(e.log.as_bytes()),
                    hako_engine::logs::Stream::Stderr => stderr.lock().write_all(e.log.as_bytes()),
                };
            })?;
            if r.rm {
                let mut imgs = images()?;
                engine.remove_with_volumes(&mut imgs, &c.id, true, true)?;
            }
            std::process::exit(code)
        }
        ComposeCommand::Start(s) => {
            let mut imgs = images()?;
            let programs = super::container::programs(g)?;
            for e in compose.start_services(&mut imgs, &programs, &s.services)? {
                eprintln!(" {} {}  {}", e.kind, e.name, e.action);
            }
            Ok(())
        }
        ComposeCommand::Stop(s) => {
            let mut cs = compose.of_services(&s.services)?;
            cs.reverse();
            each(cs, &|c| {
                engine.stop(&c.id, s.timeout.or(Some(c.config.stop_timeout)))
            })
        }
        ComposeCommand::Restart(s) => {
            let mut imgs = images()?;
            let programs = super::container::programs(g)?;
            let mut cs = compose.of_services(&s.services)?;
            cs.reverse();
            for c in cs {
                engine.stop(&c.id, s.timeout)?;
            }
            for e in compose.start_services(&mut imgs, &programs, &s.services)? {
                eprintln!(" {} {}  {}", e.kind, e.name, e.action);
            }
            Ok(())
        }
        ComposeCommand::Kill(k) => each(
            compose
                .of_services(&k.services)?
                .into_iter()
                .filter(|c| c.state.status == Status::Running)
                .collect(),
            &|c| engine.kill(&c.id, &k.signal),
        ),
        ComposeCommand::Rm(r) => {
            let mut imgs = images()?;
            let _ = r.force;
            for c in compose.of_services(&r.services)? {
                if c.state.status == Status::Running {
                    if !r.stop {
                        continue;
                    }
                    engine.stop(&c.id, None)?;
                }
                engine.remove_with_volumes(&mut imgs, &c.id, false, r.volumes)?;
                eprintln!(" Container {}  Removed", c.name);
            }
            Ok(())
        }
        ComposeCommand::Config(c) => {
            let mut out = std::io::stdout().lock();
            if c.services {
                for s in project.services.keys() {
                    writeln!(out, "{s}")?;
                }
                return Ok(());
            }
            if c.volumes {
                for v in project.volumes.keys() {
                    writeln!(out, "{v}")?;
                }
                return Ok(());
            }
            match c.format.as_str() {
                "json" => writeln!(out, "{}", serde_json::to_string_pretty(&project)?)?,
                "yaml" => write!(
                    out,
                    "{}",
                    serde_saphyr::to_string(&project).context("writing YAML")?
                )?,
                f => bail!("unsupported --format {f:?}: use yaml or json"),
            }
            Ok(())
        }
        ComposeCommand::Events(e) => compose_events(g, &project.name, &e),
        ComposeCommand::Top(s) => {
            for c in compose
                .of_services(&s.services)?
                .into_iter()
                .filter(|c| c.state.status == Status::Running)
            {
                let t = engine.top(&c.id, &[])?;
                println!("{}", c.name);
                println!("{}", t.titles.join("\t"));
                for p in t.processes {
                    println!("{}", p.join("\t"));
                }
                println!();
            }
            Ok(())
        }
        ComposeCommand::Images(s) => {
            println!("{:<30}{:<30}IMAGE ID", "CONTAINER", "REPOSITORY");
            for c in compose.of_services(&s.services)? {
                println!(
                    "{:<30}{:<30}{}",
                    c.name,
                    c.image,
                    &c.image_id.trim_start_matches("sha256:")[..12.min(c.image_id.len())]
                );
            }
            Ok(())
        }
        ComposeCommand::Port(p) => {
            let c = compose.running(&p.service, p.index)?;
            let key = format!("{}/{}", p.private_port, p.protocol);
            let found = engine.ports(&c).into_iter().find(|b| b.key() == key);
            match found {
                Some(b) => {
                    println!(
                        "{}:{}",
                        if b.host_ip.is_empty() {
                            "0.0.0.0"
                        } else {
                            &b.host_ip
                        },
                        b.host_port
                    );
                    Ok(())
                }
                None => bail!("no port {key} published for service {}", p.service),
            }
        }
        ComposeCommand::Pull(p) => {
            let services: Vec<String> = project
                .services
                .iter()
                .filter(|(n, _)| p.services.is_empty() || p.services.contains(n))
                .filter(|(_, svc)| !(p.ignore_buildable && svc.build.is_some()))
                .map(|(n, _)| n.clone())
                .collect();
            if services.is_empty() {
                return Ok(());
            }
            let flags = PullFlags {
                policy: Some("always".into()),
                quiet: p.quiet,
            };
            pull_images(g, &compose, &services, &flags)
        }
        ComposeCommand::Push(s) => {
            for (name, svc) in &project.services {
                if !s.services.is_empty() && !s.services.contains(name) {
                    continue;
                }
                if let Some(img) = &svc.image {
                    eprintln!(" Pushing {name} ({img})");
                    super::distribution::push_reference(g, img, true)?;
                }
            }
            Ok(())
        }
        ComposeCommand::Build(s) => build_services(g, &project, &s.services, false),
    }
}

/// `--scale SERVICE=N` flags.
fn parse_scale(flags: &[String]) -> Result<BTreeMap<String, u32>> {
    let mut scale = BTreeMap::new();
    for s in flags {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("invalid --scale {s:?}: expected SERVICE=N"))?;
        scale.insert(
            k.to_string(),
            v.parse()
                .with_context(|| format!("invalid --scale {s:?}: N must be a number"))?,
        );
    }
    Ok(scale)
}

/// Pull what the services need (the library's pull-on-demand path, shared
/// with `hako run`), with progress on stderr unless `--quiet-pull`.
fn pull_images(
    g: &Global,
    compose: &Compose,
    services: &[String],
    flags: &PullFlags,
) -> Result<()> {
    let policy = match flags.policy.as_deref() {
        None => None,
        Some(p @ ("always" | "missing" | "never" | "build")) => {
            Some(hako_image::on_demand::PullPolicy::parse(p)?)
        }
        Some(other) => bail!("invalid --pull {other:?}: use always, missing, never or build"),
    };
    let mut imgs = ImageStore::open(&g.root)
        .with_context(|| format!("opening the image store in {}", g.root.display()))?;
    let progress = super::distribution::Lines::new(flags.quiet);
    let quiet = flags.quiet;
    let events = compose.pull_images(
        &mut imgs,
        services,
        policy.as_ref(),
        &hako_distribution::client::ClientOptions::default(),
        &progress,
        &mut |e| {
            if !quiet {
                eprintln!(" {} {}  {}", e.kind, e.name, e.action);
            }
        },
    )?;
    for e in events {
        super::events::image_event(g, "pull", &e.name, &e.name);
    }
    Ok(())
}

/// `up` and `create`: pull, build, then create (and for `up`, start).
fn up_or_create(
    g: &Global,
    compose: &Compose,
    programs: &hako_engine::Programs,
    services: &[String],
    pull: &PullFlags,
    build: bool,
    o: &UpOptions,
) -> Result<Vec<hako_compose::Event>> {
    pull_images(g, compose, services, pull)?;
    // Images a service builds are built with --build, or when missing
    // (pull_policy: build and `--pull build` always build).
    let project = compose.project;
    let always_build: Vec<String> = project
        .services
        .iter()
        .filter(|(n, svc)| {
            (services.is_empty() || services.contains(n))
                && (build
                    || pull.policy.as_deref() == Some("build")
                    || svc.pull_policy.as_deref() == Some("build"))
        })
        .map(|(n, _)| n.clone())
        .collect();
    if !always_build.is_empty() {
        build_services(g, project, &always_build, false)?;
    }
    build_services(g, project, services, true)?;
    let mut imgs = ImageStore::open(&g.root)
        .with_context(|| format!("opening the image store in {}", g.root.display()))?;
    Ok(compose.up(&mut imgs, programs, o)?)
}

/// Build the images of services with a `build:` section (all, or those
/// named); with `only_missing`, only those not in the store yet.
fn build_services(
    g: &Global,
    project: &hako_compose::Project,
    services: &[String],
    only_missing: bool,
) -> Result<()> {
    use clap::{Args as _, FromArgMatches as _};
    for (name, svc) in &project.services {
        if !services.is_empty() && !services.contains(name) {
            continue;
        }
        let Some(spec) = hako_compose::project::build_spec(project, name, svc)? else {
            continue;
        };
        let image = hako_compose::project::image_of(&project.name, name, svc);
        if only_missing {
            let store = ImageStore::open(&g.root)
                .with_context(|| format!("opening the image store in {}", g.root.display()))?;
            if store.find(&image).is_ok() {
                continue;
            }
        }
        eprintln!(" Building {name} ({image})");
        let mut argv: Vec<String> = vec!["build".into(), "-q".into(), "-t".into(), image.clone()];
        if let Some(f) = &spec.dockerfile {
            argv.push("-f".into());
            argv.push(spec.context.join(f).display().to_string());
        }
        for (k, v) in &spec.args {
            argv.push("--build-arg".into());
            argv.push(format!("{k}={v}"));
        }
        if let Some(t) = &spec.target {
            argv.push("--target".into());
            argv.push(t.clone());
        }
        argv.push(spec.context.display().to_string());
        let m = super::build::BuildArgs::augment_args(clap::Command::new("build"))
            .try_get_matches_from(argv)?;
        super::build::build(g, super::build::BuildArgs::from_arg_matches(&m)?)
            .with_context(|| format!("building service {name}"))?;
    }
    Ok(())
}

/// Every selected container's log, each line prefixed "NAME  | ", following
/// until all of them stopped if asked.
fn logs(
    engine: &Engine,
    compose: &Compose,
    services: &[String],
    follow: bool,
    timestamps: bool,
    color: bool,
    tail: Option<usize>,
) -> Result<()> {
    let cs = compose.of_services(services)?;
    let width = cs.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let colors = ["36", "33", "32", "35", "34", "31"];
    let color = color && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut readers = Vec::new();
    for (i, c) in cs.iter().enumerate() {
        // A service logging with the none driver has nothing to show: said
        // once, the others still shown.
        if !c.host.log_config.readable() {
            eprintln!(
                "{}: configured logging driver does not support reading",
                c.name
            );
            continue;
        }
        let r = engine.log_reader(c)?;
        readers.push((c.clone(), r, colors[i % colors.len()], true));
    }
    let mut out = std::io::stdout().lock();
    loop {
        for (c, r, col, first) in readers.iter_mut() {
            let mut entries = r.read_new()?;
            if *first {
                entries = hako_engine::logs::tail(entries, tail);
                *first = false;
            }
            for e in entries {
                let prefix = format!("{:<width$} | ", c.name);
                let prefix = if color {
                    format!("\x1b[{col}m{prefix}\x1b[0m")
                } else {
                    prefix
                };
                let text = if timestamps {
                    format!("{} {}", e.time, e.log)
                } else {
                    e.log.clone()
                };
                write!(out, "{prefix}{text}")?;
                if !text.ends_with('\n') {
                    writeln!(out)?;
                }
            }
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        let running = readers.iter().any(|(c, ..)| {
            engine
                .get(&c.id)
                .is_ok_and(|c| c.state.status == Status::Running)
        });
        if !running {
            // One last read for what the exits flushed.
            for (c, r, _, _) in readers.iter_mut() {
                for e in r.read_new()? {
                    write!(out, "{:<width$} | {}", c.name, e.log)?;
                }
            }
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `compose events`: the project's container events as they happen, in
/// docker compose's text (`2006-01-02 15:04:05.000000 container start ID
/// (k=v, …)`) or JSON shape.
fn compose_events(g: &Global, project: &str, a: &EventsArgs) -> Result<()> {
    use hako_engine::events::{EventLog, Filter};
    let filter = Filter::parse(&[
        "type=container".to_string(),
        format!("label={}={project}", hako_compose::project::LABEL_PROJECT),
    ])?;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    EventLog::for_root(&g.root).follow(&filter, None, None, |e| {
        let service = e
            .attributes
            .get(hako_compose::project::LABEL_SERVICE)
            .cloned()
            .unwrap_or_default();
        if !a.services.is_empty() && !a.services.contains(&service) {
            return true;
        }
        let secs = (e.time_nano / 1_000_000_000) as i64;
        let micros = (e.time_nano % 1_000_000_000) / 1000;
        let line = if a.json {
            serde_json::json!({
                "time": format!(
                    "{}.{:09}Z",
                    hako_image::images::format_rfc3339(secs).trim_end_matches('Z'),
                    e.time_nano % 1_000_000_000
                ),
                "type": e.typ,
                "action": e.action,
                "id": e.id,
                "service": service,
                "attributes": e.attributes,
            })
            .to_string()
        } else {
            let t = hako_image::images::format_rfc3339(secs)
                .trim_end_matches('Z')
                .replace('T', " ");
            let attrs: Vec<String> = e
                .attributes
                .iter()
                .filter(|(k, _)| !k.starts_with("com.docker.compose."))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{t}.{micros:06} {} {} {} ({})",
                e.typ,
                e.action,
                e.id,
                attrs.join(", ")
            )
        };
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(err) => {
                failed = Some(err);
                false
            }
        }
    })?;
    match failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
