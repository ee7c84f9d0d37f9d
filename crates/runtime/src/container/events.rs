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
