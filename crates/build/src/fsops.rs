//! Filesystem work of a build step: an overlay over the parent layers, the
//! upper directory turned into a layer (tar with whiteouts and opaque
//! markers) and a snapshot, paths resolved inside a root, tree copies.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use hako_image::digest::Algorithm;
use hako_image::snapshot::{self, SnapshotInfo, Snapshotter};
use hako_image::store::ContentStore;
use hako_image::Digest;
use nix::mount::MsFlags;

use crate::error::{Error, IoContext, Result};
use crate::state::Layer;

/// The uncompressed OCI layer media type (layers are kept uncompressed, like `hako import`).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// An overlay mounted for one step: `rootfs/` over the parent layers with a
/// fresh `upper/`. Unmounted and removed on drop.
pub struct Overlay {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    mounted: bool,
}

impl Overlay {
    /// Mount the layers `chain` (chain ids, bottom first) in a new directory under `work`.
    pub fn mount(snapshots: &Snapshotter, chain: &[Digest], work: &Path) -> Result<Overlay> {
        fs::create_dir_all(work).ctx(|| format!("creating {}", work.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(work)
            .ctx(|| format!("creating a step directory in {}", work.display()))?
            .keep();
        let mut o = Overlay {
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            dir,
            mounted: false,
        };
        if chain.is_empty() {
            // scratch: one empty lower layer.
            let empty = o.dir.join("empty");
            fs::create_dir_all(&empty).ctx(|| format!("creating {}", empty.display()))?;
            o.mount_over(&empty)?;
        } else {
            snapshots.mount(chain, &o.dir)?;
        }
        o.mounted = true;
        Ok(o)
    }

    /// A writable overlay over a plain directory (what is written is dropped with it).
    /// `hide` (paths relative to `lower`) are whited out, so they are not seen.
    pub fn over_dir(lower: &Path, hide: &[PathBuf], work: &Path) -> Result<Overlay> {
        fs::create_dir_all(work).ctx(|| format!("creating {}", work.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("over-")
            .tempdir_in(work)
            .ctx(|| format!("creating an overlay directory in {}", work.display()))?
            .keep();
        let mut o = Overlay {
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            dir,
            mounted: false,
        };
        for h in hide {
            let w = o.upper.join(h);
            if let Some(parent) = w.parent() {
                fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
            }
            nix::sys::stat::mknod(
                &w,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .ctx(|| format!("hiding {} in an overlay", h.display()))?;
        }
        o.mount_over(lower)?;
        o.mounted = true;
        Ok(o)
    }

    fn mount_over(&self, lower: &Path) -> Result<()> {
        let work_dir = self.dir.join("work");
        for d in [&self.upper, &work_dir, &self.rootfs] {
            fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
        }
        let shown = lower.to_string_lossy();
        if shown.contains([',', ':', '\\']) {
            return Err(Error::Invalid(format!(
                "mounting an overlay over {shown}: the path has a character overlayfs options cannot carry"
            )));
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            self.upper.display(),
            work_dir.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &self.rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .ctx(|| format!("mounting an overlay at {}", self.rootfs.display()))?;
        Ok(())
    }

    pub fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            Snapshotter::unmount(&self.dir)?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = self.unmount();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Resolve `path` (absolute inside the root) in `root`, following symlinks
/// as if `root` were `/`: the result never leaves `root`.
pub fn secure_join(root: &Path, path: &str) -> Result<PathBuf> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(seg) = pending.pop() {
        match seg.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf = std::iter::once(root.to_path_buf())
            .chain(done.iter().map(PathBuf::from))
            .chain(std::iter::once(PathBuf::from(&seg)))
            .collect();
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(Error::Invalid(format!(
                        "resolving {path}: too many levels of symbolic links"
                    )));
                }
                let target = fs::read_link(&candidate)
                    .ctx(|| format!("reading link {}", candidate.display()))?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                for s in t.split('/').filter(|s| !s.is_empty()).rev() {
                    pending.push(s.to_string());
                }
            }
            _ => done.push(seg),
        }
    }
    Ok(std::iter::once(root.to_path_buf())
        .chain(done.iter().map(PathBuf::from))
        .collect())
}

/// Remove what the runtime created only to mount over (mount points that did
/// not exist before the step), when still empty, deepest first.
pub fn remove_stubs(upper: &Path, stubs: &[String]) {
    let mut stubs: Vec<&String> = stubs.iter().collect();
    stubs.sort_by_key(|s| std::cmp::Reverse(s.matches('/').count()));
    for s in stubs {
        let p = upper.join(s.trim_start_matches('/'));
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.is_dir() {
                let _ = fs::remove_dir(&p);
            } else if m.is_file() && m.len() == 0 {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    xattr_get(p, "trusted.overlay.opaque").as_deref() == Some(b"y".as_slice())
}

fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let cn = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: both strings are NUL-terminated and live for the call; the
    // buffer is valid for buf.len() bytes.
    let n = unsafe {
        libc::lgetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Extended attributes a layer carries (overlay's own and SELinux labels stay out).
fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cp) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: the path is NUL-terminated; the buffer is valid for its length.
    let n = unsafe {
        libc::llistxattr(
            cp.as_ptr(),
            names.as_mut_ptr() as *mut libc::c_char,
            names.len(),
        )
    };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| std::str::from_utf8(n).ok())
        .filter(|n| !n.starts_with("trusted.overlay.") && *n != "security.selinux")
        .filter_map(|n| xattr_get(p, n).map(|v| (n.to_string(), v)))
        .collect()
}

/// Entries of a directory, sorted by name (layers are reproducible).
pub fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let mut v: Vec<fs::DirEntry> = fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .collect::<io::Result<_>>()
        .ctx(|| format!("listing {}", dir.display()))?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    /// Clamp mtimes to SOURCE_DATE_EPOCH.
    epoch: Option<i64>,
    links: HashMap<(u64, u64), PathBuf>,
    /// Paths (relative, as in the layer) left out with what is below them.
    skip: Vec<PathBuf>,
}

impl<W: Write> TarWriter<W> {
    fn header(&self, m: &fs::Metadata, typ: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(typ);
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(m.uid() as u64);
        h.set_gid(m.gid() as u64);
        let mtime = match self.epoch {
            Some(e) => m.mtime().min(e),
            None => m.mtime(),
        };
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    fn empty_file(&mut self, path: &Path) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        // Every numeric field is written: readers (ours included) refuse
        // an empty uid, and such a layer would not unpack after a push.
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.epoch.unwrap_or(0).max(0) as u64);
        self.tar.append_data(&mut h, path, io::empty())
    }

    /// Add `dir` (host) as `rel` (in the layer) with everything below,
    /// depth first in name order. A stack of directories rather than
    /// recursion: a tree hundreds of levels deep (nested WORKDIRs) must not
    /// overflow the thread's stack.
    fn add_tree(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut stack = vec![(sorted_entries(dir)?.into_iter(), rel.to_path_buf())];
        loop {
            let Some((entries, rel)) = stack.last_mut() else {
                return Ok(());
            };
            let Some(e) = entries.next() else {
                stack.pop();
                continue;
            };
            let rel = rel.clone();
            if let Some(sub) = self.add_entry(&e, &rel)? {
                stack.push((sorted_entries(&e.path())?.into_iter(), sub));
            }
        }
    }

    /// Add one entry; for a directory, the name to descend into.
    fn add_entry(&mut self, e: &fs::DirEntry, rel: &Path) -> Result<Option<PathBuf>> {
        {
            let host = e.path();
            let name = rel.join(e.file_name());
            if self.skip.contains(&name) {
                return Ok(None);
            }
            let m = fs::symlink_metadata(&host).ctx(|| format!("reading {}", host.display()))?;
            let ft = m.file_type();
            let err = |e: io::Error| Error::io(format!("adding {} to a layer", name.display()), e);
            if is_whiteout(&m) {
                let wh = rel.join(format!(".wh.{}", e.file_name().to_string_lossy()));
                self.empty_file(&wh).map_err(err)?;
                return Ok(None);
            }
            // The snapshot gets the clamped times the tar has.
            if let Some(e) = self.epoch {
                if m.mtime() > e {
                    set_times(&host, e, 0)?;
                }
            }
            let x = xattrs(&host);
            if !x.is_empty() {
                let keys: Vec<String> =
                    x.iter().map(|(k, _)| format!("SCHILY.xattr.{k}")).collect();
                self.tar
                    .append_pax_extensions(
                        keys.iter()
                            .map(String::as_str)
                            .zip(x.iter().map(|(_, v)| v.as_slice())),
                    )
                    .map_err(err)?;
            }
            if ft.is_dir() {
                let mut h = self.header(&m, tar::EntryType::Directory);
                self.tar
                    .append_data(&mut h, &name, io::empty())
                    .map_err(err)?;
                if is_opaque(&host) {
                    self.empty_file(&name.join(".wh..wh..opq")).map_err(err)?;
                }
                return Ok(Some(name));
            } else if ft.is_symlink() {
                let target = fs::read_link(&host).map_err(err)?;
                let mut h = self.header(&m, tar::EntryType::Symlink);
                self.tar.append_link(&mut h, &name, &target).map_err(err)?;
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                        let first = first.clone();
                        let mut h = self.header(&m, tar::EntryType::Link);
                        self.tar.append_link(&mut h, &name, &first).map_err(err)?;
                        return Ok(None);
                    }
                    self.links.insert((m.dev(), m.ino()), name.clone());
                }
                let mut h = self.header(&m, tar::EntryType::Regular);
                h.set_size(m.len());
                let f = fs::File::open(&host).map_err(err)?;
                self.tar.append_data(&mut h, &name, f).map_err(err)?;
            } else {
                let typ = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else {
                    return Ok(None); // sockets do not go into layers
                };
                let mut h = self.header(&m, typ);
                let rdev = m.rdev();
                h.set_device_major(libc::major(rdev)).map_err(err)?;
                h.set_device_minor(libc::minor(rdev)).map_err(err)?;
                self.tar
                    .append_data(&mut h, &name, io::empty())
                    .map_err(err)?;
            }
        }
        Ok(None)
    }
}

