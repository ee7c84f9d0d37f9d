use super::Result;
use crate::Cli;
use hako_runtime::container;

/// Create and start a container; in the foreground, wait for it and remove it
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  hako-runtime run -b ./bundle demo        # exits with the container's status\n  hako-runtime run -d -b ./bundle demo     # leave it running"
)]
#[group(id = "run_args")]
pub struct Args {
    #[command(flatten)]
    pub create: super::create::Args,
    /// Detach: return once the container has started
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let create = &a.create;
    let loaded = super::create::guard(&create.bundle)?;
    let id = &create.id;
    let mut opts = create.options(cli);
    if a.detach {
        opts.spec = loaded;
        container::create(&opts)?;
        if let Err(e) = container::start(&cli.root, id) {
            let _ = container::delete(&cli.root, id, true);
            return Err(e);
        }
        return Ok(0);
    }
    container::become_subreaper()?;
    container::block_signals()?;
    // A terminal with no console socket: relay the pty to our own stdio, as runc.
    let spec = match loaded {
        Some(s) => s,
        None => hako_runtime::spec::load(&create.bundle)?,
    };
    let wants_tty = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let listener = if wants_tty && create.console_socket.is_none() {
        Some(container::ConsoleListener::new(id)?)
    } else {
        None
    };
    if let Some(l) = &listener {
        opts.console_socket = Some(l.path.clone());
    }
    opts.spec = Some(spec);
    let c = container::create(&opts)?;
    let master = match &listener {
        Some(l) => match l.receive() {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = container::delete(&cli.root, id, true);
                return Err(e);
            }
        },
        None => None,
    };
    let code = match container::start(&cli.root, id) {
        Ok(()) => match master {
            Some(m) => container::relay(c.pid, m),
            None => container::wait_forwarding(c.pid),
        },
        Err(e) => Err(e),
    };
    if !a.keep {
        container::delete(&cli.root, id, true)?;
    }
    code
}
