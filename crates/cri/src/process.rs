//! The server's own process: `hako cri serve` parses its flags with the
//! whole CLI, then execs [`BINARY`] (built beside `hako`), which holds only
//! this crate, the engine and the image stores. A long-running server
//! should not keep the code of every `hako` command resident: in one
//! binary the pages the server touches sit among the CLI's, Kubernetes'
//! and compose's code (the kernel maps file pages in 64 KiB runs), and the
//! relocations of all of it are done (and kept) at start-up. The Docker
//! Engine API service does the same (hako-dockerapi's `service`).
//!
//! The options cross the exec as one JSON argument ([`ServeOptions::to_arg`],
//! [`ServeOptions::from_arg`]): paths only; the configuration file is read
//! again by the server (the CLI has read it once to report its errors).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::server::ServeOptions;

/// The server's executable, looked for next to `hako`.
pub const BINARY: &str = "hako-cri";

/// [`ServeOptions`] as they cross the exec.
#[derive(Serialize, Deserialize)]
struct Wire {
    root: PathBuf,
    socket: PathBuf,
    config: Option<PathBuf>,
    monitor: PathBuf,
    exit_command: Vec<String>,
    dns_server: Vec<String>,
    hako: PathBuf,
}

impl ServeOptions {
    /// The options as the argument of `hako-cri --options`; `config` is the
    /// file `self.config` was read from (None: the defaults).
    pub fn to_arg(&self, config: Option<&std::path::Path>) -> String {
        let w = Wire {
            root: self.root.clone(),
            socket: self.socket.clone(),
            config: config.map(|p| p.to_path_buf()),
            monitor: self.programs.monitor.clone(),
            exit_command: self.programs.exit_command.clone(),
            dns_server: self.programs.dns_server.clone(),
            hako: self.hako.clone(),
        };
        // Paths and strings only: serializing cannot fail.
        serde_json::to_string(&w).unwrap_or_default()
    }

    /// The options from `hako-cri --options` (the configuration file read).
    pub fn from_arg(arg: &str) -> Result<ServeOptions> {
        let w: Wire = serde_json::from_str(arg).map_err(|e| {
            Error::Config(format!(
                "{BINARY} --options: not the options of hako cri serve: {e}"
            ))
        })?;
        let config = match &w.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        Ok(ServeOptions {
            root: w.root,
            socket: w.socket,
            config,
            programs: hako_engine::Programs {
                monitor: w.monitor,
                exit_command: w.exit_command,
                dns_server: w.dns_server,
            },
            hako: w.hako,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_cross_the_exec_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("cri.toml");
        std::fs::write(&conf, "cni_conf_dir = \"/tmp/x/net.d\"\n").unwrap();
        let opts = ServeOptions {
            root: "/r".into(),
            socket: "/r/cri.sock".into(),
            config: Config::load(&conf).unwrap(),
            programs: hako_engine::Programs {
                monitor: "/bin/hako-monitor".into(),
                exit_command: vec!["/bin/hako".into(), "container-cleanup".into()],
                dns_server: vec!["/bin/hako".into(), "dns".into()],
            },
            hako: "/bin/hako".into(),
        };
        let back = ServeOptions::from_arg(&opts.to_arg(Some(&conf))).unwrap();
        assert_eq!(back.root, opts.root);
        assert_eq!(back.socket, opts.socket);
        assert_eq!(back.hako, opts.hako);
        assert_eq!(back.programs.monitor, opts.programs.monitor);
        assert_eq!(back.programs.exit_command, opts.programs.exit_command);
        assert_eq!(back.programs.dns_server, opts.programs.dns_server);
        assert_eq!(back.config.cni_conf_dir, opts.config.cni_conf_dir);
        assert!(ServeOptions::from_arg("{").is_err());
    }
}
