//! `delete`: remove a container's processes, cgroup and state.

use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::state::{self, Container, Status};
use oci_spec::runtime::LinuxNamespaceType;
use std::path::Path;
use std::time::Duration;

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    state::validate_id(id)?;
    if !Container::dir(root, id).join(state::STATE_FILE).exists() {
        if force {
            // Nothing recorded; a half-created directory may remain.
            let _ = std::fs::remove_dir_all(Container::dir(root, id));
            return Ok(());
        }
        return Err(Error::State(format!("container {id:?} does not exist")));
    }
    let _lock = state::lock(root, id)?;
    let c = Container::load(root, id)?;
    let st = c.status(root);
    match st {
        Status::Stopped => {}
        // Only a stopped container may be deleted (runtime-spec runtime.md);
        // --force also takes created ones, as runc.
        _ if force => kill_and_wait(&c)?,
        _ => {
            return Err(Error::State(format!(
                "cannot delete container {id:?} that is not stopped: it is {st}"
            )))
        }
    }
    // Without its own pid namespace, the container's other processes do not die
    // with its init.
    if !crate::spec::creates_namespace(&c.spec, LinuxNamespaceType::Pid) {
        let _ = c.cgroup.kill_all(libc::SIGKILL);
    }
    // Sharing the host's mount namespace, its mounts were made on the host.
    if !has_mount_ns(&c.spec) {
        crate::rootfs::unmount_below(&c.rootfs);
    }
    if let Some(h) = c.spec.hooks() {
        let st = state::hook_state(&c, Status::Stopped);
        hooks::run_warn("poststop", h.poststop().as_deref().unwrap_or_default(), &st);
    }
    destroy_cgroup(&c)?;
    let dir = Container::dir(root, id);
    std::fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))
}

fn kill_and_wait(c: &Container) -> Result<()> {
    let _ = c.cgroup.thaw();
    let _ = c.cgroup.kill_all(libc::SIGKILL);
    if c.pid <= 0 {
        // Still being created: no init yet. kill(2) with 0 or -1 would signal
        // our own process group or every process we may signal.
        return Ok(());
    }
    // SAFETY: signalling the verified init pid (positive, checked above).
    unsafe { libc::kill(c.pid, libc::SIGKILL) };
    if !super::wait_gone(c.pid, c.pid_start, Duration::from_secs(10)) {
        return Err(Error::Container(format!(
            "container {:?}: init {} did not exit after SIGKILL",
            c.id, c.pid
        )));
    }
    Ok(())
}

fn destroy_cgroup(c: &Container) -> Result<()> {
    // Processes may take a moment to leave the cgroup after dying.
    let mut last = None;
    for _ in 0..200 {
        match c.cgroup.destroy() {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        let _ = c.cgroup.kill_all(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(Error::Other(format!(
        "container {:?}: removing cgroup: {}",
        c.id,
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Whether the container has a mount namespace of its own (new or joined).
pub(crate) fn has_mount_ns(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Mount))
}
