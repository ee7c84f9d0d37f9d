//! OCI image layout (image-spec image-layout.md): `oci-layout`,
//! `index.json`, `blobs/<alg>/<hex>`; as a tar (oci-archive) or a directory.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType};

use super::{SaveItem, Source};
use crate::digest::Digest;
use crate::error::{show, Error, IoContext, Result};
use crate::images::ImageStore;
use crate::ingest::LayerSpec;
use crate::manifest::{self, Compression, Document, PlatformSpec};
use crate::metadata::ImageRecord;
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::snapshot;

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A directory holding an OCI layout.
pub(crate) struct DirSource(pub PathBuf);

impl Source for DirSource {
    fn open(&self, path: &str) -> Result<(Box<dyn io::Read + '_>, u64)> {
        let full = self.0.join(path);
        let f = fs::File::open(&full).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::not_found(format!("{path} in layout {}", show(&self.0)))
            } else {
                Error::io(format!("opening {}", show(&full)), e)
            }
        })?;
        let size = f
            .metadata()
            .ctx(|| format!("reading {}", show(&full)))?
            .len();
        Ok((Box::new(f), size))
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// The blobs of one image: manifest, config, layers (as stored).
fn image_blobs(store: &ImageStore, rec: &ImageRecord) -> Result<Vec<Digest>> {
    let image = store.load_image(rec)?;
    let mut out = vec![rec.manifest_digest.clone(), rec.id.clone()];
    for l in image.manifest.layers() {
        out.push(manifest::descriptor_digest(l)?);
    }
    Ok(out)
}

fn index_json(store: &ImageStore, items: &[SaveItem]) -> Result<Vec<u8>> {
    let mut manifests = Vec::new();
    for item in items {
        let rec = &item.image;
        let size = store.content().size(&rec.manifest_digest)?;
        let mut d = Descriptor::new(
            MediaType::from(rec.manifest_media_type.as_str()),
            size,
            rec.manifest_digest.to_oci(),
        );
        if let Some(name) = &item.name {
            // podman and skopeo read the full name from ref.name; containerd
            // and docker from their own key. Both are written.
            let mut ann = std::collections::HashMap::new();
            ann.insert(REF_NAME.to_string(), name.to_string());
            ann.insert(CONTAINERD_NAME.to_string(), name.to_string());
            d.set_annotations(Some(ann));
        }
        manifests.push(d);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| Error::Invalid(format!("building index.json: {e}")))?;
    serde_json::to_vec(&index).map_err(|e| Error::json("serialising index.json", e))
}

/// Write an OCI layout directory.
pub(crate) fn save_dir(
    store: &ImageStore,
    items: &[SaveItem],
    out: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    fs::create_dir_all(out).ctx(|| format!("creating {}", show(out)))?;
    let mut seen = HashSet::new();
    for item in items {
        for d in image_blobs(store, &item.image)? {
            if !seen.insert(d.clone()) {
                continue;
            }
            let dest = out.join(blob_path(&d));
            if dest.is_file() {
                continue;
            }
            let parent = dest.parent().expect("blob paths have a parent");
            fs::create_dir_all(parent).ctx(|| format!("creating {}", show(parent)))?;
            let id = d.to_string();
            progress.start(&id, "Copying blob", Some(store.content().size(&d)?));
            let mut src = ProgressReader {
                inner: store.content().open_blob(&d)?,
                id: &id,
                progress,
            };
            let tmp = tempfile::NamedTempFile::new_in(parent)
                .ctx(|| format!("creating a file in {}", show(parent)))?;
            io::copy(&mut src, &mut tmp.as_file()).ctx(|| format!("writing {}", show(&dest)))?;
            tmp.persist(&dest)
                .map_err(|e| Error::io(format!("writing {}", show(&dest)), e.error))?;
            progress.finish(&id, "done");
        }
    }
    fs::write(out.join("oci-layout"), LAYOUT)
        .ctx(|| format!("writing {}/oci-layout", show(out)))?;
    fs::write(out.join("index.json"), index_json(store, items)?)
        .ctx(|| format!("writing {}/index.json", show(out)))?;
    Ok(())
}

pub(crate) fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
        .ctx(|| format!("writing archive member {path}"))
}

pub(crate) fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, io::empty())
        .ctx(|| format!("writing archive member {path}"))
}

pub(crate) fn append_blob<W: Write>(
    b: &mut tar::Builder<W>,
    store: &ImageStore,
    d: &Digest,
    path: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let size = store.content().size(d)?;
    let id = d.to_string();
    progress.start(&id, "Copying blob", Some(size));
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    let src = ProgressReader {
        inner: store.content().open_blob(d)?,
        id: &id,
        progress,
    };
    b.append_data(&mut h, path, src)
        .ctx(|| format!("writing blob {d} to the archive"))?;
    progress.finish(&id, "done");
    Ok(())
}

/// Write an OCI layout into a tar.
pub(crate) fn save_tar<W: Write>(
    store: &ImageStore,
    items: &[SaveItem],
    b: &mut tar::Builder<W>,
    progress: &dyn Progress,
) -> Result<()> {
    append_bytes(b, "oci-layout", LAYOUT)?;
    append_dir(b, "blobs/")?;
    let mut dirs = HashSet::new();
    let mut seen = HashSet::new();
    for item in items {
        for d in image_blobs(store, &item.image)? {
            if !seen.insert(d.clone()) {
                continue;
            }
            if dirs.insert(d.algorithm()) {
                append_dir(b, &format!("blobs/{}/", d.algorithm().name()))?;
            }
            append_blob(b, store, &d, &blob_path(&d), progress)?;
        }
    }
    append_bytes(b, "index.json", &index_json(store, items)?)
}

