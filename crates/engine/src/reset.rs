//! `system reset`: remove everything a root made on the host, as podman's
//! `system reset` does: every container (killed first), every network with
//! its bridge and leases (the default one too: a temporary root's `hk-*`
//! bridge must not outlive it), every volume, stale lock files. The image
//! store and the root directory itself are the caller's to remove.

use hako_image::ImageStore;

use crate::engine::Engine;
use crate::error::{Error, Result};

impl Engine {
    /// Remove every container, network and volume of this root.
    pub fn reset(&self, images: &mut ImageStore) -> Result<()> {
        for c in self.db.list()? {
            match self.remove_with_volumes(images, &c.id, true, true) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for n in self.db.list_networks()? {
            self.destroy_network(&n)?;
        }
        for v in self.volumes()? {
            self.remove_volume(&v.name, true)?;
        }
        self.sweep_stale_locks()
    }

    /// The run state directory of this root.
    pub fn run_root(&self) -> &std::path::Path {
        &self.run_root
    }
}
