//! `hako registry serve` and `hako registry gc`: argument parsing only; the registry
//! itself lives in `hako-distribution`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hako_distribution::config::Config;

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Run an OCI distribution-spec registry (docker, podman and skopeo can push and pull).
    Serve(ServeArgs),
    /// Delete unreferenced blobs and untagged manifests (mark and sweep).
    Gc(GcArgs),
}

/// Storage is `<--root>/registry`, unless `--config` names a file, whose `root` then wins.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<SocketAddr>,
    /// htpasswd file (bcrypt) enabling basic auth.
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// Let clients without credentials pull.
    #[arg(long)]
    anonymous_pull: bool,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TOML configuration file; the flags above override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be deleted without deleting anything.
    #[arg(long)]
    dry_run: bool,
    /// TOML configuration file (for its storage root, upload expiry and grace period).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn base_config(g: &Global, file: Option<&PathBuf>) -> Result<Config> {
    match file {
        Some(f) => {
            Config::load(f).with_context(|| format!("loading registry config {}", f.display()))
        }
        None => Ok(Config {
            root: g.root.join("registry"),
            ..Config::default()
        }),
    }
}

pub fn run(g: &Global, cmd: RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Serve(a) => {
            // A server must outlive clients that hang up mid-response; main()
            // restored SIGPIPE's default action for the short-lived commands.
            // SAFETY: setting a signal disposition to SIG_IGN has no memory effects.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
            let mut config = base_config(g, a.config.as_ref())?;
            if let Some(addr) = a.addr {
                config.addr = addr;
            }
            if a.htpasswd.is_some() {
                config.htpasswd = a.htpasswd;
            }
            if a.anonymous_pull {
                config.anonymous_pull = true;
            }
            if a.tls_cert.is_some() {
                config.tls_cert = a.tls_cert;
                config.tls_key = a.tls_key;
            }
            hako_distribution::server::serve_blocking(&config)
                .with_context(|| format!("serving the registry on {}", config.addr))
        }
        RegistryCommand::Gc(a) => {
            let config = base_config(g, a.config.as_ref())?;
            let report = hako_distribution::gc::collect_blocking(&config, a.dry_run)
                .with_context(|| format!("collecting garbage in {}", config.root.display()))?;
            println!("{report}");
            Ok(())
        }
    }
}
