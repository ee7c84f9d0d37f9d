//! The registry's content model on top of a [`StorageDriver`]: content-addressed blobs,
//! per-repository links that grant a repository access to a blob, manifests and tags,
//! referrers, and uploads in their own area. The HTTP layer talks only to [`Store`].
//!
//! Layout (all paths built from validated names, tags and digests):
//! ```text
//! /blobs/<alg>/<hex[..2]>/<hex>/data                        blob and manifest bytes
//! /repositories/<name>/_layers/<alg>/<hex>/link             repository may read this blob
//! /repositories/<name>/_manifests/revisions/<alg>/<hex>/link   {"mediaType": ...}
//! /repositories/<name>/_manifests/tags/<tag>/current/link   digest the tag points at
//! /repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>   descriptor of a referrer
//! /uploads/<id>/data, /uploads/<id>/info                    uploads in progress
//! ```

mod blobs;
pub use blobs::blob_unknown;
mod manifests;
mod uploads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError};
use crate::names;
use crate::storage::{DriverError, StorageDriver};

pub use manifests::{ManifestPut, StoredManifest};
pub use uploads::{ByteStream, UploadStatus};

pub type StoreResult<T> = Result<T, RegistryError>;

/// Largest manifest accepted, as distribution and the spec's guidance (4 MiB) suggest.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// A repository name that has passed the spec's grammar check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(name: &str) -> StoreResult<RepoName> {
        if names::is_valid_repository_name(name) {
            Ok(RepoName(name.to_string()))
        } else {
            Err(RegistryError::new(
                ErrorCode::NameInvalid,
                format!("repository name {name:?} does not match the distribution-spec grammar"),
            )
            .with_detail(serde_json::json!({ "name": name })))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RepoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// Parse a reference; anything with a `:` is taken as a digest (tags cannot contain one),
    /// so a malformed digest is DIGEST_INVALID, not a confusing unknown tag.
    pub fn parse(s: &str) -> StoreResult<Reference> {
        if s.contains(':') {
            return parse_digest(s).map(Reference::Digest);
        }
        if names::is_valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("manifest reference {s:?} is neither a valid tag nor a digest"),
            )
            .with_status(400))
        }
    }
}

/// Parse a client-supplied digest, reporting DIGEST_INVALID (400) when malformed.
pub fn parse_digest(s: &str) -> StoreResult<Digest> {
    s.parse::<Digest>().map_err(|e| {
        RegistryError::new(ErrorCode::DigestInvalid, e.to_string())
            .with_detail(serde_json::json!({ "digest": s }))
    })
}

pub(crate) fn blob_data_path(d: &Digest) -> String {
    format!(
        "/blobs/{}/{}/{}/data",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    )
}

pub(crate) fn repo_path(repo: &RepoName) -> String {
    format!("/repositories/{}", repo.as_str())
}

pub(crate) fn layer_link_path(repo: &RepoName, d: &Digest) -> String {
    format!(
        "{}/_layers/{}/{}/link",
        repo_path(repo),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub(crate) fn revision_link_path(repo: &RepoName, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}/link",
        repo_path(repo),
        d.algorithm().as_str(),
        d.hex()
    )
}

pub(crate) fn tags_path(repo: &RepoName) -> String {
    format!("{}/_manifests/tags", repo_path(repo))
}

pub(crate) fn tag_link_path(repo: &RepoName, tag: &str) -> String {
    format!("{}/{}/current/link", tags_path(repo), tag)
}

pub(crate) fn referrers_dir(repo: &RepoName, subject: &Digest) -> String {
    format!(
        "{}/_referrers/{}/{}",
        repo_path(repo),
        subject.algorithm().as_str(),
        subject.hex()
    )
}

pub(crate) fn referrer_entry_path(repo: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}-{}",
        referrers_dir(repo, subject),
        referrer.algorithm().as_str(),
        referrer.hex()
    )
}

pub(crate) fn internal(action: &str, e: DriverError) -> RegistryError {
    tracing::error!(error = %e, "storage failure while {action}");
    RegistryError::internal(format!("storage failure while {action}: {e}"))
}

/// Registry state over one storage driver. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) driver: Arc<dyn StorageDriver>,
    /// Running sha256 of each upload's bytes so far, so that finishing a streamed upload
    /// does not read the whole blob back. Lost on restart: then the bytes are rehashed.
    pub(crate) upload_hashes: Arc<Mutex<HashMap<String, uploads::RunningHash>>>,
    /// One lock per upload: concurrent PATCHes to the same upload are serialised.
    pub(crate) upload_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    pub(crate) upload_expiry: Duration,
}

impl Store {
    pub fn new(driver: Arc<dyn StorageDriver>, upload_expiry: Duration) -> Store {
        Store {
            driver,
            upload_hashes: Arc::default(),
            upload_locks: Arc::default(),
            upload_expiry,
        }
    }

    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    /// Names of all repositories, sorted.
    pub async fn catalog(&self) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let dir = if prefix.is_empty() {
                "/repositories".to_string()
            } else {
                format!("/repositories/{prefix}")
            };
            let children = match self.driver.list(&dir).await {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(internal("listing repositories", e)),
            };
            // Repository components never start with '_', so `_layers` and friends mark
            // a repository and everything else is a deeper name component.
            if children.iter().any(|c| c == "_manifests" || c == "_layers") {
                out.push(prefix.clone());
            }
            for c in children.into_iter().filter(|c| !c.starts_with('_')) {
                stack.push(if prefix.is_empty() {
                    c
                } else {
                    format!("{prefix}/{c}")
                });
            }
        }
        out.sort();
        Ok(out)
    }

    pub(crate) async fn exists(&self, path: &str, action: &str) -> StoreResult<bool> {
        match self.driver.stat(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(internal(action, e)),
        }
    }
}
