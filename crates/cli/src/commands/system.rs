//! `hako system df`, `info`, `prune` and `reset`: what hako holds on this
//! host, removing what nothing uses, and removing all of a root.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hako_engine::{Engine, Status};
use hako_image::ImageStore;

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Disk usage of images, containers and volumes.
    Df(DfArgs),
    /// The host, the store and the runtimes hako uses.
    Info(InfoArgs),
    /// Remove stopped containers, unused networks, dangling images (and with
    /// -a every unused image, with --volumes unused anonymous volumes).
    #[command(
        after_help = "Examples:\n  hako system prune -f\n  hako system prune -a --volumes -f"
    )]
    Prune(PruneArgs),
    /// Start the containers whose restart policy asks for it after a host
    /// boot (always; unless-stopped unless stopped by the user). Run it from
    /// a boot unit, as docker's daemon does when it starts.
    #[command(
        after_help = "systemd unit (e.g. /etc/systemd/system/hako-boot.service):\n  [Unit]\n  After=network-online.target\n  [Service]\n  Type=oneshot\n  ExecStart=/usr/local/bin/hako system boot\n  [Install]\n  WantedBy=multi-user.target"
    )]
    Boot,
    /// Remove everything this root made: containers (killed), networks with
    /// their bridges (the default one too), volumes, images, build cache,
    /// and the root directory itself (podman's `system reset`).
    #[command(after_help = "Example:\n  hako --root /tmp/scratch system reset -f")]
    Reset(ResetArgs),
    /// Container, image, network and volume events (same as `hako events`).
    Events(super::events::EventsArgs),
    /// Serve the Docker Engine API on a unix socket (or TCP with TLS), so the docker CLI,
    /// docker-compose and docker-py work with hako (podman's `system service`).
    #[command(
        after_help = "Examples:\n  hako system service --time 0 &\n  DOCKER_HOST=unix:///run/hako/docker.sock docker ps\n  hako system service --time 0 --tcp 0.0.0.0:2376 --tlsverify --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem"
    )]
    Service(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The unix socket to serve on (mode 0660, group hako if it exists);
    /// default /run/hako/docker.sock unless only --tcp is given.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    /// Serve over TCP too (HOST:PORT or tcp://HOST:PORT). Without TLS only a
    /// loopback address is accepted.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
    /// Use TLS on --tcp (implied by --tlsverify and by --tlscert).
    #[arg(long)]
    pub tls: bool,
    /// Use TLS and require client certificates signed by --tlscacert.
    #[arg(long)]
    pub tlsverify: bool,
    /// The CA client certificates must be signed by (with --tlsverify).
    #[arg(long, value_name = "PEM")]
    pub tlscacert: Option<std::path::PathBuf>,
    /// The service's TLS certificate.
    #[arg(long, value_name = "PEM")]
    pub tlscert: Option<std::path::PathBuf>,
    /// The service's TLS key.
    #[arg(long, value_name = "PEM")]
    pub tlskey: Option<std::path::PathBuf>,
    /// Stop after this many seconds without a connection; 0: run until stopped.
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 5)]
    pub time: u64,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Required: the reset removes every container, image and volume.
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// "json" for one object per line, a Go template or "table TEMPLATE".
    #[arg(long)]
    pub format: Option<String>,
    /// Each image, container and volume with its space.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// "json" for the whole object.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Every image no container uses, not only dangling ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Unused anonymous volumes too.
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask for confirmation (asked only on a terminal).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Only objects passing this filter: until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE].
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

