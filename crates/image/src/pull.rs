//! `pull`: an image from a registry into the store.
//!
//! Manifest (and index, with platform selection), then the config, then the
//! layers in parallel, each in ONE streaming pass: download → sha256 →
//! decompress → diff-id hash → unpack into a staged snapshot, while the same
//! bytes are written to a temporary blob. Only when both digests verify is
//! the blob renamed into the store and the snapshot published; the manifest,
//! config and index are stored last, and the image recorded after that. So a
//! wrong digest leaves nothing in the store, and a pull killed at any point
//! leaves only temporary names, which the next garbage collection removes —
//! the next pull simply starts those layers again.

use hako_distribution::client::{Client, ClientError};
use oci_spec::image::ImageManifest;

use crate::blob_sources::BlobSources;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::ImageStore;
use crate::ingest::{self, LayerIngest, LayerSpec};
use crate::manifest::{self, Compression, Document, PlatformSpec};
use crate::metadata::ImageRecord;
use crate::progress::{NoProgress, Progress, ProgressReader};
use crate::reference::Reference;
use crate::snapshot;

/// Options of a pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to select from an index; the host's when `None`.
    pub platform: Option<PlatformSpec>,
    /// Also fetch every other platform's manifest, config and layers (stored,
    /// not unpacked: they cannot run here).
    pub all_platforms: bool,
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image for the selected platform.
    pub image: ImageRecord,
    /// What the reference resolved to (the manifest, or the index).
    pub digest: Digest,
    /// Manifests of other platforms stored with `all_platforms`.
    pub other_platforms: usize,
}

/// A registry client error as an image-library error, keeping its text.
pub(crate) fn registry_error(e: ClientError) -> Error {
    Error::Invalid(e.to_string())
}

pub(crate) fn to_dist(d: &Digest) -> hako_distribution::digest::Digest {
    d.to_string()
        .parse()
        .expect("a validated digest is valid for the distribution crate")
}

fn from_dist(d: &hako_distribution::digest::Digest) -> Digest {
    d.to_string()
        .parse()
        .expect("a validated digest is valid for the image crate")
}

/// Pull `reference` with `client` (a client for its registry) into `store`.
pub fn pull(
    store: &mut ImageStore,
    client: &Client,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let repo = reference.path();
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    };
    let top = client.get_manifest(repo, &wanted).map_err(registry_error)?;
    let top_digest = from_dist(&top.digest);
    let (_, doc) = manifest::parse_document(&top.bytes, &top_digest.to_string())?;
    // Documents to store once every layer is in: (digest, bytes).
    let mut documents: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut others = Vec::new();
    let (manifest_digest, manifest_bytes) = match doc {
        Document::Manifest(_) => (top_digest.clone(), top.bytes),
        Document::Index(index) => {
            let platform = opts.platform.clone().unwrap_or_else(PlatformSpec::host);
            let chosen = manifest::select_platform(&index, &platform)
                .map_err(|e| Error::Invalid(format!("index {top_digest}: {e}")))?;
            let chosen_digest = manifest::descriptor_digest(chosen)?;
            if opts.all_platforms {
                for d in index.manifests() {
                    let mt = d.media_type().to_string();
                    let is_image = mt == manifest::OCI_MANIFEST || mt == manifest::DOCKER_MANIFEST;
                    let digest = manifest::descriptor_digest(d)?;
                    if is_image && digest != chosen_digest {
                        others.push(digest);
                    }
                }
            }
            let m = client
                .get_manifest(repo, &chosen_digest.to_string())
                .map_err(registry_error)?;
            documents.push((top_digest.clone(), top.bytes));
            (chosen_digest, m.bytes)
        }
    };

    let lock = store.write_lock()?;
    let stored = (|| -> Result<(ImageRecord, Vec<Digest>, usize)> {
        let mut other_platforms = 0;
        for d in &others {
            let m = client
                .get_manifest(repo, &d.to_string())
                .map_err(registry_error)?;
            fetch_image(store, client, repo, d, &m.bytes, false, progress)?;
            documents.push((d.clone(), m.bytes));
            other_platforms += 1;
        }
        let blobs = fetch_image(
            store,
            client,
            repo,
            &manifest_digest,
            &manifest_bytes,
            true,
            progress,
        )?;
        documents.push((manifest_digest.clone(), manifest_bytes));
        for (d, bytes) in &documents {
            store
                .content()
                .ingest(d, Some(bytes.len() as u64), bytes.as_slice())?;
        }
        let names: Vec<Reference> = match reference.tag() {
            Some(t) if reference.digest().is_none() => vec![reference.with_tag(t)?],
            _ => Vec::new(),
        };
        // Every layer was reported above; commit only unpacks what was already stored.
        let image = store.commit(&manifest_digest, &top_digest, &names, &NoProgress)?;
        Ok((image, blobs, other_platforms))
    })();
    drop(lock);
    let (image, blobs, other_platforms) = match stored {
        Ok(s) => s,
        Err(e) => {
            // Layers that did verify were stored before another failed: a
            // failed pull leaves nothing, so collect what no image references
            // (this waits for other writers to finish first).
            if let Err(gc_err) = store.gc() {
                tracing::warn!("cleaning up after a failed pull: {gc_err}");
            }
            return Err(e);
        }
    };
    let sources = BlobSources::open(store.root());
    for d in blobs {
        // Hints only: a failure to remember them costs a mount later, not this pull.
        if let Err(e) = sources.add(&d, &reference.repository()) {
            tracing::warn!("{e}");
        }
    }
    Ok(Pulled {
        image,
        digest: top_digest,
        other_platforms,
    })
}

