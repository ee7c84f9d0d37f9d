//! `wait`: block until a container stops; its exit code.

use std::time::Duration;

use crate::engine::Engine;
use crate::error::Result;
use crate::proc;
use crate::record::Status;

impl Engine {
    /// Wait until the container is not running; return its exit code.
    pub fn wait(&self, what: &str) -> Result<i32> {
        let c = self.get(what)?;
        self.wait_stopped(&c.id, None)?;
        Ok(self.get(&c.id)?.state.exit_code)
    }

    /// Wait (at most `timeout`) until the container stopped and its
    /// monitor finished; true when it did. The monitor is watched when it
    /// lives (its exit means the status is recorded), else the container.
    pub(crate) fn wait_stopped(&self, id: &str, timeout: Option<Duration>) -> Result<bool> {
        let c = self.get(id)?;
        if c.state.status != Status::Running {
            return Ok(true);
        }
        let done = if proc::alive(c.state.monitor_pid, c.state.monitor_start) {
            proc::wait_exit(c.state.monitor_pid, c.state.monitor_start, timeout)
        } else {
            proc::wait_exit(c.state.pid, c.state.pid_start, timeout)
        };
        if done {
            // The record may have been removed meanwhile (--rm).
            if let Ok(mut c) = self.find(id) {
                self.reconcile(&mut c)?;
            }
        }
        Ok(done)
    }
}
