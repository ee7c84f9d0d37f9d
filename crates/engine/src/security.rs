//! Docker's default confinement: the capability set, masked and read-only
//! /proc and /sys paths, the device cgroup allow-list, and what
//! `--privileged`, `--cap-add` and `--cap-drop` change in them. (The default
//! seccomp profile is a later slice.)

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use crate::error::{Error, Result};

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability Linux knows (up to 6.x), in the order of their numbers.
pub const ALL_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Paths hidden from the container (docker's masked paths).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container may read but not write.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// "cap_net_admin", "CAP_NET_ADMIN", "net_admin" → "NET_ADMIN".
fn normalize(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).to_string()
}

/// A capability by any of its spellings ("CAP_SYS_ADMIN", "sys_admin").
pub fn parse_capability(name: &str) -> Result<Capability> {
    let n = normalize(name);
    Capability::from_str(&n).map_err(|_| Error::Invalid(format!("unknown capability {n:?}")))
}

/// The capabilities `--privileged` and `--cap-add ALL` give: every one the
/// engine itself may pass on (its bounding set), as docker asks the host,
/// since a runtime cannot grant what the kernel or its parent lacks.
pub fn all_caps() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The capability set of a container: the default (or all, privileged),
/// plus `add`, minus `drop`, with "ALL" meaning every capability.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<HashSet<Capability>> {
    let mut names: Vec<String> = if privileged {
        all_caps()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    let add: Vec<String> = add.iter().map(|s| normalize(s)).collect();
    let drop: Vec<String> = drop.iter().map(|s| normalize(s)).collect();
    if drop.iter().any(|d| d == "ALL") {
        names.clear();
    }
    for a in &add {
        if a == "ALL" {
            names = all_caps();
        } else if !names.contains(a) {
            names.push(a.clone());
        }
    }
    names.retain(|n| !drop.contains(n) || add.contains(n));
    names
        .iter()
        .map(|n| {
            Capability::from_str(n).map_err(|_| {
                Error::Invalid(format!(
                    "unknown capability {n:?} (in --cap-add or --cap-drop)"
                ))
            })
        })
        .collect()
}

/// The process capability sets for `caps` run as `uid`, as docker sets
/// them: root gets the set as bounding, effective and permitted; any other
/// user only the bounding set (what execve gives a non-root program).
/// Inheritable and ambient stay empty in both cases: the runtime-spec
/// defaults put caps there, which fails capset when the bounding set lacks
/// them and hands non-root processes ambient capabilities.
pub fn process_capabilities(
    caps: &HashSet<Capability>,
    uid: u32,
) -> std::result::Result<LinuxCapabilities, oci_spec::OciSpecError> {
    let none = HashSet::new();
    let granted = if uid == 0 { caps } else { &none };
    LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(granted.clone())
        .permitted(granted.clone())
        .inheritable(none.clone())
        .ambient(none)
        .build()
}

/// Docker's device cgroup rules: deny everything, then allow mknod of any
/// device and use of the standard character devices; privileged allows all.
pub fn device_rules(privileged: bool) -> Vec<LinuxDeviceCgroup> {
    let rule = |allow: bool,
                typ: LinuxDeviceType,
                major: Option<i64>,
                minor: Option<i64>,
                access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access.to_string());
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().expect("device rule builds")
    };
    if privileged {
        return vec![rule(true, LinuxDeviceType::A, None, None, "rwm")];
    }
    use LinuxDeviceType::{B, C};
    vec![
        rule(false, LinuxDeviceType::A, None, None, "rwm"),
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
        rule(true, C, Some(1), Some(3), "rwm"),    // null
        rule(true, C, Some(1), Some(8), "rwm"),    // random
        rule(true, C, Some(1), Some(7), "rwm"),    // full
        rule(true, C, Some(5), Some(0), "rwm"),    // tty
        rule(true, C, Some(1), Some(5), "rwm"),    // zero
        rule(true, C, Some(1), Some(9), "rwm"),    // urandom
        rule(true, C, Some(136), None, "rwm"),     // pts/*
        rule(true, C, Some(5), Some(2), "rwm"),    // ptmx
        rule(true, C, Some(10), Some(200), "rwm"), // net/tun
    ]
}

/// Every device node of the host's /dev, for `--privileged` (docker gives
/// a privileged container the host's devices). Directories the runtime
/// mounts itself (pts, shm, mqueue) and the console's aliases are skipped.
pub fn host_devices() -> Vec<oci_spec::runtime::LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                let name = e.file_name();
                if !matches!(name.to_str(), Some("pts" | "shm" | "mqueue" | "fd")) {
                    stack.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if path == std::path::Path::new("/dev/console")
                || path == std::path::Path::new("/dev/ptmx")
            {
                continue;
            }
            let rdev = meta.rdev();
            if let Ok(d) = oci_spec::runtime::LinuxDeviceBuilder::default()
                .path(&path)
                .typ(typ)
                .major(nix::sys::stat::major(rdev) as i64)
                .minor(nix::sys::stat::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()
            {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// The spec device and cgroup rule of a `--device` mapping: the host path
/// (symlinks followed) must be a character or block device.
pub fn mapped_device(
    m: &crate::record::DeviceMapping,
) -> Result<(oci_spec::runtime::LinuxDevice, LinuxDeviceCgroup)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let bad = |why: String| Error::Invalid(format!("--device {}: {why}", m.path_on_host));
    let meta = std::fs::metadata(&m.path_on_host).map_err(|e| {
        bad(match e.kind() {
            std::io::ErrorKind::NotFound => "no such device on the host".into(),
            _ => format!("reading it on the host: {e}"),
        })
    })?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(bad("not a character or block device".into()));
    };
    let (major, minor) = (
        nix::sys::stat::major(meta.rdev()) as i64,
        nix::sys::stat::minor(meta.rdev()) as i64,
    );
    let device = oci_spec::runtime::LinuxDeviceBuilder::default()
        .path(&m.path_in_container)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(meta.mode() & 0o7777)
        .uid(0u32)
        .gid(0u32)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let rule = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .major(major)
        .minor(minor)
        .access(m.cgroup_permissions.clone())
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok((device, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_drop() {
        let caps = capabilities(false, &["net_admin".into()], &["CAP_CHOWN".into()]).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Chown));
        assert!(caps.contains(&Capability::Kill));
        let none = capabilities(false, &[], &["ALL".into()]).unwrap();
        assert!(none.is_empty());
        let all = capabilities(true, &[], &[]).unwrap();
        assert_eq!(all.len(), all_caps().len());
        assert!(all.contains(&Capability::Chown));
        assert!(capabilities(false, &["FLY".into()], &[]).is_err());
    }
}
