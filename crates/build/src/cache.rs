//! The build cache: for each step, the stage state after it, keyed by a
//! digest of the parent step's key, the instruction after substitution (with
//! the build args in scope) and the content digests of its inputs. Entries
//! live in `<root>/build-cache/steps/`; cache mounts in `<root>/build-cache/mounts/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hako_image::snapshot::{self, Snapshotter};
use hako_image::store::ContentStore;
use hako_image::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::state::{History, State};

pub struct Cache {
    dir: PathBuf,
}

/// The key of a step.
pub fn key(parent: &str, desc: &str, inputs: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"hako-build-v1\n");
    h.update(parent.as_bytes());
    h.update(b"\n");
    h.update(desc.as_bytes());
    h.update(b"\n");
    h.update(inputs);
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache> {
        let dir = root.join("build-cache");
        for d in [dir.join("steps"), dir.join("mounts")] {
            fs::create_dir_all(&d).ctx(|| format!("creating {}", d.display()))?;
        }
        Ok(Cache { dir })
    }

    /// The directory of a cache mount.
    pub fn mount_dir(&self, id: &str) -> Result<PathBuf> {
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        let d = self.dir.join("mounts").join(hex(&h.finalize()));
        fs::create_dir_all(&d).ctx(|| format!("creating cache mount {id}"))?;
        Ok(d)
    }

    /// The state cached under `key`, if its layers are all still stored.
    pub fn get(&self, key: &str, content: &ContentStore, snapshots: &Snapshotter) -> Option<State> {
        let bytes = fs::read(self.dir.join("steps").join(format!("{key}.json"))).ok()?;
        let state: State = serde_json::from_slice(&bytes).ok()?;
        let diff_ids: Vec<Digest> = state
            .layers
            .iter()
            .map(|l| l.diff_id.parse())
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        let all_there = snapshot::chain_ids(&diff_ids)
            .iter()
            .all(|c| snapshots.exists(c))
            && state
                .layers
                .iter()
                .all(|l| l.blob.parse().is_ok_and(|d: Digest| content.contains(&d)));
        all_there.then_some(state)
    }

    /// The history entry a config-only step (ENV, LABEL, …) recorded: the
    /// state after it is the state before with the instruction applied, so
    /// only what is not reproducible (its time) is stored. Storing the
    /// whole state made N such lines cost O(N²).
    pub fn get_meta(&self, key: &str) -> Option<History> {
        let bytes = fs::read(self.dir.join("steps").join(format!("{key}.meta.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Record a config-only step's history entry.
    pub fn put_meta(&self, key: &str, history: &History) -> Result<()> {
        let json = serde_json::to_vec(history)
            .map_err(|e| Error::Invalid(format!("serialising cache entry {key}: {e}")))?;
        self.write(&format!("{key}.meta"), &json)
    }

    /// Record the state after a step (temp file, then rename).
    pub fn put(&self, key: &str, state: &State) -> Result<()> {
        let json = serde_json::to_vec(state)
            .map_err(|e| Error::Invalid(format!("serialising cache entry {key}: {e}")))?;
        self.write(key, &json)
    }

    fn write(&self, key: &str, json: &[u8]) -> Result<()> {
        let dir = self.dir.join("steps");
        let mut tmp =
            tempfile::NamedTempFile::new_in(&dir).ctx(|| format!("creating cache entry {key}"))?;
        tmp.write_all(json)
            .ctx(|| format!("writing cache entry {key}"))?;
        tmp.persist(dir.join(format!("{key}.json")))
            .map_err(|e| Error::io(format!("storing cache entry {key}"), e.error))?;
        Ok(())
    }
}

/// What [`prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Step entries removed.
    pub entries: usize,
    /// Cache mounts removed (with `all`).
    pub mounts: usize,
    /// Leftover step directories of interrupted builds.
    pub leftovers: usize,
}

/// Remove step entries whose layers are gone (all entries and cache mounts
/// with `all`) and what interrupted builds left. Takes the store's exclusive
/// lock, so no build runs meanwhile.
pub fn prune(store: &hako_image::ImageStore, all: bool) -> Result<PruneReport> {
    let _lock = hako_image::lock::StoreLock::exclusive(store.root())?;
    let cache = Cache::open(store.root())?;
    let mut report = PruneReport::default();
    let steps = cache.dir.join("steps");
    for e in fs::read_dir(&steps).ctx(|| format!("listing {}", steps.display()))? {
        let e = e.ctx(|| format!("listing {}", steps.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".json") else {
            // A temporary file of an interrupted write.
            let _ = fs::remove_file(e.path());
            continue;
        };
        if key.ends_with(".meta") {
            // A config-only step's entry: no layers to lose, a few hundred bytes.
            if all {
                fs::remove_file(e.path()).ctx(|| format!("removing cache entry {key}"))?;
                report.entries += 1;
            }
            continue;
        }
        if all || cache.get(key, store.content(), store.snapshots()).is_none() {
            fs::remove_file(e.path()).ctx(|| format!("removing cache entry {key}"))?;
            report.entries += 1;
        }
    }
    if all {
        let mounts = cache.dir.join("mounts");
        for e in fs::read_dir(&mounts).ctx(|| format!("listing {}", mounts.display()))? {
            let p = e.ctx(|| format!("listing {}", mounts.display()))?.path();
            if p.is_dir() {
                fs::remove_dir_all(&p).ctx(|| format!("removing cache mount {}", p.display()))?;
                report.mounts += 1;
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
    let work = store.root().join("build").join("work");
    report.leftovers = reap_orphans(&work, true);
    Ok(report)
}

/// Remove the step directories of builds that died: first the step's
/// container (a RUN still running under an orphaned runtime), then its
/// overlay, then the directory. A directory whose container cannot be
/// removed, or whose build still runs, is left alone: its overlay is never
/// unmounted under a running step. Directories without an owner record
/// (COPY and WORKDIR steps) are removed only with `unowned` (under the
/// store's exclusive lock, when no build runs). How many were removed.
pub fn reap_orphans(work: &Path, unowned: bool) -> usize {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(work) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        let owned = p.join(crate::run::OWNER_FILE).exists();
        if owned {
            if !crate::run::reap(&p) {
                continue;
            }
        } else if !unowned {
            continue;
        }
        // Mounted by a build that died: unmount before removing.
        let _ = Snapshotter::unmount(&p);
        let _ = nix::mount::umount2(&p.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        if fs::remove_dir_all(&p).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether two directories hold the same entries: names, types, modes,
/// owners, device numbers, file content and link targets (times aside).
/// Unreadable parts count as different.
pub fn same_tree(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fn entries(dir: &Path) -> Option<Vec<std::ffi::OsString>> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .ok()?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .ok()?;
        names.sort();
        Some(names)
    }
    let (Ok(ma), Ok(mb)) = (fs::symlink_metadata(a), fs::symlink_metadata(b)) else {
        return false;
    };
    if ma.mode() != mb.mode()
        || ma.uid() != mb.uid()
        || ma.gid() != mb.gid()
        || ma.rdev() != mb.rdev()
    {
        return false;
    }
    let ft = ma.file_type();
    if ft.is_symlink() {
        return fs::read_link(a).ok() == fs::read_link(b).ok() && fs::read_link(a).is_ok();
    }
    if ft.is_file() {
        return ma.len() == mb.len()
            && matches!((fs::read(a), fs::read(b)), (Ok(x), Ok(y)) if x == y);
    }
    if ft.is_dir() {
        let (Some(ea), Some(eb)) = (entries(a), entries(b)) else {
            return false;
        };
        return ea == eb && ea.iter().all(|n| same_tree(&a.join(n), &b.join(n)));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_orphans_spares_running_builds() {
        let t = tempfile::tempdir().unwrap();
        let work = t.path();
        let me = std::process::id();
        let owner = |dir: &str, pid: u32, start: u64| {
            let d = work.join(dir);
            fs::create_dir_all(d.join("rootfs")).unwrap();
            let state = t.path().join("no-runtime-state");
            fs::write(
                d.join(crate::run::OWNER_FILE),
                format!("{pid} {start}\n/bin/false\n{}\nid-{dir}\n", state.display()),
            )
            .unwrap();
        };
        // A running build's step (this process) and a dead build's.
        owner("step-live", me, crate::run::start_time(me).unwrap());
        owner("step-dead", me, 1);
        fs::create_dir_all(work.join("step-unowned/rootfs")).unwrap();
        assert_eq!(reap_orphans(work, false), 1);
        assert!(work.join("step-live").exists() && work.join("step-unowned").exists());
        assert!(!work.join("step-dead").exists());
        // Under the exclusive lock, unowned directories go too; a live
        // build's never.
        assert_eq!(reap_orphans(work, true), 1);
        assert!(work.join("step-live").exists());
    }
}
