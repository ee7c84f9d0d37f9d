//! Applying a layer tarball to a directory in one streaming pass:
//! read → hash (compressed digest) → decompress → hash (diff id) → unpack.
//!
//! The directory receives the layer in overlayfs "upper" format, like
//! containerd's overlay snapshotter: a `.wh.NAME` whiteout becomes a 0/0
//! character device NAME and a `.wh..wh..opq` marker sets
//! `trusted.overlay.opaque=y` on its directory. Stacking such directories as
//! overlay lower layers gives the image's root filesystem.
//!
//! Safety: every path is resolved inside the target with openat2
//! RESOLVE_IN_ROOT semantics (the `pathrs` crate) and symlinks in the middle
//! of a path are refused (RESOLVE_NO_SYMLINKS), so no entry can write outside
//! the target; entries with `..` components, absolute paths, hardlinks leaving
//! the layer or absurd sizes are refused with an error naming the layer and the entry.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{self, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use pathrs::flags::ResolverFlags;
use pathrs::{Handle, Root};
use tar::EntryType;

use crate::digest::{Algorithm, Digest, HashingReader};
use crate::error::{show, tar_io, Error, IoContext, Result};
use crate::manifest::Compression;

/// Name of the whiteout prefix in layer tarballs (OCI image-spec, layer.md).
const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker.
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// Size limits against absurd entries (zip bombs, lying headers).
#[derive(Debug, Clone, Copy)]
pub struct ApplyLimits {
    /// Largest single entry accepted.
    pub max_entry_size: u64,
    /// Largest sum of entry sizes accepted for one layer.
    pub max_total_size: u64,
}

impl ApplyLimits {
    /// Limits from the free space of the filesystem holding `target`: an
    /// entry larger than that can never be written, so it is refused up front.
    pub fn for_target(target: &Path) -> Result<Self> {
        let vfs = nix::sys::statvfs::statvfs(target)
            .ctx(|| format!("checking free space of {}", show(target)))?;
        #[allow(clippy::unnecessary_cast)] // the field types differ between libcs
        let free = vfs.blocks_available() as u64 * vfs.fragment_size() as u64;
        Ok(ApplyLimits {
            max_entry_size: free,
            max_total_size: free,
        })
    }
}

/// What applying a layer found out about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Digest of the bytes as read (the manifest's layer descriptor digest).
    pub compressed_digest: Digest,
    pub compressed_size: u64,
}

enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, R>>),
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: BufRead> Decoder<R> {
    fn into_inner(self) -> R {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.into_inner(),
            Decoder::Zstd(r) => r.finish(),
        }
    }
}

/// Apply the layer read from `reader` to the directory `target`.
/// `layer` names the layer in errors (its digest, usually).
pub fn apply(
    target: &Path,
    layer: &str,
    reader: impl Read,
    compression: Compression,
    compressed_algorithm: Algorithm,
    limits: &ApplyLimits,
) -> Result<Applied> {
    apply_inner(
        target,
        layer,
        reader,
        compression,
        compressed_algorithm,
        None,
        limits,
    )
}

/// Like [`apply`], for a blob announced as `expected`: when unpacking fails
/// (a corrupt stream, a refused entry), the rest of the blob is still hashed
/// and a digest mismatch is reported as such, since it is the real cause.
/// The caller still compares [`Applied::compressed_digest`] on success.
pub fn apply_expecting(
    target: &Path,
    layer: &str,
    reader: impl Read,
    compression: Compression,
    expected: &Digest,
    limits: &ApplyLimits,
) -> Result<Applied> {
    apply_inner(
        target,
        layer,
        reader,
        compression,
        expected.algorithm(),
        Some(expected),
        limits,
    )
}

