//! Looking a path up through a chain of snapshots without mounting them, and
//! writing the directories a WORKDIR creates into an empty upper directory.
//!
//! Why: a WORKDIR that creates directories is a layer step. Mounting an
//! overlay of every parent layer for it costs O(layers) for the mount and
//! O(layers × depth) for overlayfs' lookups, so N nested WORKDIRs cost
//! about N³, and past 500 layers (overlayfs' stack limit) the mount fails.
//! Here a lookup probes each layer with one `openat2` of the path (no
//! symlinks, beneath the layer) and remembers per layer a path it lacks, so
//! the next, deeper WORKDIR skips that layer without a syscall.
//!
//! The merged view follows overlayfs' rules (the topmost entry wins, a
//! whiteout or a non-directory ends the merge, an opaque directory hides
//! what is below it). Anything but plain directories on the way (a symlink,
//! a whiteout, a file, an opaque directory over a lower match) answers
//! [`Found::Mounted`]: the caller then uses the mounted overlay, which
//! resolves every case.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;

use hako_image::Digest;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, FileStat, Mode};

use crate::error::{Error, Result};

/// Per layer (chain id), a few relative paths known to be missing there
/// (the latest WORKDIR's and the passwd/group lookups): layers are
/// immutable, so every path below one is missing too.
#[derive(Default)]
pub(crate) struct Memo(Mutex<HashMap<Digest, Vec<String>>>);

/// Paths remembered per layer.
const MEMO_PATHS: usize = 4;

impl Memo {
    fn lacks(&self, id: &Digest, rel: &str) -> bool {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(id).is_some_and(|v| {
            v.iter().any(|s| {
                rel == s
                    || (rel.starts_with(s.as_str()) && rel.as_bytes().get(s.len()) == Some(&b'/'))
            })
        })
    }

    fn note(&self, id: &Digest, rel: String) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.entry(id.clone()).or_default();
        if v.len() == MEMO_PATHS {
            v.remove(0);
        }
        v.push(rel);
    }
}

/// The layers of a state, top first.
pub(crate) struct Chain<'a> {
    layers: Vec<(Digest, PathBuf)>,
    memo: &'a Memo,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Only the mounted view can tell (symlink, whiteout, file or opaque
    /// directory on the way).
    Mounted,
    /// The first `levels.len()` components are directories, `levels[k]` the
    /// index (top first) of the layer holding the topmost one at depth k+1;
    /// the next component is missing. `file`: the component after them is
    /// the last one and a regular file, in that layer.
    Path {
        levels: Vec<usize>,
        file: Option<usize>,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Other,
}

fn kind(st: &FileStat) -> Kind {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFREG => Kind::File,
        _ => Kind::Other,
    }
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS)
}

/// `rel` below `dir`, never through a symlink (a trailing one is returned).
fn probe(dir: &OwnedFd, rel: &str) -> std::result::Result<OwnedFd, Errno> {
    openat2(dir.as_fd(), rel, how(OFlag::O_PATH))
}

fn missing(e: Errno) -> bool {
    matches!(e, Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP)
}

/// `/proc/self/fd/N`: what path-based xattr calls follow to the inode of an
/// O_PATH descriptor.
fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

fn is_opaque(fd: &OwnedFd) -> bool {
    let p = fd_path(fd);
    let mut buf = [0u8; 8];
    // SAFETY: the strings are NUL-terminated and live for the call; the
    // buffer is valid for its length.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// The extended attributes of `fd`'s inode overlayfs would copy up (its own
/// `trusted.overlay.*` stay behind).
fn xattrs(fd: &OwnedFd) -> Vec<(CString, Vec<u8>)> {
    let p = fd_path(fd);
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: the path is NUL-terminated; the buffer is valid for its length.
    let n = unsafe {
        libc::listxattr(
            p.as_ptr(),
            names.as_mut_ptr() as *mut libc::c_char,
            names.len(),
        )
    };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let Ok(cn) = CString::new(name) else { continue };
        let mut val = vec![0u8; 64 * 1024];
        // SAFETY: as above; the value buffer is valid for its length.
        let n = unsafe {
            libc::getxattr(
                p.as_ptr(),
                cn.as_ptr(),
                val.as_mut_ptr() as *mut libc::c_void,
                val.len(),
            )
        };
        if n >= 0 {
            val.truncate(n as usize);
            out.push((cn, val));
        }
    }
    out
}

