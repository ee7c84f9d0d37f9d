//! `cp`: files between a container's root filesystem and the host, as tar
//! streams (docker's archive API shape). Paths in the container are
//! resolved inside its root with openat2 RESOLVE_IN_ROOT semantics (pathrs),
//! so a symlink in the image cannot point a copy at the host; writes into
//! the container go through the image crate's path-safe unpacker.
//!
//! Bind mounts (volumes, `-v`, the engine's /etc files) are followed to
//! their sources. tmpfs mounts exist only in the container's mount
//! namespace: a copy under one of a running container is done by a child
//! process that joined that namespace (as podman does); with the container
//! stopped there is no tmpfs, and the copy sees the root filesystem.
//!
//! A running container is frozen while the host side resolves and walks
//! its root filesystem ([`Frozen`]), so it cannot swap a path for a symlink
//! to the host between resolution and use.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};

/// What a container path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Dir,
    Other,
}

/// A bind mount of the container: (destination in it, source on the host).
type BindMount = (PathBuf, PathBuf);

/// A running container frozen while the host side resolves and walks its
/// root filesystem, as docker's `cp` is since CVE-2018-15664: a process of
/// the container could otherwise swap a directory for a symlink to a host
/// path between the resolution of a path and its use. Thawed on drop; the
/// container's lock is held meanwhile so that a `pause`/`unpause` waits.
struct Frozen<'a> {
    engine: &'a Engine,
    container: crate::record::Container,
    _lock: nix::fcntl::Flock<fs::File>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let c = &self.container;
        if let Err(e) = self.engine.runtime_of(c).resume(&c.id) {
            tracing::warn!("container {}: thawing it after a copy: {e}", c.name);
        }
    }
}