fn apply_inner(
    target: &Path,
    layer: &str,
    reader: impl Read,
    compression: Compression,
    compressed_algorithm: Algorithm,
    expected: Option<&Digest>,
    limits: &ApplyLimits,
) -> Result<Applied> {
    let compressed =
        BufReader::with_capacity(1 << 20, HashingReader::new(reader, compressed_algorithm));
    let decoder = match compression {
        Compression::None => Decoder::Plain(compressed),
        Compression::Gzip => {
            Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(compressed)))
        }
        Compression::Zstd => Decoder::Zstd(Box::new(
            zstd::stream::read::Decoder::with_buffer(compressed)
                .ctx(|| format!("layer {layer}: starting zstd decompression"))?,
        )),
    };
    let diff = HashingReader::new(decoder, Algorithm::Sha256);
    let mut archive = tar::Archive::new(diff);
    let unpacked = (|| -> Result<()> {
        let mut unpacker = Unpacker::new(target, layer, *limits)?;
        let entries = archive
            .entries()
            .map_err(tar_io)
            .ctx(|| format!("layer {layer}: reading tar"))?;
        for entry in entries {
            let entry = entry
                .map_err(tar_io)
                .ctx(|| format!("layer {layer}: reading tar entry"))?;
            unpacker.entry(entry)?;
        }
        unpacker.finish()
    })();
    if let Err(err) = unpacked {
        return Err(explain(
            archive.into_inner().into_inner(),
            layer,
            expected,
            err,
        ));
    }
    // Drain what follows the tar's end-of-archive blocks so both digests cover every byte.
    let mut diff = archive.into_inner();
    if let Err(e) = io::copy(&mut diff, &mut io::sink()) {
        let err = Error::io(format!("layer {layer}: reading to the end of the layer"), e);
        return Err(explain(diff.into_inner(), layer, expected, err));
    }
    let (diff_id, size, decoder) = diff
        .finish()
        .ctx(|| format!("layer {layer}: reading to the end of the layer"))?;
    let (compressed_digest, compressed_size, _) = decoder
        .into_inner()
        .into_inner()
        .finish()
        .ctx(|| format!("layer {layer}: reading to the end of the layer"))?;
    Ok(Applied {
        diff_id,
        size,
        compressed_digest,
        compressed_size,
    })
}

