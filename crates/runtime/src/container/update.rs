//! `update`: change a running container's resource limits.

use crate::error::{Error, Result};
use crate::state::{self, Status};
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// Applies `res` to the container's cgroup and records it in the state.
pub fn update(root: &Path, id: &str, res: &LinuxResources) -> Result<()> {
    let _lock = state::lock(root, id)?;
    let mut c = super::load_in(
        root,
        id,
        &[Status::Created, Status::Running, Status::Paused],
        "update",
    )?;
    c.cgroup
        .apply(res)
        .map_err(|e| Error::Other(format!("updating container {id:?}: {e}")))?;
    let mut linux = c.spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(merge(
        linux.resources().clone().unwrap_or_default(),
        res,
    )));
    c.spec.set_linux(Some(linux));
    c.save(root)
}

/// Fields set in `new` replace those in `old`; unset fields keep their value.
fn merge(old: LinuxResources, new: &LinuxResources) -> LinuxResources {
    let mut out = old;
    if new.memory().is_some() {
        out.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        out.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        out.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        out.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        out.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.unified().is_some() {
        out.set_unified(new.unified().clone());
    }
    if new.devices().is_some() {
        out.set_devices(new.devices().clone());
    }
    out
}
