//! Container records under the runtime root (`--root`, default /run/hako-runtime).
//!
//! `<root>/<id>/state.json` holds what later commands need (pid and its start time,
//! bundle, the spec, the cgroup); `<root>/<id>/exec.fifo` exists while the
//! container is created but not started. The status is derived, never stored, so
//! a crashed or killed process can never leave a stale "running" behind.

use crate::cgroups::Cgroup;
use crate::error::{Context, Error, Result};
use crate::util;
use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/run/hako-runtime";
pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// The persisted record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host pid of the container init (0 while it does not exist yet).
    pub pid: i32,
    /// Its start time, to detect pid reuse after it exited.
    pub pid_start: Option<u64>,
    pub created: String,
    pub owner: String,
    pub annotations: HashMap<String, String>,
    pub cgroup: Cgroup,
    pub systemd_cgroup: bool,
    pub spec: Spec,
}

/// The state document of the runtime-spec, plus runc's extra fields that podman
/// and containerd read (`rootfs`, `created`, `owner`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    pub owner: String,
}

/// Container ids become directory names: keep them to a safe alphabet.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::State(format!(
            "invalid container id {id:?}: use letters, digits and . _ - +"
        )))
    }
}

impl Container {
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    pub fn load(root: &Path, id: &str) -> Result<Container> {
        validate_id(id)?;
        let path = Self::dir(root, id).join(STATE_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::State(format!("container {id:?} does not exist")))
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&data)
            .map_err(|e| Error::State(format!("container {id:?}: corrupt {}: {e}", path.display())))
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let data = serde_json::to_vec(self).expect("container state serializes");
        util::write_atomic(&Self::dir(root, &self.id).join(STATE_FILE), &data, 0o600)
    }

    /// The status, derived from the live system: the init process, the exec fifo
    /// and the freezer.
    pub fn status(&self, root: &Path) -> Status {
        if self.pid <= 0 {
            return Status::Creating;
        }
        if !util::process_alive(self.pid, self.pid_start) {
            return Status::Stopped;
        }
        if Self::dir(root, &self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if self.cgroup.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn oci_state(&self, root: &Path) -> OciState {
        let status = self.status(root);
        OciState {
            oci_version: self.spec.version().clone(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: self.owner.clone(),
        }
    }
}

/// The state document hooks and listeners receive on stdin.
pub fn hook_state(c: &Container, status: Status) -> Vec<u8> {
    let st = OciState {
        oci_version: c.spec.version().clone(),
        id: c.id.clone(),
        pid: c.pid,
        status,
        bundle: c.bundle.clone(),
        rootfs: c.rootfs.clone(),
        created: c.created.clone(),
        annotations: c.annotations.clone(),
        owner: c.owner.clone(),
    };
    serde_json::to_vec(&st).expect("state serializes")
}

/// Exclusive lock on a container's directory, so two commands on one container
/// (say `delete` racing `start`) take turns.
pub struct Lock(#[allow(dead_code)] Flock<File>);

pub fn lock(root: &Path, id: &str) -> Result<Lock> {
    let dir = Container::dir(root, id);
    let f = match File::open(&dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::State(format!("container {id:?} does not exist")))
        }
        Err(e) => return Err(Error::io(format!("opening {}", dir.display()), e)),
    };
    let l = Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .ctx(|| format!("locking {}", dir.display()))?;
    Ok(Lock(l))
}

/// Ids of all containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