/// After unpacking failed: hash what is left of the blob (without
/// decompressing it) so that a corrupt or substituted blob is reported as a
/// digest mismatch, its real cause, rather than as whatever broke first.
fn explain<R: Read>(
    decoder: Decoder<BufReader<HashingReader<R>>>,
    layer: &str,
    expected: Option<&Digest>,
    err: Error,
) -> Error {
    let Some(expected) = expected else { return err };
    match decoder.into_inner().into_inner().finish() {
        Ok((actual, _, _)) if &actual != expected => Error::DigestMismatch {
            what: format!("layer {layer}"),
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        _ => err,
    }
}

/// A tar entry type for an error: the type byte, as a character when it is
/// one (the tar crate's Debug form of an unknown type is an internal name).
fn entry_type_name(kind: EntryType) -> String {
    let b = kind.as_byte();
    if b.is_ascii_graphic() {
        format!("'{}' (byte 0x{b:02x})", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// A path from a tar header made relative and checked lexically: no
/// absolute paths, no `..`. Symlinks are handled by the resolver.
fn clean_path(raw: &[u8]) -> std::result::Result<PathBuf, &'static str> {
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("path has a '..' component"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

struct Unpacker<'a> {
    root: Root,
    layer: &'a str,
    limits: ApplyLimits,
    total: u64,
    /// Directory mtimes are set last: creating children changes them.
    dir_times: Vec<(PathBuf, TimeSpec)>,
}

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Unpacker<'a> {
    fn new(target: &Path, layer: &'a str, limits: ApplyLimits) -> Result<Self> {
        let root = Root::open(target)
            .map_err(|e| {
                Error::Invalid(format!(
                    "layer {layer}: opening target {}: {e}",
                    show(target)
                ))
            })?
            .with_resolver_flags(ResolverFlags::NO_SYMLINKS);
        Ok(Unpacker {
            root,
            layer,
            limits,
            total: 0,
            dir_times: Vec::new(),
        })
    }

    fn refuse(&self, entry: &Path, reason: impl Into<String>) -> Error {
        Error::HostileEntry {
            layer: self.layer.to_string(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    fn io_err(&self, entry: &Path, doing: &str, e: impl Into<io::Error>) -> Error {
        Error::io(
            format!(
                "layer {}: entry {:?}: {doing}",
                self.layer,
                entry.display().to_string()
            ),
            // Header fields the tar reader cannot parse are quoted by it: reworded.
            tar_io(e.into()),
        )
    }

    /// Resolve (creating if missing) the parent directory of `path` inside the target.
    fn parent(&self, path: &Path) -> Result<Handle> {
        let parent = path.parent().unwrap_or(Path::new(""));
        self.root
            .mkdir_all(parent, &Permissions::from_mode(0o755))
            .map_err(|e| self.refuse(path, format!("cannot resolve parent directory inside the layer ({e}); a parent may be a symlink or a file")))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = PathBuf::from(OsString::from_vec(raw.clone()));
        let path = clean_path(&raw).map_err(|r| self.refuse(&shown, r))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        // The entry's size, PAX "size" override included (the header field
        // alone is 0 or truncated for files past 8 GiB).
        let size = entry.size();
        if size > self.limits.max_entry_size {
            return Err(self.refuse(
                &shown,
                format!(
                    "size {size} exceeds the limit of {} bytes",
                    self.limits.max_entry_size
                ),
            ));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_size {
            return Err(self.refuse(
                &shown,
                format!(
                    "layer contents exceed the limit of {} bytes",
                    self.limits.max_total_size
                ),
            ));
        }
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            // The layer's root ("./"): the snapshot directory itself; nothing to create.
            return Ok(());
        };
        let meta = self.meta(&mut entry, &shown)?;

        let name_str = name.to_string_lossy();
        if name_str == WHITEOUT_OPAQUE {
            let parent = self.parent(&path)?;
            return set_xattr(parent.as_fd(), None, b"trusted.overlay.opaque", b"y")
                .map_err(|e| self.io_err(&shown, "marking directory opaque", e));
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.refuse(&shown, "malformed whiteout"));
            }
            let parent = self.parent(&path)?;
            let hidden = OsStr::new(hidden);
            self.clear(&parent, hidden, &path.with_file_name(hidden), false)?;
            return stat::mknodat(
                parent.as_fd(),
                hidden,
                SFlag::S_IFCHR,
                Mode::empty(),
                stat::makedev(0, 0),
            )
            .map_err(|e| self.io_err(&shown, "creating whiteout", e));
        }

        let parent = self.parent(&path)?;
        let pfd = parent.as_fd();
        let is_dir = kind == EntryType::Directory;
        self.clear(&parent, &name, &path, is_dir)?;
        let perm = Mode::from_bits_truncate(meta.mode & 0o7777);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = nix::fcntl::openat(
                    pfd,
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.io_err(&shown, "creating file", e))?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file)
                    .map_err(|e| self.io_err(&shown, "writing file", e))?;
            }
            EntryType::Directory => {
                match stat::mkdirat(pfd, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(self.io_err(&shown, "creating directory", e)),
                }
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "symlink without a target"))?
                    .into_owned();
                // The target is stored verbatim: it is only ever followed inside
                // the container's root, never by this unpacker.
                nix::unistd::symlinkat(OsStr::from_bytes(&link), pfd, name.as_os_str())
                    .map_err(|e| self.io_err(&shown, "creating symlink", e))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "hardlink without a target"))?
                    .into_owned();
                let target = clean_path(&link)
                    .map_err(|r| self.refuse(&shown, format!("hardlink target: {r}")))?;
                let target_name = target
                    .file_name()
                    .ok_or_else(|| self.refuse(&shown, "hardlink to the layer root"))?;
                let target_parent = self
                    .root
                    .resolve(target.parent().unwrap_or(Path::new("")))
                    .map_err(|e| {
                        self.refuse(
                            &shown,
                            format!(
                                "hardlink target {:?} is not inside this layer ({e})",
                                target.display().to_string()
                            ),
                        )
                    })?;
                // Without AT_SYMLINK_FOLLOW linkat links the target itself, never what it points at.
                nix::unistd::linkat(
                    target_parent.as_fd(),
                    target_name,
                    pfd,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| {
                    if e == Errno::ENOENT {
                        self.refuse(
                            &shown,
                            format!(
                                "hardlink target {:?} is not in this layer",
                                target.display().to_string()
                            ),
                        )
                    } else {
                        self.io_err(&shown, "creating hardlink", e)
                    }
                })?;
                // A hardlink shares the target's inode and so its metadata.
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Char | EntryType::Block => {
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        let flag = if kind == EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (flag, stat::makedev(major.into(), minor.into()))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                stat::mknodat(
                    pfd,
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    dev,
                )
                .map_err(|e| self.io_err(&shown, "creating device node", e))?;
            }
            other => {
                return Err(self.refuse(
                    &shown,
                    format!("unsupported entry type {}", entry_type_name(other)),
                ))
            }
        }
        // Owner before mode (chown clears setuid bits) and before xattrs
        // (chown drops security.capability); mtime last.
        let nofollow = AtFlags::AT_SYMLINK_NOFOLLOW;
        nix::unistd::fchownat(
            pfd,
            name.as_os_str(),
            Some(Uid::from_raw(meta.uid as u32)),
            Some(Gid::from_raw(meta.gid as u32)),
            nofollow,
        )
        .map_err(|e| self.io_err(&shown, "setting owner", e))?;
        if kind != EntryType::Symlink {
            stat::fchmodat(
                pfd,
                name.as_os_str(),
                perm,
                stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| self.io_err(&shown, "setting mode", e))?;
        }
        for (key, value) in &meta.xattrs {
            set_xattr(pfd, Some(&name), key, value).map_err(|e| {
                self.io_err(
                    &shown,
                    &format!("setting xattr {:?}", String::from_utf8_lossy(key)),
                    e,
                )
            })?;
        }
        if is_dir {
            self.dir_times.push((path, meta.mtime));
        } else {
            stat::utimensat(
                pfd,
                name.as_os_str(),
                &meta.mtime,
                &meta.mtime,
                stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| self.io_err(&shown, "setting mtime", e))?;
        }
        Ok(())
    }

    /// Make room for a new entry `name` in `parent`: an existing directory is
    /// kept when the new entry is a directory too (tar semantics), anything
    /// else is removed.
    fn clear(&self, parent: &Handle, name: &OsStr, path: &Path, new_is_dir: bool) -> Result<()> {
        let st = match stat::fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(self.io_err(path, "checking existing entry", e)),
        };
        let existing_dir = (st.st_mode & libc::S_IFMT) == libc::S_IFDIR;
        if existing_dir && new_is_dir {
            return Ok(());
        }
        if existing_dir {
            self.root.remove_all(path).map_err(|e| {
                self.io_err(path, "replacing directory", io::Error::other(e.to_string()))
            })
        } else {
            nix::unistd::unlinkat(
                parent.as_fd(),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .map_err(|e| self.io_err(path, "replacing entry", e))
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &Path) -> Result<Meta> {
        let h = entry.header();
        let mode = h
            .mode()
            .map_err(|e| self.io_err(shown, "reading mode", e))?;
        let mut uid = h.uid().map_err(|e| self.io_err(shown, "reading uid", e))?;
        let mut gid = h.gid().map_err(|e| self.io_err(shown, "reading gid", e))?;
        let secs = h
            .mtime()
            .map_err(|e| self.io_err(shown, "reading mtime", e))?;
        let mut mtime = TimeSpec::new(secs as i64, 0);
        let mut xattrs = Vec::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| self.io_err(shown, "reading pax headers", e))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| self.io_err(shown, "reading pax headers", e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    // overlayfs interprets trusted.overlay.* (redirects,
                    // opaque markers, metacopy) in lower layers: a layer must
                    // not steer the mount through them. Its own whiteouts are
                    // expressed as .wh. entries, which are converted above.
                    if name.starts_with(b"trusted.overlay.") {
                        tracing::warn!(
                            layer = self.layer,
                            entry = %shown.display(),
                            "ignoring overlayfs xattr {:?}",
                            String::from_utf8_lossy(name)
                        );
                        continue;
                    }
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"uid" || key == b"gid" {
                    // PAX carries ids too large for the header's octal field.
                    let id = std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| self.refuse(shown, "malformed PAX uid/gid"))?;
                    if key == b"uid" {
                        uid = id;
                    } else {
                        gid = id;
                    }
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn finish(mut self) -> Result<()> {
        // Children first, so setting a parent's time is not undone by a child.
        self.dir_times
            .sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, mtime) in &self.dir_times {
            let handle = self.root.resolve_nofollow(path).map_err(|e| {
                self.io_err(path, "reopening directory", io::Error::other(e.to_string()))
            })?;
            // utimensat with an empty path is not allowed; go through the fd's magic link.
            let proc = format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd());
            stat::utimensat(
                nix::fcntl::AT_FDCWD,
                proc.as_str(),
                mtime,
                mtime,
                stat::UtimensatFlags::FollowSymlink,
            )
            .map_err(|e| self.io_err(path, "setting directory mtime", e))?;
        }
        Ok(())
    }
}

/// Parse a pax time "1700000000.123456789".
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Set an extended attribute on `name` in directory `dir` (or on `dir`
/// itself), without following a symlink at the final component.
fn set_xattr(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    key: &[u8],
    value: &[u8],
) -> io::Result<()> {
    // Through the fd's magic link, so the parent stays the one resolved in
    // the root; "/." makes lsetxattr act on the directory, not on the link.
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    match name {
        Some(n) => path.extend_from_slice(n.as_bytes()),
        None => path.push(b'.'),
    }
    let path = CString::new(path).map_err(io::Error::other)?;
    let key = CString::new(key).map_err(io::Error::other)?;
    // SAFETY: both strings are NUL-terminated and live for the call; `value`
    // is a valid slice whose pointer and length are passed together.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_escapes() {
        assert_eq!(clean_path(b"./a/b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(clean_path(b"a/./b/").unwrap(), PathBuf::from("a/b"));
        assert!(clean_path(b"/etc/passwd").is_err());
        assert!(clean_path(b"a/../../b").is_err());
        assert!(clean_path(b"..").is_err());
        assert_eq!(clean_path(b"./").unwrap(), PathBuf::new());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some(TimeSpec::new(1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"12"), Some(TimeSpec::new(12, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
