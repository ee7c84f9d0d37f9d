//! bench/kube-api's load generator (see bench/kube-api/README.md): prints
//! one JSON line of figures.

mod api;
mod etcd;
mod kubeconfig;
mod stats;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load hako's API server (ConfigMaps in namespace default) with watchers.
    Api {
        /// The kubeconfig `hako kube up` wrote ($ROOT/kubeconfig).
        kubeconfig: String,
        #[arg(long, default_value_t = 10000)]
        n: u64,
        #[arg(long, default_value_t = 8)]
        clients: u64,
        #[arg(long, default_value_t = 100)]
        watchers: u64,
        /// Target writes per second (open loop); 0: as fast as the server answers.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
    },
    /// The floor: the same requests straight into etcd's JSON gateway.
    Etcd {
        /// etcd's client URL, e.g. http://127.0.0.1:2379.
        url: String,
        #[arg(long, default_value_t = 10000)]
        n: u64,
        #[arg(long, default_value_t = 8)]
        clients: u64,
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let out = match Args::parse().cmd {
        Cmd::Api {
            kubeconfig,
            n,
            clients,
            watchers,
            rate,
        } => {
            let cfg = kubeconfig::read(&kubeconfig)?;
            let load = api::Load {
                n,
                clients,
                watchers,
                rate,
            };
            api::run(&cfg, load).await?
        }
        Cmd::Etcd {
            url,
            n,
            clients,
            rate,
        } => etcd::run(&url, n, clients, rate).await?,
    };
    println!("{out}");
    Ok(())
}