/// Whether a directory is empty.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .next()
        .is_none())
}

/// Turn the upper directory of a step into a layer: a tar blob in the
/// content store and, from the very same tree, the snapshot `parent_chain +
/// diff id`. None when the step changed nothing. The caller holds the
/// store's write lock.
pub fn commit_upper(
    content: &ContentStore,
    snapshots: &Snapshotter,
    upper: &Path,
    parent_diff_ids: &[Digest],
    epoch: Option<i64>,
) -> Result<Option<Layer>> {
    if is_empty_dir(upper)? {
        return Ok(None);
    }
    let layer = layer_of_tree(content, upper, epoch, Vec::new())?;
    let (size, diff_id): (u64, Digest) = (layer.size, layer.diff_id.parse()?);
    let mut ids = parent_diff_ids.to_vec();
    ids.push(diff_id.clone());
    let chain_id = snapshot::chain_ids(&ids).pop().expect("one id at least");
    if !snapshots.exists(&chain_id) {
        let staged = snapshots.stage()?;
        fs::rename(upper, staged.fs())
            .ctx(|| format!("moving {} into a snapshot", upper.display()))?;
        snapshots.publish(
            staged,
            &SnapshotInfo {
                chain_id,
                diff_id: diff_id.clone(),
                size,
            },
        )?;
    }
    Ok(Some(layer))
}

