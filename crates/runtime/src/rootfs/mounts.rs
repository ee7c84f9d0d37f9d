//! The spec's mounts, made inside the new mount namespace before pivot_root.

use super::options::{parse_options, MountOptions};
use super::{fd_path, inner};
use crate::cgroups::{Cgroup, FsKind};
use crate::error::{Context, Error, Result};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{Mount, Spec};
use std::fs::Permissions;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Detaches the container's mount tree from the host's propagation and makes the
/// rootfs a mount point of its own, so pivot_root can move onto it.
pub fn prepare_root(spec: &Spec, rootfs: &Path) -> Result<()> {
    let prop = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(super::propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // Shared propagation on "/" would be refused by pivot_root, and an
    // unbindable "/" cannot be bind-mounted onto itself below (EINVAL), so
    // both are applied to the new root afterwards (paths::set_root_propagation).
    if prop.contains(MsFlags::MS_SHARED) {
        return prepare_shared_root(rootfs);
    }
    let first = if prop.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        prop
    };
    mount(None::<&str>, "/", None::<&str>, first, None::<&str>)
        .ctx(|| "setting mount propagation of /")?;
    bind_root_onto_itself(rootfs)
}

fn bind_root_onto_itself(rootfs: &Path) -> Result<()> {
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind-mounting rootfs {} onto itself", rootfs.display()))
}

/// A shared root (a bidirectional bind, CRI's `rshared`): the host's shared
/// mounts stay peers in this namespace, so a bind of one made later joins
/// the host's peer group and mounts made in it reach the host. Only the
/// rootfs tree becomes a slave (the container's own mounts must not leak
/// out), and "/" and the rootfs's parent mount stop being shared, which
/// pivot_root requires; the old root is made a slave before it is detached.
fn prepare_shared_root(rootfs: &Path) -> Result<()> {
    let parent = containing_mount(rootfs);
    for m in ["/", parent.as_str()] {
        mount(
            None::<&str>,
            m,
            None::<&str>,
            MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .ctx(|| format!("making mount {m} a slave"))?;
    }
    bind_root_onto_itself(rootfs)?;
    mount(
        None::<&str>,
        rootfs,
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("making rootfs {} a slave", rootfs.display()))
}

/// The mount point of the mount `path` is on (longest mountinfo prefix).
fn containing_mount(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(crate::cgroups::mountinfo::unescape)
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.len())
        .unwrap_or_else(|| "/".into())
}

/// Mounts every entry of spec.mounts, in order. `before_cgroup` runs once
/// before the first cgroup mount (the init enters its cgroup namespace there).
pub fn mount_all(
    spec: &Spec,
    rootfs: &Path,
    cgroup: &Cgroup,
    new_cgroupns: bool,
    before_cgroup: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let root = super::open_root(rootfs)?;
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            before_cgroup()?;
        }
        mount_one(&root, m, cgroup, new_cgroupns).map_err(|e| {
            Error::Container(format!(
                "mounts[{i}] ({} on {}): {e}",
                m.source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| m.typ().clone().unwrap_or_default()),
                m.destination().display()
            ))
        })?;
    }
    Ok(())
}

