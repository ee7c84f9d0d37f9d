//! `pause` / `resume`: freeze and thaw every process of the container.

use crate::error::{Error, Result};
use crate::state::{self, Status};
use std::path::Path;

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let _lock = state::lock(root, id)?;
    let c = super::load_in(root, id, &[Status::Running, Status::Created], "pause")?;
    c.cgroup
        .freeze()
        .map_err(|e| Error::Other(format!("pausing container {id:?}: {e}")))
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let _lock = state::lock(root, id)?;
    let c = super::load_in(root, id, &[Status::Paused], "resume")?;
    c.cgroup
        .thaw()
        .map_err(|e| Error::Other(format!("resuming container {id:?}: {e}")))
}
