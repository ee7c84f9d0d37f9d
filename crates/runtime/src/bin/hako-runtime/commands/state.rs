use super::Result;
use crate::Cli;
use hako_runtime::state::Container;

/// Print the state of a container as JSON (runtime-spec state)
#[derive(clap::Args)]
pub struct Args {
    pub id: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let c = Container::load(&cli.root, &a.id)?;
    let st = c.oci_state(&cli.root);
    println!(
        "{}",
        serde_json::to_string_pretty(&st).expect("state serializes")
    );
    Ok(0)
}
