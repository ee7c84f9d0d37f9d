use super::Result;
use crate::Cli;
use hako_runtime::container;
use std::path::PathBuf;

/// Create and start a container; in the foreground, wait for it and remove it
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  hako-runtime run -b ./bundle demo        # exits with the container's status\n  hako-runtime run -d -b ./bundle demo     # leave it running"
)]
pub struct Args {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub no_pivot: bool,
    #[arg(long)]
    pub no_new_keyring: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Detach: return once the container has started
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
    pub id: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    hako_runtime::selfexe::ensure_sealed()?;
    let create = super::create::Args {
        bundle: a.bundle.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        id: a.id.clone(),
    };
    if a.detach {
        container::create(&create.options(cli))?;
        if let Err(e) = container::start(&cli.root, &a.id) {
            let _ = container::delete(&cli.root, &a.id, true);
            return Err(e);
        }
        return Ok(0);
    }
    container::become_subreaper()?;
    container::block_signals()?;
    // A terminal with no console socket: relay the pty to our own stdio, as runc.
    let spec = hako_runtime::spec::load(&a.bundle)?;
    let wants_tty = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let listener = if wants_tty && a.console_socket.is_none() {
        Some(container::ConsoleListener::new(&a.id)?)
    } else {
        None
    };
    let mut opts = create.options(cli);
    if let Some(l) = &listener {
        opts.console_socket = Some(l.path.clone());
    }
    let c = container::create(&opts)?;
    let master = match &listener {
        Some(l) => match l.receive() {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = container::delete(&cli.root, &a.id, true);
                return Err(e);
            }
        },
        None => None,
    };
    let code = match container::start(&cli.root, &a.id) {
        Ok(()) => match master {
            Some(m) => container::relay(c.pid, m),
            None => container::wait_forwarding(c.pid),
        },
        Err(e) => Err(e),
    };
    if !a.keep {
        container::delete(&cli.root, &a.id, true)?;
    }
    code
}
