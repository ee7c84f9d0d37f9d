//! The service's own process: `hako system service` parses its flags with
//! the whole CLI, then execs [`BINARY`] (built beside `hako`), which holds
//! only this crate, the engine and the image stores. A long-running server
//! should not keep the code of every `hako` command resident: in one
//! binary the pages the service touches sit among the CLI's, Kubernetes'
//! and compose's code (and the kernel maps file pages in 64 KiB runs), and
//! the PIE relocations of all of it are done (and kept) at start-up.
//!
//! The options cross the exec as one JSON argument ([`Options::to_arg`],
//! [`Options::from_arg`]); they hold only paths and addresses.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SetupError;
use crate::listen::{TcpOptions, TlsFiles};
use crate::server::Options;

/// The service's executable, looked for next to `hako`.
pub const BINARY: &str = "hako-service";

/// [`Options`] as they cross the exec.
#[derive(Serialize, Deserialize)]
struct Wire {
    root: PathBuf,
    monitor: PathBuf,
    exit_command: Vec<String>,
    dns_server: Vec<String>,
    socket: Option<PathBuf>,
    tcp: Option<WireTcp>,
    idle_secs: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct WireTcp {
    addr: String,
    tls: Option<WireTls>,
}

#[derive(Serialize, Deserialize)]
struct WireTls {
    cert: PathBuf,
    key: PathBuf,
    verify_ca: Option<PathBuf>,
}

impl Options {
    /// The options as the argument of `hako-service --options`.
    pub fn to_arg(&self) -> String {
        let w = Wire {
            root: self.root.clone(),
            monitor: self.programs.monitor.clone(),
            exit_command: self.programs.exit_command.clone(),
            dns_server: self.programs.dns_server.clone(),
            socket: self.socket.clone(),
            tcp: self.tcp.as_ref().map(|t| WireTcp {
                addr: t.addr.clone(),
                tls: t.tls.as_ref().map(|f| WireTls {
                    cert: f.cert.clone(),
                    key: f.key.clone(),
                    verify_ca: f.verify_ca.clone(),
                }),
            }),
            idle_secs: self.idle.map(|d| d.as_secs()),
        };
        serde_json::to_string(&w).expect("the options serialize")
    }

    /// The options from [`Options::to_arg`]'s text.
    pub fn from_arg(s: &str) -> Result<Options, SetupError> {
        let w: Wire = serde_json::from_str(s).map_err(|e| {
            SetupError(format!(
                "{BINARY}: reading the options hako system service passed: {e}"
            ))
        })?;
        Ok(Options {
            root: w.root,
            programs: hako_engine::Programs {
                monitor: w.monitor,
                exit_command: w.exit_command,
                dns_server: w.dns_server,
            },
            socket: w.socket,
            tcp: w.tcp.map(|t| TcpOptions {
                addr: t.addr,
                tls: t.tls.map(|f| TlsFiles {
                    cert: f.cert,
                    key: f.key,
                    verify_ca: f.verify_ca,
                }),
            }),
            idle: w.idle_secs.map(Duration::from_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_cross_the_exec_unchanged() {
        let opts = Options {
            root: "/var/lib/hako root".into(),
            programs: hako_engine::Programs {
                monitor: "/usr/bin/hako-monitor".into(),
                exit_command: vec!["/usr/bin/hako".into(), "container-cleanup".into()],
                dns_server: vec!["/usr/bin/hako".into(), "dns-serve".into()],
            },
            socket: Some("/run/hako/docker.sock".into()),
            tcp: Some(TcpOptions {
                addr: "0.0.0.0:2376".into(),
                tls: Some(TlsFiles {
                    cert: "c.pem".into(),
                    key: "k.pem".into(),
                    verify_ca: None,
                }),
            }),
            idle: Some(Duration::from_secs(5)),
        };
        let back = Options::from_arg(&opts.to_arg()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{opts:?}"));
        let e = Options::from_arg("{").unwrap_err().to_string();
        assert!(e.starts_with("hako-service: reading the options"), "{e}");
    }
}