impl Engine {
    /// Freeze container `what` if it runs (and is not paused already).
    fn freeze_for_copy(&self, what: &str) -> Result<Option<Frozen<'_>>> {
        let c = self.get(what)?;
        // Between two runs of a restart policy nothing runs either.
        if c.state.status != crate::record::Status::Running
            || c.state.restarting
            || self.is_paused(&c)
        {
            return Ok(None);
        }
        let lock = self.lock(&c.id)?;
        if let Err(e) = self.runtime_of(&c).pause(&c.id) {
            // It may have exited meanwhile: then nothing runs to race with.
            if self.get(&c.id)?.state.status == crate::record::Status::Running {
                return Err(e);
            }
            return Ok(None);
        }
        Ok(Some(Frozen {
            engine: self,
            container: c,
            _lock: lock,
        }))
    }

    /// The container's root filesystem on the host, mounted if needed.
    fn rootfs_of(&self, what: &str) -> Result<(String, PathBuf, Vec<BindMount>)> {
        let c = self.get(what)?;
        let dir = self.container_dir(&c.id);
        let rootfs = dir.join("rootfs");
        let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
        if dev(&rootfs).is_none() || dev(&rootfs) == dev(&dir) {
            return Err(Error::Conflict(format!(
                "container {}: its root filesystem is not mounted (start it once after a reboot)",
                c.name
            )));
        }
        // Bind mounts (volumes, binds, /etc/hosts and friends) shadow the
        // root filesystem at their destinations; tmpfs mounts live only in
        // the container's mount namespace and are not reachable from here.
        let spec: serde_json::Value = fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let binds = spec["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["type"] == "bind")
            .filter_map(|m| {
                Some((
                    lexical(m["destination"].as_str()?),
                    PathBuf::from(m["source"].as_str()?),
                ))
            })
            .collect();
        Ok((c.name, rootfs, binds))
    }

    /// Resolve `path` (absolute in the container) to its place on the host:
    /// inside the bind mount that covers it, else inside the root
    /// filesystem, symlinks followed within that root (the last one only
    /// if `follow_last`).
    fn resolve_in(
        &self,
        rootfs: &Path,
        binds: &[BindMount],
        path: &str,
        follow_last: bool,
    ) -> Result<(PathBuf, Kind)> {
        let clean = lexical(path);
        let covering = binds
            .iter()
            .filter(|(dst, _)| clean.starts_with(dst))
            .max_by_key(|(dst, _)| dst.components().count());
        let (root, inner) = match covering {
            Some((dst, src)) if src.is_dir() => (
                src.clone(),
                Path::new("/").join(clean.strip_prefix(dst).expect("prefix checked")),
            ),
            // A file bound over a file: only the file itself.
            Some((dst, src)) if &clean == dst => {
                return Ok((
                    src.clone(),
                    if src.exists() {
                        Kind::Other
                    } else {
                        Kind::Missing
                    },
                ));
            }
            _ => (rootfs.to_path_buf(), clean.clone()),
        };
        let r = pathrs::Root::open(&root).map_err(|e| {
            Error::io(
                format!("opening root {}", root.display()),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let parent = inner.parent().unwrap_or(Path::new("/")).to_path_buf();
        let Some(name) = inner.file_name().map(|n| n.to_os_string()) else {
            return Ok((root, Kind::Dir));
        };
        let dir = match r.resolve(&parent) {
            Ok(h) => real_path(&root, &h)?,
            Err(_) => {
                return Ok((
                    root.join(inner.strip_prefix("/").unwrap_or(&inner)),
                    Kind::Missing,
                ))
            }
        };
        let full = dir.join(&name);
        let handle = if follow_last {
            r.resolve(&full)
        } else {
            r.resolve_nofollow(&full)
        };
        let on_host = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        match handle {
            Ok(h) => {
                let real = on_host(&real_path(&root, &h)?);
                let meta = fs::symlink_metadata(&real)
                    .ctx(|| format!("inspecting {path} in the container"))?;
                Ok((
                    real,
                    if meta.is_dir() {
                        Kind::Dir
                    } else {
                        Kind::Other
                    },
                ))
            }
            Err(_) => Ok((on_host(&full), Kind::Missing)),
        }
    }

    /// The pid of a running container whose tmpfs mounts cover `path`.
    fn tmpfs_holder(&self, what: &str, path: &str) -> Result<Option<i32>> {
        let c = self.get(what)?;
        if c.state.status != crate::record::Status::Running || c.state.pid <= 0 {
            return Ok(None);
        }
        let spec: serde_json::Value = fs::read(self.container_dir(&c.id).join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let clean = lexical(path);
        let covered = spec["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["type"] == "tmpfs")
            .filter_map(|m| m["destination"].as_str())
            .any(|d| clean.starts_with(lexical(d)));
        Ok(covered.then_some(c.state.pid))
    }

    /// What `path` is in the container.
    pub fn stat_in(&self, what: &str, path: &str) -> Result<Kind> {
        if let Some(pid) = self.tmpfs_holder(what, path)? {
            let mut kind = Kind::Missing;
            in_mount_namespace(
                pid,
                &format!("inspecting {path} in container {what}"),
                |mut data| {
                    let (_, k) = self.resolve_in(Path::new("/"), &[], path, true)?;
                    let b = match k {
                        Kind::Missing => 0u8,
                        Kind::Dir => 1,
                        Kind::Other => 2,
                    };
                    data.write_all(&[b])
                        .ctx(|| "reporting a path's kind".to_string())
                },
                |mut data| {
                    let mut b = [9u8];
                    if data.read_exact(&mut b).is_ok() {
                        kind = match b[0] {
                            1 => Kind::Dir,
                            2 => Kind::Other,
                            _ => Kind::Missing,
                        };
                    }
                    Ok(())
                },
            )?;
            return Ok(kind);
        }
        let (_, root, binds) = self.rootfs_of(what)?;
        let _frozen = self.freeze_for_copy(what)?;
        Ok(self.resolve_in(&root, &binds, path, true)?.1)
    }

    /// Write a tar of `path` in the container to `out`, its top entry named
    /// `name` ("." puts a directory's contents at the top).
    pub fn copy_out(
        &self,
        what: &str,
        path: &str,
        follow_link: bool,
        name: &str,
        out: impl Write,
    ) -> Result<()> {
        if let Some(pid) = self.tmpfs_holder(what, path)? {
            let mut out = out;
            return in_mount_namespace(
                pid,
                &format!("copying {path} out of container {what}"),
                |data| {
                    let (inside, kind) = self.resolve_in(Path::new("/"), &[], path, follow_link)?;
                    if kind == Kind::Missing {
                        return Err(Error::not_found(format!(
                            "file or directory {path} in container {what}"
                        )));
                    }
                    tar_path(&inside, name, true, data)
                        .ctx(|| format!("copying {path} out of container {what}"))
                },
                |mut data| {
                    // A reader that has what it needs (a tar reader stops at
                    // the first end block) closes early: the rest is drained
                    // so the child finishes, and is no error.
                    let mut buf = vec![0u8; 1 << 16];
                    let mut failed = None;
                    loop {
                        let n = data
                            .read(&mut buf)
                            .ctx(|| format!("copying {path} out of container {what}"))?;
                        if n == 0 {
                            break;
                        }
                        if failed.is_none() {
                            if let Err(e) = out.write_all(&buf[..n]) {
                                failed = Some(e);
                            }
                        }
                    }
                    match failed {
                        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                            Err(e).ctx(|| format!("copying {path} out of container {what}"))
                        }
                        _ => Ok(()),
                    }
                },
            );
        }
        let (cname, root, binds) = self.rootfs_of(what)?;
        let _frozen = self.freeze_for_copy(what)?;
        let (host, kind) = self.resolve_in(&root, &binds, path, follow_link)?;
        if kind == Kind::Missing {
            return Err(Error::not_found(format!(
                "file or directory {path} in container {cname}"
            )));
        }
        tar_path(&host, name, true, out).ctx(|| format!("copying {path} out of container {cname}"))
    }

    /// `export`: the container's root filesystem (its image and its writable
    /// layer, not its volumes or bind mounts) as a tar written to `out`.
    pub fn export(&self, what: &str, out: impl Write) -> Result<()> {
        let (cname, root, _) = self.rootfs_of(what)?;
        let _frozen = self.freeze_for_copy(what)?;
        tar_path(&root, ".", true, out).ctx(|| format!("exporting container {cname}"))
    }

    /// Unpack the tar read from `input` into directory `dir` of the container.
    pub fn copy_in(&self, what: &str, dir: &str, input: impl Read) -> Result<()> {
        if let Some(pid) = self.tmpfs_holder(what, dir)? {
            let mut input = input;
            return in_mount_namespace(
                pid,
                &format!("copying into {dir} of container {what}"),
                |data| self.unpack_into(Path::new("/"), &[], what, dir, data),
                |data| {
                    // A child that failed stops reading: its error is the one to show.
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = input
                            .read(&mut buf)
                            .ctx(|| format!("reading the archive for {dir}"))?;
                        if n == 0 {
                            return Ok(());
                        }
                        if send_all(&data, &buf[..n]).is_err() {
                            return Ok(());
                        }
                    }
                },
            );
        }
        let (_, root, binds) = self.rootfs_of(what)?;
        let _frozen = self.freeze_for_copy(what)?;
        self.unpack_into(&root, &binds, what, dir, input)
    }

    fn unpack_into(
        &self,
        root: &Path,
        binds: &[BindMount],
        cname: &str,
        dir: &str,
        input: impl Read,
    ) -> Result<()> {
        let (target, kind) = self.resolve_in(root, binds, dir, true)?;
        if kind != Kind::Dir {
            return Err(Error::not_found(format!(
                "directory {dir} in container {cname}"
            )));
        }
        let limits = hako_image::layer::ApplyLimits::for_target(&target)
            .ctx(|| format!("copying into {dir} of container {cname}"))?;
        hako_image::layer::apply(
            &target,
            &format!("copy into {dir} of container {cname}"),
            input,
            hako_image::manifest::Compression::None,
            hako_image::digest::Algorithm::Sha256,
            &limits,
        )
        .ctx(|| format!("copying into {dir} of container {cname}"))?;
        Ok(())
    }
}

/// Write all of `buf` without SIGPIPE (hako keeps SIGPIPE's default action).
fn send_all(sock: &std::os::unix::net::UnixStream, mut buf: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        match send(sock.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Run `child` in a process that joined the mount namespace of `pid` (so
/// the container's tmpfs mounts are there, and `/` is its root), with one
/// end of a socket pair; `parent` gets the other end meanwhile. The child's
/// error comes back as this call's error, `what` naming the operation.
fn in_mount_namespace(
    pid: i32,
    what: &str,
    child: impl FnOnce(std::os::unix::net::UnixStream) -> Result<()>,
    parent: impl FnOnce(std::os::unix::net::UnixStream) -> Result<()>,
) -> Result<()> {
    use std::os::unix::net::UnixStream;
    let ns = fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .ctx(|| format!("{what}: opening the container's mount namespace"))?;
    let (mine, theirs) = UnixStream::pair().ctx(|| format!("{what}: making a socket pair"))?;
    let (err_r, err_w) = UnixStream::pair().ctx(|| format!("{what}: making a socket pair"))?;
    // SAFETY: the child only runs `child` (plain file work in this process's
    // copy of memory) and then _exit()s. Another thread of the caller (the
    // CLI's tar producer) is not copied; glibc's fork handlers keep malloc
    // usable, and the child takes no other lock that thread may hold.
    match unsafe { nix::unistd::fork() }.ctx(|| format!("{what}: forking"))? {
        nix::unistd::ForkResult::Child => {
            drop(mine);
            drop(err_r);
            // Only our ends stay open: a copy of, say, the write end of a
            // pipe the parent reads would keep it from ever seeing its end.
            {
                use std::os::fd::AsRawFd;
                let keep = [theirs.as_raw_fd(), err_w.as_raw_fd(), ns.as_raw_fd()];
                let open: Vec<i32> = fs::read_dir("/proc/self/fd")
                    .map(|d| {
                        d.flatten()
                            .filter_map(|e| e.file_name().to_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
                    // SAFETY: nothing in this child uses these descriptors
                    // again: it runs `child` with the kept ones and exits.
                    unsafe { libc::close(fd) };
                }
            }
            if let Ok(d) = fs::File::open("/proc/self/fd") {
                let _ = SELF_FD_DIR.set(d);
            }
            let res = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
                .ctx(|| "joining the container's mount namespace".to_string())
                .and_then(|()| child(theirs));
            let code = match res {
                Ok(()) => 0,
                Err(e) => {
                    let _ = send_all(&err_w, e.to_string().as_bytes());
                    1
                }
            };
            // SAFETY: ends the child without running the parent's exit
            // handlers or destructors a second time.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child: kid } => {
            drop(theirs);
            drop(err_w);
            drop(ns);
            let res = parent(mine);
            let status = nix::sys::wait::waitpid(kid, None).ctx(|| format!("{what}: waiting"))?;
            let mut msg = String::new();
            let _ = (&err_r).read_to_string(&mut msg);
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => res,
                _ if !msg.is_empty() => Err(Error::Runtime {
                    context: what.to_string(),
                    message: msg,
                }),
                other => Err(Error::Runtime {
                    context: what.to_string(),
                    message: format!("the copying process ended with {other:?}"),
                }),
            }
        }
    }
}

/// "/a/./b/../c" → "/a/c", never above "/".
fn lexical(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// This process's /proc/self/fd, opened before it joined a container's mount
/// namespace (see [`in_mount_namespace`]).
static SELF_FD_DIR: std::sync::OnceLock<fs::File> = std::sync::OnceLock::new();

/// The path of a resolved handle relative to the root, as "/x/y".
fn real_path(root: &Path, h: &pathrs::Handle) -> Result<PathBuf> {
    use std::os::fd::{AsFd, AsRawFd};
    let n = h.as_fd().as_raw_fd().to_string();
    // In a container's mount namespace /proc is its procfs, where this
    // process does not exist: the fd directory opened before is used then.
    let link = match SELF_FD_DIR.get() {
        Some(dir) => nix::fcntl::readlinkat(dir, n.as_str())
            .map(PathBuf::from)
            .map_err(std::io::Error::from),
        None => fs::read_link(format!("/proc/self/fd/{n}")),
    }
    .ctx(|| "reading a resolved path".to_string())?;
    let root = fs::canonicalize(root).ctx(|| format!("resolving {}", root.display()))?;
    let rel = link.strip_prefix(&root).map_err(|_| {
        Error::Invalid(format!(
            "a path resolved outside the container root {}",
            root.display()
        ))
    })?;
    Ok(Path::new("/").join(rel))
}

/// A tar of `path` with its top entry called `name` ("." for a directory's
/// contents), symlinks stored as links, owners kept or set to 0:0.
pub fn tar_path(path: &Path, name: &str, keep_owner: bool, out: impl Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    walk(&mut b, path, Path::new(name), keep_owner)?;
    b.into_inner()?.flush()
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    keep_owner: bool,
) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let top_contents = name == Path::new(".");
    if !top_contents {
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if !keep_owner {
            h.set_uid(0);
            h.set_gid(0);
            let _ = h.set_username("");
            let _ = h.set_groupname("");
        }
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path)?;
            h.set_size(0);
            b.append_link(&mut h, name, target)?;
        } else if meta.is_file() {
            let f = fs::File::open(path)?;
            b.append_data(&mut h, name, f)?;
        } else if meta.is_dir() {
            h.set_size(0);
            b.append_data(&mut h, name, std::io::empty())?;
        } else {
            // Devices, fifos: the header says it all.
            h.set_size(0);
            b.append_data(&mut h, name, std::io::empty())?;
        }
    }
    if meta.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)?.collect::<std::io::Result<_>>()?;
        children.sort_by_key(|e| e.file_name());
        for e in children {
            let child_name = if top_contents {
                PathBuf::from(e.file_name())
            } else {
                name.join(e.file_name())
            };
            walk(b, &e.path(), &child_name, keep_owner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_stay_below_the_root() {
        assert_eq!(lexical("/a/./b/../c"), PathBuf::from("/a/c"));
        assert_eq!(lexical("../../etc"), PathBuf::from("/etc"));
        assert_eq!(lexical("/"), PathBuf::from("/"));
    }

    #[test]
    fn tars_a_tree_with_a_new_top_name() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("src")).unwrap();
        fs::write(d.path().join("src/f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("src/l")).unwrap();
        let mut buf = Vec::new();
        tar_path(&d.path().join("src"), "dst", false, &mut buf).unwrap();
        let mut a = tar::Archive::new(&buf[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["dst", "dst/f", "dst/l"]);
        let mut buf = Vec::new();
        tar_path(&d.path().join("src"), ".", false, &mut buf).unwrap();
        let mut a = tar::Archive::new(&buf[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["f", "l"]);
    }
}
