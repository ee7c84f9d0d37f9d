//! `--ipc shareable` as docker: the container's /dev/shm is a tmpfs mounted
//! on the host side (`<container dir>/shm`) and bound into it, so a
//! container joining its IPC namespace (`--ipc container:NAME`) binds the
//! very same one (a mount inside another container's mount namespace
//! cannot be bound from outside it). Mounted when the container starts,
//! kept across restarts, unmounted when it is removed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::fsutil::write_atomic;
use crate::record::Container;

/// docker's default /dev/shm size.
const DEFAULT_SIZE: i64 = 64 << 20;

/// The host-side /dev/shm of a shareable container.
pub(crate) fn dir_of(container_dir: &Path) -> PathBuf {
    container_dir.join("shm")
}

/// Whether something is mounted at `p` (another device than its parent's).
fn mounted(p: &Path) -> bool {
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

/// Unmount a container's host-side /dev/shm, if it has one.
pub(crate) fn release(container_dir: &Path) -> Result<()> {
    let p = dir_of(container_dir);
    if mounted(&p) {
        nix::mount::umount2(&p, MntFlags::MNT_DETACH)
            .ctx(|| format!("unmounting {}", p.display()))?;
    }
    Ok(())
}

/// Point the bundle's /dev/shm mount at `source` (a host directory).
pub(crate) fn bind_into(spec: &mut oci_spec::runtime::Spec, source: &Path) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut() {
        if m.destination() == Path::new("/dev/shm") {
            *m = crate::spec::bind("/dev/shm", source, false);
        }
    }
    spec.set_mounts(Some(mounts));
}

impl Engine {
    /// Before a shareable container starts: its host-side /dev/shm mounted
    /// (once) and bound into its bundle.
    pub(crate) fn prepare_shm(&self, c: &Container) -> Result<()> {
        if c.host.ipc_mode != "shareable" {
            return Ok(());
        }
        let dir = self.container_dir(&c.id);
        let shm = dir_of(&dir);
        std::fs::create_dir_all(&shm).ctx(|| format!("creating {}", shm.display()))?;
        if !mounted(&shm) {
            let size = if c.host.shm_size > 0 {
                c.host.shm_size
            } else {
                DEFAULT_SIZE
            };
            nix::mount::mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(format!("mode=1777,size={size}").as_str()),
            )
            .ctx(|| {
                format!(
                    "mounting /dev/shm of container {} at {}",
                    c.name,
                    shm.display()
                )
            })?;
        }
        let config = dir.join("config.json");
        let mut spec = oci_spec::runtime::Spec::load(&config).map_err(|e| {
            Error::Invalid(format!("reading the bundle of container {}: {e}", c.name))
        })?;
        bind_into(&mut spec, &shm);
        let json = serde_json::to_vec_pretty(&spec).expect("runtime spec serialises");
        write_atomic(&config, &json)?;
        Ok(())
    }
}
