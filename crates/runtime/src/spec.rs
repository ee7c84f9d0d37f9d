//! Loading and validating a bundle's config.json, and generating the default one.
//!
//! Validation happens before anything is created, so a bad config never leaves a
//! half-made container behind; every message names the offending field.

use crate::error::{spec_err, Context, Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};

/// Reads and parses `<bundle>/config.json`, naming the field on a parse error.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
    parse(&data).map_err(|e| Error::Spec(format!("{}: {e}", path.display())))
}

/// Parses config.json bytes; the error names the JSON path of the bad field.
pub fn parse(data: &[u8]) -> std::result::Result<Spec, String> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize::<_, Spec>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// The absolute rootfs path: root.path is relative to the bundle unless absolute.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| spec_err("root", "missing"))?;
    let p = root.path();
    let full = if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    };
    let meta = std::fs::metadata(&full)
        .map_err(|e| spec_err("root.path", format!("{}: {e}", full.display())))?;
    if !meta.is_dir() {
        return Err(spec_err(
            "root.path",
            format!("{} is not a directory", full.display()),
        ));
    }
    full.canonicalize()
        .ctx(|| format!("resolving root.path {}", full.display()))
}

/// Checks what serde cannot: required fields, combinations the kernel rejects,
/// and features this host cannot honour (which must fail, never be ignored).
pub fn validate(spec: &Spec) -> Result<()> {
    // ociVersion is SemVer v2 (runtime-spec config.md); this runtime speaks 1.x.
    let version = spec.version();
    match semver::Version::parse(version) {
        Ok(v) if v.major == 1 => {}
        Ok(_) => {
            return Err(spec_err(
                "ociVersion",
                format!("{version:?}: only runtime-spec 1.x is supported"),
            ))
        }
        Err(_) => {
            return Err(spec_err(
                "ociVersion",
                format!("{version:?} is not a SemVer version"),
            ))
        }
    }
    // `process` is optional at create (runtime-spec config.md); `start` of a
    // container without one fails.
    if let Some(process) = spec.process() {
        validate_process(process)?;
    }
    validate_linux(spec)
}

fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(spec_err("process.args", "must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(spec_err(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    if let Some(profile) = process.apparmor_profile() {
        if !profile.is_empty() {
            return Err(spec_err(
                "process.apparmorProfile",
                "AppArmor is not available on this host",
            ));
        }
    }
    if let Some(label) = process.selinux_label() {
        if !label.is_empty() {
            return Err(spec_err(
                "process.selinuxLabel",
                "SELinux is not available on this host",
            ));
        }
    }
    Ok(())
}

