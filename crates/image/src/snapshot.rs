//! Snapshots: each layer unpacked once into its own directory, keyed by its
//! chain id (like containerd's overlayfs snapshotter), and container root
//! filesystems as overlay mounts over a chain of them.
//!
//! Layout: `<root>/snapshots/<chain-id-hex>/fs` holds the layer in overlay
//! upper format, `<root>/snapshots/<chain-id-hex>/info.json` what it holds.
//! A snapshot is unpacked under a temporary name and renamed into place only
//! once both its digests verified, so a half-unpacked layer is never used.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::digest::{self, Algorithm, Digest};
use crate::error::{show, Error, IoContext, Result};
use crate::layer::{self, ApplyLimits};
use crate::manifest::Compression;

/// The chain ids of a stack of layers (OCI image-spec config.md):
/// ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub chain_id: Digest,
    pub diff_id: Digest,
    /// Uncompressed size of the layer.
    pub size: u64,
}

/// A layer to unpack into a snapshot.
pub struct LayerSource<'a> {
    /// Names the layer in errors and progress (usually its blob digest).
    pub name: &'a str,
    pub compression: Compression,
    /// Expected blob digest and size (the manifest descriptor), if known.
    pub expected_blob: Option<(&'a Digest, Option<u64>)>,
    /// Expected diff id (the config's rootfs.diff_ids entry).
    pub expected_diff_id: &'a Digest,
}

/// A mounted container root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The container directory holding `upper/`, `work/` and `rootfs/`.
    pub dir: PathBuf,
    /// The merged view: the container's root filesystem.
    pub rootfs: PathBuf,
}

/// A layer being unpacked, not yet a snapshot.
pub struct Staged {
    tmp: tempfile::TempDir,
    fs_dir: PathBuf,
}

impl Staged {
    /// The directory to unpack into.
    pub fn fs(&self) -> &Path {
        &self.fs_dir
    }
}

/// The overlay snapshotter.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    dir: PathBuf,
}

const TMP_PREFIX: &str = "tmp-";