fn mount_one(
    root: &super::inroot::Root,
    m: &Mount,
    cgroup: &Cgroup,
    new_cgroupns: bool,
) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    if let Some(u) = opts.unsupported.first() {
        return Err(Error::Spec(format!("mount option {u:?} is not supported")));
    }
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = inner(m.destination());
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(root, &dest, &opts, cgroup, new_cgroupns);
    }
    let source = m.source().as_deref();
    let handle = if opts.is_bind() {
        let src = source.ok_or_else(|| Error::Spec("bind mount without a source".into()))?;
        let meta =
            std::fs::metadata(src).ctx(|| format!("stat of bind source {}", src.display()))?;
        ensure_target(root, &dest, meta.is_dir())?
    } else {
        ensure_target(root, &dest, true)?
    };
    let target = fd_path(&handle);
    if opts.is_bind() {
        mount(
            source,
            target.as_str(),
            None::<&str>,
            opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
            None::<&str>,
        )
        .ctx(|| "bind mount")?;
        // The resolved handle still names the covered directory: re-resolve to
        // reach the root of the mount just made.
        let mounted = root.resolve(&dest).ctx(|| "resolving the new mount")?;
        let extra = opts.remount_flags();
        if !extra.is_empty() {
            remount_bind(&fd_path(&mounted), extra)?;
        }
        finish(&mounted, &opts)
    } else {
        let fstype = if typ.is_empty() { None } else { Some(typ) };
        let data = opts.data_string();
        // Open what the tmpfs will cover while it is still reachable.
        let covered = if opts.tmpcopyup && typ == "tmpfs" {
            Some(
                handle
                    .reopen(
                        pathrs::flags::OpenFlags::O_RDONLY | pathrs::flags::OpenFlags::O_DIRECTORY,
                    )
                    .ctx(|| "opening the directory to copy up")?,
            )
        } else {
            None
        };
        mount(
            source.or(Some(Path::new(typ))),
            target.as_str(),
            fstype,
            opts.flags,
            data.as_deref(),
        )
        .ctx(|| format!("mounting {typ}"))?;
        let mounted = root.resolve(&dest).ctx(|| "resolving the new mount")?;
        if let Some(covered) = covered {
            let fresh = mounted
                .reopen(pathrs::flags::OpenFlags::O_RDONLY | pathrs::flags::OpenFlags::O_DIRECTORY)
                .ctx(|| "opening the new tmpfs")?;
            super::copyup::copy_tree(covered.as_fd(), fresh.as_fd())?;
        }
        finish(&mounted, &opts)
    }
}

/// A bind mount takes ro/nosuid/... only through a remount; flags the kernel has
/// locked on the source (in a user namespace) must be kept or it refuses.
pub(crate) fn remount_bind(target: &str, extra: MsFlags) -> Result<()> {
    let locked = locked_flags(target);
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra | locked,
        None::<&str>,
    )
    .ctx(|| format!("remounting with {extra:?}"))
}

/// The per-mount flags currently set on a mount (from statvfs).
pub(crate) fn locked_flags(target: &str) -> MsFlags {
    let mut out = MsFlags::empty();
    if let Ok(st) = nix::sys::statvfs::statvfs(target) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs) {
                out |= ms;
            }
        }
    }
    out
}