fn validate_linux(spec: &Spec) -> Result<()> {
    // Without a mount namespace of its own the container shares the host's
    // (as runc and crun allow): its mounts are made there under the rootfs,
    // which it is chrooted into, and unmounted by `delete`. What would change
    // mounts the host uses is refused, as by runc.
    let has_mount_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));
    if !has_mount_ns {
        let linux = spec.linux().clone().unwrap_or_default();
        let need = |field: &str| {
            spec_err(
                field,
                "needs a mount namespace of the container's own (linux.namespaces has no mount)",
            )
        };
        if linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(need("linux.maskedPaths"));
        }
        if linux
            .readonly_paths()
            .as_ref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(need("linux.readonlyPaths"));
        }
        if linux.rootfs_propagation().is_some() {
            return Err(need("linux.rootfsPropagation"));
        }
        if spec
            .root()
            .as_ref()
            .is_some_and(|r| r.readonly() == Some(true))
        {
            return Err(need("root.readonly"));
        }
    }
    let linux = match spec.linux() {
        Some(l) => l,
        None => return Ok(()),
    };
    if let Some(label) = linux.mount_label() {
        if !label.is_empty() {
            return Err(spec_err(
                "linux.mountLabel",
                "SELinux is not available on this host",
            ));
        }
    }
    if linux.intel_rdt().is_some() {
        return Err(spec_err("linux.intelRdt", "Intel RDT is not supported"));
    }
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if seen.contains(&ns.typ()) {
            return Err(spec_err(
                &format!("linux.namespaces[{i}]"),
                format!("duplicate namespace type {:?}", ns.typ()),
            ));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(spec_err(
                    &format!("linux.namespaces[{i}].path"),
                    format!("{} is not absolute", p.display()),
                ));
            }
            if !p.exists() {
                return Err(spec_err(
                    &format!("linux.namespaces[{i}].path"),
                    format!("{} does not exist", p.display()),
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_user && !has_maps {
        return Err(spec_err(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if has_maps && !has(LinuxNamespaceType::User) {
        return Err(spec_err(
            "linux.uidMappings",
            "mappings are set but there is no user namespace",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(spec_err(
            "hostname",
            "setting the hostname needs a new uts namespace",
        ));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, &has)?;
        }
    }
    if linux.time_offsets().is_some() && !has(LinuxNamespaceType::Time) {
        return Err(spec_err(
            "linux.timeOffsets",
            "time offsets need a new time namespace",
        ));
    }
    if let Some(rp) = linux.rootfs_propagation() {
        if crate::rootfs::propagation_flag(rp).is_none() {
            return Err(spec_err(
                "linux.rootfsPropagation",
                format!("unknown propagation {rp:?}"),
            ));
        }
    }
    for (i, m) in spec.mounts().clone().unwrap_or_default().iter().enumerate() {
        if !m.destination().is_absolute() {
            return Err(spec_err(
                &format!("mounts[{i}].destination"),
                format!("{} is not an absolute path", m.destination().display()),
            ));
        }
    }
    Ok(())
}

/// Only namespaced sysctls may be set, and only when their namespace is new
/// (a host-wide sysctl set from a container would leak out of it).
fn check_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    let field = format!("linux.sysctl[{key:?}]");
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        if !has(LinuxNamespaceType::Ipc) {
            return Err(spec_err(&field, "needs a new ipc namespace"));
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if !has(LinuxNamespaceType::Network) {
            return Err(spec_err(&field, "needs a new network namespace"));
        }
        return Ok(());
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        if !has(LinuxNamespaceType::Uts) {
            return Err(spec_err(&field, "needs a new uts namespace"));
        }
        return Ok(());
    }
    Err(spec_err(
        &field,
        "is not namespaced and cannot be set in a container",
    ))
}

/// The default config.json `hako-runtime spec` writes: a busybox-friendly
/// container like runc's, with `sh` as the process.
pub fn default_spec(rootless: bool) -> Result<Spec> {
    let mut spec = if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        Spec::rootless(uid, gid)
    } else {
        Spec::default()
    };
    spec.set_hostname(Some("hako".to_string()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
        p.set_args(Some(vec!["sh".to_string()]));
    }
    Ok(spec)
}

/// True when the spec creates (not joins) a namespace of this type.
pub fn creates_namespace(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == t && n.path().is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_the_field() {
        let bad = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":"x","gid":0}}}"#;
        let e = parse(bad).unwrap_err();
        assert!(e.starts_with("process.user.uid:"), "{e}");
    }

    #[test]
    fn unknown_namespace_type_is_named() {
        let bad =
            br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#;
        let e = parse(bad).unwrap_err();
        assert!(e.contains("linux.namespaces[1]"), "{e}");
    }

    #[test]
    fn default_spec_validates() {
        let s = default_spec(false).unwrap();
        validate(&s).unwrap();
    }

    #[test]
    fn non_namespaced_sysctl_is_refused() {
        let has = |_t: LinuxNamespaceType| true;
        assert!(check_sysctl("vm.swappiness", &has).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", &has).is_ok());
        let none = |_t: LinuxNamespaceType| false;
        assert!(check_sysctl("kernel.shmmax", &none).is_err());
    }
}
