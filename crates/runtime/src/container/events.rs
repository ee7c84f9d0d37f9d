//! `events --stats`: resource usage of a container.

use crate::error::{Error, Result};
use crate::state::Status;
use std::path::Path;

pub use crate::cgroups::Stats;

pub fn stats(root: &Path, id: &str) -> Result<Stats> {
    let c = super::load_in(
        root,
        id,
        &[Status::Created, Status::Running, Status::Paused],
        "get stats of",
    )?;
    c.cgroup
        .stats()
        .map_err(|e| Error::Other(format!("stats of container {id:?}: {e}")))
}

/// How many processes of the container the kernel's OOM killer has killed.
pub fn oom_kills(root: &Path, id: &str) -> Result<u64> {
    let c = crate::state::Container::load(root, id)?;
    c.cgroup
        .oom_kill_count()
        .map_err(|e| Error::Other(format!("OOM count of container {id:?}: {e}")))
}