/// An overlay upper directory (whiteouts and opaque directories included)
/// as an uncompressed layer blob in the content store, `skip` left out
/// (paths as in the layer, "etc/hosts"). The caller holds the store's
/// write lock.
pub fn layer_of_tree(
    content: &ContentStore,
    dir: &Path,
    epoch: Option<i64>,
    skip: Vec<PathBuf>,
) -> Result<Layer> {
    let writer = content.writer(None, Algorithm::Sha256)?;
    let mut tw = TarWriter {
        tar: tar::Builder::new(writer),
        epoch,
        links: HashMap::new(),
        skip,
    };
    tw.tar.mode(tar::HeaderMode::Complete);
    tw.add_tree(dir, Path::new(""))?;
    let writer = tw
        .tar
        .into_inner()
        .ctx(|| "finishing a layer tar".to_string())?;
    let size = writer.written();
    // The blob is the uncompressed tar, so its digest is the diff id.
    let diff_id = writer.commit()?;
    Ok(Layer {
        blob: diff_id.to_string(),
        media_type: LAYER_MEDIA_TYPE.to_string(),
        size,
        diff_id: diff_id.to_string(),
    })
}

/// Whether an upper-directory entry is an overlay whiteout (a deletion).
pub fn is_whiteout_entry(m: &fs::Metadata) -> bool {
    is_whiteout(m)
}

