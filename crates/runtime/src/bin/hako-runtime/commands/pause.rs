use super::Result;
use crate::Cli;

/// Freeze all processes of a container
#[derive(clap::Args)]
pub struct PauseArgs {
    pub id: String,
}

/// Thaw a paused container
#[derive(clap::Args)]
pub struct ResumeArgs {
    pub id: String,
}

pub fn pause(cli: &Cli, a: &PauseArgs) -> Result<i32> {
    hako_runtime::container::pause(&cli.root, &a.id)?;
    Ok(0)
}

pub fn resume(cli: &Cli, a: &ResumeArgs) -> Result<i32> {
    hako_runtime::container::resume(&cli.root, &a.id)?;
    Ok(0)
}
