//! `hako-runtime`: the runc-compatible command line over the hako_runtime library.

mod commands;
mod log;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "hako-runtime",
    version,
    about = "An OCI container runtime with the runc command line",
    after_help = "Examples:\n  hako-runtime spec                      # write a default config.json\n  hako-runtime run -b ./bundle demo      # run in the foreground\n  hako-runtime create -b ./bundle demo && hako-runtime start demo\n  hako-runtime list --format json"
)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended)
    #[arg(long, global = true, default_value = hako_runtime::state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Also write errors to this file
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of the --log file: text or json
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Print debug information to stderr
    #[arg(long, global = true)]
    debug: bool,
    /// Interpret cgroupsPath as "slice:prefix:name" (systemd driver naming)
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// As runc's: auto (the default), or true/false where that is what
    /// detection finds (rootless mode is detected, never forced)
    #[arg(long = "rootless", id = "global_rootless", hide = true)]
    rootless: Option<String>,
    /// runc's path to criu: refused, checkpoint/restore is not supported
    #[arg(long = "criu", hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    Create(commands::create::Args),
    Start(commands::start::Args),
    Run(commands::run::Args),
    State(commands::state::Args),
    Kill(commands::kill::Args),
    Delete(commands::delete::Args),
    List(commands::list::Args),
    Ps(commands::ps::Args),
    Exec(commands::exec::Args),
    Pause(commands::pause::PauseArgs),
    Resume(commands::pause::ResumeArgs),
    Update(commands::update::Args),
    Events(commands::events::Args),
    Spec(commands::spec::Args),
    Features(commands::features::Args),
}

fn main() {
    let cli = Cli::parse();
    let logger = log::Logger::new(cli.log.as_deref(), cli.log_format == "json");
    if let Err(e) = check_runc_options(&cli) {
        logger.error(&e);
        std::process::exit(1);
    }
    let result = match &cli.cmd {
        Command::Create(a) => commands::create::run(&cli, a),
        Command::Start(a) => commands::start::run(&cli, a),
        Command::Run(a) => commands::run::run(&cli, a),
        Command::State(a) => commands::state::run(&cli, a),
        Command::Kill(a) => commands::kill::run(&cli, a),
        Command::Delete(a) => commands::delete::run(&cli, a),
        Command::List(a) => commands::list::run(&cli, a),
        Command::Ps(a) => commands::ps::run(&cli, a),
        Command::Exec(a) => commands::exec::run(&cli, a),
        Command::Pause(a) => commands::pause::pause(&cli, a),
        Command::Resume(a) => commands::pause::resume(&cli, a),
        Command::Update(a) => commands::update::run(&cli, a),
        Command::Events(a) => commands::events::run(&cli, a),
        Command::Spec(a) => commands::spec::run(&cli, a),
        Command::Features(a) => commands::features::run(&cli, a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            logger.error(&e.to_string());
            std::process::exit(1);
        }
    }
}

/// runc's global options that hako-runtime takes only where it does what
/// they ask: anything else is refused rather than silently ignored.
fn check_runc_options(cli: &Cli) -> Result<(), String> {
    if cli.criu.is_some() {
        return Err("--criu: checkpoint/restore is not supported".into());
    }
    if let Some(v) = &cli.rootless {
        let detected = !nix::unistd::Uid::effective().is_root();
        let ok = match v.as_str() {
            "auto" => true,
            "true" => detected,
            "false" => !detected,
            _ => {
                return Err(format!(
                    "--rootless: unknown value {v:?}: use auto, true or false"
                ))
            }
        };
        if !ok {
            return Err(format!(
                "--rootless {v}: not supported: rootless mode is detected (running as {}), use auto",
                if detected { "non-root" } else { "root" }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
