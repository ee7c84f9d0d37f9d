//! `rm`: remove a stopped container (or, forced, kill it first): its
//! runtime state, its rootfs mount and upper layer, its directory, its record.

use std::fs;

use hako_image::ImageStore;

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::record::Status;

impl Engine {
    /// Remove a container; a running one only with `force` (it is killed).
    /// Its volumes stay (see [`Engine::remove_with_volumes`]).
    pub fn remove(&self, images: &mut ImageStore, what: &str, force: bool) -> Result<()> {
        self.remove_with_volumes(images, what, force, false)
    }

    /// [`Engine::remove`], and with `volumes` (`rm -v`, `--rm`) also the
    /// container's anonymous volumes that no other container uses.
    pub fn remove_with_volumes(
        &self,
        images: &mut ImageStore,
        what: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let c = self.get(what)?;
        if c.state.status == Status::Running {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container {}: container is running: stop the container before removing or force remove",
                    c.name
                )));
            }
            self.prevent_restart(&c)?;
            let rt = self.runtime_of(&c);
            self.container_event(&c, "kill", &[("signal", "9".into())]);
            let _ = rt.kill(&c.id, "KILL");
            self.wait_stopped(&c.id, None)?;
        }
        let _lock = self.lock(&c.id)?;
        // Another process may have removed it while we waited (--rm).
        let Some(mut c) = self.db.get(&c.id)? else {
            return Ok(());
        };
        c.state.status = Status::Removing;
        self.db.set_state(&c.id, &c.state)?;
        let rt = self.runtime_of(&c);
        if rt.knows(&c.id) {
            // The monitor deletes it too once the container is dead: losing
            // that race is no failure.
            if let Err(e) = rt.delete_force(&c.id) {
                if rt.knows(&c.id) {
                    return Err(e);
                }
            }
        }
        self.network_down(&c)?;
        let dir = self.container_dir(&c.id);
        crate::image_mounts::release(images, &dir, &c)?;
        match images.unmount(&dir.to_string_lossy()) {
            Ok(_) | Err(hako_image::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(e)
                    .ctx(|| format!("unmounting the root filesystem of container {}", c.name))
            }
        }
        crate::shm::release(&dir)?;
        hako_image::snapshot::Snapshotter::remove_container_dir(&dir)
            .ctx(|| format!("removing container {}", c.name))?;
        self.db.delete(&c.id)?;
        let _ = fs::remove_file(self.root.join("containers").join(format!(".{}.lock", c.id)));
        self.container_event(&c, "destroy", &[]);
        if volumes {
            self.remove_anonymous_volumes(&c)?;
        }
        Ok(())
    }

    /// Remove every container that is not running and passes `filter`
    /// (`container prune`); returns the removed ids.
    pub fn prune_containers(
        &self,
        images: &mut ImageStore,
        filter: &crate::prune_filter::PruneFilter,
    ) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for c in self.list()? {
            if matches!(c.state.status, Status::Exited | Status::Created)
                && filter.matches(&c.created, &c.config.labels)
            {
                match self.remove(images, &c.id, false) {
                    Ok(()) => gone.push(c.id),
                    // Started or removed meanwhile by another process.
                    Err(Error::Conflict(_)) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.sweep_stale_locks()?;
        Ok(gone)
    }

    /// Remove the `.<id>.lock` files of containers that no longer exist: a
    /// command that locked a container just as `rm` removed it (and its lock
    /// file) made the file again. One held by a live command is left.
    pub(crate) fn sweep_stale_locks(&self) -> Result<()> {
        let dir = self.root.join("containers");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.strip_suffix(".lock"))
            else {
                continue;
            };
            if self.db.get(id)?.is_some() {
                continue;
            }
            if let Some(_held) = self.try_lock(id)? {
                if self.db.get(id)?.is_none() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
}