/// Fetch one image manifest's config (returned, stored) and layers (stored,
/// and unpacked when `unpack`). Returns the digests of config and layers.
fn fetch_image(
    store: &ImageStore,
    client: &Client,
    repo: &str,
    manifest_digest: &Digest,
    manifest_bytes: &[u8],
    unpack: bool,
    progress: &dyn Progress,
) -> Result<Vec<Digest>> {
    let (_, doc) = manifest::parse_document(manifest_bytes, &manifest_digest.to_string())?;
    let Document::Manifest(m) = doc else {
        return Err(Error::Invalid(format!(
            "manifest {manifest_digest}: an index where an image manifest was expected"
        )));
    };
    let config_digest = manifest::descriptor_digest(m.config())?;
    let config_bytes = if store.content().contains(&config_digest) {
        store.content().read(&config_digest)?
    } else {
        client
            .get_blob_bytes(repo, &to_dist(&config_digest))
            .map_err(registry_error)?
    };
    let config = manifest::parse_config(&config_bytes, &config_digest.to_string())?;
    let diff_ids: Vec<Digest> = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse())
        .collect::<Result<_>>()?;
    if diff_ids.len() != m.layers().len() {
        return Err(Error::Invalid(format!(
            "image {config_digest}: manifest {manifest_digest} has {} layers but the config lists {} diff ids",
            m.layers().len(),
            diff_ids.len()
        )));
    }
    let chain = snapshot::chain_ids(&diff_ids);
    fetch_layers(store, client, repo, &m, &diff_ids, &chain, unpack, progress)?;
    // The config goes in after the layers: a failed layer leaves no config behind.
    store.content().ingest(
        &config_digest,
        Some(config_bytes.len() as u64),
        config_bytes.as_slice(),
    )?;
    let mut blobs = vec![config_digest];
    for l in m.layers() {
        blobs.push(manifest::descriptor_digest(l)?);
    }
    Ok(blobs)
}

struct Job<'a> {
    digest: Digest,
    size: u64,
    compression: Compression,
    diff_id: &'a Digest,
    chain_id: &'a Digest,
}

#[allow(clippy::too_many_arguments)]
fn fetch_layers(
    store: &ImageStore,
    client: &Client,
    repo: &str,
    m: &ImageManifest,
    diff_ids: &[Digest],
    chain: &[Digest],
    unpack: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let mut jobs = Vec::new();
    for (i, layer) in m.layers().iter().enumerate() {
        let digest = manifest::descriptor_digest(layer)?;
        if store.content().contains(&digest) {
            // Already here; a missing snapshot is unpacked from the blob by commit.
            progress.finish(&digest.to_string(), "already exists");
            continue;
        }
        jobs.push(Job {
            digest,
            size: layer.size(),
            compression: Compression::from_media_type(layer.media_type().as_ref())?,
            diff_id: &diff_ids[i],
            chain_id: &chain[i],
        });
    }
    let ingest = LayerIngest {
        content: store.content(),
        snapshots: store.snapshots(),
    };
    ingest::parallel(&jobs, |job| {
        fetch_layer(&ingest, client, repo, job, unpack, progress)
    })?;
    Ok(())
}

/// Download one layer, streaming it through the store's layer ingest
/// (hash → store → decompress → unpack in one pass).
fn fetch_layer(
    ingest: &LayerIngest<'_>,
    client: &Client,
    repo: &str,
    job: &Job<'_>,
    unpack: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let name = job.digest.to_string();
    progress.start(&name, "Downloading", Some(job.size));
    let body = client
        .get_blob(repo, &to_dist(&job.digest), Some(job.size))
        .map_err(registry_error)?;
    if !unpack {
        // Another platform's layer: kept for push/save, never unpacked here.
        let reader = ProgressReader {
            inner: body,
            id: &name,
            progress,
        };
        ingest.content.ingest(&job.digest, Some(job.size), reader)?;
        progress.finish(&name, "done");
        return Ok(());
    }
    let spec = LayerSpec {
        name: &name,
        compression: job.compression,
        blob: Some((&job.digest, Some(job.size))),
        diff_id: job.diff_id,
        chain_id: job.chain_id,
    };
    ingest.ingest(&spec, body, progress)?;
    Ok(())
}
