use super::Result;
use crate::Cli;

/// Delete a stopped container (with --force, kill it first)
#[derive(clap::Args)]
pub struct Args {
    /// Kill a running container, and succeed if it does not exist
    #[arg(short, long)]
    pub force: bool,
    pub id: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    hako_runtime::container::delete(&cli.root, &a.id, a.force)?;
    Ok(0)
}
