//! `kill`: signal the container's init, or with `all` every process in it.

use crate::error::{Context, Error, Result};
use crate::state::Status;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::path::Path;
use std::str::FromStr;

/// Accepts "KILL", "SIGKILL", "sigkill" or "9".
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Other(format!("invalid signal number {n}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        let base = libc::SIGRTMIN();
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+')
                .parse()
                .map_err(|_| Error::Other(format!("unknown signal {s:?}")))?
        };
        return Ok(base + off);
    }
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| Error::Other(format!("unknown signal {s:?}")))
}

pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let c = crate::state::Container::load(root, id)?;
    let st = c.status(root);
    match st {
        Status::Created | Status::Running | Status::Paused => {}
        // With --all a stopped container is signalled too, as by runc: once the
        // init has exited, containerd's shim kills what is left in the cgroup
        // (`kill --all ID KILL`) and waits for that to succeed.
        Status::Stopped if all => {}
        // "container not running" is runc's wording, which go-runc (containerd's
        // shims) reads as "the process already finished" rather than a failure.
        _ => {
            return Err(Error::State(format!(
                "cannot kill container {id:?}: container not running (it is {st})"
            )))
        }
    }
    if all {
        return c
            .cgroup
            .kill_all(sig)
            .map_err(|e| Error::Other(format!("container {id:?}: {e}")));
    }
    // SAFETY: kill(2) with a pid we verified is the container's init (start time checked).
    let rc = unsafe { libc::kill(Pid::from_raw(c.pid).as_raw(), sig) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("sending signal {sig} to container {id:?} (pid {})", c.pid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