pub fn run(g: &Global, cmd: SystemCommand) -> Result<()> {
    if let SystemCommand::Events(a) = cmd {
        return super::events::run(g, a);
    }
    if let SystemCommand::Service(a) = cmd {
        return service(g, a);
    }
    let engine = Engine::open(&g.root)?;
    let mut images = ImageStore::open(&g.root)
        .with_context(|| format!("opening the image store in {}", g.root.display()))?;
    match cmd {
        SystemCommand::Df(a) => df(&engine, &images, a),
        SystemCommand::Info(a) => info(g, &engine, &images, a),
        SystemCommand::Prune(a) => prune(&engine, &mut images, a),
        SystemCommand::Reset(a) => reset(&engine, images, a),
        SystemCommand::Events(_) | SystemCommand::Service(_) => {
            unreachable!("handled before opening the stores")
        }
        SystemCommand::Boot => {
            let programs = super::container::programs(g)?;
            let mut failed = 0;
            for b in engine.boot(&mut images, &programs)? {
                match b.result {
                    Ok(()) => println!("{}", b.name),
                    Err(e) => {
                        failed += 1;
                        eprintln!("Error: starting {}: {e}", b.name);
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} container(s) could not be started");
            }
            Ok(())
        }
    }
}

/// `system service`: the Docker Engine API (crates/dockerapi) over this root.
fn service(g: &Global, a: ServiceArgs) -> Result<()> {
    let tls = a.tls || a.tlsverify || a.tlscert.is_some() || a.tlskey.is_some();
    let tcp = match &a.tcp {
        Some(addr) => Some(hako_dockerapi::listen::TcpOptions {
            tls: tls.then(|| tls_files(&a)).transpose()?,
            addr: addr.clone(),
        }),
        None if tls || a.tlscacert.is_some() => {
            anyhow::bail!("system service: the TLS flags apply to --tcp, which is not given")
        }
        None => None,
    };
    let socket = match (a.socket, &tcp) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => Some(hako_dockerapi::server::DEFAULT_SOCKET.into()),
    };
    let socket = socket
        .map(|s| {
            std::path::absolute(&s)
                .with_context(|| format!("making the socket path {} absolute", s.display()))
        })
        .transpose()?;
    let opts = hako_dockerapi::Options {
        root: g.root.clone(),
        programs: super::container::programs(g)?,
        socket,
        tcp,
        idle: (a.time > 0).then(|| std::time::Duration::from_secs(a.time)),
    };
    // The service runs as its own, smaller executable when it is installed
    // beside hako (crates/dockerapi/src/service.rs); exec keeps this process
    // (its pid, its signals) for it. Without one, it runs in this process.
    let me = std::env::current_exe().context("finding the hako executable")?;
    let server = me.with_file_name(hako_dockerapi::service::BINARY);
    if server.is_file() {
        use std::os::unix::process::CommandExt as _;
        let err = std::process::Command::new(&server)
            .arg("--log-level")
            .arg(&g.log_level)
            .arg("--options")
            .arg(opts.to_arg())
            .exec();
        anyhow::bail!("system service: starting {}: {err}", server.display());
    }
    hako_dockerapi::run(opts)?;
    Ok(())
}

/// dockerd's TLS flags: a certificate and key always, the CA with --tlsverify.
fn tls_files(a: &ServiceArgs) -> Result<hako_dockerapi::listen::TlsFiles> {
    let (Some(cert), Some(key)) = (&a.tlscert, &a.tlskey) else {
        anyhow::bail!("system service --tcp with TLS needs --tlscert and --tlskey");
    };
    let verify_ca = match (a.tlsverify, &a.tlscacert) {
        (true, Some(ca)) => Some(ca.clone()),
        (true, None) => anyhow::bail!(
            "system service --tlsverify needs --tlscacert (the CA client certificates must be signed by)"
        ),
        (false, Some(_)) => anyhow::bail!(
            "system service --tlscacert is used with --tlsverify (without it clients are not checked)"
        ),
        (false, None) => None,
    };
    Ok(hako_dockerapi::listen::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        verify_ca,
    })
}

fn size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

