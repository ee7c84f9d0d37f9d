//! `kill`: send a signal to the container's init through the runtime.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::record::Status;

impl Engine {
    /// Send `signal` ("KILL", "SIGTERM", "9") to a running container.
    pub fn kill(&self, what: &str, signal: &str) -> Result<()> {
        let c = self.get(what)?;
        if c.state.status != Status::Running {
            return Err(Error::Conflict(format!(
                "cannot kill container {}: it is not running",
                c.name
            )));
        }
        // Killed by the user: not restarted, as docker does for any signal.
        self.prevent_restart(&c)?;
        if c.state.restarting {
            // Nothing runs to signal; the woken monitor ends.
            return Ok(());
        }
        let rt = self.runtime_of(&c);
        // Recorded first, so that it comes before the die it may cause.
        self.container_event(&c, "kill", &[("signal", signal_number(signal))]);
        rt.kill(&c.id, &normalize_signal(signal))?;
        // The signal is pending until the container thaws.
        if self.is_paused(&c) {
            rt.resume(&c.id)?;
            self.clear_paused(&c.id)?;
        }
        Ok(())
    }
}

/// A signal by name ("TERM", "SIGINT", "rtmin+3" is not taken) or number
/// (1 to 64), else a one-line error.
pub(crate) fn check_signal(s: &str) -> Result<()> {
    let n = normalize_signal(s);
    let ok = match n.parse::<u32>() {
        Ok(num) => (1..=64).contains(&num),
        Err(_) => std::str::FromStr::from_str(&format!("SIG{n}"))
            .map(|_: nix::sys::signal::Signal| ())
            .is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid signal {s:?}")))
    }
}

/// "TERM", "SIGKILL", "9" → the number, as docker's kill events show it.
pub(crate) fn signal_number(s: &str) -> String {
    let n = normalize_signal(s);
    if n.chars().all(|c| c.is_ascii_digit()) {
        return n;
    }
    format!("SIG{n}")
        .parse::<nix::sys::signal::Signal>()
        .map(|sig| (sig as i32).to_string())
        .unwrap_or(n)
}

/// "kill", "SIGKILL", "9" → the form every runtime accepts ("KILL" or "9").
pub(crate) fn normalize_signal(s: &str) -> String {
    let up = s.trim().to_ascii_uppercase();
    up.strip_prefix("SIG").unwrap_or(&up).to_string()
}
