use super::Result;
use crate::Cli;
use hako_runtime::error::{Context, Error};
use hako_runtime::state::Container;

/// List the processes of a container (table from ps(1), or pids as JSON)
#[derive(clap::Args)]
pub struct Args {
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    pub id: String,
    /// Arguments for ps(1), default -ef
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let c = Container::load(&cli.root, &a.id)?;
    let pids = c
        .cgroup
        .pids()
        .map_err(|e| Error::Other(format!("listing processes of {:?}: {e}", a.id)))?;
    if a.format == "json" {
        println!("{}", serde_json::to_string(&pids).expect("serializes"));
        return Ok(0);
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .ctx(|| "running ps")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Other("ps output has no PID column".into()))?;
    println!("{header}");
    for l in lines {
        let pid: Option<i32> = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(0)
}
