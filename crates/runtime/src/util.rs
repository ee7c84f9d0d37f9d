//! Small helpers shared by the lifecycle modules.

use crate::error::{Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `data` to `path` atomically: a temp file in the same directory renamed
/// over the target, so readers never see a torn file. No fsync: these files
/// (state, pid files) describe processes that do not survive a reboot either,
/// and on a disk-backed --root an fsync costs more than the rest of a start.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .ctx(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// RFC 3339 timestamp in UTC with nanoseconds, as runc prints in `state`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (proleptic Gregorian), days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The start time of a process (field 22 of /proc/PID/stat, in clock ticks since
/// boot). Stored with the pid so a recycled pid is never mistaken for the container.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The one-letter process state from /proc/PID/stat ('Z' for a zombie), if it exists.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.chars().next()
}

/// True when `pid` is alive (not a zombie) and still the process that started at `start`.
pub fn process_alive(pid: i32, start: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_state(pid) {
        None | Some('Z') | Some('X') => false,
        Some(_) => start.is_none() || proc_start_time(pid) == start,
    }
}

/// fork(), but with `cgroup` (an fd of a cgroup2 directory) the child starts in
/// that cgroup: clone3(CLONE_INTO_CGROUP), no migration and so no wait for the
/// kernel's global threadgroup lock. Returns whether the child was placed
/// (false: plain fork, the kernel predates clone3 or refused the flag).
///
/// # Safety
/// As fork(): the caller is single-threaded, and the child only runs code that
/// is safe after fork and leaves through _exit or execve. The child skips
/// glibc's fork bookkeeping (atfork handlers, the cached tid in the thread
/// block); nothing here registers atfork handlers, and glibc's raise() asks
/// the kernel for the tid.
pub unsafe fn fork_into_cgroup(
    cgroup: Option<std::os::fd::BorrowedFd>,
) -> nix::Result<(nix::unistd::ForkResult, bool)> {
    use std::os::fd::AsRawFd;
    if let Some(fd) = cgroup {
        // struct clone_args (linux/sched.h), up to the `cgroup` field.
        #[repr(C)]
        #[derive(Default)]
        struct CloneArgs {
            flags: u64,
            pidfd: u64,
            child_tid: u64,
            parent_tid: u64,
            exit_signal: u64,
            stack: u64,
            stack_size: u64,
            tls: u64,
            set_tid: u64,
            set_tid_size: u64,
            cgroup: u64,
        }
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: fd.as_raw_fd() as u64,
            ..Default::default()
        };
        // SAFETY: args is a valid clone_args of the size passed; with no stack
        // given the child continues on a copy of this one, as after fork.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match ret {
            0 => return Ok((nix::unistd::ForkResult::Child, true)),
            p if p > 0 => {
                let child = nix::unistd::Pid::from_raw(p as i32);
                return Ok((nix::unistd::ForkResult::Parent { child }, true));
            }
            _ => match nix::Error::last() {
                // No clone3, or no CLONE_INTO_CGROUP: fork, the caller moves the child.
                nix::Error::ENOSYS | nix::Error::E2BIG | nix::Error::EINVAL => {}
                e => return Err(e),
            },
        }
    }
    // SAFETY: the caller's contract is fork's.
    unsafe { nix::unistd::fork() }.map(|r| (r, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 5);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn own_process_is_alive_and_has_start_time() {
        let pid = std::process::id() as i32;
        let st = proc_start_time(pid);
        assert!(st.is_some());
        assert!(process_alive(pid, st));
        assert!(!process_alive(pid, st.map(|s| s + 1)));
    }
}
