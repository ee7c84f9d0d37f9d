//! `hako volume create|ls|inspect|rm|prune`, as docker's: thin over the
//! engine's volumes (`hako_engine::volume`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use hako_engine::volume::{self, Filter};
use hako_engine::{options, Engine, VolumeCreate};

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    #[command(
        after_help = "Examples:\n  hako volume create data\n  hako volume create --label team=db --opt type=tmpfs --opt device=tmpfs --opt o=size=64m scratch"
    )]
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes in detail (JSON, as docker's volume inspect).
    Inspect(InspectArgs),
    /// Remove volumes no container uses.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused volumes: anonymous ones, or all with --all.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+); random 64 hex digits if omitted.
    pub name: Option<String>,
    /// Volume driver (only "local").
    #[arg(short = 'd', long, default_value = volume::DRIVER)]
    pub driver: String,
    /// Set a label KEY=value.
    #[arg(long = "label", short = 'l')]
    pub label: Vec<String>,
    /// Driver option KEY=VALUE: type, device, o (mount type, device, mount options).
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: "json" (one object per line), a template such as
    /// '{{.Name}}\t{{.Mountpoint}}', or the table.
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: name=TEXT, label=KEY[=VALUE], dangling=true|false, driver=local.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Go-template-like format per volume, e.g. '{{.Mountpoint}}' (fields, json).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not fail on volumes that do not exist (in-use volumes are still refused).
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove named volumes too, not only anonymous ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only volumes passing this filter (label=KEY[=VALUE], name=TEXT).
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

pub fn run(g: &Global, cmd: VolumeCommand) -> Result<()> {
    let engine = Engine::open(&g.root)?;
    match cmd {
        VolumeCommand::Create(a) => {
            let mut opts = BTreeMap::new();
            for o in &a.opt {
                let Some((k, v)) = o.split_once('=') else {
                    bail!("invalid --opt {o:?}: expected KEY=VALUE");
                };
                opts.insert(k.to_string(), v.to_string());
            }
            let v = engine.create_volume(&VolumeCreate {
                name: a.name,
                driver: Some(a.driver),
                labels: a.label.iter().map(|l| options::parse_label(l)).collect(),
                options: opts,
            })?;
            println!("{}", v.name);
            Ok(())
        }
        VolumeCommand::Ls(a) => ls(&engine, a),
        VolumeCommand::Inspect(a) => {
            let mut out = Vec::new();
            for n in &a.volumes {
                out.push(engine.inspect_volume(&engine.volume(n)?));
            }
            match a.format.as_deref() {
                None | Some("json") => println!("{}", serde_json::to_string_pretty(&out)?),
                Some(f) => {
                    for v in &out {
                        println!("{}", crate::template::render(f, v)?);
                    }
                }
            }
            Ok(())
        }
        VolumeCommand::Rm(a) => {
            // Like docker: try each, print the removed, report the failures.
            let mut failed = None;
            for n in &a.volumes {
                match engine.remove_volume(n, a.force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        if failed.is_some() {
                            eprintln!("Error: {e}");
                        } else {
                            failed = Some(e);
                        }
                    }
                }
            }
            match failed {
                Some(e) => Err(e.into()),
                None => Ok(()),
            }
        }
        VolumeCommand::Prune(a) => prune(&engine, a),
    }
}

pub(crate) fn parse_filters(terms: &[String]) -> Result<Vec<Filter>> {
    Ok(terms
        .iter()
        .map(|t| Filter::parse(t))
        .collect::<Result<_, _>>()?)
}

fn ls(engine: &Engine, a: LsArgs) -> Result<()> {
    let filters = parse_filters(&a.filter)?;
    let mut list = Vec::new();
    for v in engine.volumes()? {
        // Only asked when a dangling filter needs it: it reads every container.
        let in_use = if filters.iter().any(|f| matches!(f, Filter::Dangling(_))) {
            engine.volume_in_use(&v.name)?
        } else {
            false
        };
        if volume::matches(&filters, &v, in_use) {
            list.push(v);
        }
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for v in &list {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(());
    }
    let row = |v: &hako_engine::Volume| {
        let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_json::json!({
            "Availability": "N/A",
            "Driver": v.driver,
            "Group": "N/A",
            "Labels": labels.join(","),
            "Links": "N/A",
            "Mountpoint": engine.volume_path(&v.name),
            "Name": v.name,
            "Scope": "local",
            "Size": "N/A",
            "Status": "N/A",
        })
    };
    let objects: Vec<serde_json::Value> = list.iter().map(row).collect();
    crate::template::print_list(
        &mut out,
        a.format.as_deref(),
        "{{.Driver}}\\t{{.Name}}",
        &[("Name", "VOLUME NAME")],
        &objects,
    )
}

fn prune(engine: &Engine, a: PruneArgs) -> Result<()> {
    let filters = parse_filters(&a.filter)?;
    if !a.force {
        let what = if a.all {
            "all local"
        } else {
            "anonymous local"
        };
        eprint!(
            "WARNING! This will remove {what} volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
    }
    let removed = engine.prune_volumes(a.all, &filters)?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for (name, _) in &removed {
            writeln!(out, "{name}")?;
        }
        writeln!(out)?;
    }
    let total: u64 = removed.iter().map(|(_, s)| s).sum();
    writeln!(
        out,
        "Total reclaimed space: {}",
        crate::output::human_size(total)
    )?;
    Ok(())
}
