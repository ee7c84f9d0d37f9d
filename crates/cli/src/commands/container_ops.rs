//! More container verbs: pause, unpause, restart, rename, top, stats and
//! `container prune`. Thin over hako-engine, shaped like docker's output.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hako_engine::stats::Usage;
use hako_engine::{Engine, Programs};
use hako_image::ImageStore;

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 256m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap).
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Relative CPU weight.
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Process limit (-1: unlimited).
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// no, on-failure[:N], always or unless-stopped.
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn update(engine: &Engine, a: UpdateArgs) -> Result<()> {
    use hako_engine::options;
    let o = hako_engine::UpdateOptions {
        memory: a.memory.as_deref().map(options::parse_bytes).transpose()?,
        memory_swap: a
            .memory_swap
            .as_deref()
            .map(|s| {
                if s.trim() == "-1" {
                    Ok(-1)
                } else {
                    options::parse_bytes(s)
                }
            })
            .transpose()?,
        nano_cpus: a.cpus.as_deref().map(options::parse_cpus).transpose()?,
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        pids_limit: a.pids_limit,
        restart: a
            .restart
            .as_deref()
            .map(options::parse_restart)
            .transpose()?,
    };
    let mut failed = None;
    for n in &a.containers {
        match engine.update(n, &o) {
            Ok(()) => println!("{n}"),
            Err(e) if failed.is_none() => failed = Some(e),
            Err(e) => eprintln!("Error: {e}"),
        }
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author of the image ("Name <email>").
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Commit message (the history entry's comment).
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// A Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, USER, VOLUME, WORKDIR or STOPSIGNAL.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Pause the container while its layer is read.
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pause: bool,
    pub container: String,
    /// Name of the new image (none: an unnamed image, its id printed).
    pub repository: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file (through a temporary name) instead of standard output.
    #[arg(short = 'o', long)]
    pub output: Option<std::path::PathBuf>,
    pub container: String,
}

pub fn commit(
    g: &crate::Global,
    engine: &Engine,
    images: &mut ImageStore,
    a: CommitArgs,
) -> Result<()> {
    let names = match &a.repository {
        Some(r) => vec![hako_image::Reference::parse(r)?],
        None => Vec::new(),
    };
    let o = hako_build::commit::CommitOptions {
        names,
        author: a.author.clone(),
        message: a.message.clone(),
        changes: a.change.clone(),
        pause: a.pause,
    };
    let rec = hako_build::commit::commit(engine, images, &a.container, &o, &hako_image::NoProgress)
        .with_context(|| format!("committing container {}", a.container))?;
    let id = rec.id.to_string();
    for n in &rec.names {
        super::events::image_event(g, "tag", &id, &n.familiar());
    }
    if let Ok(c) = engine.get(&a.container) {
        let comment = a.message.clone().unwrap_or_default();
        engine.container_event(&c, "commit", &[("comment", comment)]);
    }
    println!("{id}");
    Ok(())
}

pub fn diff(engine: &Engine, images: &ImageStore, a: DiffArgs) -> Result<()> {
    let changes = hako_build::commit::diff(engine, images, &a.container)
        .with_context(|| format!("listing the changes of container {}", a.container))?;
    let mut out = std::io::stdout().lock();
    for c in changes {
        writeln!(out, "{} {}", c.kind, c.path)?;
    }
    Ok(())
}

pub fn export(engine: &Engine, a: ExportArgs) -> Result<()> {
    match &a.output {
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            engine.export(&a.container, &mut w)?;
            w.flush()
                .context("writing the archive to standard output")?;
        }
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file beside {}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
            engine.export(&a.container, &mut w)?;
            w.flush()
                .with_context(|| format!("writing {}", path.display()))?;
            drop(w);
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("writing {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps (default -ef).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// "json" (one object per line) or a Go-style template.
    #[arg(long)]
    pub format: Option<String>,
    /// Containers that do not run too (with no names given).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Containers (default: all running).
    pub containers: Vec<String>,
}

/// `hako container ...`: every container command (`container ls`, `container
/// rm`, ...), and the verbs docker has only under `container`.
#[derive(Debug, Subcommand)]
pub enum ContainerGroup {
    #[command(flatten)]
    Verb(super::container::ContainerCommand),
    /// Remove every stopped container.
    Prune {
        /// Do not ask for confirmation (asked only on a terminal).
        #[arg(short = 'f', long)]
        force: bool,
        /// Only containers passing it: until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE].
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
}

pub fn rename(engine: &Engine, a: RenameArgs) -> Result<()> {
    Ok(engine.rename(&a.container, &a.new_name)?)
}

pub fn restart(
    engine: &Engine,
    images: &mut ImageStore,
    programs: &Programs,
    a: &super::container::StopArgs,
) -> Result<()> {
    let mut first = None;
    for n in &a.containers {
        let r = engine.restart_with_signal(images, n, programs, a.time, a.signal.as_deref());
        match r {
            Ok(()) => println!("{n}"),
            Err(e) if first.is_none() => first = Some(e),
            Err(e) => eprintln!("Error: {e}"),
        }
    }
    match first {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

pub fn top(engine: &Engine, a: TopArgs) -> Result<()> {
    let t = engine.top(&a.container, &a.ps_args)?;
    let mut rows = vec![t.titles.join("\t")];
    rows.extend(t.processes.iter().map(|p| p.join("\t")));
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let n = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0; n];
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in &cells {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(w[i] - c.chars().count() + 4));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// "1.5MiB", "12kB" as docker prints sizes (binary for memory, decimal for I/O).
fn size(n: u64, binary: bool) -> String {
    let (base, units): (f64, &[&str]) = if binary {
        (1024.0, &["B", "KiB", "MiB", "GiB", "TiB"])
    } else {
        (1000.0, &["B", "kB", "MB", "GB", "TB"])
    };
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{n}{}", units[0])
    } else {
        format!("{v:.2}{}", units[i])
    }
}

fn stats_object(u: &Usage) -> serde_json::Value {
    serde_json::json!({
        "ID": &u.id[..12.min(u.id.len())],
        "Container": &u.id[..12.min(u.id.len())],
        "Name": u.name,
        "CPUPerc": format!("{:.2}%", u.cpu_percent),
        "MemUsage": format!("{} / {}", size(u.mem_usage, true), size(u.mem_limit, true)),
        "MemPerc": format!("{:.2}%", u.mem_percent),
        "NetIO": format!("{} / {}", size(u.net_rx, false), size(u.net_tx, false)),
        "BlockIO": format!("{} / {}", size(u.block_read, false), size(u.block_write, false)),
        "PIDs": u.pids.to_string(),
    })
}

/// docker's default `stats` columns and their titles.
const STATS_ROW: &str = "{{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}";
const STATS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

pub fn stats(engine: &Engine, a: StatsArgs) -> Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let usage = engine.stats_all(&a.containers, Duration::from_millis(1000), a.all)?;
        let mut out = std::io::stdout().lock();
        if !a.no_stream && terminal && a.format.is_none() {
            // Redraw in place, as docker does on a terminal.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        let objects: Vec<serde_json::Value> = usage.iter().map(stats_object).collect();
        crate::template::print_list(
            &mut out,
            a.format.as_deref(),
            STATS_ROW,
            STATS_HEADERS,
            &objects,
        )?;
        out.flush()?;
        if a.no_stream {
            return Ok(());
        }
    }
}

/// `hako container VERB`: the container commands as at the top level
/// (with their exit codes), and prune.
pub fn group(g: &crate::Global, group: ContainerGroup) -> Result<()> {
    match group {
        ContainerGroup::Verb(cmd) => super::container::run(g, cmd),
        ContainerGroup::Prune { force, filter } => {
            let filter = hako_engine::prune_filter::PruneFilter::parse(&filter)?;
            if !force
                && !crate::output::confirm("WARNING! This will remove all stopped containers.")?
            {
                return Ok(());
            }
            let engine = Engine::open(&g.root)?;
            let mut images = super::container::open_images(g)?;
            let gone = engine.prune_containers(&mut images, &filter)?;
            let mut out = std::io::stdout().lock();
            if !gone.is_empty() {
                writeln!(out, "Deleted Containers:")?;
                for id in gone {
                    writeln!(out, "{id}")?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(super::size(512, true), "512B");
        assert_eq!(super::size(1536 * 1024, true), "1.50MiB");
        assert_eq!(super::size(12_000, false), "12.00kB");
    }
}
