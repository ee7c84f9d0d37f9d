use super::Result;
use crate::Cli;
use hako_runtime::error::Error;
use std::path::PathBuf;

/// Write a default config.json into the bundle directory
#[derive(clap::Args)]
#[command(after_help = "Example:\n  mkdir -p bundle/rootfs && cd bundle && hako-runtime spec")]
pub struct Args {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// A config for running as an unprivileged user (user namespace, no cgroups)
    #[arg(long)]
    pub rootless: bool,
}

pub fn run(_cli: &Cli, a: &Args) -> Result<i32> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        return Err(Error::State(format!(
            "{} already exists; remove it first",
            path.display()
        )));
    }
    let spec = hako_runtime::spec::default_spec(a.rootless)?;
    let data = serde_json::to_vec_pretty(&spec).expect("spec serializes");
    hako_runtime::util::write_atomic(&path, &data, 0o644)?;
    Ok(0)
}
