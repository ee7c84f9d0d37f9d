//! `hako cri serve`: the Kubernetes CRI (runtime.v1) on a unix socket;
//! argument parsing only, the service lives in `hako-cri`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum CriCommand {
    /// Serve the CRI RuntimeService and ImageService (for kubelet, crictl).
    #[command(
        after_help = "Examples:\n  hako cri serve\n  hako --root /tmp/r cri serve --socket /tmp/r/cri.sock --config cri.toml\n\nkubelet: --container-runtime-endpoint unix:///run/hako/cri.sock"
    )]
    Serve(ServeArgs),
    /// The built-in pause of pod sandboxes (run by `cri serve` inside each pod).
    #[command(hide = true)]
    Pause,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The unix socket to listen on.
    #[arg(long, value_name = "PATH", default_value = hako_cri::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The TOML configuration (sandbox_image, cni_conf_dir, registry.mirrors,
    /// runtimes); every key has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(g: &Global, cmd: CriCommand) -> Result<()> {
    match cmd {
        CriCommand::Serve(a) => {
            let config = match &a.config {
                Some(p) => hako_cri::Config::load(p)?,
                None => hako_cri::Config::default(),
            };
            hako_cri::serve(hako_cri::ServeOptions {
                root: g.root.clone(),
                socket: std::path::absolute(&a.socket)?,
                config,
                programs: super::container::programs(g)?,
                hako: std::env::current_exe()?,
            })?;
            Ok(())
        }
        CriCommand::Pause => std::process::exit(hako_cri::pause()),
    }
}
