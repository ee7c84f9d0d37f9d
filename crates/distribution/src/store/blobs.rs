//! Blobs as a repository sees them: a blob is readable through a repository only when the
//! repository holds a link to it, so one repository cannot read another's layers by digest.

use super::{blob_data_path, internal, layer_link_path, RepoName, Store, StoreResult};
use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError};
use crate::storage::ByteChunks;

pub fn blob_unknown(repo: &RepoName, d: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUnknown,
        format!("blob {d} is not known to repository {repo}"),
    )
    .with_detail(serde_json::json!({ "digest": d.to_string() }))
}

impl Store {
    /// Size of blob `d` in `repo`, or None when the repository has no such blob.
    pub async fn blob_size(&self, repo: &RepoName, d: &Digest) -> StoreResult<Option<u64>> {
        if !self
            .exists(&layer_link_path(repo, d), "looking up a blob link")
            .await?
        {
            return Ok(None);
        }
        self.global_blob_size(d).await
    }

    /// Size of blob `d` in the content store regardless of repository.
    pub(crate) async fn global_blob_size(&self, d: &Digest) -> StoreResult<Option<u64>> {
        match self.driver.stat(&blob_data_path(d)).await {
            Ok(info) => Ok(Some(info.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(internal(&format!("inspecting blob {d}"), e)),
        }
    }

    /// Mark blob `d` as in use right now (see [`crate::gc`]); false when it does not exist.
    /// Writers claim a blob before relying on it, so a concurrent collection either sees
    /// the fresh mark and keeps the blob, or has already removed it and the writer sees so.
    pub(crate) async fn claim_blob(&self, d: &Digest) -> StoreResult<bool> {
        match self.driver.touch(&blob_data_path(d)).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(internal(&format!("claiming blob {d}"), e)),
        }
    }

    /// Claim blob `d` and `repo`'s link to it; false when either is missing.
    pub(crate) async fn claim_layer(&self, repo: &RepoName, d: &Digest) -> StoreResult<bool> {
        match self.driver.touch(&layer_link_path(repo, d)).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(internal(&format!("claiming the link to {d} in {repo}"), e)),
        }
        self.claim_blob(d).await
    }

    /// `len` bytes of blob `d` of `repo` from `offset`, in chunks.
    pub async fn blob_chunks(
        &self,
        repo: &RepoName,
        d: &Digest,
        offset: u64,
        len: u64,
    ) -> StoreResult<ByteChunks> {
        match self.driver.chunks(&blob_data_path(d), offset, len).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_not_found() => Err(blob_unknown(repo, d)),
            Err(e) => Err(internal(&format!("opening blob {d} of {repo}"), e)),
        }
    }

    /// Give `repo` access to blob `d` (whose bytes must already be in the content store).
    pub(crate) async fn link_blob(&self, repo: &RepoName, d: &Digest) -> StoreResult<()> {
        self.driver
            .put_content(&layer_link_path(repo, d), d.to_string().as_bytes())
            .await
            .map_err(|e| internal(&format!("linking blob {d} into {repo}"), e))
    }

    /// Remove `repo`'s link to blob `d`. The bytes stay until garbage collection finds no
    /// other repository or manifest using them.
    pub async fn delete_blob(&self, repo: &RepoName, d: &Digest) -> StoreResult<()> {
        match self.driver.delete(&layer_link_path(repo, d)).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Err(blob_unknown(repo, d)),
            Err(e) => Err(internal(&format!("unlinking blob {d} from {repo}"), e)),
        }
    }

    /// Cross-repository mount: link `from`'s blob `d` into `to`. False when `from` does
    /// not have the blob (the client then falls back to an upload).
    pub async fn mount_blob(
        &self,
        from: &RepoName,
        to: &RepoName,
        d: &Digest,
    ) -> StoreResult<bool> {
        if self.blob_size(from, d).await?.is_none() {
            return Ok(false);
        }
        self.link_blob(to, d).await?;
        Ok(true)
    }
}
