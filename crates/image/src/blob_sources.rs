//! Where blobs are known to live remotely: for each blob digest, the
//! repositories (`registry/path`) it was pulled from or pushed to. `push`
//! uses this to ask a registry for a cross-repository mount instead of
//! uploading bytes the registry already has under another name.
//!
//! One small file per blob under `<root>/blob-sources/<alg>/<hex>`, a
//! repository per line, rewritten through a temporary name and renamed, so a
//! crash leaves either the old or the new list. Entries are hints: a stale one
//! only costs a refused mount, after which the blob is uploaded.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{show, Error, IoContext, Result};

/// Most repositories remembered per blob (the newest are kept).
const MAX_PER_BLOB: usize = 16;

/// The blob-source hints of one hako root.
#[derive(Debug, Clone)]
pub struct BlobSources {
    dir: PathBuf,
}

impl BlobSources {
    pub fn open(root: &Path) -> Self {
        BlobSources {
            dir: root.join("blob-sources"),
        }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.algorithm().name()).join(digest.hex())
    }

    /// Repositories (`registry/path`) known to hold `digest`.
    pub fn get(&self, digest: &Digest) -> Vec<String> {
        fs::read_to_string(self.path(digest))
            .map(|s| {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remember that `repository` holds `digest`.
    pub fn add(&self, digest: &Digest, repository: &str) -> Result<()> {
        let mut repos = self.get(digest);
        if repos.iter().any(|r| r == repository) {
            return Ok(());
        }
        repos.push(repository.to_string());
        if repos.len() > MAX_PER_BLOB {
            repos.drain(..repos.len() - MAX_PER_BLOB);
        }
        let path = self.path(digest);
        let dir = path.parent().expect("source paths have a parent");
        fs::create_dir_all(dir).ctx(|| format!("creating {}", show(dir)))?;
        let mut tmp = tempfile::NamedTempFile::with_prefix_in(".tmp-", dir)
            .ctx(|| format!("creating a temporary file in {}", show(dir)))?;
        tmp.write_all((repos.join("\n") + "\n").as_bytes())
            .ctx(|| format!("writing sources of blob {digest}"))?;
        tmp.persist(&path)
            .map_err(|e| Error::io(format!("writing sources of blob {digest}"), e.error))?;
        Ok(())
    }

    /// Another repository of `registry` known to hold `digest`, if any.
    pub fn mount_candidate(
        &self,
        digest: &Digest,
        registry: &str,
        except_path: &str,
    ) -> Option<String> {
        let prefix = format!("{registry}/");
        self.get(digest)
            .into_iter()
            .rev()
            .filter_map(|r| r.strip_prefix(&prefix).map(str::to_string))
            .find(|path| path != except_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_repositories_per_registry() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobSources::open(dir.path());
        let d = Digest::sha256_of(b"x");
        assert!(s.get(&d).is_empty());
        s.add(&d, "127.0.0.1:5000/a").unwrap();
        s.add(&d, "127.0.0.1:5000/a").unwrap();
        s.add(&d, "other:5000/b").unwrap();
        assert_eq!(s.get(&d).len(), 2);
        assert_eq!(
            s.mount_candidate(&d, "127.0.0.1:5000", "c").as_deref(),
            Some("a")
        );
        assert_eq!(s.mount_candidate(&d, "127.0.0.1:5000", "a"), None);
        assert_eq!(s.mount_candidate(&d, "elsewhere", "a"), None);
    }
}
