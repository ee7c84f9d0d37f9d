//! More container verbs: pause, unpause, restart, rename, top, stats and
//! `container prune`. Thin over hako-engine, shaped like docker's output.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use hako_engine::stats::Usage;
use hako_engine::{Engine, Programs};
use hako_image::ImageStore;

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
    /// Containers (default: all running).
    pub containers: Vec<String>,
}

/// `hako container ...` verbs that docker has only under `container`.
#[derive(Debug, Subcommand)]
pub enum ContainerGroup {
    /// Remove every stopped container.
    Prune {
        /// Do not ask for confirmation (accepted; hako never asks).
        #[arg(short = 'f', long)]
        force: bool,
    },
}

pub fn rename(engine: &Engine, a: RenameArgs) -> Result<()> {
    Ok(engine.rename(&a.container, &a.new_name)?)
}

pub fn restart(
    engine: &Engine,
    images: &mut ImageStore,
    programs: &Programs,
    names: &[String],
    time: Option<u32>,
) -> Result<()> {
    let mut first = None;
    for n in names {
        let r = engine.restart(images, n, programs, time);
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

pub fn stats(engine: &Engine, a: StatsArgs) -> Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let usage = engine.stats(&a.containers, Duration::from_millis(1000))?;
        let mut out = std::io::stdout().lock();
        if !a.no_stream && terminal && a.format.is_none() {
            // Redraw in place, as docker does on a terminal.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        match a.format.as_deref() {
            Some("json") | Some("{{json .}}") => {
                for u in &usage {
                    writeln!(out, "{}", stats_object(u))?;
                }
            }
            Some(t) => {
                for u in &usage {
                    writeln!(out, "{}", crate::template::render(t, &stats_object(u))?)?;
                }
            }
            None => {
                let mut rows = vec![[
                    "CONTAINER ID".to_string(),
                    "NAME".into(),
                    "CPU %".into(),
                    "MEM USAGE / LIMIT".into(),
                    "MEM %".into(),
                    "NET I/O".into(),
                    "BLOCK I/O".into(),
                    "PIDS".into(),
                ]];
                for u in &usage {
                    let o = stats_object(u);
                    rows.push(
                        [
                            "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO",
                            "PIDs",
                        ]
                        .map(|k| o[k].as_str().unwrap_or_default().to_string()),
                    );
                }
                let mut w = [0usize; 8];
                for r in &rows {
                    for (i, c) in r.iter().enumerate() {
                        w[i] = w[i].max(c.chars().count());
                    }
                }
                for r in &rows {
                    let mut line = String::new();
                    for (i, c) in r.iter().enumerate() {
                        line.push_str(c);
                        if i + 1 < r.len() {
                            line.push_str(&" ".repeat(w[i] - c.chars().count() + 3));
                        }
                    }
                    writeln!(out, "{line}")?;
                }
            }
        }
        out.flush()?;
        if a.no_stream {
            return Ok(());
        }
    }
}

pub fn group(engine: &Engine, images: &mut ImageStore, g: ContainerGroup) -> Result<()> {
    match g {
        ContainerGroup::Prune { .. } => {
            let gone = engine.prune_containers(images)?;
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
