//! Making the rootfs the container's "/".

use crate::error::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

/// pivot_root into `rootfs` and detach the old root, so no host path stays
/// reachable. With `no_pivot` (for ramdisk roots where pivot_root is refused)
/// the rootfs is moved over "/" and chrooted into instead.
pub fn pivot_into(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .ctx(|| "moving rootfs onto /")?;
        chroot(".").ctx(|| "chroot into rootfs")?;
        return chdir("/").ctx(|| "chdir /");
    }
    let old = File::open("/").ctx(|| "opening the old root")?;
    let new = File::open(rootfs).ctx(|| format!("opening rootfs {}", rootfs.display()))?;
    fchdir(new.as_fd()).ctx(|| "chdir into rootfs")?;
    // pivot_root(".", ".") stacks the old root on top of the new one, so no
    // directory for it is needed inside the image.
    pivot_root(".", ".").ctx(|| format!("pivot_root into {}", rootfs.display()))?;
    fchdir(old.as_fd()).ctx(|| "chdir into the old root")?;
    // Keep the unmount below from propagating back to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "making the old root a slave")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root")?;
    chdir("/").ctx(|| "chdir /")
}
