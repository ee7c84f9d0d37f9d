//! Whether the kernel's OOM killer struck in the container's memory cgroup:
//! the `oom_kill` counter of `memory.oom_control` (cgroup v1) or
//! `memory.events` (v2), read after the container's init exited and before
//! the runtime deletes the cgroup. The cgroup is new for every run, so any
//! kill counted there happened in this run.

use std::fs;
use std::path::{Path, PathBuf};

/// The memory cgroup directory of a container and its counter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCgroup {
    pub counter: PathBuf,
}

impl MemoryCgroup {
    /// Find the hierarchy holding the memory controller (a v1 hierarchy if
    /// one is bound to it, else the v2 one if it offers it) for the
    /// absolute `cgroups_path`, as runtimes resolve it.
    pub fn find(cgroups_path: &str) -> Option<MemoryCgroup> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        find_in(&mountinfo, cgroups_path, |mp| {
            fs::read_to_string(mp.join("cgroup.controllers")).unwrap_or_default()
        })
    }

    /// OOM kills counted so far (0 when the file or the line is missing).
    pub fn kills(&self) -> u64 {
        let text = fs::read_to_string(&self.counter).unwrap_or_default();
        oom_kill_count(&text)
    }
}

fn find_in(
    mountinfo: &str,
    cgroups_path: &str,
    v2_controllers: impl Fn(&Path) -> String,
) -> Option<MemoryCgroup> {
    let rel = cgroups_path.trim_start_matches('/');
    let mut v2 = None;
    for line in mountinfo.lines() {
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mp) = left.split(' ').nth(4).map(unescape) else {
            continue;
        };
        let mut r = right.split(' ');
        let (fstype, superopts) = (r.next().unwrap_or(""), r.nth(1).unwrap_or(""));
        let mp = PathBuf::from(mp);
        if fstype == "cgroup" && superopts.split(',').any(|o| o == "memory") {
            return Some(MemoryCgroup {
                counter: mp.join(rel).join("memory.oom_control"),
            });
        }
        if fstype == "cgroup2"
            && v2.is_none()
            && v2_controllers(&mp)
                .split_whitespace()
                .any(|c| c == "memory")
        {
            v2 = Some(MemoryCgroup {
                counter: mp.join(rel).join("memory.events"),
            });
        }
    }
    v2
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `oom_kill N` line of memory.oom_control / memory.events.
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw,nsdelegate
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw shared:10 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn finds_v1_memory_on_a_hybrid_host() {
        let m = find_in(HYBRID, "/hako/abc", |_| "hugetlb".into()).unwrap();
        assert_eq!(
            m.counter,
            PathBuf::from("/sys/fs/cgroup/memory/hako/abc/memory.oom_control")
        );
    }

    #[test]
    fn finds_v2_memory_on_a_unified_host() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let m = find_in(mi, "/hako/abc", |_| "cpuset cpu io memory pids".into()).unwrap();
        assert_eq!(
            m.counter,
            PathBuf::from("/sys/fs/cgroup/hako/abc/memory.events")
        );
        assert!(find_in(mi, "/hako/abc", |_| "cpu".into()).is_none());
    }

    #[test]
    fn reads_the_counter() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
            1
        );
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), 0);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
