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
/// to use: the lifecycle appends these to `linux.resources.devices` (`spec`).
/// A node the spec's own rules already decide on (an allow rule matching it,
/// or any rule naming its type, major and minor) gets none: appending "rwm"
/// would widen the access the spec grants (`--device /dev/x:/dev/x:r`).
pub fn device_allow_rules(
    devices: &[LinuxDevice],
    spec: &[LinuxDeviceCgroup],
) -> Vec<LinuxDeviceCgroup> {
    devices
        .iter()
        .map(|d| {
            let typ = match d.typ() {
                LinuxDeviceType::B => LinuxDeviceType::B,
                // u (unbuffered char) and p (fifo) are char-like for cgroups.
                _ => LinuxDeviceType::C,
            };
            (typ, d.major(), d.minor())
        })
        .filter(|&(typ, major, minor)| !spec.iter().any(|r| decides(r, typ, major, minor)))
        .map(|(typ, major, minor)| rule(typ, Some(major), Some(minor), "rwm"))
        .collect()
}

/// Whether the spec's rule `r` decides the access to device `typ major:minor`.
fn decides(r: &LinuxDeviceCgroup, typ: LinuxDeviceType, major: i64, minor: i64) -> bool {
    let rtyp = r.typ().unwrap_or(LinuxDeviceType::A);
    let typ_matches = rtyp == LinuxDeviceType::A
        || rtyp == typ
        || (typ == LinuxDeviceType::C && rtyp == LinuxDeviceType::U);
    if !typ_matches {
        return false;
    }
    let named = rtyp != LinuxDeviceType::A && r.major() == Some(major) && r.minor() == Some(minor);
    let wild = |v: Option<i64>, want: i64| v.is_none_or(|v| v < 0 || v == want);
    named || (r.allow() && wild(r.major(), major) && wild(r.minor(), minor))
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

    #[test]
    fn device_nodes_keep_the_access_the_spec_gives() {
        let node = |major, minor| {
            oci_spec::runtime::LinuxDeviceBuilder::default()
                .path("/dev/x")
                .typ(LinuxDeviceType::C)
                .major(major)
                .minor(minor)
                .build()
                .unwrap()
        };
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let read_only = rule(LinuxDeviceType::C, Some(10), Some(229), "r");
        let spec = [deny_all, read_only];
        // 10:229 is the spec's to decide ("r"); 10:200 is only created: allowed.
        let added = device_allow_rules(&[node(10, 229), node(10, 200)], &spec);
        let shown: Vec<String> = added.iter().map(|r| v1_rule(r).unwrap()).collect();
        assert_eq!(shown, ["c 10:200 rwm"]);
    }
}
