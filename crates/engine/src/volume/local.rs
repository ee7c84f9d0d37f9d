//! Docker's `local` driver options: `type` (filesystem type), `device`
//! (what to mount) and `o` (mount options, flags such as `ro`/`bind` taken
//! out, the rest passed to the filesystem), as `mount -t TYPE -o O DEVICE`.
//! `--opt type=tmpfs --opt device=tmpfs --opt o=size=64m` makes a tmpfs
//! volume; `--opt type=none --opt o=bind --opt device=/srv` binds a host path.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Context, Error, Result};
use crate::volume::Volume;

/// Refuse options the local driver does not know.
pub(crate) fn validate(name: &str, options: &BTreeMap<String, String>) -> Result<()> {
    for k in options.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(Error::Invalid(format!(
                "creating volume {name}: invalid option {k:?}: the local driver takes type, device and o"
            )));
        }
    }
    if options.contains_key("o") && !options.contains_key("device") {
        return Err(Error::Invalid(format!(
            "creating volume {name}: option o needs a device to mount"
        )));
    }
    Ok(())
}

/// Split `o` into mount flags and the filesystem's own data string.
fn flags_and_data(o: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "suid" | "dev" | "exec" | "async" | "defaults" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Whether `path` is a mount point (per this mount namespace's mountinfo).
fn is_mount_point(path: &Path) -> bool {
    let p = path.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == p)
}

/// Mount a volume with driver options on its `_data` unless it is already.
pub(crate) fn ensure_mounted(v: &Volume, data_dir: &Path) -> Result<()> {
    let Some(device) = v.options.get("device") else {
        return Ok(());
    };
    if is_mount_point(data_dir) {
        return Ok(());
    }
    fs::create_dir_all(data_dir).ctx(|| format!("mounting volume {}", v.name))?;
    let (flags, data) = flags_and_data(v.options.get("o").map(String::as_str).unwrap_or(""));
    let fstype = v.options.get("type").map(String::as_str);
    let fstype = fstype.filter(|t| !t.is_empty() && *t != "none");
    nix::mount::mount(
        Some(device.as_str()),
        data_dir,
        fstype,
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .ctx(|| {
        format!(
            "mounting volume {}: {} on {} (type {}, options {data:?})",
            v.name,
            device,
            data_dir.display(),
            fstype.unwrap_or("none")
        )
    })?;
    Ok(())
}

/// Unmount a volume's `_data` if something is mounted there; removal must
/// never delete through a mount into the device's (or host path's) files.
pub(crate) fn unmount(name: &str, data_dir: &Path) -> Result<()> {
    while is_mount_point(data_dir) {
        if let Err(e) = nix::mount::umount(data_dir) {
            // Busy (another namespace holds it): detach so it goes when free.
            nix::mount::umount2(data_dir, MntFlags::MNT_DETACH).ctx(|| {
                format!(
                    "removing volume {name}: unmounting {} ({e})",
                    data_dir.display()
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = flags_and_data("size=64m,ro,noexec,uid=1000");
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC);
        assert_eq!(d, "size=64m,uid=1000");
        let (f, d) = flags_and_data("bind");
        assert_eq!((f, d.as_str()), (MsFlags::MS_BIND, ""));
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        validate("v1", &opts(&[("type", "tmpfs"), ("device", "tmpfs")])).unwrap();
        assert!(validate("v1", &opts(&[("size", "1g")])).is_err());
        assert!(validate("v1", &opts(&[("o", "size=1m")])).is_err());
    }
}