fn df(engine: &Engine, images: &ImageStore, a: DfArgs) -> Result<()> {
    if a.verbose {
        if a.format.is_some() {
            anyhow::bail!("system df: --verbose and --format cannot be combined");
        }
        return df_verbose(engine, images);
    }
    let containers = engine.list()?;
    let used: std::collections::HashSet<String> =
        containers.iter().map(|c| c.image_id.clone()).collect();
    let imgs = images.list()?;
    let img_total: u64 = imgs.iter().map(|i| i.size).sum();
    let img_active = imgs
        .iter()
        .filter(|i| used.contains(&i.id.to_string()))
        .count();
    let img_reclaim: u64 = imgs
        .iter()
        .filter(|i| !used.contains(&i.id.to_string()))
        .map(|i| i.size)
        .sum();
    let mut ctr_total = 0;
    let mut ctr_reclaim = 0;
    for c in &containers {
        let s = hako_engine::volume::disk_usage(&engine.container_dir(&c.id).join("upper"));
        ctr_total += s;
        if c.state.status != Status::Running {
            ctr_reclaim += s;
        }
    }
    let ctr_active = containers
        .iter()
        .filter(|c| c.state.status == Status::Running)
        .count();
    let vols = engine.volumes()?;
    let mut vol_total = 0;
    let mut vol_reclaim = 0;
    let mut vol_active = 0;
    for v in &vols {
        let s = hako_engine::volume::disk_usage(&engine.volumes_dir().join(&v.name));
        vol_total += s;
        if engine.volume_in_use(&v.name)? {
            vol_active += 1;
        } else {
            vol_reclaim += s;
        }
    }
    let pct = |r: u64, t: u64| (r * 100).checked_div(t).unwrap_or(0);
    let rows = [
        ("Images", imgs.len(), img_active, img_total, img_reclaim),
        (
            "Containers",
            containers.len(),
            ctr_active,
            ctr_total,
            ctr_reclaim,
        ),
        (
            "Local Volumes",
            vols.len(),
            vol_active,
            vol_total,
            vol_reclaim,
        ),
        ("Build Cache", 0, 0, 0, 0),
    ];
    let mut out = std::io::stdout().lock();
    if a.format.is_some() {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|&(t, n, act, s, r)| {
                serde_json::json!({
                    "Type": t, "TotalCount": n, "Active": act, "Size": size(s),
                    "SizeBytes": s, "Reclaimable": format!("{} ({}%)", size(r), pct(r, s)),
                    "ReclaimableBytes": r,
                })
            })
            .collect();
        return crate::template::print_list(
            &mut out,
            a.format.as_deref(),
            "{{.Type}}\\t{{.TotalCount}}\\t{{.Active}}\\t{{.Size}}\\t{{.Reclaimable}}",
            &[("TotalCount", "TOTAL")],
            &objects,
        );
    }
    writeln!(
        out,
        "{:<15}{:<8}{:<8}{:<12}RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    )?;
    for (t, n, act, s, r) in rows {
        writeln!(
            out,
            "{t:<15}{n:<8}{act:<8}{:<12}{} ({}%)",
            size(s),
            size(r),
            pct(r, s)
        )?;
    }
    Ok(())
}