impl Snapshotter {
    /// Open (creating if needed) `<root>/snapshots`.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("snapshots");
        fs::create_dir_all(&dir).ctx(|| format!("creating snapshot directory {}", show(&dir)))?;
        Ok(Snapshotter { dir })
    }

    fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    /// The unpacked layer directory of a snapshot (an overlay lower dir).
    pub fn fs_path(&self, chain_id: &Digest) -> PathBuf {
        self.snapshot_dir(chain_id).join("fs")
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.snapshot_dir(chain_id).join("info.json").is_file()
    }

    /// What a snapshot holds.
    pub fn info(&self, chain_id: &Digest) -> Result<SnapshotInfo> {
        let path = self.snapshot_dir(chain_id).join("info.json");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::not_found(format!("snapshot {chain_id}")))
            }
            Err(e) => {
                return Err(Error::io(
                    format!("reading snapshot info {}", show(&path)),
                    e,
                ))
            }
        };
        serde_json::from_slice(&data)
            .map_err(|e| Error::json(format!("reading snapshot info {}", show(&path)), e))
    }

    /// Unpack a layer into the snapshot `chain_id`, verifying its blob digest
    /// and diff id; nothing is left behind unless both match. An existing
    /// snapshot is kept (another process may have unpacked it meanwhile).
    pub fn create(
        &self,
        chain_id: &Digest,
        source: &LayerSource<'_>,
        reader: impl Read,
    ) -> Result<SnapshotInfo> {
        let staged = self.stage()?;
        let limits = ApplyLimits::for_target(staged.fs())?;
        let applied = match source.expected_blob {
            Some((d, _)) => layer::apply_expecting(
                staged.fs(),
                source.name,
                reader,
                source.compression,
                d,
                &limits,
            )?,
            None => layer::apply(
                staged.fs(),
                source.name,
                reader,
                source.compression,
                Algorithm::Sha256,
                &limits,
            )?,
        };
        if let Some((digest, size)) = source.expected_blob {
            digest::verify(
                &format!("layer {}", source.name),
                digest,
                &applied.compressed_digest,
                size,
                applied.compressed_size,
            )?;
        }
        digest::verify(
            &format!("layer {} (uncompressed, the config's diff id)", source.name),
            source.expected_diff_id,
            &applied.diff_id,
            None,
            0,
        )?;
        let info = SnapshotInfo {
            chain_id: chain_id.clone(),
            diff_id: applied.diff_id,
            size: applied.size,
        };
        self.publish(staged, &info)?;
        Ok(info)
    }

    /// A temporary directory to unpack a layer into (its `fs()`), on the
    /// snapshots' filesystem; removed on drop unless published.
    pub fn stage(&self) -> Result<Staged> {
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(&self.dir)
            .ctx(|| format!("creating a temporary snapshot in {}", show(&self.dir)))?;
        let fs_dir = tmp.path().join("fs");
        fs::create_dir(&fs_dir).ctx(|| format!("creating {}", show(&fs_dir)))?;
        Ok(Staged { tmp, fs_dir })
    }

    /// Make a staged, verified tree the snapshot `info.chain_id`.
    pub fn publish(&self, staged: Staged, info: &SnapshotInfo) -> Result<()> {
        let chain_id = &info.chain_id;
        let info_json = serde_json::to_vec_pretty(info).expect("snapshot info serialises");
        fs::write(staged.tmp.path().join("info.json"), info_json)
            .ctx(|| format!("writing info of snapshot {chain_id}"))?;
        // The unpacked files must be durable before the rename publishes them.
        sync_tree(staged.tmp.path())?;
        let dest = self.snapshot_dir(chain_id);
        let tmp_path = staged.tmp.keep();
        match fs::rename(&tmp_path, &dest) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                // Someone else finished the same snapshot first: theirs is as good.
                remove_tree(&tmp_path)?;
            }
            Err(e) => {
                let _ = remove_tree(&tmp_path);
                return Err(Error::io(format!("publishing snapshot {chain_id}"), e));
            }
        }
        crate::store::sync_dir(&self.dir)
    }

    /// Every complete snapshot.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx(|| format!("listing {}", show(&self.dir)))? {
            let entry = entry.ctx(|| format!("listing {}", show(&self.dir)))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Ok(d) = Digest::new(Algorithm::Sha256, name) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Remove a snapshot. It is first renamed away so that an interrupted
    /// removal never leaves a partial tree under a valid chain id.
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let dir = self.snapshot_dir(chain_id);
        let doomed = self.dir.join(format!("{TMP_PREFIX}rm-{}", chain_id.hex()));
        match fs::rename(&dir, &doomed) {
            Ok(()) => remove_tree(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing snapshot {chain_id}"), e)),
        }
    }

    /// Remove leftovers of interrupted unpacks and removals. Only under the
    /// exclusive store lock, when no unpack can be running.
    pub fn clean_tmp(&self) -> Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(&self.dir).ctx(|| format!("listing {}", show(&self.dir)))? {
            let entry = entry.ctx(|| format!("listing {}", show(&self.dir)))?;
            let is_tmp = entry
                .file_name()
                .to_str()
                .is_some_and(|s| s.starts_with(TMP_PREFIX));
            if is_tmp {
                remove_tree(&entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Mount the root filesystem of an image whose layers' chain ids are
    /// `chain` (bottom first) at `<container_dir>/rootfs`, with a fresh
    /// writable `upper/` and `work/` in `container_dir`. Every snapshot of
    /// the chain must exist.
    pub fn mount(&self, chain: &[Digest], container_dir: &Path) -> Result<Rootfs> {
        self.mount_with(chain, container_dir, false)
    }

    /// [`Snapshotter::mount`]; `volatile` mounts the overlay with
    /// `volatile`: its writes are never synced to the upper layer's disk
    /// (no fsync, no sync at unmount, which otherwise syncs the whole
    /// filesystem holding `upper/`). After a crash the upper layer is not
    /// to be trusted, and the kernel refuses to mount it again while
    /// `work/work/incompat/volatile` exists (see [`volatile_marker`]).
    pub fn mount_with(
        &self,
        chain: &[Digest],
        container_dir: &Path,
        volatile: bool,
    ) -> Result<Rootfs> {
        if chain.is_empty() {
            return Err(Error::Invalid(format!(
                "mounting a rootfs at {}: the image has no layers",
                show(container_dir)
            )));
        }
        let mut lowers = Vec::with_capacity(chain.len());
        for id in chain.iter().rev() {
            if !self.exists(id) {
                return Err(Error::not_found(format!(
                    "snapshot {id} (layer not unpacked)"
                )));
            }
            lowers.push(self.fs_path(id));
        }
        let upper = container_dir.join("upper");
        let work = container_dir.join("work");
        let rootfs = container_dir.join("rootfs");
        for d in [&upper, &work, &rootfs] {
            fs::create_dir_all(d).ctx(|| format!("creating {}", show(d)))?;
        }
        let mut paths: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
        paths.extend([upper.as_path(), work.as_path()]);
        for p in &paths {
            let s = p.to_string_lossy();
            if s.contains(',') || s.contains(':') || s.contains('\\') {
                return Err(Error::Invalid(format!(
                    "mounting a rootfs at {}: path {s:?} contains a character overlayfs options cannot carry",
                    show(container_dir)
                )));
            }
        }
        let lowerdir = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let mut options = format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            upper.to_string_lossy(),
            work.to_string_lossy()
        );
        if volatile {
            options.push_str(",volatile");
        }
        // mount(2) takes the options in one page; a long chain (or a long
        // --root) needs the new mount API, which adds lower dirs one by one.
        let page = 4096;
        if options.len() < page {
            nix::mount::mount(
                Some("overlay"),
                &rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .ctx(|| format!("mounting overlay rootfs at {}", show(&rootfs)))?;
        } else {
            overlay_fsconfig(&lowers, &upper, &work, &rootfs, volatile).map_err(|e| {
                Error::io(
                    format!(
                        "mounting overlay rootfs at {} ({} layers, with fsconfig lowerdir+, Linux >= 6.8)",
                        show(&rootfs),
                        chain.len()
                    ),
                    e,
                )
            })?;
        }
        Ok(Rootfs {
            dir: container_dir.to_path_buf(),
            rootfs,
        })
    }

    /// The directory the kernel makes in the work directory of a
    /// `volatile` overlay of `container_dir` and leaves there: while it
    /// exists the upper layer cannot be mounted again.
    pub fn volatile_marker(container_dir: &Path) -> PathBuf {
        container_dir.join("work/work/incompat/volatile")
    }

    /// Unmount a rootfs mounted by [`Snapshotter::mount`] (its container
    /// directory stays; see [`Snapshotter::remove_container_dir`]).
    pub fn unmount(container_dir: &Path) -> Result<()> {
        let rootfs = container_dir.join("rootfs");
        match nix::mount::umount2(&rootfs, MntFlags::empty()) {
            Ok(()) => Ok(()),
            // Not mounted (already unmounted, or never was): nothing to do.
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH)
                .ctx(|| format!("unmounting busy rootfs {} (lazily)", show(&rootfs))),
            Err(e) => Err(Error::io(
                format!("unmounting rootfs {}", show(&rootfs)),
                e.into(),
            )),
        }
    }

    /// Unmount (if needed) and delete a container directory with its upper layer.
    pub fn remove_container_dir(container_dir: &Path) -> Result<()> {
        Self::unmount(container_dir)?;
        match fs::remove_dir_all(container_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("removing container directory {}", show(container_dir)),
                e,
            )),
        }
    }
}

