//! `stop`: the stop signal, then SIGKILL when the timeout passes.
//!
//! No lock is held while waiting: the monitor's exit command takes the
//! container's lock, and the monitor must be able to finish.

use std::time::Duration;

use crate::engine::Engine;
use crate::error::{Context, Result};
use crate::kill::{normalize_signal, signal_number};
use crate::proc;
use crate::record::{Container, Status};
use crate::start::STOP_MARKER;

impl Engine {
    /// Stop a container; `timeout` seconds (default: its stop timeout)
    /// between the stop signal and SIGKILL. Stopping a stopped one does nothing.
    pub fn stop(&self, what: &str, timeout: Option<u32>) -> Result<()> {
        self.stop_with_signal(what, timeout, None)
    }

    /// `stop -s SIGNAL`: as [`Engine::stop`], with `signal` ("TERM", "SIGINT",
    /// "2") sent first instead of the container's stop signal.
    pub fn stop_with_signal(
        &self,
        what: &str,
        timeout: Option<u32>,
        signal: Option<&str>,
    ) -> Result<()> {
        if let Some(s) = signal {
            crate::kill::check_signal(s)?;
        }
        let c = self.get(what)?;
        if c.state.status != Status::Running {
            return Ok(());
        }
        self.stop_running(&c, timeout, signal)?;
        self.container_event(&c, "stop", &[]);
        Ok(())
    }

    fn stop_running(
        &self,
        c: &Container,
        timeout: Option<u32>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = c.clone();
        self.prevent_restart(&c)?;
        if c.state.restarting {
            // Nothing runs: the monitor, woken, records the exit and ends.
            self.wait_stopped(&c.id, None)?;
            return Ok(());
        }
        let rt = self.runtime_of(&c);
        let timeout = timeout.unwrap_or(c.config.stop_timeout);
        // The container may exit between the check and the signal; a
        // failed kill is only an error if it still runs.
        // Events first, so that they come before the die they cause.
        let stop_signal = signal.unwrap_or(&c.config.stop_signal);
        self.container_event(&c, "kill", &[("signal", signal_number(stop_signal))]);
        let signalled = rt.kill(&c.id, &normalize_signal(stop_signal));
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
        self.container_event(&c, "kill", &[("signal", "9".into())]);
        if let Err(e) = rt.kill(&c.id, "KILL") {
            let now = self.get(&c.id)?;
            // Between two runs (or being created again) there may be nothing
            // to signal; the monitor sees the stop mark and ends it.
            // The process may also have ended between the stop signal and
            // SIGKILL, before the monitor recorded it: the runtime then
            // says "stopped", and there is nothing left to kill.
            // The runtime's state may also be half gone while the monitor
            // deletes it; the init's own liveness settles it then.
            let ended = !proc::alive(now.state.pid, now.state.pid_start)
                || rt.status(&c.id).is_ok_and(|s| s == "stopped");
            if now.state.status == Status::Running
                && !now.state.restarting
                && rt.knows(&c.id)
                && !ended
            {
                return Err(e);
            }
        }
        self.wait_stopped(&c.id, None)?;
        Ok(())
    }
}

impl Engine {
    /// Mark the container as stopped by the user so that its monitor does
    /// not restart it (docker never restarts a manually stopped container),
    /// and wake a monitor that waits to restart it.
    pub(crate) fn prevent_restart(&self, c: &Container) -> Result<()> {
        let marker = self.container_dir(&c.id).join(STOP_MARKER);
        std::fs::write(&marker, b"").ctx(|| format!("marking container {} as stopped", c.name))?;
        // Only a monitor that may restart is woken: one started by an older
        // hako (no policy) would be killed by SIGUSR1, and one that never
        // restarts never waits for the mark.
        if c.host.restart_policy.restarts() {
            proc::signal(c.state.monitor_pid, c.state.monitor_start, libc::SIGUSR1);
        }
        Ok(())
    }
}