/// Options of a tree copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOwner {
    /// Set every copied entry's owner.
    pub chown: Option<(u32, u32)>,
    /// Change every copied entry's permission bits.
    pub chmod: Option<Chmod>,
}

/// A `--chmod` value: octal (`0755`) or symbolic (`u+x,go-w`, `a=rX`) as
/// chmod(1) reads it, folded into masks: `(mode & !clear) | set`, plus
/// `exec` bits for directories and already executable files (`X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chmod {
    clear: u32,
    set: u32,
    exec: u32,
}

impl Chmod {
    pub fn parse(s: &str) -> std::result::Result<Chmod, String> {
        if !s.is_empty() && s.chars().all(|c| c.is_digit(8)) {
            let m = u32::from_str_radix(s, 8).map_err(|e| format!("--chmod={s}: {e}"))?;
            if m > 0o7777 {
                return Err(format!("--chmod={s}: not a mode"));
            }
            return Ok(Chmod {
                clear: 0o7777,
                set: m,
                exec: 0,
            });
        }
        let mut c = Chmod {
            clear: 0,
            set: 0,
            exec: 0,
        };
        for clause in s.split(',') {
            let who_end = clause
                .find(|ch| !"ugoa".contains(ch))
                .ok_or_else(|| format!("--chmod={s}: {clause:?} has no operator"))?;
            let mut who = 0;
            for w in clause[..who_end].chars() {
                who |= match w {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    _ => 0o7777,
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let mut rest = &clause[who_end..];
            if rest.is_empty() {
                return Err(format!("--chmod={s}: {clause:?} has no operator"));
            }
            while let Some(op) = rest.chars().next() {
                if !"+-=".contains(op) {
                    return Err(format!("--chmod={s}: unexpected {op:?} in {clause:?}"));
                }
                rest = &rest[1..];
                let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
                let (mut bits, mut xbits) = (0, 0);
                for p in rest[..end].chars() {
                    match p {
                        'r' => bits |= 0o444,
                        'w' => bits |= 0o222,
                        'x' => bits |= 0o111,
                        'X' => xbits |= 0o111,
                        's' => bits |= 0o6000,
                        't' => bits |= 0o1000,
                        _ => return Err(format!("--chmod={s}: unknown permission {p:?}")),
                    }
                }
                let (bits, xbits) = (bits & who, xbits & who);
                match op {
                    '+' => {
                        c.set |= bits;
                        c.clear &= !bits;
                        c.exec |= xbits;
                    }
                    '-' => {
                        c.clear |= bits | xbits;
                        c.set &= !(bits | xbits);
                        c.exec &= !(bits | xbits);
                    }
                    _ => {
                        c.clear |= who;
                        c.set = (c.set & !who) | bits;
                        c.exec = (c.exec & !who) | xbits;
                    }
                }
                rest = &rest[end..];
            }
        }
        Ok(c)
    }

    /// The new permission bits of an entry with `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut m = (mode & !self.clear) | self.set;
        if is_dir || mode & 0o111 != 0 {
            m |= self.exec;
        }
        m & 0o7777
    }
}

/// Copy one entry `src` (host path, not followed if a symlink) to `dst`
/// (a host path already resolved inside the target root), recursively;
/// `filter` decides per source path whether to copy it.
pub fn copy_entry(
    src: &Path,
    dst: &Path,
    own: CopyOwner,
    filter: &dyn Fn(&Path) -> bool,
) -> Result<()> {
    let m = fs::symlink_metadata(src).ctx(|| format!("reading {}", src.display()))?;
    let ft = m.file_type();
    let (uid, gid) = own.chown.unwrap_or((m.uid(), m.gid()));
    let mode = match own.chmod {
        Some(c) => c.apply(m.mode() & 0o7777, ft.is_dir()),
        None => m.mode() & 0o7777,
    };
    if ft.is_dir() {
        match fs::symlink_metadata(dst) {
            Ok(d) if d.is_dir() => {}
            Ok(_) => {
                remove_any(dst)?;
                fs::create_dir(dst).ctx(|| format!("creating {}", dst.display()))?;
            }
            Err(_) => fs::create_dir(dst).ctx(|| format!("creating {}", dst.display()))?,
        }
        for e in sorted_entries(src)? {
            let p = e.path();
            if !filter(&p) {
                continue;
            }
            copy_entry(&p, &dst.join(e.file_name()), own, filter)?;
        }
        set_meta(dst, uid, gid, Some(mode), &m)?;
        return Ok(());
    }
    if fs::symlink_metadata(dst).is_ok() {
        remove_any(dst)?;
    }
    if ft.is_symlink() {
        let target = fs::read_link(src).ctx(|| format!("reading link {}", src.display()))?;
        std::os::unix::fs::symlink(&target, dst)
            .ctx(|| format!("creating link {}", dst.display()))?;
        set_meta(dst, uid, gid, None, &m)?;
    } else if ft.is_file() {
        fs::copy(src, dst).ctx(|| format!("copying {} to {}", src.display(), dst.display()))?;
        set_meta(dst, uid, gid, Some(mode), &m)?;
    } else {
        let kind = if ft.is_char_device() {
            nix::sys::stat::SFlag::S_IFCHR
        } else if ft.is_block_device() {
            nix::sys::stat::SFlag::S_IFBLK
        } else if ft.is_fifo() {
            nix::sys::stat::SFlag::S_IFIFO
        } else {
            return Ok(());
        };
        nix::sys::stat::mknod(
            dst,
            kind,
            nix::sys::stat::Mode::from_bits_truncate(mode),
            m.rdev(),
        )
        .ctx(|| format!("creating {}", dst.display()))?;
        set_meta(dst, uid, gid, Some(mode), &m)?;
    }
    Ok(())
}

fn remove_any(p: &Path) -> Result<()> {
    let m = fs::symlink_metadata(p).ctx(|| format!("reading {}", p.display()))?;
    if m.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .ctx(|| format!("replacing {}", p.display()))
}

/// Owner, mode and times of a copied entry (times from the source).
pub fn set_meta(p: &Path, uid: u32, gid: u32, mode: Option<u32>, src: &fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .ctx(|| format!("changing owner of {}", p.display()))?;
    if let Some(mode) = mode {
        // After chown, which clears setuid bits.
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .ctx(|| format!("changing mode of {}", p.display()))?;
    }
    set_times(p, src.mtime(), src.mtime_nsec())
}

/// Set atime and mtime of `p` (not following a symlink).
pub fn set_times(p: &Path, secs: i64, nsecs: i64) -> Result<()> {
    let t = nix::sys::time::TimeSpec::new(secs, nsecs);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .ctx(|| format!("setting times of {}", p.display()))
}

/// Create `dir` (a host path inside a root, resolved) and its missing
/// parents below `root`, owned by `owner`, mode 0755; returns nothing
/// created when it already existed.
pub fn mkdir_all_in(root: &Path, path: &str, owner: (u32, u32)) -> Result<PathBuf> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::{fchmodat, fstat, mkdirat, FchmodatFlags, Mode, SFlag};
    use nix::unistd::{fchownat, Gid, Uid};
    use std::os::fd::{AsFd, OwnedFd};

