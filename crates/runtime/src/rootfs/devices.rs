//! Device nodes in the container's /dev: the defaults every container gets plus
//! linux.devices. Inside a user namespace mknod is refused, so the host's node
//! is bind-mounted onto an empty file instead, as runc does.

use super::{fd_path, inner};
use crate::error::{Context, Error, Result};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// (path, major, minor) of the character devices every container gets (0666).
pub const DEFAULT_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

struct Node {
    path: PathBuf,
    kind: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Creates device nodes and the standard /dev symlinks. Skipped when /dev is a
/// bind mount of the host's /dev (privileged containers): writing there would
/// change the host.
pub fn create_devices(spec: &Spec, rootfs: &Path, in_userns: bool) -> Result<()> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let dev_is_bind = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && m.options()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o == "bind" || o == "rbind")
    });
    if dev_is_bind {
        return Ok(());
    }
    let root = super::open_root(rootfs)?;
    let mut nodes: Vec<Node> = DEFAULT_DEVICES
        .iter()
        .map(|(p, maj, min)| Node {
            path: PathBuf::from(p),
            kind: LinuxDeviceType::C,
            major: *maj,
            minor: *min,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    let spec_devs: &[LinuxDevice] = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    for (i, d) in spec_devs.iter().enumerate() {
        if !d.path().starts_with("/dev") {
            return Err(Error::Spec(format!(
                "config.json: linux.devices[{i}].path: {} is not under /dev",
                d.path().display()
            )));
        }
        let type_bits = match d.typ() {
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            _ => libc::S_IFCHR,
        };
        let node = Node {
            path: d.path().clone(),
            kind: d.typ(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666) & !type_bits,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        nodes.retain(|n| n.path != node.path);
        nodes.push(node);
    }
    for n in &nodes {
        create_node(&root, n, in_userns)
            .map_err(|e| Error::Container(format!("creating device {}: {e}", n.path.display())))?;
    }
    create_symlinks(&root)
}

fn create_node(root: &super::inroot::Root, n: &Node, in_userns: bool) -> Result<()> {
    let rel = inner(&n.path);
    if let Some(parent) = rel.parent() {
        if !parent.as_os_str().is_empty() {
            root.mkdir_all(parent, &Permissions::from_mode(0o755))
                .ctx(|| format!("creating /{}", parent.display()))?;
        }
    }
    // An image may ship a regular file where the node goes; replace it.
    if let Ok(h) = root.resolve_nofollow(&rel) {
        drop(h);
        let _ = root.remove_file(&rel);
    }
    if in_userns {
        let host = &n.path;
        root.create_file(
            &rel,
            pathrs::flags::OpenFlags::O_CREAT | pathrs::flags::OpenFlags::O_CLOEXEC,
            &Permissions::from_mode(0o644),
        )
        .ctx(|| "creating bind target")?;
        let h = root.resolve(&rel).ctx(|| "resolving bind target")?;
        return mount(
            Some(host.as_path()),
            fd_path(&h).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("bind-mounting host {}", host.display()));
    }
    let dev = libc::makedev(n.major as u32, n.minor as u32);
    let perm = Permissions::from_mode(n.mode);
    let kind = match n.kind {
        LinuxDeviceType::B => pathrs::InodeType::BlockDevice(perm, dev),
        LinuxDeviceType::P => pathrs::InodeType::Fifo(perm),
        _ => pathrs::InodeType::CharacterDevice(perm, dev),
    };
    root.create(&rel, &kind).ctx(|| "mknod")?;
    let h = root
        .resolve_nofollow(&rel)
        .ctx(|| "resolving the new node")?;
    let fd = fd_path(&h);
    nix::unistd::chown(
        fd.as_str(),
        Some(nix::unistd::Uid::from_raw(n.uid)),
        Some(nix::unistd::Gid::from_raw(n.gid)),
    )
    .ctx(|| format!("chown {}:{}", n.uid, n.gid))?;
    // umask is 0 during setup, but be explicit: mknod's mode is what the spec says.
    std::fs::set_permissions(&fd, Permissions::from_mode(n.mode)).ctx(|| "chmod")?;
    Ok(())
}

fn create_symlinks(root: &super::inroot::Root) -> Result<()> {
    let mut links = vec![
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("dev/core", "/proc/kcore"));
    }
    // With a devpts mount, /dev/ptmx must be its ptmx so ptys come from the
    // container's own devpts instance.
    if root.resolve("dev/pts/ptmx").is_ok() {
        let _ = root.remove_file("dev/ptmx");
        links.push(("dev/ptmx", "pts/ptmx"));
    }
    for (link, target) in links {
        if root.resolve_nofollow(link).is_ok() {
            continue;
        }
        root.create(link, &pathrs::InodeType::Symlink(target.into()))
            .ctx(|| format!("symlinking /{link} -> {target}"))?;
    }
    Ok(())
}
