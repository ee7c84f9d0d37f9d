//! After the host boots (or whenever hako is asked to act as docker does when
//! its daemon starts): containers whose restart policy says so are started
//! again. hako has no daemon, so a boot unit runs `hako system boot`; every
//! record is reconciled first (the reboot killed every container and
//! monitor), then `always` containers are started, and `unless-stopped`
//! ones unless the user had stopped them.

use hako_image::ImageStore;

use crate::engine::{Engine, Programs};
use crate::error::Result;
use crate::record::Status;
use crate::start::STOP_MARKER;

/// What `boot` did with one container.
#[derive(Debug)]
pub struct Booted {
    pub name: String,
    pub result: Result<()>,
}

impl Engine {
    /// Start the containers the restart policies ask for; returns one entry
    /// per container it tried.
    pub fn boot(&self, images: &mut ImageStore, programs: &Programs) -> Result<Vec<Booted>> {
        let mut out = Vec::new();
        for c in self.list()? {
            if c.state.status == Status::Running {
                continue;
            }
            let stopped_by_user = self.container_dir(&c.id).join(STOP_MARKER).exists();
            let wanted = match c.host.restart_policy.name.as_str() {
                "always" => true,
                "unless-stopped" => !stopped_by_user,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let result = self.start(images, &c.id, programs).map(|_| ());
            out.push(Booted {
                name: c.name,
                result,
            });
        }
        Ok(out)
    }
}
