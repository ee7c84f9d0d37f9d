//! The container's root filesystem: mounts from the spec, device nodes, the
//! pivot into the rootfs, and the masked and read-only paths.
//!
//! Every destination inside the rootfs is resolved with pathrs (openat2
//! RESOLVE_IN_ROOT semantics) and mounted through /proc/self/fd/N of the
//! resolved handle, so a symlink planted in an image can never redirect a mount
//! onto the host.

mod copyup;
mod devices;
pub(crate) mod inroot;
mod mounts;
mod options;
mod paths;
mod pivot;
mod shared_ns;

pub use devices::{create_devices, DEFAULT_DEVICES};
pub use mounts::{mount_all, prepare_root};
pub use options::{parse_options, propagation_flag, MountOptions};
pub use paths::{mask_paths, readonly_paths, remount_root_readonly, set_root_propagation};
pub use pivot::pivot_into;
pub use shared_ns::unmount_below;

use crate::error::{Context, Result};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Component, Path, PathBuf};

/// The path of a resolved handle that mount(2) will follow to exactly that inode.
pub(crate) fn fd_path(fd: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// A destination relative to the rootfs ("/dev/pts" → "dev/pts").
pub(crate) fn inner(dest: &Path) -> PathBuf {
    dest.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Opens the rootfs for path-safe operations inside it.
pub(crate) fn open_root(rootfs: &Path) -> Result<inroot::Root> {
    inroot::Root::open(rootfs).ctx(|| format!("opening rootfs {}", rootfs.display()))
}
