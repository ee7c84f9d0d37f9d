//! `exec`: run another process in a running container through the
//! runtime's `exec --process`, inheriting the container's process settings
//! (environment, user, capabilities) as docker does.

use std::path::Path;

use oci_spec::runtime::{Spec, UserBuilder};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::fsutil::write_atomic;
use crate::record::Status;
use crate::user;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    /// Extra KEY=value entries.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
}

impl Engine {
    /// Run a process in a running container with the caller's stdio;
    /// returns its exit code.
    pub fn exec(&self, what: &str, o: &ExecOptions) -> Result<i32> {
        let c = self.get(what)?;
        if c.state.status != Status::Running {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                c.name
            )));
        }
        if c.state.restarting {
            return Err(Error::Conflict(format!(
                "container {} is restarting, wait until the container is running",
                c.name
            )));
        }
        if o.cmd.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let dir = self.container_dir(&c.id);
        let config_path = dir.join("config.json");
        let spec: Spec = serde_json::from_slice(
            &std::fs::read(&config_path).ctx(|| format!("reading {}", config_path.display()))?,
        )
        .ctx(|| format!("parsing {}", config_path.display()))?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::Invalid(format!("{} has no process", config_path.display())))?;
        process.set_args(Some(o.cmd.clone()));
        let mut env = process.env().clone().unwrap_or_default();
        for e in &o.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        process.set_env(Some(env));
        if let Some(w) = &o.workdir {
            process.set_cwd(w.into());
        }
        if let Some(u) = &o.user {
            let u = user::resolve(&dir.join("rootfs"), u)?;
            process.set_user(
                UserBuilder::default()
                    .uid(u.uid)
                    .gid(u.gid)
                    .additional_gids(u.additional_gids)
                    .build()
                    .map_err(|e| Error::Invalid(format!("exec user: {e}")))?,
            );
        }
        let file = dir.join(format!("exec-{}.json", std::process::id()));
        write_atomic(
            &file,
            &serde_json::to_vec(&process).expect("process serialises"),
        )?;
        let res = self.runtime_of(&c).exec(&c.id, Path::new(&file));
        let _ = std::fs::remove_file(&file);
        res
    }
}
