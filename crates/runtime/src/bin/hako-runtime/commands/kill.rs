use super::Result;
use crate::Cli;
use hako_runtime::container;

/// Send a signal (default SIGTERM) to a container's init, or to all its processes
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  hako-runtime kill demo           # SIGTERM\n  hako-runtime kill demo KILL\n  hako-runtime kill --all demo 9"
)]
pub struct Args {
    /// Signal every process in the container
    #[arg(short, long)]
    pub all: bool,
    pub id: String,
    /// Signal name (TERM, SIGKILL) or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let sig = container::parse_signal(&a.signal)?;
    container::kill(&cli.root, &a.id, sig, a.all)?;
    Ok(0)
}
