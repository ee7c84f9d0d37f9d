//! Resolving `-u user[:group]` against the container's /etc/passwd and
//! /etc/group, as docker does at create time. The files are read inside the
//! root filesystem only, regular files of bounded size ([`crate::inroot`]):
//! the image is untrusted.

use std::path::Path;

use crate::error::{Error, Result};
use crate::inroot;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Entries of a passwd or group file (`file` absolute in the root), split
/// on ':'; none when the image has no such file.
fn entries(rootfs: &Path, file: &str) -> Result<Vec<Vec<String>>> {
    let bytes = inroot::read_file(rootfs, file, inroot::MAX_ETC_FILE)?.unwrap_or_default();
    Ok(parse(&bytes))
}

fn parse(bytes: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// The home directory of `uid` in the image's /etc/passwd ("/" without one),
/// for HOME as docker sets it.
pub fn home_of(rootfs: &Path, uid: u32) -> Result<String> {
    Ok(entries(rootfs, "/etc/passwd")?
        .into_iter()
        .find(|f| f.len() >= 6 && f[2].parse::<u32>() == Ok(uid))
        .map(|f| f[5].clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string()))
}

/// `--group-add` values (names in the image's /etc/group, or numbers) as gids.
pub fn group_ids(rootfs: &Path, groups: &[String]) -> Result<Vec<u32>> {
    let table = entries(rootfs, "/etc/group")?;
    groups
        .iter()
        .map(|g| match g.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => table
                .iter()
                .find(|e| e.len() >= 3 && e[0] == *g)
                .and_then(|e| e[2].parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                }),
        })
        .collect()
}

/// Resolve "", "name", "uid", "name:group", "uid:gid" in `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<User> {
    let passwd = entries(rootfs, "/etc/passwd")?;
    let groups = entries(rootfs, "/etc/group")?;
    resolve_entries(&passwd, &groups, spec)
}

/// [`resolve`] with the contents of /etc/passwd and /etc/group already read
/// (empty when the image has none), for callers that find them without
/// mounting the root filesystem (a build's layer chain).
pub fn resolve_in(passwd: &[u8], group: &[u8], spec: &str) -> Result<User> {
    resolve_entries(&parse(passwd), &parse(group), spec)
}

fn resolve_entries(passwd: &[Vec<String>], groups: &[Vec<String>], spec: &str) -> Result<User> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd
        .iter()
        .find(|e| e.len() >= 4 && (e[0] == user || e[2] == user));
    let (uid, mut gid, name) = match (user.parse::<u32>(), entry) {
        (_, Some(e)) => (
            e[2].parse().unwrap_or(0),
            e[3].parse().unwrap_or(0),
            Some(e[0].clone()),
        ),
        (Ok(uid), None) => (uid, 0, None),
        (Err(_), None) => {
            return Err(Error::Invalid(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )))
        }
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.len() >= 3 && e[0] == g)
                .and_then(|e| e[2].parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
    }
    let additional_gids = match (&name, group) {
        (Some(n), None) => groups
            .iter()
            .filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == n))
            .filter_map(|e| e[2].parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:33:34::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:34:\nlog:x:4:web\n",
        )
        .unwrap();
        assert_eq!(
            resolve(dir.path(), "").unwrap(),
            User {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve(dir.path(), "web").unwrap(),
            User {
                uid: 33,
                gid: 34,
                additional_gids: vec![4]
            }
        );
        assert_eq!(
            resolve(dir.path(), "1000:5").unwrap(),
            User {
                uid: 1000,
                gid: 5,
                additional_gids: vec![]
            }
        );
        assert_eq!(resolve(dir.path(), "web:root").unwrap().gid, 0);
        assert!(resolve(dir.path(), "nobody").is_err());
    }
}
