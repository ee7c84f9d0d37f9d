//! docker-archive (`docker save` format): `manifest.json` listing each
//! image's config file, names (RepoTags) and layer tars, plus the legacy
//! `repositories` file.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Seek, Write};

use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};
use serde::{Deserialize, Serialize};

use super::oci::{append_blob, append_bytes};
use super::{SaveItem, Source};
use crate::digest::{self, Algorithm, Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::images::ImageStore;
use crate::ingest::LayerSpec;
use crate::manifest::{self, Compression};
use crate::metadata::ImageRecord;
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::snapshot;

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

pub(crate) fn save<W: Write>(
    store: &ImageStore,
    items: &[SaveItem],
    b: &mut tar::Builder<W>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written = HashSet::new();
    for item in items {
        let image = store.load_image(&item.image)?;
        let config_path = format!("{}.json", item.image.id.hex());
        if written.insert(config_path.clone()) {
            append_blob(b, store, &item.image.id, &config_path, progress)?;
        }
        let diff_ids = image.diff_ids()?;
        let mut layers = Vec::new();
        for (layer, diff_id) in image.manifest.layers().iter().zip(&diff_ids) {
            let path = format!("{}.tar", diff_id.hex());
            layers.push(path.clone());
            if !written.insert(path.clone()) {
                continue;
            }
            let blob = manifest::descriptor_digest(layer)?;
            let compression = Compression::from_media_type(layer.media_type().as_ref())?;
            if compression == Compression::None && &blob == diff_id {
                append_blob(b, store, &blob, &path, progress)?;
            } else {
                // docker-archive layers are uncompressed tars: decompress to
                // a temporary file (the tar header needs the size first),
                // checking the result against the diff id.
                let id = blob.to_string();
                progress.start(&id, "Decompressing layer", Some(layer.size()));
                let tmp = tempfile::tempfile_in(store.content().ingest_dir())
                    .ctx(|| format!("creating a temporary file for layer {blob}"))?;
                let input = io::BufReader::new(ProgressReader {
                    inner: store.content().open_blob(&blob)?,
                    id: &id,
                    progress,
                });
                let mut decoder: Box<dyn io::Read> = match compression {
                    Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
                    Compression::Zstd => Box::new(
                        zstd::stream::read::Decoder::with_buffer(input)
                            .ctx(|| format!("decompressing layer {blob}"))?,
                    ),
                    Compression::None => Box::new(input),
                };
                let mut out = HashingWriter::new(io::BufWriter::new(tmp), Algorithm::Sha256);
                io::copy(&mut decoder, &mut out).ctx(|| format!("decompressing layer {blob}"))?;
                let (actual, size, buf) = out.finish();
                digest::verify(
                    &format!("layer {blob} (uncompressed)"),
                    diff_id,
                    &actual,
                    None,
                    0,
                )?;
                let mut tmp = buf.into_inner().map_err(|e| {
                    Error::io(format!("decompressing layer {blob}"), e.into_error())
                })?;
                tmp.rewind()
                    .ctx(|| format!("reading decompressed layer {blob}"))?;
                let mut h = tar::Header::new_ustar();
                h.set_size(size);
                h.set_mode(0o644);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, &path, tmp)
                    .ctx(|| format!("writing layer {blob} to the archive"))?;
                progress.finish(&id, "done");
            }
        }
        let mut repo_tags = Vec::new();
        if let Some(name) = &item.name {
            // Full names: docker normalises them the same, and podman would
            // otherwise put a short name under localhost/.
            repo_tags.push(name.to_string());
            if let (Some(tag), Some(top)) = (name.tag(), diff_ids.last()) {
                repositories
                    .entry(name.familiar_repository())
                    .or_default()
                    .insert(tag.to_string(), top.hex().to_string());
            }
        }
        entries.push(Entry {
            config: config_path,
            repo_tags: Some(repo_tags),
            layers,
        });
    }
    let manifest_json =
        serde_json::to_vec(&entries).map_err(|e| Error::json("serialising manifest.json", e))?;
    append_bytes(b, "manifest.json", &manifest_json)?;
    if !repositories.is_empty() {
        let repos = serde_json::to_vec(&repositories)
            .map_err(|e| Error::json("serialising repositories", e))?;
        append_bytes(b, "repositories", &repos)?;
    }
    Ok(())
}

pub(crate) fn load(
    store: &mut ImageStore,
    src: &(dyn Source + Sync),
    what: &str,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>> {
    let entries: Vec<Entry> = serde_json::from_slice(&src.read("manifest.json")?)
        .map_err(|e| Error::json(format!("reading manifest.json of {what}"), e))?;
    if entries.is_empty() {
        return Err(Error::Invalid(format!(
            "loading {what}: manifest.json lists no images"
        )));
    }
    // Every image is copied and verified before any name is recorded: a
    // load that fails part-way changes no name.
    let mut loaded = Vec::new();
    for entry in entries {
        let config_bytes = src.read(&entry.config)?;
        let config_digest = store.content().put(&config_bytes)?;
        let config = manifest::parse_config(&config_bytes, &format!("{} in {what}", entry.config))?;
        let diff_ids: Vec<Digest> = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse())
            .collect::<Result<_>>()?;
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::Invalid(format!(
                "loading {what}: image {} lists {} layers but its config {} diff ids",
                entry.config,
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let chain = snapshot::chain_ids(&diff_ids);
        let jobs: Vec<usize> = (0..diff_ids.len()).collect();
        let layers = store.layers();
        // Each layer is copied, verified and unpacked in one pass, layers in parallel.
        let layer_descs = crate::ingest::parallel(&jobs, |&i| {
            let path = &entry.layers[i];
            let (reader, size) = src.open(path)?;
            progress.start(path, "Copying layer", Some(size));
            let mut reader = BufReader::new(reader);
            let compression = Compression::sniff(
                reader
                    .fill_buf()
                    .ctx(|| format!("reading layer {path} of {what}"))?,
            );
            let spec = LayerSpec {
                name: path,
                compression,
                // An uncompressed layer is its own diff id, so its blob digest
                // is known; a compressed one is hashed as it is stored.
                blob: (compression == Compression::None).then_some((&diff_ids[i], Some(size))),
                diff_id: &diff_ids[i],
                chain_id: &chain[i],
            };
            let digest = layers.ingest(&spec, reader, progress)?;
            Ok(Descriptor::new(
                MediaType::from(compression.oci_media_type()),
                size,
                digest.to_oci(),
            ))
        })?;
        // docker-archive carries no manifest: make an OCI one (the image id,
        // the config digest, is unchanged).
        let m = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                config_digest.to_oci(),
            ))
            .layers(layer_descs)
            .build()
            .map_err(|e| {
                Error::Invalid(format!(
                    "loading {what}: building a manifest for {}: {e}",
                    entry.config
                ))
            })?;
        let manifest_bytes =
            serde_json::to_vec(&m).map_err(|e| Error::json("serialising a manifest", e))?;
        let manifest_digest = store.content().put(&manifest_bytes)?;
        let mut names = Vec::new();
        for t in entry.repo_tags.unwrap_or_default() {
            names.push(Reference::parse(&t).map_err(|e| {
                Error::Invalid(format!("loading {what}: RepoTags of {}: {e}", entry.config))
            })?);
        }
        loaded.push((manifest_digest, names));
    }
    let mut out = Vec::new();
    for (manifest_digest, names) in loaded {
        let mut rec = store.commit(&manifest_digest, &manifest_digest, &names, progress)?;
        // The names this archive gave, not every name the image has here.
        rec.names = names;
        out.push(rec);
    }
    Ok(out)
}
