use super::Result;
use crate::Cli;

/// Print what this runtime supports (runtime-spec features.md) as JSON
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_cli: &Cli, _a: &Args) -> Result<i32> {
    println!(
        "{}",
        serde_json::to_string_pretty(&hako_runtime::features::features()).expect("serializes")
    );
    Ok(0)
}
