//! Finding the cgroup hierarchies: parsing `/proc/self/mountinfo` and
//! `/proc/self/cgroup`.
//!
//! The mount table is the only reliable source of truth: distributions differ in
//! which v1 controllers share a hierarchy (`cpu,cpuacct` is common, but these
//! machines mount `cpu` and `cpuacct` separately) and in whether a cgroup2
//! hierarchy exists beside them (the "hybrid" layout) or replaces them.

use std::path::{Path, PathBuf};

use super::{CgroupError, FsKind, Layout};

/// One cgroup filesystem mount, as read from mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    pub fs: FsKind,
    /// The mount's root inside the hierarchy (field 4 of mountinfo): not "/" when a
    /// cgroup namespace or a bind mount shows only a subtree.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// v1: the controllers from the super options, including `name=...` named
    /// hierarchies (e.g. `["cpu", "cpuacct"]`, `["name=systemd"]`). v2: empty here;
    /// the caller reads `cgroup.controllers`.
    pub controllers: Vec<String>,
    /// `major:minor` of the superblock: two mounts of the same hierarchy share it.
    pub device: String,
}

/// Parses mountinfo text into the cgroup mounts it lists, keeping only the first
/// mount of each hierarchy (bind mounts of the same hierarchy are duplicates).
pub fn parse_mountinfo(text: &str) -> Result<Vec<CgroupMount>, CgroupError> {
    let mut mounts: Vec<CgroupMount> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| CgroupError::Parse {
            what: "/proc/self/mountinfo".into(),
            detail: format!("line {}: {why}: {line:?}", lineno + 1),
        };
        // The optional fields between field 6 and the "-" separator vary in count,
        // so split at the separator first.
        let (pre, post) = line
            .split_once(" - ")
            .ok_or_else(|| bad("no ' - ' separator"))?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 6 || post.len() < 3 {
            return Err(bad("too few fields"));
        }
        let fs = match post[0] {
            "cgroup" => FsKind::V1,
            "cgroup2" => FsKind::V2,
            _ => continue,
        };
        let device = pre[2].to_string();
        if mounts.iter().any(|m| m.device == device) {
            continue;
        }
        let controllers = match fs {
            FsKind::V1 => post[2]
                .split(',')
                .filter(|o| is_v1_controller_option(o))
                .map(str::to_string)
                .collect(),
            FsKind::V2 => Vec::new(),
        };
        mounts.push(CgroupMount {
            fs,
            root: PathBuf::from(unescape(pre[3])),
            mount_point: PathBuf::from(unescape(pre[4])),
            controllers,
            device,
        });
    }
    Ok(mounts)
}

/// v1 super options mix mount flags with controller names; these are the flags.
fn is_v1_controller_option(opt: &str) -> bool {
    !matches!(
        opt,
        "rw" | "ro" | "none" | "noprefix" | "xattr" | "clone_children" | "cpuset_v2_mode"
    ) && !opt.starts_with("release_agent=")
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcCgroup {
    /// Empty for the cgroup2 line (`0::/path`).
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

pub fn parse_proc_cgroup(text: &str) -> Result<Vec<ProcCgroup>, CgroupError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => {
                    return Err(CgroupError::Parse {
                        what: "/proc/self/cgroup".into(),
                        detail: format!("expected id:controllers:path, got {line:?}"),
                    })
                }
            };
            Ok(ProcCgroup {
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The process's own cgroup in the hierarchy `mount`, as an absolute path inside
/// the hierarchy, or "/" when /proc/self/cgroup does not list it.
pub fn own_path(mount: &CgroupMount, own: &[ProcCgroup]) -> PathBuf {
    let found = own.iter().find(|p| match mount.fs {
        FsKind::V2 => p.controllers.is_empty(),
        FsKind::V1 => {
            !p.controllers.is_empty()
                && p.controllers.iter().all(|c| mount.controllers.contains(c))
                && mount.controllers.iter().all(|c| p.controllers.contains(c))
        }
    });
    found
        .map(|p| p.path.clone())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Maps a path inside the hierarchy to the directory on the host: the mount shows
/// the subtree at `mount.root`, so that prefix is taken off first.
pub fn host_dir(mount: &CgroupMount, cgroup_path: &Path) -> PathBuf {
    let rel = cgroup_path
        .strip_prefix(&mount.root)
        .unwrap_or(cgroup_path)
        .to_path_buf();
    let rel = rel.strip_prefix("/").unwrap_or(&rel);
    if rel.as_os_str().is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rel)
    }
}

/// Classifies the host from its cgroup mounts.
pub fn detect_layout(mounts: &[CgroupMount]) -> Layout {
    let v1 = mounts
        .iter()
        .any(|m| m.fs == FsKind::V1 && !m.controllers.is_empty());
    let v2 = mounts.iter().any(|m| m.fs == FsKind::V2);
    match (v1, v2) {
        (true, true) => Layout::Hybrid,
        (true, false) => Layout::V1,
        (false, true) => Layout::V2,
        (false, false) => Layout::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount table of these machines: every v1 controller on its own mount
    /// (cpu and cpuacct separate) and a cgroup2 hierarchy at `unified`.
    pub const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:7 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:32 /sub /mnt/mem\\040dup rw - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid_table() {
        let mounts = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(
            mounts.len(),
            6,
            "tmpfs skipped, duplicate memory mount skipped"
        );
        assert_eq!(mounts[0].controllers, vec!["cpu"]);
        assert_eq!(mounts[1].controllers, vec!["cpuacct"]);
        assert_eq!(
            mounts[3].mount_point,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(mounts[4].controllers, vec!["name=systemd"]);
        assert_eq!(mounts[5].fs, FsKind::V2);
        assert_eq!(
            mounts[5].mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(detect_layout(&mounts), Layout::Hybrid);
    }

    #[test]
    fn parses_combined_v1_controllers_and_flags() {
        let text = "25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct,release_agent=/x,clone_children\n";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(mounts[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(detect_layout(&mounts), Layout::V1);
    }

    #[test]
    fn parses_pure_v2_and_nonroot_mount() {
        let text = "30 22 0:26 /kubepods/pod1 /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(detect_layout(&mounts), Layout::V2);
        assert_eq!(mounts[0].root, PathBuf::from("/kubepods/pod1"));
        assert_eq!(
            host_dir(&mounts[0], Path::new("/kubepods/pod1/c1")),
            PathBuf::from("/sys/fs/cgroup/c1")
        );
        assert_eq!(
            host_dir(&mounts[0], Path::new("/kubepods/pod1")),
            PathBuf::from("/sys/fs/cgroup")
        );
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/x\\134y"), "/x\\y");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn rejects_garbage() {
        let err = parse_mountinfo("nonsense line\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn own_paths_per_hierarchy() {
        let mounts = parse_mountinfo(HYBRID).unwrap();
        let own =
            parse_proc_cgroup("4:memory:/process_api/abc\n1:cpu:/\n9:name=systemd:/user\n0::/x\n")
                .unwrap();
        assert_eq!(
            own_path(&mounts[3], &own),
            PathBuf::from("/process_api/abc")
        );
        assert_eq!(own_path(&mounts[0], &own), PathBuf::from("/"));
        assert_eq!(own_path(&mounts[4], &own), PathBuf::from("/user"));
        assert_eq!(own_path(&mounts[5], &own), PathBuf::from("/x"));
        // cpuacct is not listed: the root.
        assert_eq!(own_path(&mounts[1], &own), PathBuf::from("/"));
    }
}
