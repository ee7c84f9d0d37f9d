//! `stop`: the stop signal, then SIGKILL when the timeout passes.
//!
//! No lock is held while waiting: the monitor's exit command takes the
//! container's lock, and the monitor must be able to finish.

use std::time::Duration;

use crate::engine::Engine;
use crate::error::Result;
use crate::kill::normalize_signal;
use crate::record::Status;

impl Engine {
    /// Stop a container; `timeout` seconds (default: its stop timeout)
    /// between the stop signal and SIGKILL. Stopping a stopped one does nothing.
    pub fn stop(&self, what: &str, timeout: Option<u32>) -> Result<()> {
        let c = self.get(what)?;
        if c.state.status != Status::Running {
            return Ok(());
        }
        let rt = self.runtime_of(&c);
        let timeout = timeout.unwrap_or(c.config.stop_timeout);
        // The container may exit between the check and the signal; a
        // failed kill is only an error if it still runs.
        let signalled = rt.kill(&c.id, &normalize_signal(&c.config.stop_signal));
        // A frozen container cannot act on the signal: thaw it (docker too).
        if self.is_paused(&c) {
            let _ = rt.resume(&c.id);
            self.clear_paused(&c.id)?;
        }
        if signalled.is_ok()
            && self.wait_stopped(&c.id, Some(Duration::from_secs(timeout.into())))?
        {
            return Ok(());
        }
        if let Err(e) = rt.kill(&c.id, "KILL") {
            if self.get(&c.id)?.state.status == Status::Running && rt.knows(&c.id) {
                return Err(e);
            }
        }
        self.wait_stopped(&c.id, None)?;
        Ok(())
    }
}