/// Propagation and recursive attributes, applied to the mount just made.
fn finish(mounted: &pathrs::Handle, opts: &MountOptions) -> Result<()> {
    let target = fd_path(mounted);
    for p in &opts.propagation {
        mount(
            None::<&str>,
            target.as_str(),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .ctx(|| format!("setting propagation {p:?}"))?;
    }
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        mount_setattr(mounted, opts.rec_set, opts.rec_clear)?;
    }
    Ok(())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Applies attributes to a whole mount tree (kernel 5.12+).
pub(crate) fn mount_setattr(fd: &impl AsFd, set: u64, clear: u64) -> Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid NUL-terminated string, `attr` lives across the
    // call and its size is passed; the fd is borrowed for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_fd().as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(Error::io(
            "applying recursive mount attributes (mount_setattr)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Resolves (creating when missing) a mount point inside the rootfs: a directory,
/// or an empty file when a file is bind-mounted.
pub(crate) fn ensure_target(
    root: &super::inroot::Root,
    dest: &Path,
    dir: bool,
) -> Result<pathrs::Handle> {
    if let Ok(h) = root.resolve(dest) {
        return Ok(h);
    }
    let perm = Permissions::from_mode(0o755);
    if dir {
        return root
            .mkdir_all(dest, &perm)
            .ctx(|| format!("creating mount point /{}", dest.display()));
    }
    if let Some(parent) = dest.parent() {
        if !parent.as_os_str().is_empty() {
            root.mkdir_all(parent, &perm)
                .ctx(|| format!("creating /{}", parent.display()))?;
        }
    }
    root.create_file(
        dest,
        pathrs::flags::OpenFlags::O_CREAT | pathrs::flags::OpenFlags::O_CLOEXEC,
        &Permissions::from_mode(0o644),
    )
    .ctx(|| format!("creating mount point file /{}", dest.display()))?;
    root.resolve(dest)
        .ctx(|| format!("resolving /{}", dest.display()))
}

/// cgroupfs inside the container. With a new cgroup namespace the kernel scopes a
/// fresh cgroupfs mount to the container's cgroup; without one, the container's
/// own cgroup directories are bind-mounted, as runc does.
fn mount_cgroup(
    root: &super::inroot::Root,
    dest: &Path,
    opts: &MountOptions,
    cgroup: &Cgroup,
    new_cgroupns: bool,
) -> Result<()> {
    let flags = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
    let ro = flags.contains(MsFlags::MS_RDONLY);
    let base_flags = flags - MsFlags::MS_RDONLY;
    let hierarchies = cgroup.hierarchies();
    let unified_only = hierarchies.len() == 1 && hierarchies[0].fs == FsKind::V2;
    let top = ensure_target(root, dest, true)?;
    if unified_only {
        let target = fd_path(&top);
        if new_cgroupns {
            mount(
                Some("cgroup2"),
                target.as_str(),
                Some("cgroup2"),
                flags,
                None::<&str>,
            )
            .ctx(|| "mounting cgroup2")?;
        } else {
            mount(
                Some(&hierarchies[0].path),
                target.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| format!("bind-mounting {}", hierarchies[0].path.display()))?;
            if ro {
                let h = root.resolve(dest).ctx(|| "resolving cgroup mount")?;
                remount_bind(&fd_path(&h), base_flags | MsFlags::MS_RDONLY)?;
            }
        }
        return Ok(());
    }
    // v1 or hybrid: a tmpfs holding one directory per hierarchy.
    mount(
        Some("tmpfs"),
        fd_path(&top).as_str(),
        Some("tmpfs"),
        base_flags,
        Some("mode=755"),
    )
    .ctx(|| "mounting tmpfs for cgroup hierarchies")?;
    for h in &hierarchies {
        let sub = dest.join(&h.mount_point_name);
        let handle = ensure_target(root, &sub, true)?;
        let target = fd_path(&handle);
        if new_cgroupns {
            let opts_str = h.mount_options();
            let (fstype, data) = if h.fs == FsKind::V2 {
                ("cgroup2", None)
            } else {
                ("cgroup", Some(opts_str.as_str()))
            };
            mount(
                Some("cgroup"),
                target.as_str(),
                Some(fstype),
                base_flags
                    | if ro {
                        MsFlags::MS_RDONLY
                    } else {
                        MsFlags::empty()
                    },
                data,
            )
            .ctx(|| format!("mounting cgroup hierarchy {}", h.mount_point_name))?;
        } else {
            mount(
                Some(&h.path),
                target.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| format!("bind-mounting {}", h.path.display()))?;
            let m = root.resolve(&sub).ctx(|| "resolving cgroup mount")?;
            remount_bind(
                &fd_path(&m),
                base_flags
                    | if ro {
                        MsFlags::MS_RDONLY
                    } else {
                        MsFlags::empty()
                    },
            )?;
        }
        // Co-mounted controllers ("cpu,cpuacct") are also reachable by each name.
        if h.mount_point_name.contains(',') {
            for name in h.mount_point_name.split(',') {
                let link = dest.join(name);
                if root.resolve_nofollow(&link).is_err() {
                    root.create(
                        &link,
                        &pathrs::InodeType::Symlink(h.mount_point_name.clone().into()),
                    )
                    .ctx(|| format!("linking /{}", link.display()))?;
                }
            }
        }
    }
    if ro {
        let h = root.resolve(dest).ctx(|| "resolving cgroup tmpfs")?;
        remount_bind(&fd_path(&h), base_flags | MsFlags::MS_RDONLY).or_else(|_| {
            mount(
                None::<&str>,
                fd_path(&h).as_str(),
                None::<&str>,
                MsFlags::MS_REMOUNT | base_flags | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .ctx(|| "remounting cgroup tmpfs read-only")
        })?;
    }
    Ok(())
}
