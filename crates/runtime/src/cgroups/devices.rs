//! Device access rules (`linux.resources.devices`): the v1 devices controller,
//! or an eBPF program on v2 (see `bpf.rs`).

use std::path::Path;

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use super::{fsio, CgroupError, Result};

fn rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access.to_string());
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().expect("all fields are optional")
}

/// The devices every container may use whatever its spec says, as the
/// runtime-spec's default devices require and runc allows: null, zero, full,
/// random, urandom, tty, ptmx and the pty slaves, plus mknod of any device
/// (creating a node grants no access to it).
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(136), None, "rwm"),
    ]
}

/// Allow rules for the spec's `linux.devices`, which the container must be able
/// to use: the lifecycle appends these to `linux.resources.devices`.
pub fn device_allow_rules(devices: &[LinuxDevice]) -> Vec<LinuxDeviceCgroup> {
    devices
        .iter()
        .map(|d| {
            let typ = match d.typ() {
                LinuxDeviceType::B => LinuxDeviceType::B,
                // u (unbuffered char) and p (fifo) are char-like for cgroups.
                _ => LinuxDeviceType::C,
            };
            rule(typ, Some(d.major()), Some(d.minor()), "rwm")
        })
        .collect()
}

/// One rule in the v1 file syntax: "c 1:3 rwm", "a *:* rwm". A missing or
/// negative major/minor is the wildcard.
pub fn v1_rule(r: &LinuxDeviceCgroup) -> Result<String> {
    let typ = r.typ().unwrap_or(LinuxDeviceType::A);
    let typ = match typ {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => {
            return Err(CgroupError::InvalidValue {
                field: "devices".into(),
                reason: "type \"p\" (fifo) is not a device the cgroup controls".into(),
            })
        }
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".into(),
    };
    let access = access(r)?;
    Ok(format!(
        "{typ} {}:{} {access}",
        num(r.major()),
        num(r.minor())
    ))
}

/// The access string, validated: some of r, w, m; empty means all.
pub fn access(r: &LinuxDeviceCgroup) -> Result<String> {
    let a = r.access().clone().unwrap_or_default();
    if a.chars().any(|c| !matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::InvalidValue {
            field: "devices".into(),
            reason: format!("access {a:?} may contain only r, w and m"),
        });
    }
    Ok(if a.is_empty() { "rwm".into() } else { a })
}

/// v1: the rules in order, each to devices.allow or devices.deny; the kernel
/// applies them in sequence just as the spec orders them.
pub fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    for r in rules {
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fsio::write(dir, file, &v1_rule(r)?)?;
    }
    Ok(())
}

/// v2 has no devices controller: the rules become a BPF_PROG_TYPE_CGROUP_DEVICE
/// program attached to the cgroup (see `bpf.rs`).
/// A program is attached even for allow-only rules: on an update it replaces
/// the previous, possibly stricter, program.
pub fn apply_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    super::bpf::apply(dir, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_rule_syntax() {
        let all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(v1_rule(&all).unwrap(), "a *:* rwm");
        let rules = default_device_rules();
        assert_eq!(v1_rule(&rules[0]).unwrap(), "c *:* m");
        assert_eq!(v1_rule(&rules[2]).unwrap(), "c 1:3 rwm");
        assert_eq!(v1_rule(&rules[9]).unwrap(), "c 136:* rwm");
        let bad = LinuxDeviceCgroupBuilder::default()
            .access("rx")
            .build()
            .unwrap();
        assert!(v1_rule(&bad).unwrap_err().to_string().contains("\"rx\""));
    }
}