fn open_root(path: &PathBuf) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening layer {}", path.display()), e.into()))
}

impl<'a> Chain<'a> {
    /// `layers`: (chain id, snapshot directory), top first.
    pub(crate) fn new(layers: Vec<(Digest, PathBuf)>, memo: &'a Memo) -> Self {
        Chain { layers, memo }
    }

    /// The snapshot directory of layer `i` (top first).
    pub(crate) fn layer_dir(&self, i: usize) -> &std::path::Path {
        &self.layers[i].1
    }

    /// Look `comps` (the components of an absolute path, none "." or "..")
    /// up in the merged view of the chain.
    pub(crate) fn lookup(&self, comps: &[&str]) -> Result<Found> {
        let n = comps.len();
        let mut levels: Vec<usize> = Vec::new();
        // Layers above the current one that may hide what it holds: checked
        // only when a lower layer holds a deeper component.
        let mut above: Vec<usize> = Vec::new();
        for (i, (id, dir)) in self.layers.iter().enumerate() {
            let c = levels.len();
            if c == n {
                break;
            }
            let rel = comps[..=c].join("/");
            if self.memo.lacks(id, &rel) {
                above.push(i);
                continue;
            }
            let root = open_root(dir)?;
            let mut fd = match probe(&root, &rel) {
                Ok(fd) => fd,
                Err(e) if missing(e) => {
                    self.memo.note(id, rel);
                    above.push(i);
                    continue;
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("looking up /{rel} in layer {id}"),
                        e.into(),
                    ))
                }
            };
            // This layer holds component c+1: nothing above may hide it.
            for &j in &above {
                if !self.clean(j, comps, c + 1)? {
                    return Ok(Found::Mounted);
                }
            }
            above.clear();
            let mut lvl = c + 1;
            loop {
                let st = fstat(fd.as_fd())
                    .map_err(|e| Error::io(format!("looking up /{rel}"), e.into()))?;
                match kind(&st) {
                    Kind::Dir => {
                        levels.push(i);
                        if lvl == n {
                            break;
                        }
                        match probe(&fd, comps[lvl]) {
                            Ok(next) => {
                                fd = next;
                                lvl += 1;
                            }
                            Err(Errno::ENOENT) => break,
                            Err(_) => return Ok(Found::Mounted),
                        }
                    }
                    Kind::File if lvl == n => {
                        return Ok(Found::Path {
                            levels,
                            file: Some(i),
                        })
                    }
                    _ => return Ok(Found::Mounted),
                }
            }
            above.push(i);
        }
        Ok(Found::Path { levels, file: None })
    }

    /// Whether layer `j` hides nothing of the first `upto` components from
    /// the layers below it: only directories (not opaque) up to where its
    /// path ends, and no component `upto`.
    fn clean(&self, j: usize, comps: &[&str], upto: usize) -> Result<bool> {
        let mut fd = open_root(&self.layers[j].1)?;
        for (k, c) in comps[..upto].iter().enumerate() {
            match probe(&fd, c) {
                Ok(next) => fd = next,
                Err(Errno::ENOENT) => return Ok(true),
                Err(_) => return Ok(false),
            }
            let st = fstat(fd.as_fd()).map_err(|e| {
                Error::io(format!("looking up /{}", comps[..=k].join("/")), e.into())
            })?;
            if kind(&st) != Kind::Dir || k + 1 == upto || is_opaque(&fd) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Write into the empty directory `upper` what overlayfs' upper holds
    /// after `mkdir -p` of `comps`, given their lookup `levels`: the
    /// existing directories copied up (mode, owner, extended attributes and
    /// times of their topmost entry; the parent of the first new directory
    /// gets the current mtime, as the mkdir in it gives it) and the missing
    /// ones new, 0755, owned by `owner`. Nothing when none is missing.
    pub(crate) fn mkdirs(
        &self,
        upper: &std::path::Path,
        comps: &[&str],
        levels: &[usize],
        owner: (u32, u32),
    ) -> Result<()> {
        use nix::sys::stat::{fchmod, futimens, mkdirat};
        use nix::sys::time::TimeSpec;
        use nix::unistd::{fchown, Gid, Uid};

        if levels.len() >= comps.len() {
            return Ok(());
        }
        let shown = |k: usize| format!("/{}", comps[..=k].join("/"));
        let mut up: OwnedFd = nix::fcntl::open(
            upper,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening {}", upper.display()), e.into()))?;
        // The topmost layer of a component is the same or a lower one than
        // its parent's: one descriptor per layer walked down.
        let mut low: Option<(usize, OwnedFd)> = None;
        // The times of the copied-up parent, restored after its child is made.
        let mut parent_times: Option<FileStat> = None;
        for (k, c) in comps.iter().enumerate() {
            let existing = k < levels.len();
            let src = if existing {
                let l = levels[k];
                let fd = match low.take() {
                    Some((cur, fd)) if cur == l => probe(&fd, c),
                    _ => {
                        let root = open_root(&self.layers[l].1)?;
                        probe(&root, &comps[..=k].join("/"))
                    }
                }
                .map_err(|e| Error::io(format!("looking up {}", shown(k)), e.into()))?;
                let st = fstat(fd.as_fd())
                    .map_err(|e| Error::io(format!("looking up {}", shown(k)), e.into()))?;
                if kind(&st) != Kind::Dir {
                    return Err(Error::Invalid(format!(
                        "creating directory {}: the layer changed under the build",
                        shown(k)
                    )));
                }
                let x = xattrs(&fd);
                low = Some((l, fd));
                Some((st, x))
            } else {
                None
            };
            let mode = src.as_ref().map_or(0o755, |(st, _)| st.st_mode & 0o7777);
            mkdirat(up.as_fd(), *c, Mode::from_bits_truncate(0o700))
                .map_err(|e| Error::io(format!("creating directory {}", shown(k)), e.into()))?;
            let next: OwnedFd = openat2(up.as_fd(), *c, how(OFlag::O_RDONLY | OFlag::O_DIRECTORY))
                .map_err(|e| Error::io(format!("opening directory {}", shown(k)), e.into()))?;
            let (uid, gid) = src.as_ref().map_or(owner, |(st, _)| (st.st_uid, st.st_gid));
            let err = |what: &str, e: Errno| {
                Error::io(format!("{what} of directory {}", shown(k)), e.into())
            };
            fchown(
                next.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .map_err(|e| err("changing the owner", e))?;
            // After chown, which clears set-id bits; exactly, past the umask.
            fchmod(next.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| err("changing the mode", e))?;
            if let Some((_, x)) = &src {
                for (name, val) in x {
                    // SAFETY: the name is NUL-terminated, the value valid
                    // for its length, the descriptor open.
                    let r = unsafe {
                        libc::fsetxattr(
                            next.as_raw_fd(),
                            name.as_ptr(),
                            val.as_ptr() as *const libc::c_void,
                            val.len(),
                            0,
                        )
                    };
                    if r != 0 {
                        return Err(Error::io(
                            format!(
                                "copying extended attribute {} of directory {}",
                                name.to_string_lossy(),
                                shown(k)
                            ),
                            std::io::Error::last_os_error(),
                        ));
                    }
                }
            }
            // The parent's times were changed by this mkdir: back to the
            // lower entry's, unless it is where the new directories start.
            if let Some(st) = parent_times.take() {
                if existing {
                    futimens(
                        up.as_fd(),
                        &TimeSpec::new(st.st_atime, st.st_atime_nsec),
                        &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
                    )
                    .map_err(|e| err("setting the times", e))?;
                }
            }
            parent_times = src.map(|(st, _)| st);
            up = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn merged_lookup_follows_overlay_rules() {
        let t = tempfile::tempdir().unwrap();
        let l = |n: &str| {
            let p = t.path().join(n);
            fs::create_dir_all(&p).unwrap();
            p
        };
        // bottom: /a/b/c; middle: /a/x; top: /a (a file /a/f).
        let (bottom, middle, top) = (l("bottom"), l("middle"), l("top"));
        fs::create_dir_all(bottom.join("a/b/c")).unwrap();
        fs::create_dir_all(middle.join("a/x")).unwrap();
        fs::create_dir_all(top.join("a")).unwrap();
        fs::write(top.join("a/f"), "f").unwrap();
        let memo = Memo::default();
        let chain = Chain::new(
            vec![
                (d(3), top.clone()),
                (d(2), middle.clone()),
                (d(1), bottom.clone()),
            ],
            &memo,
        );
        let found = |p: &str| chain.lookup(&p.split('/').collect::<Vec<_>>()).unwrap();
        assert_eq!(
            found("a/b/c/d/e"),
            Found::Path {
                levels: vec![0, 2, 2],
                file: None
            }
        );
        assert_eq!(
            found("a/f"),
            Found::Path {
                levels: vec![0],
                file: Some(0)
            }
        );
        // Asked again deeper: the memo answers for the layers lacking it.
        assert_eq!(
            found("a/b/c/d/e/f"),
            Found::Path {
                levels: vec![0, 2, 2],
                file: None
            }
        );
        // A file on the way, a symlink, a whiteout: the mounted view decides.
        assert_eq!(found("a/f/g"), Found::Mounted);
        std::os::unix::fs::symlink("/etc", middle.join("a/lnk")).unwrap();
        assert_eq!(found("a/lnk/x"), Found::Mounted);
        nix::sys::stat::mknod(
            &middle.join("a/b"),
            nix::sys::stat::SFlag::S_IFCHR,
            Mode::empty(),
            0,
        )
        .unwrap();
        // The whiteout in the middle hides the bottom's /a/b.
        assert_eq!(found("a/b/c/q"), Found::Mounted);
        fs::remove_file(middle.join("a/b")).unwrap();
        // An opaque /a in the middle hides the bottom's /a/b.
        let c = CString::new(middle.join("a").to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated strings, a one-byte value.
        let r = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr() as *const libc::c_void,
                1,
                0,
            )
        };
        assert_eq!(r, 0);
        let memo2 = Memo::default();
        let chain2 = Chain::new(vec![(d(3), top), (d(2), middle), (d(1), bottom)], &memo2);
        assert_eq!(chain2.lookup(&["a", "b", "c"]).unwrap(), Found::Mounted);
        assert_eq!(
            chain2.lookup(&["a", "y"]).unwrap(),
            Found::Path {
                levels: vec![0],
                file: None
            }
        );
    }

    #[test]
    fn mkdirs_copies_up_the_existing_and_creates_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        fs::create_dir_all(lower.join("a/b")).unwrap();
        fs::set_permissions(
            lower.join("a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1750),
        )
        .unwrap();
        std::os::unix::fs::lchown(lower.join("a"), Some(7), Some(8)).unwrap();
        crate::fsops::set_times(&lower.join("a"), 1_000_000, 0).unwrap();
        crate::fsops::set_times(&lower.join("a/b"), 1_000_000, 0).unwrap();
        let memo = Memo::default();
        let chain = Chain::new(vec![(d(1), lower)], &memo);
        let comps = ["a", "b", "c", "d"];
        let Found::Path { levels, .. } = chain.lookup(&comps).unwrap() else {
            panic!("plain directories")
        };
        assert_eq!(levels, vec![0, 0]);
        let upper = t.path().join("upper");
        fs::create_dir(&upper).unwrap();
        chain.mkdirs(&upper, &comps, &levels, (1000, 1001)).unwrap();
        let m = |p: &str| fs::symlink_metadata(upper.join(p)).unwrap();
        assert_eq!(
            (m("a").mode() & 0o7777, m("a").uid(), m("a").gid()),
            (0o1750, 7, 8)
        );
        // /a keeps its time; /a/b, where the new directories start, is changed.
        assert_eq!(m("a").mtime(), 1_000_000);
        assert_ne!(m("a/b").mtime(), 1_000_000);
        assert_eq!(
            (m("a/b/c").mode() & 0o7777, m("a/b/c").uid()),
            (0o755, 1000)
        );
        assert_eq!(
            (m("a/b/c/d").mode() & 0o7777, m("a/b/c/d").gid()),
            (0o755, 1001)
        );
    }
}