/// `system df -v`: docker's four sections, each a table.
fn df_verbose(engine: &Engine, images: &ImageStore) -> Result<()> {
    let containers = engine.list()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Images space usage:\n")?;
    let mut rows = vec![
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"
            .to_string(),
    ];
    for i in images.list()? {
        let id = i.id.to_string();
        let used = containers.iter().filter(|c| c.image_id == id).count();
        let created = if i.created == 0 {
            "N/A".to_string()
        } else {
            crate::output::human_age(i.created)
        };
        let names: Vec<(String, String)> = if i.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.names
                .iter()
                .map(|n| {
                    (
                        n.familiar_repository(),
                        n.tag().unwrap_or("<none>").to_string(),
                    )
                })
                .collect()
        };
        for (repo, tag) in names {
            rows.push(format!(
                "{repo}\t{tag}\t{}\t{created}\t{}\t0B\t{}\t{used}",
                i.id.short(),
                size(i.size),
                size(i.size)
            ));
        }
    }
    crate::template::write_table(&mut out, &rows)?;
    writeln!(out, "\nContainers space usage:\n")?;
    let mut rows = vec![
        "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES".to_string(),
    ];
    for c in &containers {
        let rw = hako_engine::volume::disk_usage(&engine.container_dir(&c.id).join("upper"));
        let mut cmd = c.argv().join(" ");
        if cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        let volumes = c
            .host
            .mounts
            .iter()
            .filter(|m| m.typ == hako_engine::MountType::Volume)
            .count();
        let created = hako_engine::clock::unix(&c.created)
            .map(crate::output::human_age)
            .unwrap_or_else(|| "N/A".into());
        rows.push(format!(
            "{}\t{}\t\"{cmd}\"\t{volumes}\t{}\t{created}\t{}\t{}",
            c.short_id(),
            c.image,
            size(rw),
            c.state.status_text(),
            c.name
        ));
    }
    crate::template::write_table(&mut out, &rows)?;
    writeln!(out, "\nLocal Volumes space usage:\n")?;
    let mut rows = vec!["VOLUME NAME\tLINKS\tSIZE".to_string()];
    for v in engine.volumes()? {
        let links = containers
            .iter()
            .filter(|c| c.host.mounts.iter().any(|m| m.source == v.name))
            .count();
        let s = hako_engine::volume::disk_usage(&engine.volumes_dir().join(&v.name));
        rows.push(format!("{}\t{links}\t{}", v.name, size(s)));
    }
    crate::template::write_table(&mut out, &rows)?;
    writeln!(out, "\nBuild cache usage: 0B\n")?;
    crate::template::write_table(
        &mut out,
        &["CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED".to_string()],
    )?;
    Ok(())
}

fn cgroup_layout() -> &'static str {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v1 = mi.lines().any(|l| l.contains(" - cgroup "));
    let v2 = mi.lines().any(|l| l.contains(" - cgroup2 "));
    match (v1, v2) {
        (true, true) => "hybrid (v1 controllers, cgroup2 unified)",
        (true, false) => "1",
        (false, true) => "2",
        (false, false) => "none",
    }
}

