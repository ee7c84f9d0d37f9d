//! The build context: a local directory filtered by `.dockerignore` (or
//! `<Dockerfile>.dockerignore`, which wins), source lookup with wildcards,
//! and content digests of sources for the cache.
//!
//! The Dockerfile and the ignore files are read inside the context only
//! (openat2 RESOLVE_BENEATH: a symlink that leads out of the context is an
//! error, as docker's), regular files only, with a size cap: a context is
//! untrusted input and must never make hako read a host file.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::fsops;
use crate::ignore::{self, Ignore};

/// A directory files are copied from: the build context (with its ignore
/// rules) or another stage's or image's root filesystem.
#[derive(Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub ignore: Ignore,
    /// A root filesystem: symlinks resolve inside it and owners are kept.
    pub is_rootfs: bool,
}

/// The largest Dockerfile or ignore file read.
pub const MAX_FILE_SIZE: u64 = 16 << 20;

/// `p` made absolute and cleaned of `.` and `..` without touching the file
/// system (so no symlink is followed).
fn lexical(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::from("/");
    for c in abs.components() {
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

/// `file` relative to the context `dir` when it names a path inside it.
pub fn inside(dir: &Path, file: &Path) -> Option<PathBuf> {
    let rel = lexical(file).strip_prefix(lexical(dir)).ok()?.to_path_buf();
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// Read an opened (O_PATH) file: regular files only, at most [`MAX_FILE_SIZE`].
fn read_opened(fd: std::os::fd::OwnedFd, what: &str) -> Result<Vec<u8>> {
    let st =
        nix::sys::stat::fstat(&fd).map_err(|e| Error::io(format!("reading {what}"), e.into()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::Invalid(format!("{what}: not a regular file")));
    }
    if st.st_size as u64 > MAX_FILE_SIZE {
        return Err(Error::Invalid(format!(
            "{what}: larger than {} MiB",
            MAX_FILE_SIZE >> 20
        )));
    }
    // Reopened for reading through the O_PATH descriptor: the inode checked
    // above is the one read (opening a device or FIFO is never attempted).
    let f = fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ctx(|| format!("reading {what}"))?;
    let mut data = Vec::new();
    f.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut data)
        .ctx(|| format!("reading {what}"))?;
    if data.len() as u64 > MAX_FILE_SIZE {
        return Err(Error::Invalid(format!(
            "{what}: larger than {} MiB",
            MAX_FILE_SIZE >> 20
        )));
    }
    Ok(data)
}

fn open_error(what: &str, e: Errno) -> Error {
    match e {
        Errno::EXDEV => Error::Invalid(format!(
            "{what}: a symbolic link leads outside the build context"
        )),
        Errno::ELOOP => Error::Invalid(format!("{what}: too many levels of symbolic links")),
        e => Error::io(format!("reading {what}"), e.into()),
    }
}

/// Read `rel` inside the context `dir` (None when it does not exist).
pub fn read_inside(dir: &Path, rel: &Path, what: &str) -> Result<Option<Vec<u8>>> {
    let root = fs::File::open(dir).ctx(|| format!("opening build context {}", dir.display()))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(root.as_fd(), rel, how) {
        Ok(fd) => read_opened(fd, what).map(Some),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(open_error(what, e)),
    }
}

/// Read a file named outside the context (`-f` elsewhere): regular files
/// only, capped (None when it does not exist).
pub fn read_named(path: &Path, what: &str) -> Result<Option<Vec<u8>>> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(nix::fcntl::AT_FDCWD, path, how) {
        Ok(fd) => read_opened(fd, what).map(Some),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(open_error(what, e)),
    }
}

/// Read a file of the build: inside the context when it lies there, else as named.
fn read_build_file(dir: &Path, file: &Path, what: &str) -> Result<Option<Vec<u8>>> {
    match inside(dir, file) {
        Some(rel) => read_inside(dir, &rel, what),
        None => read_named(file, what),
    }
}

/// The Dockerfile of a build: (its name for messages, its text).
pub fn read_dockerfile(dir: &Path, dockerfile: &Path) -> Result<(String, String)> {
    let name = dockerfile.display().to_string();
    let data = read_build_file(dir, dockerfile, &name)?
        .ok_or_else(|| Error::Invalid(format!("{name}: no such Dockerfile")))?;
    let text = String::from_utf8(data)
        .map_err(|_| Error::Invalid(format!("{name}: not a UTF-8 text file")))?;
    Ok((name, text))
}

impl Tree {
    /// The build context `dir`, with the ignore file next to `dockerfile` or in `dir`.
    pub fn context(dir: &Path, dockerfile: &Path) -> Result<Tree> {
        let md = fs::metadata(dir).ctx(|| format!("opening build context {}", dir.display()))?;
        if !md.is_dir() {
            return Err(Error::Invalid(format!(
                "build context {} is not a directory",
                dir.display()
            )));
        }
        let specific = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
        let text = match read_build_file(dir, &specific, &specific.display().to_string())? {
            Some(t) => Some(t),
            None => read_inside(dir, Path::new(".dockerignore"), ".dockerignore")?,
        };
        let ignore = match text {
            Some(t) => Ignore::parse(&String::from_utf8(t).map_err(|_| {
                Error::Invalid("the .dockerignore file is not a UTF-8 text file".into())
            })?),
            None => Ignore::default(),
        };
        Ok(Tree {
            root: dir.to_path_buf(),
            ignore,
            is_rootfs: false,
        })
    }

    /// This tree with COPY `--exclude` patterns, which apply to paths as
    /// named (`*.log`) and inside each directory source (`dir/*.log`).
    pub fn excluding(&self, patterns: &[String], dirs: &[String]) -> Tree {
        let mut t = self.clone();
        for p in patterns {
            t.ignore.add(p);
            for d in dirs {
                t.ignore.add(&format!("{d}/{p}"));
            }
        }
        t
    }

    /// A named build context directory (`--build-context NAME=PATH`): its
    /// files as they are, owners not kept, symlinks staying inside.
    pub fn named(dir: &Path) -> Result<Tree> {
        let md = fs::metadata(dir).ctx(|| format!("opening build context {}", dir.display()))?;
        if !md.is_dir() {
            return Err(Error::Invalid(format!(
                "build context {} is not a directory",
                dir.display()
            )));
        }
        Ok(Tree {
            root: dir.to_path_buf(),
            ignore: Ignore::default(),
            is_rootfs: false,
        })
    }

    pub fn rootfs(dir: &Path) -> Tree {
        Tree {
            root: dir.to_path_buf(),
            ignore: Ignore::default(),
            is_rootfs: true,
        }
    }

    /// Whether a host path below the root is to be used.
    pub fn keep(&self, host: &Path) -> bool {
        let Ok(rel) = host.strip_prefix(&self.root) else {
            return false;
        };
        let rel = rel.to_string_lossy();
        if !self.ignore.excluded(&rel) {
            return true;
        }
        host.is_dir() && self.ignore.may_include_below(&rel)
    }

    /// The host path of a source path (relative to the root, never outside it).
    fn host(&self, rel: &str) -> Result<PathBuf> {
        fsops::secure_join(&self.root, rel)
    }

    /// The sources a COPY/ADD source pattern names: (relative path, host path).
    pub fn sources(&self, pattern: &str, what: &str) -> Result<Vec<(String, PathBuf)>> {
        let clean = ignore::clean(pattern);
        let not_found = || {
            Error::Invalid(format!(
                "{what}: source {pattern:?} not found{}",
                if self.is_rootfs {
                    ""
                } else {
                    " in the build context (or excluded by .dockerignore)"
                }
            ))
        };
        if !ignore::has_glob(&clean) {
            let host = self.host(&clean)?;
            if fs::symlink_metadata(&host).is_err() || (!clean.is_empty() && !self.keep(&host)) {
                return Err(not_found());
            }
            return Ok(vec![(clean, host)]);
        }
        let segs: Vec<&str> = clean.split('/').collect();
        let mut found = Vec::new();
        self.glob_walk("", &segs, &mut found)?;
        if found.is_empty() {
            return Err(not_found());
        }
        found.sort();
        Ok(found)
    }

    fn glob_walk(&self, rel: &str, segs: &[&str], out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        let Some((first, rest)) = segs.split_first() else {
            return Ok(());
        };
        let dir = self.host(rel)?;
        let Ok(entries) = fsops::sorted_entries(&dir) else {
            return Ok(());
        };
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if !ignore::glob(first, &name) {
                continue;
            }
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if !self.keep(&e.path()) {
                continue;
            }
            // Resolved inside the root, so a symlink never leads out of it.
            let host = self.host(&r)?;
            if rest.is_empty() {
                out.push((r, host));
            } else {
                self.glob_walk(&r, rest, out)?;
            }
        }
        Ok(())
    }

    /// Feed a source (recursively) into a content hash: names, types,
    /// modes, link targets and file contents (not times: an unchanged file
    /// always hits). Owners count only in root filesystems.
    pub fn hash_into(&self, rel: &str, host: &Path, h: &mut Sha256) -> Result<()> {
        let m = fs::symlink_metadata(host).ctx(|| format!("reading {}", host.display()))?;
        let mode = m.permissions().mode();
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(format!("{mode:o}").as_bytes());
        if self.is_rootfs {
            h.update(format!(" {}:{}", m.uid(), m.gid()).as_bytes());
        }
        h.update([0]);
        let ft = m.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(host).ctx(|| format!("reading link {}", host.display()))?;
            h.update(t.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            let mut f = fs::File::open(host).ctx(|| format!("reading {}", host.display()))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f
                    .read(&mut buf)
                    .ctx(|| format!("reading {}", host.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else if ft.is_dir() {
            for e in fsops::sorted_entries(host)? {
                let p = e.path();
                if !self.keep(&p) {
                    continue;
                }
                let r = format!("{rel}/{}", e.file_name().to_string_lossy());
                self.hash_into(&r, &p, h)?;
            }
        } else {
            h.update(m.rdev().to_le_bytes());
        }
        h.update([b'\n']);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_globs_and_ignore() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("src/sub")).unwrap();
        fs::write(d.join("src/a.rs"), "a").unwrap();
        fs::write(d.join("src/b.rs"), "b").unwrap();
        fs::write(d.join("src/sub/c.rs"), "c").unwrap();
        fs::write(d.join("notes.log"), "x").unwrap();
        fs::write(d.join(".dockerignore"), "*.log\nsrc/b.rs\n").unwrap();
        let tree = Tree::context(d, &d.join("Dockerfile")).unwrap();
        let s = tree.sources("src/*.rs", "COPY").unwrap();
        let names: Vec<&str> = s.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(names, vec!["src/a.rs"]);
        assert!(tree.sources("notes.log", "COPY").is_err());
        let e = tree.sources("missing", "COPY").unwrap_err().to_string();
        assert!(
            e.contains("\"missing\" not found in the build context"),
            "{e}"
        );
        assert_eq!(
            tree.sources("./src/../src/a.rs", "COPY").unwrap()[0].0,
            "src/a.rs"
        );
        // Content hashes change with content only.
        let hash = |tree: &Tree| {
            let mut h = Sha256::new();
            let (r, p) = &tree.sources("src", "COPY").unwrap()[0];
            tree.hash_into(r, p, &mut h).unwrap();
            h.finalize().to_vec()
        };
        let h1 = hash(&tree);
        fs::write(d.join("src/b.rs"), "changed but ignored").unwrap();
        assert_eq!(hash(&tree), h1);
        fs::write(d.join("src/a.rs"), "changed").unwrap();
        assert_ne!(hash(&tree), h1);
        // Dockerfile.dockerignore wins over .dockerignore.
        fs::write(d.join("Dockerfile.dockerignore"), "src\n").unwrap();
        let tree = Tree::context(d, &d.join("Dockerfile")).unwrap();
        assert!(tree.sources("src/a.rs", "COPY").is_err());
        assert!(tree.sources("notes.log", "COPY").is_ok());
    }
}
