//! Writing a volume's files so a running container sees all of a change at once, as
//! upstream kubelet's AtomicWriter does: the files go to a new timestamped directory
//! `..YYYY_MM_DD_HH_MM_SS.N`, a `..data_tmp` symlink to it is renamed over `..data`,
//! and each top-level name in the volume is a symlink through `..data`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};

/// A file of the payload: its bytes and mode.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

pub type Payload = BTreeMap<String, FileProjection>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Check a payload path: relative, no `..` element, not starting with `..`.
fn check_path(p: &str) -> Result<()> {
    let path = Path::new(p);
    if p.is_empty() || path.is_absolute() {
        bail!("invalid path {p:?}: must be a relative path");
    }
    if p.starts_with("..") {
        bail!("invalid path {p:?}: must not start with '..'");
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        bail!("invalid path {p:?}: must not contain '..'");
    }
    Ok(())
}

/// The payload currently visible through `dir/..data`, None when there is none.
fn current(dir: &Path) -> Option<Payload> {
    let data = dir.join(DATA);
    std::fs::symlink_metadata(&data).ok()?;
    let mut out = Payload::new();
    let mut stack = vec![(data.clone(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = e.metadata().ok()?;
            if md.is_dir() {
                stack.push((e.path(), rel));
            } else {
                let data = std::fs::read(e.path()).ok()?;
                out.insert(
                    rel,
                    FileProjection {
                        data,
                        mode: md.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Some(out)
}

/// Make `dir` show `payload`; files and directories get group `gid` when given.
/// Returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload, gid: Option<u32>) -> Result<bool> {
    for p in payload.keys() {
        check_path(p)?;
    }
    if current(dir).as_ref() == Some(payload) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let old_target = std::fs::read_link(dir.join(DATA)).ok();
    let ts = k8s_openapi::chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let ts_dir = dir.join(&ts);
    std::fs::create_dir(&ts_dir).with_context(|| format!("creating {}", ts_dir.display()))?;
    let chown = |p: &Path| -> Result<()> {
        if let Some(g) = gid {
            std::os::unix::fs::chown(p, None, Some(g))
                .with_context(|| format!("giving {} to group {g}", p.display()))?;
        }
        Ok(())
    };
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    chown(&ts_dir)?;
    for (rel, f) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent().filter(|p| !p.exists()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            let mut d = parent;
            while d != ts_dir {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
                chown(d)?;
                d = d.parent().unwrap_or(&ts_dir);
            }
        }
        std::fs::write(&path, &f.data).with_context(|| format!("writing {}", path.display()))?;
        chown(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    // Swap: a new symlink renamed over the old one is atomic for readers.
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts, &tmp).with_context(|| format!("linking {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(DATA))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    // The user-visible names: one symlink per top-level element, through ..data.
    let top: BTreeSet<String> = payload
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    for t in &top {
        let link = dir.join(t);
        match std::fs::symlink_metadata(&link) {
            Ok(md) if md.file_type().is_symlink() => continue,
            Ok(_) => bail!("{} exists and is not a symlink", link.display()),
            Err(_) => std::os::unix::fs::symlink(Path::new(DATA).join(t), &link)
                .with_context(|| format!("linking {}", link.display()))?,
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old_target.filter(|o| o.as_os_str() != ts.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// Whether `dir` is a mount point (its device differs from its parent's).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(a), Some(Ok(b))) = (
        std::fs::symlink_metadata(dir),
        dir.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    a.dev() != b.dev()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn swaps_data_and_keeps_user_links() {
        let t = std::env::temp_dir().join(format!("hako-aw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let mut p = Payload::new();
        p.insert("a".into(), f("1", 0o644));
        p.insert("d/b".into(), f("2", 0o400));
        assert!(write(&t, &p, None).unwrap());
        assert!(!write(&t, &p, None).unwrap());
        assert_eq!(std::fs::read_to_string(t.join("d/b")).unwrap(), "2");
        let first = std::fs::read_link(t.join("..data")).unwrap();
        p.remove("a");
        p.insert("d/b".into(), f("3", 0o400));
        assert!(write(&t, &p, None).unwrap());
        assert_ne!(std::fs::read_link(t.join("..data")).unwrap(), first);
        assert!(!t.join(&first).exists());
        assert!(std::fs::symlink_metadata(t.join("a")).is_err());
        assert_eq!(std::fs::read_to_string(t.join("d/b")).unwrap(), "3");
        assert!(write(&t, &Payload::from([("../x".into(), f("", 0o644))]), None).is_err());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
