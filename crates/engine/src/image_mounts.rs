//! Images mounted read-only into a container (CRI image volumes, as
//! containerd's): each image's layers as an overlay on the host side at
//! `<container dir>/image-mounts/<index>/rootfs`, recorded by the image
//! store (so the image is in use), bound read-only at its destination.
//! Mounted with the container's root filesystem, again at a start when
//! gone (after a reboot), unmounted when the container is removed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hako_image::ImageStore;

use crate::error::{Context, Result};
use crate::record::Container;

/// Where image mount `index` of a container lives on the host side.
pub(crate) fn dir_of(container_dir: &Path, index: usize) -> PathBuf {
    container_dir.join("image-mounts").join(index.to_string())
}

/// The host-side source bound into the container for mount `index`.
pub(crate) fn source_of(container_dir: &Path, index: usize) -> PathBuf {
    dir_of(container_dir, index).join("rootfs")
}

fn mounted(p: &Path) -> bool {
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

/// Mount every image mount of `c` that is not mounted yet.
pub(crate) fn ensure(images: &mut ImageStore, container_dir: &Path, c: &Container) -> Result<()> {
    for (i, m) in c.host.image_mounts.iter().enumerate() {
        let dir = dir_of(container_dir, i);
        if mounted(&dir.join("rootfs")) {
            continue;
        }
        // A record left by a reboot names a mount that is gone.
        let _ = images.unmount(&dir.to_string_lossy());
        images.mount(&m.image, &dir).ctx(|| {
            format!(
                "mounting image {} at {} of container {}",
                m.image, m.destination, c.name
            )
        })?;
    }
    Ok(())
}

/// Unmount the image mounts of `c` (those that are there).
pub(crate) fn release(images: &mut ImageStore, container_dir: &Path, c: &Container) -> Result<()> {
    for i in 0..c.host.image_mounts.len() {
        let dir = dir_of(container_dir, i);
        match images.unmount(&dir.to_string_lossy()) {
            Ok(_) | Err(hako_image::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(e).ctx(|| {
                    format!(
                        "unmounting image mount {} of container {}",
                        dir.display(),
                        c.name
                    )
                })
            }
        }
    }
    Ok(())
}
