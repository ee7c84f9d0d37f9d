//! `push`: an image from the store to a registry, byte for byte (the stored
//! manifest is sent as it is, so its digest is the same on both sides).
//!
//! Each blob (layers in parallel, then the config) is skipped when the
//! repository has it (`HEAD`), mounted when hako knows it lives in another
//! repository of the same registry (see [`crate::blob_sources`]), and uploaded
//! otherwise (chunked when large); the manifest goes last, so a registry never
//! holds a manifest whose blobs are missing.

use hako_distribution::client::{Access, Client, Pushed};

use crate::blob_sources::BlobSources;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::ImageStore;
use crate::ingest;
use crate::manifest::{self, Document};
use crate::progress::Progress;
use crate::pull::{registry_error, to_dist};
use crate::reference::{Reference, DEFAULT_TAG};
use crate::store::ContentStore;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository already had it.
    Exists,
    /// Linked from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

impl BlobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobOutcome::Exists => "already exists",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Uploaded => "pushed",
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// Digest of the manifest pushed.
    pub digest: Digest,
    pub size: u64,
    /// Config and layers, in manifest order (config first).
    pub blobs: Vec<(Digest, BlobOutcome)>,
}

/// Push the image `source` names (anything [`ImageStore::find`] accepts) to
/// `dest`, with `client` a client for `dest`'s registry.
pub fn push(
    store: &ImageStore,
    client: &Client,
    source: &str,
    dest: &Reference,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let rec = store.find(source)?;
    let manifest_bytes = store.content().read(&rec.manifest_digest)?;
    let Document::Manifest(m) =
        manifest::parse_document(&manifest_bytes, &rec.manifest_digest.to_string())?.1
    else {
        return Err(Error::Invalid(format!(
            "image {}: manifest {} is an index",
            rec.id, rec.manifest_digest
        )));
    };
    if let Some(d) = dest.digest() {
        if d != &rec.manifest_digest {
            return Err(Error::Invalid(format!(
                "cannot push image {} as {dest}: its manifest digest is {}",
                rec.id.short(),
                rec.manifest_digest
            )));
        }
    }
    let mut blobs = vec![manifest::descriptor_digest(m.config())?];
    for l in m.layers() {
        blobs.push(manifest::descriptor_digest(l)?);
    }
    let sources = BlobSources::open(store.root());
    // Blobs are independent; the manifest waits for all of them.
    let content = store.content();
    let outcomes = ingest::parallel(&blobs, |d| {
        push_blob(content, client, &sources, dest, d, progress)
    })?;

    let reference = match (dest.tag(), dest.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => DEFAULT_TAG.to_string(),
    };
    client
        .put_manifest(
            dest.path(),
            &reference,
            &rec.manifest_media_type,
            &manifest_bytes,
        )
        .map_err(registry_error)?;
    for d in &blobs {
        if let Err(e) = sources.add(d, &dest.repository()) {
            tracing::warn!("{e}");
        }
    }
    Ok(PushReport {
        digest: rec.manifest_digest.clone(),
        size: manifest_bytes.len() as u64,
        blobs: blobs.into_iter().zip(outcomes).collect(),
    })
}

fn push_blob(
    store: &ContentStore,
    client: &Client,
    sources: &BlobSources,
    dest: &Reference,
    digest: &Digest,
    progress: &dyn Progress,
) -> Result<BlobOutcome> {
    let repo = dest.path();
    let dd = to_dist(digest);
    let id = digest.to_string();
    if client
        .head_blob(repo, &dd, &Access::Push(repo))
        .map_err(registry_error)?
        .is_some()
    {
        progress.finish(&id, BlobOutcome::Exists.as_str());
        return Ok(BlobOutcome::Exists);
    }
    let size = store.size(digest)?;
    let file = store.open_blob(digest)?;
    progress.start(&id, "Pushing", Some(size));
    let advance = |n: u64| progress.advance(&id, n);
    let mount_from = sources.mount_candidate(digest, client.registry(), repo);
    let pushed = client
        .push_blob(repo, &dd, size, &file, mount_from.as_deref(), &advance)
        .map_err(registry_error)?;
    let outcome = match pushed {
        Pushed::Mounted => BlobOutcome::Mounted,
        Pushed::Uploaded => BlobOutcome::Uploaded,
    };
    progress.finish(&id, outcome.as_str());
    Ok(outcome)
}
