//! `hako network`: create, ls, inspect, rm, prune, connect, disconnect.
//! Thin over hako-engine's networks (CNI bridge networks).

use std::io::Write;

use anyhow::Result;
use clap::{Args, Subcommand};
use hako_engine::network::ListFilter;
use hako_engine::{options, Engine, NetworkCreate};

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network; containers on it resolve each other by name.
    #[command(
        after_help = "Examples:\n  hako network create backend\n  hako network create --subnet 10.77.0.0/24 --gateway 10.77.0.254 lab"
    )]
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show networks in detail (JSON, as docker's network inspect).
    Inspect(InspectArgs),
    /// Remove networks no running container uses.
    #[command(visible_alias = "remove")]
    Rm(NamesArgs),
    /// Remove every user-defined network no container refers to.
    Prune(PruneArgs),
    /// Connect a container to a network.
    #[command(
        after_help = "Examples:\n  hako network connect --alias db backend postgres\n  hako network connect --ip 10.5.0.20 backend postgres"
    )]
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Serve a user network's names (started by the engine, ends by itself).
    #[command(hide = true)]
    DnsServe { network: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Network driver (only bridge).
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// IPv4 subnet in CIDR form (default: a free /24 in 10.128.0.0/9).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address (default: the subnet's first address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// No outside access: no masquerading, no default route.
    #[arg(long)]
    pub internal: bool,
    /// Set a label KEY=value.
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Give container addresses from this part of the subnet (CIDR; needs --subnet).
    #[arg(long = "ip-range")]
    pub ip_range: Option<String>,
    /// Driver option KEY=VALUE: com.docker.network.bridge.name, com.docker.network.driver.mtu.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// "json" (one object per line), a Go template, "table TEMPLATE" or the table.
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate ids.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter: name=TEXT, id=PREFIX, label=KEY[=VALUE], driver=NAME,
    /// type=custom|builtin. Repeatable; different keys must all match.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A Go-style template per network ('{{.IPAM.Config}}', '{{json .Containers}}'), or json.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (asked only on a terminal).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Only networks passing it: until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE].
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Another name of the container on this network.
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address of the container on this network.
    #[arg(long, value_name = "IPV4")]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Accepted for docker compatibility.
    #[arg(short = 'f', long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

pub fn run(g: &Global, cmd: NetworkCommand) -> Result<()> {
    let engine = Engine::open(&g.root)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        NetworkCommand::Create(a) => {
            let n = engine.create_network(&NetworkCreate {
                name: a.name,
                driver: Some(a.driver),
                subnet: a.subnet,
                gateway: a.gateway,
                internal: a.internal,
                labels: a.label.iter().map(|l| options::parse_label(l)).collect(),
                ip_range: a.ip_range,
                options: a
                    .opt
                    .iter()
                    .map(|o| {
                        o.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .ok_or_else(|| {
                                anyhow::anyhow!(
                                    "invalid option {o:?} (in -o/--opt): expected KEY=VALUE"
                                )
                            })
                    })
                    .collect::<Result<_>>()?,
            })?;
            writeln!(out, "{}", n.id)?;
        }
        NetworkCommand::Ls(a) => {
            let nets = engine.networks()?;
            let id = |s: &str| -> String {
                if a.no_trunc {
                    s.to_string()
                } else {
                    s[..12.min(s.len())].to_string()
                }
            };
            let filters = a
                .filter
                .iter()
                .map(|f| ListFilter::parse(f))
                .collect::<hako_engine::Result<Vec<_>>>()?;
            let nets: Vec<_> = nets
                .into_iter()
                .filter(|n| filters.iter().all(|f| f.matches_network(n)))
                .collect();
            if a.quiet {
                for n in &nets {
                    writeln!(out, "{}", id(&n.id))?;
                }
            } else {
                let objects: Vec<serde_json::Value> = nets
                    .iter()
                    .map(|n| {
                        serde_json::json!({
                            "ID": id(&n.id), "Name": n.name, "Driver": n.driver,
                            "Scope": "local", "Subnet": n.subnet, "Gateway": n.gateway,
                            "Internal": n.internal, "CreatedAt": n.created,
                            "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                        })
                    })
                    // host and none are modes, listed as docker lists them,
                    // with ids of their own (stable: derived from the name).
                    .chain(
                        ["host", "none"]
                            .iter()
                            .map(|m| {
                                let mode_id = hako_image::Digest::sha256_of(
                                    format!("hako network mode {m}").as_bytes(),
                                );
                                serde_json::json!({
                                    "ID": id(mode_id.hex()), "Name": m, "Driver": m.replace("none", "null"),
                                    "Scope": "local", "Internal": false, "Labels": "",
                                })
                            })
                            .filter(|o| {
                                let (name, driver) = (
                                    o["Name"].as_str().unwrap_or_default(),
                                    o["Driver"].as_str().unwrap_or_default(),
                                );
                                filters.iter().all(|f| f.matches_mode(name, driver))
                            }),
                    )
                    .collect();
                crate::template::print_list(
                    &mut out,
                    a.format.as_deref(),
                    "{{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}",
                    &[("ID", "NETWORK ID")],
                    &objects,
                )?;
            }
        }
        NetworkCommand::Inspect(a) => {
            let mut all = Vec::new();
            for n in &a.networks {
                all.push(engine.network_inspect(&engine.network(n)?)?);
            }
            out.flush()?;
            crate::output::print_inspected(&all, a.format.as_deref())?;
        }
        NetworkCommand::Rm(a) => {
            let mut first: Option<hako_engine::Error> = None;
            for n in &a.networks {
                match engine.remove_network(n) {
                    Ok(_) => writeln!(out, "{n}")?,
                    Err(e) if first.is_none() => first = Some(e),
                    Err(e) => eprintln!("Error: {e}"),
                }
            }
            if let Some(e) = first {
                return Err(e.into());
            }
        }
        NetworkCommand::Prune(a) => {
            let filter = hako_engine::prune_filter::PruneFilter::parse(&a.filter)?;
            if !a.force
                && !crate::output::confirm(
                    "WARNING! This will remove all custom networks not used by at least one container.",
                )?
            {
                return Ok(());
            }
            let gone = engine.prune_networks(&filter)?;
            if !gone.is_empty() {
                writeln!(out, "Deleted Networks:")?;
                for n in gone {
                    writeln!(out, "{n}")?;
                }
            }
        }
        NetworkCommand::Connect(a) => {
            let ip = a.ip.as_deref().map(options::parse_ip).transpose()?;
            engine.connect(&a.container, &a.network, &a.alias, ip)?
        }
        NetworkCommand::Disconnect(a) => engine.disconnect(&a.container, &a.network)?,
        NetworkCommand::DnsServe { network } => engine.serve_dns(&network)?,
    }
    Ok(())
}