    // One directory descriptor walked down the path: each component costs
    // O(1), so a path of depth d costs O(d), where resolving every prefix
    // from the root cost O(d^3) (N nested WORKDIRs were O(N^4)) and paths
    // past PATH_MAX failed. A symlink component (rare) is resolved inside
    // the root the slow way.
    let step = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let is_dir = |fd: &OwnedFd| {
        fstat(fd)
            .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR)
    };
    let reopen = |host: &Path, cur: &str| -> Result<OwnedFd> {
        let f = fs::File::open(host).ctx(|| format!("opening directory {cur}"))?;
        Ok(OwnedFd::from(f))
    };
    let mut dir: OwnedFd = reopen(root, "/")?;
    let mut cur = String::new();
    // The host path while no symlink was followed (else resolved at the end).
    let mut host: Option<PathBuf> = Some(root.to_path_buf());
    for seg in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        cur.push('/');
        cur.push_str(seg);
        if seg == ".." {
            let h = secure_join(root, &cur)?;
            dir = reopen(&h, &cur)?;
            host = None;
            continue;
        }
        match openat2(dir.as_fd(), seg, step) {
            Ok(fd) if is_dir(&fd) => {
                dir = fd;
                if let Some(h) = host.as_mut() {
                    h.push(seg);
                }
            }
            Ok(fd) if fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) => {
                // A symlink: follow it inside the root, creating its target.
                let h = secure_join(root, &cur)?;
                if fs::symlink_metadata(&h).is_err() {
                    fs::create_dir(&h).ctx(|| format!("creating directory {cur}"))?;
                    fs::set_permissions(&h, fs::Permissions::from_mode(0o755))
                        .ctx(|| format!("changing mode of {cur}"))?;
                    std::os::unix::fs::lchown(&h, Some(owner.0), Some(owner.1))
                        .ctx(|| format!("changing owner of {cur}"))?;
                } else if !h.is_dir() {
                    return Err(Error::Invalid(format!(
                        "cannot create directory {cur}: a file of that name exists"
                    )));
                }
                dir = reopen(&h, &cur)?;
                host = None;
            }
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "cannot create directory {cur}: a file of that name exists"
                )))
            }
            Err(nix::errno::Errno::ENOENT) => {
                mkdirat(dir.as_fd(), seg, Mode::from_bits_truncate(0o755))
                    .map_err(|e| Error::io(format!("creating directory {cur}"), e.into()))?;
                // The umask may have cleared bits: set the mode exactly.
                fchmodat(
                    dir.as_fd(),
                    seg,
                    Mode::from_bits_truncate(0o755),
                    FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| Error::io(format!("changing mode of {cur}"), e.into()))?;
                fchownat(
                    dir.as_fd(),
                    seg,
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| Error::io(format!("changing owner of {cur}"), e.into()))?;
                dir = openat2(dir.as_fd(), seg, step)
                    .map_err(|e| Error::io(format!("opening directory {cur}"), e.into()))?;
                if let Some(h) = host.as_mut() {
                    h.push(seg);
                }
            }
            Err(e) => return Err(Error::io(format!("resolving {cur}"), e.into())),
        }
    }
    match host {
        Some(h) => Ok(h),
        None => secure_join(root, path),
    }
}

