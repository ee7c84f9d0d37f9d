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
use crate::state::State;

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

    /// Record the state after a step (temp file, then rename).
    pub fn put(&self, key: &str, state: &State) -> Result<()> {
        let dir = self.dir.join("steps");
        let json = serde_json::to_vec(state)
            .map_err(|e| Error::Invalid(format!("serialising cache entry {key}: {e}")))?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(&dir).ctx(|| format!("creating cache entry {key}"))?;
        tmp.write_all(&json)
            .ctx(|| format!("writing cache entry {key}"))?;
        tmp.persist(dir.join(format!("{key}.json")))
            .map_err(|e| Error::io(format!("storing cache entry {key}"), e.error))?;
        Ok(())
    }
}
