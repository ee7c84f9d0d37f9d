//! Processes the engine did not start but must watch: the monitor and the
//! container's init. A pid alone can be reused after the process died, so
//! each is identified by pid and start time (field 22 of /proc/PID/stat).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Start time of a process in clock ticks since boot, None if it is gone.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // rest starts at field 3 (state); a zombie counts as gone.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The parent of a live process (field 4 of /proc/PID/stat).
pub fn parent(pid: i32) -> Option<i32> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// Whether the process `pid` that started at `start` still runs.
pub fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && start_time(pid).is_some_and(|s| start == 0 || s == start)
}

/// Wait until the process exits, or `timeout` passes; true when it exited.
/// Works for processes that are not our children (pidfd_open, Linux 5.3).
pub fn wait_exit(pid: i32, start: u64, timeout: Option<Duration>) -> bool {
    if !alive(pid, start) {
        return true;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return !alive(pid, start);
    }
    // SAFETY: the descriptor was just returned to us and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pid may have been reused between the check and pidfd_open.
    if !alive(pid, start) {
        return true;
    }
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
    };
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return !alive(pid, start),
        }
    }
}

/// Send `sig` to the process `pid` that started at `start`, if it still
/// runs; through a pidfd, so a reused pid is never signalled.
pub fn signal(pid: i32, start: u64, sig: i32) -> bool {
    if !alive(pid, start) {
        return false;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the descriptor was just returned to us and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process we checked only if it is still the same one.
    if !alive(pid, start) {
        return false;
    }
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_exited_child_is_not() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(start_time(pid).is_none());
    }
}
