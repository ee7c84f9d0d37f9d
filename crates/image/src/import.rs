//! `import`: a root filesystem tarball (plain, gzip or zstd) becomes a
//! one-layer image with a proper config (rootfs.diff_ids, history, os/arch).
//!
//! One pass: the tarball is decompressed, hashed, stored as an uncompressed
//! layer blob and unpacked into its snapshot at the same time.

use std::io::{BufRead, BufReader, Read};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};

use crate::digest::{self, Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::images::{format_rfc3339, ImageStore};
use crate::layer::{self, ApplyLimits};
use crate::manifest::{self, Compression};
use crate::metadata::{now, ImageRecord};
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::snapshot::{self, SnapshotInfo};
use crate::store::TeeReader;

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Recorded in the history entry ("Imported from …").
    pub source: String,
    /// Commit message for the history entry, overriding the default comment.
    pub message: Option<String>,
    /// Environment (KEY=VALUE) and command for the config, if any.
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    /// Labels for the config.
    pub labels: Vec<(String, String)>,
    /// Paths the config declares as volumes (`VOLUME`).
    pub volumes: Vec<String>,
}

/// Import a root filesystem tarball as an image named `names`.
pub fn import(
    store: &mut ImageStore,
    tarball: impl Read,
    names: &[Reference],
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let _lock = store.write_lock()?;
    let what = if opts.source.is_empty() {
        "tarball".to_string()
    } else {
        opts.source.clone()
    };
    let id = format!("import {what}");
    progress.start(&id, "Importing", None);
    let mut buffered = BufReader::with_capacity(
        1 << 20,
        ProgressReader {
            inner: tarball,
            id: &id,
            progress,
        },
    );
    let head = buffered.fill_buf().ctx(|| format!("reading {what}"))?;
    let compression = Compression::sniff(head);
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .ctx(|| format!("decompressing {what}"))?,
        ),
    };
    // The layer is kept uncompressed: its blob digest is its diff id, which
    // the unpack computes, so the snapshot is keyed before the blob is known.
    let mut blob = store.content().writer(None, Algorithm::Sha256)?;
    let staged = store.snapshots().stage()?;
    let limits = ApplyLimits::for_target(staged.fs())?;
    let applied = layer::apply(
        staged.fs(),
        &what,
        TeeReader {
            inner: decoded,
            out: &mut blob,
        },
        Compression::None,
        Algorithm::Sha256,
        &limits,
    )?;
    let layer_digest = blob.commit()?;
    // The blob is exactly the bytes the unpack hashed; a difference means a bug, not bad input.
    digest::verify(
        &format!("layer of {what}"),
        &applied.diff_id,
        &layer_digest,
        None,
        0,
    )?;
    let chain_id = snapshot::chain_ids(std::slice::from_ref(&applied.diff_id)).remove(0);
    let info = SnapshotInfo {
        chain_id,
        diff_id: applied.diff_id.clone(),
        size: applied.size,
    };
    // The staged tree becomes the snapshot: no second pass over the layer.
    store.snapshots().publish(staged, &info)?;
    progress.finish(&id, "done");

    let created = format_rfc3339(now());
    let host = manifest::PlatformSpec::host();
    let comment = opts
        .message
        .clone()
        .unwrap_or_else(|| format!("Imported from {what}"));
    let mut config = ConfigBuilder::default();
    if !opts.env.is_empty() {
        config = config.env(opts.env.clone());
    }
    if !opts.cmd.is_empty() {
        config = config.cmd(opts.cmd.clone());
    }
    if !opts.volumes.is_empty() {
        config = config.volumes(opts.volumes.clone());
    }
    if !opts.labels.is_empty() {
        config = config.labels(
            opts.labels
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let config = config
        .build()
        .map_err(|e| Error::Invalid(format!("building config for {what}: {e}")))?;
    let image_config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::from(host.architecture.as_str()))
        .os(Os::from(host.os.as_str()))
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![applied.diff_id.to_string()])
                .build()
                .map_err(|e| Error::Invalid(format!("building config for {what}: {e}")))?,
        )
        .history(vec![HistoryBuilder::default()
            .created(created)
            .created_by(format!("hako import {what}"))
            .comment(comment)
            .build()
            .map_err(|e| {
                Error::Invalid(format!("building config for {what}: {e}"))
            })?])
        .build()
        .map_err(|e| Error::Invalid(format!("building config for {what}: {e}")))?;
    let mut config_bytes = serde_json::to_vec(&image_config)
        .map_err(|e| Error::json(format!("serialising config for {what}"), e))?;
    config_bytes.push(b'\n');
    let config_digest = store.content().put(&config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            config_digest.to_oci(),
        ))
        .layers(vec![Descriptor::new(
            MediaType::ImageLayer,
            applied.size,
            layer_digest.to_oci(),
        )])
        .build()
        .map_err(|e| Error::Invalid(format!("building manifest for {what}: {e}")))?;
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::json(format!("serialising manifest for {what}"), e))?;
    let manifest_digest: Digest = store.content().put(&manifest_bytes)?;
    store.commit(&manifest_digest, &manifest_digest, names, progress)
}