/// Lexically clean an absolute path inside a container.
pub fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => out.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// File name of a path as a string.
pub fn base_name(p: &str) -> &str {
    Path::new(p)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkdir_all_in_is_linear_and_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // 3000 levels: past PATH_MAX, which a path-based walk cannot reach.
        let deep = "/d".repeat(3000);
        let host = mkdir_all_in(r, &deep, (1, 2)).unwrap();
        assert_eq!(host, r.join(deep.trim_start_matches('/')));
        // Creating one more level of an existing deep path works too.
        let deeper = format!("{deep}/e");
        mkdir_all_in(r, &deeper, (0, 0)).unwrap();
        let mut p = std::fs::File::open(r.join("d")).unwrap();
        for _ in 1..3000 {
            p = std::fs::File::open(format!(
                "/proc/self/fd/{}/d",
                std::os::fd::AsRawFd::as_raw_fd(&p)
            ))
            .unwrap();
        }
        let md = p.metadata().unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.permissions().mode() & 0o7777),
            (1, 2, 0o755)
        );
        // Symlinks resolve inside the root, creating their target.
        fs::create_dir(r.join("x")).unwrap();
        std::os::unix::fs::symlink("/x/y", r.join("link")).unwrap();
        assert_eq!(mkdir_all_in(r, "/link/z", (0, 0)).unwrap(), r.join("x/y/z"));
        assert!(r.join("x/y/z").is_dir());
        std::os::unix::fs::symlink("../../..", r.join("up")).unwrap();
        assert_eq!(mkdir_all_in(r, "/up/w", (0, 0)).unwrap(), r.join("w"));
        fs::write(r.join("file"), "").unwrap();
        let e = mkdir_all_in(r, "/file/sub", (0, 0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a file of that name exists"), "{e}");
    }

    #[test]
    fn secure_join_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("a/abs")).unwrap();
        std::os::unix::fs::symlink("../../..", r.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("b", r.join("a/rel")).unwrap();
        assert_eq!(
            secure_join(r, "/a/abs/passwd").unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(secure_join(r, "/a/b/up/x").unwrap(), r.join("x"));
        assert_eq!(secure_join(r, "a/rel/c").unwrap(), r.join("a/b/c"));
        assert_eq!(secure_join(r, "/../../x").unwrap(), r.join("x"));
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(secure_join(r, "/loop/x").is_err());
    }

    #[test]
    fn layers_carry_whiteouts_and_xattrs() {
        let t = tempfile::tempdir().unwrap();
        let store = hako_image::ImageStore::open(&t.path().join("root")).unwrap();
        let upper = t.path().join("root/upper");
        fs::create_dir_all(upper.join("dir")).unwrap();
        fs::write(upper.join("dir/file"), "data").unwrap();
        std::fs::hard_link(upper.join("dir/file"), upper.join("link")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let p = std::ffi::CString::new(upper.join("dir/file").to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated strings and a valid value buffer.
        let r = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                c"user.note".as_ptr(),
                b"hi".as_ptr() as *const libc::c_void,
                2,
                0,
            )
        };
        let with_xattr = r == 0; // not every filesystem has user xattrs
        let layer = commit_upper(store.content(), store.snapshots(), &upper, &[], Some(5))
            .unwrap()
            .unwrap();
        let blob = store.content().read(&layer.blob.parse().unwrap()).unwrap();
        let mut a = tar::Archive::new(blob.as_slice());
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            assert!(e.header().mtime().unwrap() <= 5, "{path} mtime not clamped");
            let mut x = Vec::new();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for ext in exts {
                    let ext = ext.unwrap();
                    x.push(format!("{}={}", ext.key().unwrap(), ext.value().unwrap()));
                }
            }
            // Every header is whole (a pulled copy is unpacked from them).
            assert!(
                e.header().uid().is_ok() && e.header().gid().is_ok(),
                "{path}"
            );
            seen.push((path, e.header().entry_type(), x));
        }
        // hako's own unpacker takes the blob (as after a push and a pull).
        let target = t.path().join("unpacked");
        fs::create_dir_all(&target).unwrap();
        let limits = hako_image::layer::ApplyLimits::for_target(&target).unwrap();
        hako_image::layer::apply(
            &target,
            "the layer",
            blob.as_slice(),
            hako_image::manifest::Compression::None,
            Algorithm::Sha256,
            &limits,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(target.join("dir/file")).unwrap(), "data");
        let names: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(names, ["dir", "dir/file", ".wh.gone", "link"]);
        assert_eq!(seen[3].1, tar::EntryType::Link);
        if with_xattr {
            assert_eq!(seen[1].2, ["SCHILY.xattr.user.note=hi"]);
        }
        // The upper directory became the snapshot.
        let chain = hako_image::snapshot::chain_ids(&[layer.diff_id.parse().unwrap()]);
        assert!(store.snapshots().exists(&chain[0]));
        assert!(!upper.exists());
    }

    #[test]
    fn chmod_modes() {
        let c = |s: &str| Chmod::parse(s).unwrap();
        assert_eq!(c("0755").apply(0o644, false), 0o755);
        assert_eq!(c("755").apply(0o600, true), 0o755);
        assert_eq!(c("+x").apply(0o644, false), 0o755);
        assert_eq!(c("u+x").apply(0o644, false), 0o744);
        assert_eq!(c("go-w").apply(0o666, false), 0o644);
        assert_eq!(c("u=rwx,g=rx,o=").apply(0o666, false), 0o750);
        assert_eq!(c("a=rX").apply(0o644, false), 0o444);
        assert_eq!(c("a=rX").apply(0o644, true), 0o555);
        assert_eq!(c("a=rX").apply(0o744, false), 0o555);
        assert_eq!(c("u+s,+t").apply(0o755, false), 0o5755);
        assert_eq!(c("u+x-w").apply(0o644, false), 0o544);
        assert!(Chmod::parse("u").is_err());
        assert!(Chmod::parse("u+q").is_err());
        assert!(Chmod::parse("99999").is_err());
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("/../x"), "/x");
        assert_eq!(base_name("/a/b.txt"), "b.txt");
    }
}