fn info(g: &Global, engine: &Engine, images: &ImageStore, a: InfoArgs) -> Result<()> {
    let containers = engine.list()?;
    let running = containers
        .iter()
        .filter(|c| c.state.status == Status::Running && !engine.is_paused(c))
        .count();
    let paused = containers.iter().filter(|c| engine.is_paused(c)).count();
    let runtimes: Vec<(String, String)> = ["hako-runtime", "runc", "crun"]
        .iter()
        .filter_map(|r| {
            hako_engine::runtime::resolve(r)
                .ok()
                .map(|p| (r.to_string(), p.display().to_string()))
        })
        .collect();
    let uname = nix::sys::utsname::uname().context("reading the kernel version")?;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    let v = serde_json::json!({
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images.list()?.len(),
        "Driver": "overlay",
        "DockerRootDir": g.root,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_layout(),
        "Runtimes": runtimes.iter().map(|(n, p)| (n.clone(), serde_json::json!({"path": p}))).collect::<serde_json::Map<_, _>>(),
        "DefaultRuntime": hako_engine::runtime::DEFAULT,
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"]},
        "KernelVersion": uname.release().to_string_lossy(),
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": uname.machine().to_string_lossy(),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "Name": uname.nodename().to_string_lossy(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Networks": engine.networks()?.len(),
        "Volumes": engine.volumes()?.len(),
    });
    let mut out = std::io::stdout().lock();
    if a.format.as_deref() == Some("json") || a.format.as_deref() == Some("{{json .}}") {
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    } else if let Some(f) = a.format {
        writeln!(out, "{}", crate::template::render(&f, &v)?)?;
        return Ok(());
    }
    writeln!(out, "Containers: {}", v["Containers"])?;
    writeln!(out, " Running: {}", v["ContainersRunning"])?;
    writeln!(out, " Paused: {}", v["ContainersPaused"])?;
    writeln!(out, " Stopped: {}", v["ContainersStopped"])?;
    writeln!(out, "Images: {}", v["Images"])?;
    writeln!(out, "Server Version: {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "Storage Driver: overlay")?;
    writeln!(out, "Root Dir: {}", g.root.display())?;
    writeln!(out, "Cgroup Driver: cgroupfs")?;
    writeln!(out, "Cgroup Version: {}", cgroup_layout())?;
    writeln!(out, "Plugins:\n Volume: local\n Network: bridge host none")?;
    let names: Vec<&str> = runtimes.iter().map(|(n, _)| n.as_str()).collect();
    writeln!(out, "Runtimes: {}", names.join(" "))?;
    writeln!(out, "Default Runtime: {}", hako_engine::runtime::DEFAULT)?;
    writeln!(out, "Kernel Version: {}", uname.release().to_string_lossy())?;
    writeln!(out, "Operating System: {os}")?;
    writeln!(out, "Architecture: {}", uname.machine().to_string_lossy())?;
    writeln!(out, "CPUs: {}", v["NCPU"])?;
    writeln!(
        out,
        "Total Memory: {:.2}GiB",
        mem as f64 / (1u64 << 30) as f64
    )?;
    writeln!(out, "Name: {}", uname.nodename().to_string_lossy())?;
    Ok(())
}

fn prune(engine: &Engine, images: &mut ImageStore, a: PruneArgs) -> Result<()> {
    // The filter reaches containers, networks and images (and volumes: labels
    // only, as docker's volume prune).
    let filter = hako_engine::prune_filter::PruneFilter::parse(&a.filter)?;
    let volume_filters = if a.volumes {
        if let Some(u) = a.filter.iter().find(|f| f.starts_with("until=")) {
            anyhow::bail!("invalid filter {u:?}: volumes (--volumes) take no until filter");
        }
        super::volume::parse_filters(&a.filter)?
    } else {
        Vec::new()
    };
    let mut warning = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container",
    );
    if a.volumes {
        warning.push_str("\n  - all anonymous volumes not used by at least one container");
    }
    warning.push_str(if a.all {
        "\n  - all images without at least one container associated to them"
    } else {
        "\n  - all dangling images"
    });
    if !a.force && !crate::output::confirm(&warning)? {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let containers = engine.prune_containers(images, &filter)?;
    if !containers.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for c in &containers {
            writeln!(out, "{c}")?;
        }
        writeln!(out)?;
    }
    let networks = engine.prune_networks(&filter)?;
    if !networks.is_empty() {
        writeln!(out, "Deleted Networks:")?;
        for n in &networks {
            writeln!(out, "{n}")?;
        }
        writeln!(out)?;
    }
    let mut reclaimed = 0;
    if a.volumes {
        let vols = engine.prune_volumes(false, &volume_filters)?;
        if !vols.is_empty() {
            writeln!(out, "Deleted Volumes:")?;
            for (v, s) in &vols {
                writeln!(out, "{v}")?;
                reclaimed += s;
            }
            writeln!(out)?;
        }
    }
    let before: u64 = images.list()?.iter().map(|i| i.size).sum();
    let picks = hako_engine::prune_filter::image_picks(images, &filter)?;
    let removed = images
        .prune_where(a.all, |r| picks.contains(&r.id))
        .context("pruning images")?;
    let after: u64 = images.list()?.iter().map(|i| i.size).sum();
    reclaimed += before.saturating_sub(after);
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for d in &removed {
            writeln!(out, "deleted: {d}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", size(reclaimed))?;
    Ok(())
}

/// `system reset`: the engine's objects first (containers hold networks,
/// volumes and image mounts), then whatever is still mounted under the
/// root (image mounts), then the root's directories.
fn reset(engine: &Engine, mut images: ImageStore, a: ResetArgs) -> Result<()> {
    let root = engine.root().to_path_buf();
    if !a.force {
        anyhow::bail!(
            "system reset of {} removes every container, image and volume: add -f to confirm",
            root.display()
        );
    }
    engine
        .reset(&mut images)
        .with_context(|| format!("resetting {}", root.display()))?;
    drop(images);
    // The CRI's pod bridge is shared by every root: it goes with the last pod.
    if let Err(e) = hako_cri::cni::remove_idle_bridge() {
        eprintln!("warning: {e}");
    }
    let run_root = engine.run_root().to_path_buf();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<std::path::PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(&root) || p.starts_with(&run_root))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &points {
        nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", p.display()))?;
    }
    for dir in [&run_root, &root] {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
        }
    }
    Ok(())
}

