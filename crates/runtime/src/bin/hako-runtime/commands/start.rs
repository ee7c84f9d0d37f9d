use super::Result;
use crate::Cli;

/// Start a created container's process
#[derive(clap::Args)]
pub struct Args {
    pub id: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    hako_runtime::container::start(&cli.root, &a.id)?;
    Ok(0)
}
