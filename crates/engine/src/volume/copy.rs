//! Pre-filling an empty volume from the image, as docker does on a
//! volume's first use: the content of the image at the mount's target is
//! copied in with owners, modes, times, symlinks, hard links, device nodes
//! and extended attributes, and the volume's root takes the owner and mode
//! of the image's directory.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

use crate::error::{Context, Result};

/// Copy the image's content at `target` (resolved inside `rootfs`) into
/// `data`, if `data` is empty and the image has a directory there.
/// Returns whether anything was copied.
pub(crate) fn prefill(rootfs: &Path, target: &str, data: &Path, volume: &str) -> Result<bool> {
    let Some(src) = resolve_in_root(rootfs, target) else {
        return Ok(false);
    };
    let Ok(md) = fs::symlink_metadata(&src) else {
        return Ok(false);
    };
    let empty = fs::read_dir(data)
        .ctx(|| format!("reading volume {volume}"))?
        .next()
        .is_none();
    if !md.is_dir() || !empty {
        return Ok(false);
    }
    let what = || format!("pre-filling volume {volume} from the image's {target}");
    let mut links = HashMap::new();
    copy_dir(&src, data, &mut links).ctx(what)?;
    copy_meta(&src, data, &md).ctx(what)?;
    Ok(true)
}

/// `path` resolved inside `root` the way the container would see it:
/// symlinks (absolute ones relative to `root`) followed, `..` never above
/// `root`. None when the path loops or goes through a non-directory.
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut done = PathBuf::new();
    let mut hops = 0;
    // Components still to walk, last first.
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let push = |p: &Path, rest: &mut Vec<std::ffi::OsString>, done: &mut PathBuf| {
        if p.is_absolute() {
            done.clear();
        }
        let comps: Vec<_> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        rest.extend(comps.into_iter().rev());
    };
    push(Path::new(path), &mut rest, &mut done);
    while let Some(c) = rest.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&c);
        let full = root.join(&next);
        match fs::symlink_metadata(&full) {
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let link = fs::read_link(&full).ok()?;
                push(&link, &mut rest, &mut done);
            }
            Ok(md) if !md.is_dir() && !rest.is_empty() => return None,
            Ok(_) => done = next,
            // Missing: nothing to copy from there.
            Err(_) => return None,
        }
    }
    Some(root.join(done))
}

type Links = HashMap<(u64, u64), PathBuf>;

fn copy_dir(src: &Path, dst: &Path, links: &mut Links) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let s = entry.path();
        let d = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&s)?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(&d)?;
            copy_dir(&s, &d, links)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
        } else {
            // Hard links inside the tree stay hard links.
            if md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    fs::hard_link(first, &d)?;
                    continue;
                }
                links.insert((md.dev(), md.ino()), d.clone());
            }
            if ft.is_file() {
                fs::copy(&s, &d)?;
            } else if ft.is_socket() {
                // A socket is only meaningful to the process that bound it.
                continue;
            } else {
                let kind = if ft.is_fifo() {
                    SFlag::S_IFIFO
                } else if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                nix::sys::stat::mknod(
                    &d,
                    kind,
                    Mode::from_bits_truncate(md.mode() & 0o7777),
                    md.rdev(),
                )?;
            }
        }
        copy_meta(&s, &d, &md)?;
    }
    Ok(())
}

/// Owner, mode, extended attributes and times of `src` onto `dst` (not
/// following symlinks). Mode after owner: chown clears set-id bits.
fn copy_meta(src: &Path, dst: &Path, md: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    let symlink = md.file_type().is_symlink();
    if !symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    copy_xattrs(src, dst);
    set_times(dst, md)
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Extended attributes, where the filesystems allow them: a volume on a
/// filesystem without (or refusing trusted.*) still gets the content.
fn copy_xattrs(src: &Path, dst: &Path) {
    let (Ok(s), Ok(d)) = (cpath(src), cpath(dst)) else {
        return;
    };
    // SAFETY: `s` is a valid C string; a null buffer of size 0 asks for the length.
    let len = unsafe { libc::llistxattr(s.as_ptr(), std::ptr::null_mut(), 0) };
    if len <= 0 {
        return;
    }
    let mut names = vec![0u8; len as usize];
    // SAFETY: `names` is writable for its length.
    let len = unsafe { libc::llistxattr(s.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len <= 0 {
        return;
    }
    names.truncate(len as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(n) = CString::new(name) else { continue };
        // SAFETY: valid C strings; a null buffer of size 0 asks for the length.
        let vlen = unsafe { libc::lgetxattr(s.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if vlen < 0 {
            continue;
        }
        let mut value = vec![0u8; vlen as usize];
        // SAFETY: `value` is writable for its length.
        let vlen = unsafe {
            libc::lgetxattr(
                s.as_ptr(),
                n.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if vlen < 0 {
            continue;
        }
        // SAFETY: valid C strings and a buffer readable for `vlen` bytes.
        unsafe {
            libc::lsetxattr(
                d.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                vlen as usize,
                0,
            );
        }
    }
}

fn set_times(dst: &Path, md: &fs::Metadata) -> io::Result<()> {
    let d = cpath(dst)?;
    let times = [
        libc::timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        libc::timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    ];
    // SAFETY: `d` is a valid C string and `times` holds the two timespecs utimensat reads.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            d.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("srv/data")).unwrap();
        std::os::unix::fs::symlink("/srv", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", r.join("srv/up")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in_root(r, "/abs/data"), Some(r.join("srv/data")));
        // `..` stops at the root, as in the container.
        assert_eq!(resolve_in_root(r, "/srv/up/srv"), Some(r.join("srv")));
        assert_eq!(resolve_in_root(r, "/loop"), None);
        assert_eq!(resolve_in_root(r, "/missing"), None);
    }

    #[test]
    fn copies_tree_with_links_modes_and_times() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        let src = root.join("data");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/file"), "x").unwrap();
        fs::set_permissions(src.join("sub/file"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::hard_link(src.join("sub/file"), src.join("hard")).unwrap();
        std::os::unix::fs::symlink("sub/file", src.join("link")).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o711)).unwrap();
        // Where the test's filesystem takes user xattrs, they are copied too.
        let with_xattr = set_xattr(&src.join("sub/file"), "user.hako", b"1");
        let data = t.path().join("vol");
        fs::create_dir(&data).unwrap();
        assert!(prefill(&root, "/data", &data, "v").unwrap());
        if with_xattr {
            assert_eq!(
                get_xattr(&data.join("sub/file"), "user.hako"),
                Some(b"1".to_vec())
            );
        }
        let f = fs::symlink_metadata(data.join("sub/file")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o640);
        assert_eq!(f.ino(), fs::metadata(data.join("hard")).unwrap().ino());
        assert_eq!(
            fs::read_link(data.join("link")).unwrap(),
            Path::new("sub/file")
        );
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o7777, 0o711);
        let orig = fs::metadata(src.join("sub/file")).unwrap();
        assert_eq!(f.mtime(), orig.mtime());
        // Not empty any more: a second use copies nothing.
        assert!(!prefill(&root, "/data", &data, "v").unwrap());
    }

    fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
        let (p, n) = (cpath(p).unwrap(), CString::new(name).unwrap());
        // SAFETY: valid C strings and a buffer readable for its length.
        unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            ) == 0
        }
    }

    fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
        let (p, n) = (cpath(p).unwrap(), CString::new(name).unwrap());
        let mut buf = vec![0u8; 64];
        // SAFETY: valid C strings and a buffer writable for its length.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (len >= 0).then(|| buf[..len as usize].to_vec())
    }
}
