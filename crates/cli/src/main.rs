//! `hako`: the command line of the hako container platform.
//!
//! The binary is thin: each command group lives in its own module under
//! `commands/` and calls into the libraries (`hako-image`, ...), which know
//! nothing of the command line.

mod commands;
mod output;
mod progress;
mod server_exec;
mod template;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Global options shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Root directory of hako's persistent state (images, blobs, snapshots).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "HAKO_ROOT",
        default_value = "/var/lib/hako"
    )]
    pub root: PathBuf,

    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        env = "HAKO_LOG_LEVEL",
        default_value = "warn"
    )]
    pub log_level: String,
}

#[derive(Debug, Parser)]
#[command(
    name = "hako",
    version,
    about = "hako (箱): a container platform",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage images (inspect, history, prune, mount, ...).
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// List images (same as `hako image ls`).
    Images(commands::image::ListArgs),
    /// Give an image another name (same as `hako image tag`).
    Tag(commands::image::TagArgs),
    /// Remove images (same as `hako image rm`).
    Rmi(commands::image::RmiArgs),
    /// Save images to a docker-archive, an oci-archive or an OCI layout directory.
    Save(commands::image::SaveArgs),
    /// Load images from a docker-archive or an OCI layout (tar or directory).
    Load(commands::image::LoadArgs),
    /// Create a one-layer image from a root filesystem tarball.
    Import(commands::image::ImportArgs),
    /// Build an image from a Dockerfile.
    Build(Box<commands::build::BuildArgs>),
    /// Manage the build cache (prune).
    #[command(subcommand)]
    Builder(commands::build::BuilderCommand),
    /// Multi-container applications from compose files (up, down, ps, logs, ...).
    Compose(commands::compose::ComposeArgs),
    /// Kubernetes Container Runtime Interface (serve).
    #[command(subcommand)]
    Cri(commands::cri::CriCommand),
    /// Container, image, network and volume events, followed as they happen.
    Events(commands::events::EventsArgs),
    /// Manage networks (create, ls, inspect, rm, prune, connect, disconnect).
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// Host information (same as `hako system info`).
    Info(commands::system::InfoArgs),
    /// hako's version and its runtime's.
    Version(commands::system::VersionArgs),
    /// Disk usage, host information and pruning (df, info, prune).
    #[command(subcommand)]
    System(commands::system::SystemCommand),
    /// Run or maintain an OCI registry (serve, gc).
    #[command(subcommand)]
    Registry(commands::registry::RegistryCommand),
    /// Kubernetes control plane driven by kubectl (up, kubeconfig, down).
    #[command(subcommand)]
    Kube(commands::kube::KubeCommand),
    /// Manage volumes (create, ls, inspect, rm, prune).
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(commands::shell::CompletionArgs),
    /// Write man pages for every command.
    Man(commands::shell::ManArgs),
    /// Names for the completion scripts, one per line.
    #[command(name = "__complete-names", hide = true)]
    CompleteNames(commands::shell::NamesArgs),
    /// Manage containers: every container command (ls, rm, inspect, run, ...) and prune.
    #[command(name = "container", subcommand)]
    ContainerGroup(commands::container_ops::ContainerGroup),
    /// Show the history of an image's layers (same as `hako image history`).
    History(commands::image::HistoryArgs),
    #[command(flatten)]
    Container(commands::container::ContainerCommand),
    #[command(flatten)]
    Distribution(commands::distribution::DistributionCommand),
}

/// `hako images | head -1`: once the reader is gone, printing to stdout fails
/// with EPIPE and `println!` panics. End the process quietly instead, the way
/// `ls` or `git` end there: by the SIGPIPE they would have got.
fn quiet_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("os error 32") {
            // SAFETY: restoring the default action of a signal and raising it
            // is async-signal-safe and touches no Rust state; the process ends.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    // SIGPIPE stays ignored (Rust's default): a registry or socket that goes
    // away mid-request must be an EPIPE error the command reports (and
    // retries), not a silent death. Child processes get the default action
    // back (std resets it at spawn). A closed stdout is handled here instead.
    quiet_on_closed_stdout();
    let mut cli = Cli::parse();
    server_exec::init_logging(&cli.global.log_level);
    // A relative root would reach other processes (monitor, runtime, CNI
    // plugins) as paths they cannot use: absolute from the start.
    match std::path::absolute(&cli.global.root) {
        Ok(p) => cli.global.root = p,
        Err(e) => {
            eprintln!(
                "Error: making the root {} absolute: {e}",
                cli.global.root.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Image(cmd) => commands::image::run(&cli.global, cmd),
        Command::Images(args) => commands::image::list(&cli.global, args),
        Command::Tag(args) => commands::image::tag(&cli.global, args),
        Command::Rmi(args) => commands::image::rmi(&cli.global, args),
        Command::Save(args) => commands::image::save(&cli.global, args),
        Command::Load(args) => commands::image::load(&cli.global, args),
        Command::Import(args) => commands::image::import(&cli.global, args),
        Command::Build(args) => commands::build::build(&cli.global, *args),
        Command::Builder(cmd) => commands::build::builder(&cli.global, cmd),
        Command::Registry(cmd) => commands::registry::run(&cli.global, cmd),
        Command::Cri(cmd) => commands::cri::run(&cli.global, cmd),
        Command::Events(args) => commands::events::run(&cli.global, args),
        Command::Network(cmd) => commands::network::run(&cli.global, cmd),
        Command::Compose(args) => commands::compose::run(&cli.global, args),
        Command::System(cmd) => commands::system::run(&cli.global, cmd),
        Command::Info(args) => {
            commands::system::run(&cli.global, commands::system::SystemCommand::Info(args))
        }
        Command::Version(args) => commands::system::version(args),
        Command::Kube(cmd) => commands::kube::run(&cli.global, cmd),
        Command::Volume(cmd) => commands::volume::run(&cli.global, cmd),
        Command::Completion(args) => commands::shell::completion(args),
        Command::Man(args) => commands::shell::man(args),
        Command::CompleteNames(args) => commands::shell::names(&cli.global, args),
        Command::ContainerGroup(cmd) => commands::container_ops::group(&cli.global, cmd),
        Command::History(args) => {
            commands::image::run(&cli.global, commands::image::ImageCommand::History(args))
        }
        Command::Container(cmd) => commands::container::run(&cli.global, cmd),
        Command::Distribution(cmd) => commands::distribution::run(&cli.global, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error chain joined, outermost context first.
            eprintln!("Error: {}", output::error_line(&err));
            ExitCode::FAILURE
        }
    }
}
