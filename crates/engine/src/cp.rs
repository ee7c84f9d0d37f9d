//! `cp`: files between a container's root filesystem and the host, as tar
//! streams (docker's archive API shape). Paths in the container are
//! resolved inside its root with openat2 RESOLVE_IN_ROOT semantics (pathrs),
//! so a symlink in the image cannot point a copy at the host; writes into
//! the container go through the image crate's path-safe unpacker.
//!
//! Bind mounts (volumes, `-v`, the engine's /etc files) are followed to
//! their sources; tmpfs mounts exist only inside the container and are not
//! reachable: a copy there reads or writes the root filesystem beneath.

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

impl Engine {
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

    /// What `path` is in the container.
    pub fn stat_in(&self, what: &str, path: &str) -> Result<Kind> {
        let (_, root, binds) = self.rootfs_of(what)?;
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
        let (cname, root, binds) = self.rootfs_of(what)?;
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
        tar_path(&root, ".", true, out).ctx(|| format!("exporting container {cname}"))
    }

    /// Unpack the tar read from `input` into directory `dir` of the container.
    pub fn copy_in(&self, what: &str, dir: &str, input: impl Read) -> Result<()> {
        let (cname, root, binds) = self.rootfs_of(what)?;
        let (target, kind) = self.resolve_in(&root, &binds, dir, true)?;
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

/// The path of a resolved handle relative to the root, as "/x/y".
fn real_path(root: &Path, h: &pathrs::Handle) -> Result<PathBuf> {
    use std::os::fd::{AsFd, AsRawFd};
    let link = fs::read_link(format!("/proc/self/fd/{}", h.as_fd().as_raw_fd()))
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
