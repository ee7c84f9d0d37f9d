//! `pause`/`unpause`: freeze and thaw every process of a container through
//! the runtime's freezer. The engine remembers the pause with a marker file
//! in the container directory (`paused`), so `ps`/`inspect` need not ask
//! the runtime for every container.

use std::fs;

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::record::{Container, Status};

impl Engine {
    fn paused_marker(&self, id: &str) -> std::path::PathBuf {
        self.container_dir(id).join("paused")
    }

    /// Whether a running container is paused.
    pub fn is_paused(&self, c: &Container) -> bool {
        c.state.status == Status::Running && self.paused_marker(&c.id).exists()
    }

    pub fn pause(&self, what: &str) -> Result<()> {
        let c = self.get(what)?;
        let _lock = self.lock(&c.id)?;
        if c.state.status != Status::Running {
            return Err(Error::Conflict(format!(
                "cannot pause container {}: it is not running",
                c.name
            )));
        }
        if self.is_paused(&c) {
            return Err(Error::Conflict(format!(
                "cannot pause container {}: it is already paused",
                c.name
            )));
        }
        self.runtime_of(&c).pause(&c.id)?;
        let m = self.paused_marker(&c.id);
        fs::write(&m, b"").ctx(|| format!("recording the pause in {}", m.display()))?;
        self.container_event(&c, "pause", &[]);
        Ok(())
    }

    pub fn unpause(&self, what: &str) -> Result<()> {
        let c = self.get(what)?;
        let _lock = self.lock(&c.id)?;
        if !self.is_paused(&c) {
            return Err(Error::Conflict(format!(
                "cannot unpause container {}: it is not paused",
                c.name
            )));
        }
        self.runtime_of(&c).resume(&c.id)?;
        self.clear_paused(&c.id)?;
        self.container_event(&c, "unpause", &[]);
        Ok(())
    }

    pub(crate) fn clear_paused(&self, id: &str) -> Result<()> {
        let m = self.paused_marker(id);
        match fs::remove_file(&m) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing {}", m.display())),
        }
    }
}
