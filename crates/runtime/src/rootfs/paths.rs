//! Masked and read-only paths, the read-only root, and the root's propagation:
//! applied after pivot_root, so every path is already confined to the container.

use super::mounts::{locked_flags, remount_bind};
use crate::error::{Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// Hides each path: a read-only empty tmpfs over a directory, /dev/null over a
/// file. Paths the container does not have are skipped.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::error::Error::io(format!("masking {p}"), e)),
        };
        let r = if meta.is_dir() {
            mount(
                Some("tmpfs"),
                p.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k"),
            )
        } else {
            mount(
                Some("/dev/null"),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        match r {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(crate::error::Error::io(format!("masking {p}"), e)),
        }
    }
    Ok(())
}

/// Makes each path read-only with a bind mount onto itself.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        match mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(crate::error::Error::io(format!("making {p} read-only"), e)),
        }
        remount_bind(p, MsFlags::MS_RDONLY | MsFlags::MS_REC)
            .ctx(|| format!("making {p} read-only"))?;
    }
    Ok(())
}

pub fn remount_root_readonly() -> Result<()> {
    let flags = locked_flags("/");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | flags,
        None::<&str>,
    )
    .ctx(|| "remounting the root read-only")
}

pub fn set_root_propagation(flag: MsFlags) -> Result<()> {
    mount(
        None::<&str>,
        Path::new("/"),
        None::<&str>,
        flag,
        None::<&str>,
    )
    .ctx(|| format!("setting root propagation {flag:?}"))
}