/// A name from an index entry's annotations: containerd's full name, or a
/// ref.name that is a full reference (a bare tag like "latest" names nothing).
fn name_from(d: &Descriptor) -> Option<Reference> {
    let ann = d.annotations().as_ref()?;
    if let Some(n) = ann.get(CONTAINERD_NAME) {
        if let Ok(r) = Reference::parse(n) {
            return Some(r);
        }
    }
    let n = ann.get(REF_NAME)?;
    if n.contains('/') || n.contains(':') {
        Reference::parse(n).ok().filter(|r| r.digest().is_none())
    } else {
        None
    }
}

/// Copy one blob from the layout into the store, verifying it.
fn ingest(
    store: &ImageStore,
    src: &(dyn Source + Sync),
    desc: &Descriptor,
    progress: &dyn Progress,
) -> Result<Digest> {
    let d = manifest::descriptor_digest(desc)?;
    // Even when the store has the blob, the layout's copy is verified (by
    // content.ingest): a load of a corrupt layout fails whatever is stored.
    let (reader, size) = src.open(&blob_path(&d))?;
    let id = d.to_string();
    progress.start(&id, "Copying blob", Some(size));
    store.content().ingest(
        &d,
        Some(desc.size()),
        ProgressReader {
            inner: reader,
            id: &id,
            progress,
        },
    )?;
    progress.finish(&id, "done");
    Ok(d)
}

pub(crate) fn load(
    store: &mut ImageStore,
    src: &(dyn Source + Sync),
    what: &str,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>> {
    let index_bytes = src.read("index.json")?;
    let (_, doc) = manifest::parse_document(&index_bytes, &format!("index.json of {what}"))?;
    let Document::Index(index) = doc else {
        return Err(Error::Invalid(format!(
            "loading {what}: index.json is not an image index"
        )));
    };
    // Manifest digest → (target digest, names); several entries may name one image.
    let mut images: BTreeMap<Digest, (Digest, Vec<Reference>)> = BTreeMap::new();
    for desc in index.manifests() {
        let d = ingest(store, src, desc, progress)?;
        let bytes = store.content().read(&d)?;
        let manifest_digest = match manifest::parse_document(&bytes, &d.to_string())?.1 {
            Document::Manifest(_) => d.clone(),
            Document::Index(nested) => {
                let chosen = manifest::select_platform(&nested, &PlatformSpec::host())
                    .map_err(|e| Error::Invalid(format!("loading {what}: index {d}: {e}")))?;
                ingest(store, src, chosen, progress)?
            }
        };
        let entry = images
            .entry(manifest_digest)
            .or_insert_with(|| (d.clone(), Vec::new()));
        if let Some(name) = name_from(desc) {
            entry.1.push(name);
        }
    }
    if images.is_empty() {
        return Err(Error::Invalid(format!(
            "loading {what}: the layout's index.json lists no images"
        )));
    }
    // Every image is copied and verified before any name is recorded: a
    // load that fails part-way changes no name.
    for manifest_digest in images.keys() {
        let manifest_digest = manifest_digest.clone();
        let bytes = store.content().read(&manifest_digest)?;
        let Document::Manifest(m) =
            manifest::parse_document(&bytes, &manifest_digest.to_string())?.1
        else {
            unreachable!("selected above as a manifest")
        };
        let config_digest = ingest(store, src, m.config(), progress)?;
        let config = manifest::parse_config(
            &store.content().read(&config_digest)?,
            &config_digest.to_string(),
        )?;
        let diff_ids: Vec<Digest> = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse())
            .collect::<Result<_>>()?;
        if diff_ids.len() != m.layers().len() {
            return Err(Error::Invalid(format!(
                "loading {what}: manifest {manifest_digest} has {} layers but its config lists {} diff ids",
                m.layers().len(),
                diff_ids.len()
            )));
        }
        let chain = snapshot::chain_ids(&diff_ids);
        let mut jobs = Vec::new();
        for (i, l) in m.layers().iter().enumerate() {
            let compression = Compression::from_media_type(l.media_type().as_ref())?;
            jobs.push((manifest::descriptor_digest(l)?, l.size(), compression, i));
        }
        // Each layer is copied, verified and unpacked in one pass, layers in parallel.
        let layers = store.layers();
        crate::ingest::parallel(&jobs, |(d, size, compression, i)| {
            let name = d.to_string();
            let (reader, _) = src.open(&blob_path(d))?;
            progress.start(&name, "Copying layer", Some(*size));
            let spec = LayerSpec {
                name: &name,
                compression: *compression,
                blob: Some((d, Some(*size))),
                diff_id: &diff_ids[*i],
                chain_id: &chain[*i],
            };
            layers.ingest(&spec, reader, progress)
        })?;
    }
    let mut out = Vec::new();
    for (manifest_digest, (target, names)) in images {
        let mut rec = store.commit(&manifest_digest, &target, &names, progress)?;
        // The names this layout gave, not every name the image has here.
        rec.names = names;
        out.push(rec);
    }
    Ok(out)
}
