//! A container without a mount namespace of its own shares the host's: its
//! mounts are made there, under the rootfs, and must be taken down with it.

use std::path::{Path, PathBuf};

/// Lazily unmounts every mount below `rootfs` (deepest first), leaving a
/// mount on `rootfs` itself, which is the caller's (an engine's overlay).
/// Best effort: a mount already gone is not an error.
pub fn unmount_below(rootfs: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(crate::cgroups::mountinfo::unescape(p)))
        .filter(|p| p != rootfs && p.starts_with(rootfs))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}
