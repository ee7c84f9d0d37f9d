//! `update`: new resource limits and restart policy for a container. The
//! record and the bundle change (so later starts and the monitor's restarts
//! use them); a running container gets the limits at once through the
//! runtime's `update`, and its monitor reads the policy file at its next exit.

use std::fs;

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::record::{RestartPolicy, Status};

/// Monitors read it (`name max`) when the container exits.
pub(crate) const RESTART_POLICY_FILE: &str = "restart-policy";

/// What `update` changes; None keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub restart: Option<RestartPolicy>,
}

impl UpdateOptions {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.memory_swap.is_none()
            && self.nano_cpus.is_none()
            && self.cpu_shares.is_none()
            && self.cpuset_cpus.is_none()
            && self.cpuset_mems.is_none()
            && self.pids_limit.is_none()
            && self.restart.is_none()
    }
}

/// docker's floor for a memory limit.
const MIN_MEMORY: i64 = 6 << 20;

impl Engine {
    pub fn update(&self, what: &str, o: &UpdateOptions) -> Result<()> {
        if o.is_empty() {
            return Err(Error::Invalid(
                "update needs at least one option (--memory, --cpus, --restart, …)".into(),
            ));
        }
        let found = self.get(what)?;
        let _lock = self.lock(&found.id)?;
        let mut c = self.get(&found.id)?;
        let name = c.name.clone();
        let h = &mut c.host;
        if let Some(m) = o.memory {
            if m != 0 && m < MIN_MEMORY {
                return Err(Error::Invalid(format!(
                    "updating container {name}: minimum memory limit allowed is 6MB"
                )));
            }
            h.memory = m;
        }
        if let Some(s) = o.memory_swap {
            h.memory_swap = s;
        }
        if h.memory > 0 && h.memory_swap > 0 && h.memory_swap < h.memory {
            return Err(Error::Invalid(format!(
                "updating container {name}: memory limit should be smaller than already set \
                 memoryswap limit, update the memoryswap at the same time"
            )));
        }
        if let Some(n) = o.nano_cpus {
            h.nano_cpus = n;
        }
        if let Some(s) = o.cpu_shares {
            h.cpu_shares = s;
        }
        if let Some(s) = &o.cpuset_cpus {
            h.cpuset_cpus = s.clone();
        }
        if let Some(s) = &o.cpuset_mems {
            h.cpuset_mems = s.clone();
        }
        if let Some(p) = o.pids_limit {
            h.pids_limit = p;
        }
        if let Some(r) = &o.restart {
            if c.host.auto_remove && r.restarts() {
                return Err(Error::Invalid(format!(
                    "updating container {name}: restart policy cannot be updated because \
                     AutoRemove is enabled for the container"
                )));
            }
            c.host.restart_policy = r.clone();
        }
        let dir = self.container_dir(&c.id);
        let resources = crate::spec::resources(&c.host, &c.id)?;
        // The bundle first: the monitor's restarts create from it.
        let bundle = dir.join("config.json");
        if let Ok(bytes) = fs::read(&bundle) {
            let mut spec: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Invalid(format!("{}: {e}", bundle.display())))?;
            spec["linux"]["resources"] =
                serde_json::to_value(&resources).expect("resources serialise");
            crate::fsutil::write_replace(
                &bundle,
                &serde_json::to_vec_pretty(&spec).expect("a spec serialises"),
            )?;
        }
        if c.state.status == Status::Running && !c.state.restarting {
            // Devices are the runtime's business at create; only limits change.
            let mut limits = serde_json::to_value(&resources).expect("resources serialise");
            if let Some(m) = limits.as_object_mut() {
                m.remove("devices");
                // No limit in the record is no pids entry in the spec; the
                // running container's old limit must be lifted explicitly.
                if o.pids_limit.is_some_and(|p| p <= 0) {
                    m.insert("pids".into(), serde_json::json!({"limit": -1}));
                }
            }
            let file = dir.join("update-resources.json");
            fs::write(&file, limits.to_string()).ctx(|| format!("writing {}", file.display()))?;
            let res = self.runtime_of(&c).update(&c.id, &file);
            let _ = fs::remove_file(&file);
            res?;
        }
        if o.restart.is_some() {
            let p = &c.host.restart_policy;
            crate::fsutil::write_replace(
                &dir.join(RESTART_POLICY_FILE),
                format!("{} {}\n", p.name, p.maximum_retry_count).as_bytes(),
            )?;
        }
        self.db.set_host_config(&c.id, &c.host)?;
        self.container_event(&c, "update", &[]);
        Ok(())
    }
}