/// A mount point as /proc/self/mountinfo writes it (space, tab, newline and
/// backslash as octal escapes).
fn unescape_mountinfo(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::path::PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// "json", or a template such as '{{.Client.Version}}'.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `hako version`: hako's and its runtime's versions, in docker's two
/// sections. hako is daemonless: the "server" is the engine in this same
/// binary (and the Engine API `hako system service` serves), so scripts
/// that ask for `{{.Server.Version}}` get an answer.
pub fn version(a: VersionArgs) -> Result<()> {
    let runtime = hako_engine::runtime::resolve(hako_engine::runtime::DEFAULT).ok();
    let runtime_version = runtime
        .as_ref()
        .and_then(|p| std::process::Command::new(p).arg("--version").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    let uname = nix::sys::utsname::uname().context("reading the kernel version")?;
    let api = hako_dockerapi::server::API_VERSION;
    let min_api = hako_dockerapi::server::MIN_API_VERSION;
    let arch = go_arch(std::env::consts::ARCH);
    let v = serde_json::json!({
        "Server": {
            "Platform": {"Name": "hako"},
            "Components": [
                {"Name": "Engine", "Version": env!("CARGO_PKG_VERSION"),
                 "Details": {"ApiVersion": api, "MinAPIVersion": min_api,
                             "Os": std::env::consts::OS, "Arch": arch,
                             "KernelVersion": uname.release().to_string_lossy()}},
                {"Name": hako_engine::runtime::DEFAULT, "Version": runtime_version,
                 "Details": {"Path": runtime.as_ref().map(|p| p.display().to_string()).unwrap_or_default()}},
            ],
            "Version": env!("CARGO_PKG_VERSION"),
            "ApiVersion": api,
            "MinAPIVersion": min_api,
            "Os": std::env::consts::OS,
            "Arch": arch,
            "KernelVersion": uname.release().to_string_lossy(),
        },
        "Client": {
            "Version": env!("CARGO_PKG_VERSION"),
            "ApiVersion": api,
            "Os": std::env::consts::OS,
            "Arch": go_arch(std::env::consts::ARCH),
            "KernelVersion": uname.release().to_string_lossy(),
            "Runtime": {
                "Name": hako_engine::runtime::DEFAULT,
                "Path": runtime.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "Version": runtime_version,
            },
        },
    });
    match a.format.as_deref() {
        Some("json") => println!("{v}"),
        Some(t) => println!("{}", crate::template::render(t, &v)?),
        None => {
            let c = &v["Client"];
            println!("Client:");
            println!(
                " Version:        {}",
                c["Version"].as_str().unwrap_or_default()
            );
            println!(" API version:    {api}");
            println!(
                " OS/Arch:        {}/{}",
                c["Os"].as_str().unwrap_or_default(),
                c["Arch"].as_str().unwrap_or_default()
            );
            println!(
                " Kernel:         {}",
                c["KernelVersion"].as_str().unwrap_or_default()
            );
            println!(
                " Runtime:        {} ({})",
                c["Runtime"]["Version"].as_str().unwrap_or_default(),
                c["Runtime"]["Path"].as_str().unwrap_or_default()
            );
            let sv = &v["Server"];
            println!();
            println!("Server: hako");
            println!(" Engine:");
            println!("  Version:       {}", env!("CARGO_PKG_VERSION"));
            println!("  API version:   {api} (minimum version {min_api})");
            println!(
                "  OS/Arch:       {}/{}",
                sv["Os"].as_str().unwrap_or_default(),
                sv["Arch"].as_str().unwrap_or_default()
            );
            println!(" {}:", hako_engine::runtime::DEFAULT);
            println!(
                "  Version:       {}",
                c["Runtime"]["Version"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Rust's architecture names as OCI (Go) spells them.
fn go_arch(a: &str) -> &str {
    match a {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
