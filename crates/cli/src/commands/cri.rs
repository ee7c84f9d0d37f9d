//! `hako cri serve`: the Kubernetes CRI (runtime.v1) on a unix socket;
//! argument parsing only, the service lives in the hako-cri crate
//! and runs as the `hako-cri` executable beside `hako` when there is one.

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
            let me = std::env::current_exe()?;
            let opts = hako_cri::ServeOptions {
                root: std::path::absolute(&g.root)?,
                socket: std::path::absolute(&a.socket)?,
                config,
                programs: super::container::programs(g)?,
                hako: me.clone(),
            };
            // The server runs as its own, smaller executable when it is
            // installed beside hako (crates/cri/src/process.rs); exec keeps
            // this process (its pid, its signals) for it. Without one, it
            // runs in this process.
            let server = me.with_file_name(hako_cri::process::BINARY);
            if server.is_file() {
                use std::os::unix::process::CommandExt as _;
                let config = a.config.as_deref().map(std::path::absolute).transpose()?;
                let err = std::process::Command::new(&server)
                    .arg("--log-level")
                    .arg(&g.log_level)
                    .arg("--options")
                    .arg(opts.to_arg(config.as_deref()))
                    .exec();
                anyhow::bail!("cri serve: starting {}: {err}", server.display());
            }
            hako_cri::serve(opts)?;
            Ok(())
        }
        CriCommand::Pause => std::process::exit(hako_cri::pause()),
    }
}