/// Mount an overlay with the new mount API: fsopen, one fsconfig
/// `lowerdir+` per layer (top first), fsmount, move_mount.
fn overlay_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    // From linux/mount.h; not all of these are in the libc crate.
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

    let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let check = |rc: libc::c_long| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    let name = c"overlay";
    // SAFETY: fsopen takes a NUL-terminated name and flags; it returns a new fd we own.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as libc::c_int) };
    let set = |key: &std::ffi::CStr, value: &CString| -> io::Result<()> {
        // SAFETY: fs is a valid fs-context fd; key and value are NUL-terminated and outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })
        .map(drop)
    };
    for l in lowers {
        set(c"lowerdir+", &cstr(l)?)?;
    }
    set(c"upperdir", &cstr(upper)?)?;
    set(c"workdir", &cstr(work)?)?;
    if volatile {
        // SAFETY: fs is a valid fs-context fd; the key is NUL-terminated, a flag has no value.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_FLAG,
                c"volatile".as_ptr(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        })?;
    }
    // SAFETY: CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fs is a created fs context; fsmount returns a new detached mount fd.
    let mnt =
        check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
    // SAFETY: as above, a fresh fd now owned here.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as libc::c_int) };
    let target = cstr(target)?;
    // SAFETY: mnt is a valid mount fd, "" with F_EMPTY_PATH names it; target is NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", show(path)), e)),
    }
}

/// syncfs(2) the filesystem holding `path`: one call makes every file
/// unpacked there durable, instead of an fsync per file.
fn sync_tree(path: &Path) -> Result<()> {
    let f = fs::File::open(path).ctx(|| format!("opening {}", show(path)))?;
    nix::unistd::syncfs(&f).ctx(|| format!("syncing {}", show(path)))
}
