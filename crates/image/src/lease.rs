//! Leases, as containerd's: a reader that uses an image for a while (a
//! build using a base image) holds a lease on it, a file
//! `<root>/leases/<pid>-<random>.json` naming the holder process (pid and
//! start time) and the image with every blob and snapshot it needs. While
//! the holder lives, `rmi` refuses to delete the image (naming the holder)
//! and garbage collection keeps its content, even after `rmi --force`
//! removed the record. A lease whose process is gone (killed, crashed) is
//! ignored and removed by the next reader of the lease list; dropping the
//! [`Lease`] removes it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{show, Error, IoContext, Result};

const DIR: &str = "leases";

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub pid: u32,
    /// The holder's start time (clock ticks since boot): a reused pid does
    /// not keep a dead holder's lease alive.
    pub start: u64,
    /// What holds it, for messages ("hako build").
    pub holder: String,
    /// The image leased (None: content only, e.g. a build's new layers
    /// before its image is recorded).
    pub image_id: Option<Digest>,
    /// Blobs (config, manifest, index, layers) the holder needs.
    pub blobs: Vec<Digest>,
    /// Snapshots (chain ids) the holder needs.
    pub chains: Vec<Digest>,
}

impl LeaseRecord {
    /// "hako build (pid 123)".
    pub fn describe(&self) -> String {
        format!("{} (pid {})", self.holder, self.pid)
    }
}

/// A process's start time, from /proc/PID/stat (field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn alive(r: &LeaseRecord) -> bool {
    start_time(r.pid) == Some(r.start)
}

/// A held lease; removed on drop.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Record a lease of this process on `image_id` (if any) and content.
pub fn take(
    root: &Path,
    holder: &str,
    image_id: Option<&Digest>,
    blobs: Vec<Digest>,
    chains: Vec<Digest>,
) -> Result<Lease> {
    let dir = root.join(DIR);
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", show(&dir)))?;
    let pid = std::process::id();
    let rec = LeaseRecord {
        pid,
        start: start_time(pid).unwrap_or(0),
        holder: holder.to_string(),
        image_id: image_id.cloned(),
        blobs,
        chains,
    };
    let json = serde_json::to_vec(&rec)
        .map_err(|e| Error::Invalid(format!("serialising a lease by {holder}: {e}")))?;
    // Written to a temporary name then renamed: a reader never sees half a lease.
    let mut tmp = tempfile::Builder::new()
        .prefix(".lease-")
        .tempfile_in(&dir)
        .ctx(|| format!("creating a lease in {}", show(&dir)))?;
    std::io::Write::write_all(&mut tmp, &json)
        .ctx(|| format!("writing a lease in {}", show(&dir)))?;
    let path = dir.join(format!("{pid}-{:016x}.json", crate::images::rand_u64()));
    tmp.persist(&path)
        .map_err(|e| Error::io(format!("storing lease {}", show(&path)), e.error))?;
    Ok(Lease { path })
}

/// The leases of live holders; those of dead ones are removed.
pub fn live(root: &Path) -> Result<Vec<LeaseRecord>> {
    let dir = root.join(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", show(&dir)), e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let rec: Option<LeaseRecord> = fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match rec {
            Some(r) if alive(&r) => out.push(r),
            // A dead holder's (or an unreadable) lease holds nothing.
            _ => {
                let _ = fs::remove_file(&p);
            }
        }
    }
    Ok(out)
}

/// Every blob and snapshot live leases hold.
pub fn held(root: &Path) -> Result<(HashSet<Digest>, HashSet<Digest>)> {
    let mut blobs = HashSet::new();
    let mut chains = HashSet::new();
    for l in live(root)? {
        blobs.extend(l.image_id);
        blobs.extend(l.blobs);
        chains.extend(l.chains);
    }
    Ok((blobs, chains))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_live_with_their_holder() {
        let t = tempfile::tempdir().unwrap();
        let id: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let blob: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let chain: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
        let lease = take(
            t.path(),
            "hako build",
            Some(&id),
            vec![blob.clone()],
            vec![chain.clone()],
        )
        .unwrap();
        let l = live(t.path()).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].image_id, Some(id.clone()));
        assert_eq!(
            l[0].describe(),
            format!("hako build (pid {})", std::process::id())
        );
        let (b, c) = held(t.path()).unwrap();
        assert!(b.contains(&id) && b.contains(&blob) && c.contains(&chain));
        // A lease of a dead holder (or a reused pid) holds nothing and goes.
        let mut dead = l[0].clone();
        dead.start += 1;
        let p = t.path().join(DIR).join("1-dead.json");
        fs::write(&p, serde_json::to_vec(&dead).unwrap()).unwrap();
        assert_eq!(live(t.path()).unwrap().len(), 1);
        assert!(!p.exists());
        drop(lease);
        assert!(live(t.path()).unwrap().is_empty());
    }
}
