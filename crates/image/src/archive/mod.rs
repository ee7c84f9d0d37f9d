//! Image archives: `save` to docker-archive, oci-archive (an OCI image
//! layout in a tar) or oci-dir (the layout as a directory); `load` from any
//! of them, detecting the format.

mod docker;
mod oci;
mod tarfile;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::error::{show, Error, IoContext, Result};
use crate::images::ImageStore;
use crate::manifest::Compression;
use crate::metadata::ImageRecord;
use crate::progress::Progress;
use crate::reference::Reference;

pub use tarfile::TarIndex;

/// The archive formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` format: manifest.json, repositories, config and layer tars.
    DockerArchive,
    /// An OCI image layout in a tar.
    OciArchive,
    /// An OCI image layout directory.
    OciDir,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "docker-archive" => Ok(Format::DockerArchive),
            "oci-archive" => Ok(Format::OciArchive),
            "oci-dir" => Ok(Format::OciDir),
            other => Err(Error::Invalid(format!(
                "unknown archive format {other:?} (docker-archive, oci-archive or oci-dir)"
            ))),
        }
    }
}

/// One image to save and the name to record it under (none: saved by id).
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: ImageRecord,
    pub name: Option<Reference>,
}

/// Save images to `output` in `format`. Archives are written to a
/// temporary name and renamed, so a failed save leaves no partial file;
/// an existing `output` that is not a regular file or directory (a pipe, a
/// device, /dev/stdout) is written into instead, never replaced.
pub fn save(
    store: &ImageStore,
    items: &[SaveItem],
    format: Format,
    output: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    if items.is_empty() {
        return Err(Error::Invalid("nothing to save: no images given".into()));
    }
    match format {
        Format::OciDir => oci::save_dir(store, items, output, progress),
        Format::OciArchive | Format::DockerArchive => {
            let special = std::fs::symlink_metadata(output)
                .map(|m| !m.is_file() && !m.is_dir())
                .unwrap_or(false);
            if special {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(output)
                    .ctx(|| format!("opening {}", show(output)))?;
                return save_to_writer(store, items, format, &mut file, progress)
                    .and_then(|()| file.flush().ctx(|| format!("writing {}", show(output))));
            }
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::Builder::new()
                .prefix(".hako-save-")
                .tempfile_in(dir)
                .ctx(|| format!("creating a temporary file next to {}", show(output)))?;
            let file = tmp
                .reopen()
                .ctx(|| format!("opening {}", show(tmp.path())))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            save_to_writer(store, items, format, &mut out, progress)?;
            let file = out
                .into_inner()
                .map_err(|e| Error::io(format!("writing {}", show(output)), e.into_error()))?;
            file.sync_all()
                .ctx(|| format!("syncing {}", show(output)))?;
            tmp.persist(output)
                .map_err(|e| Error::io(format!("writing {}", show(output)), e.error))?;
            Ok(())
        }
    }
}

/// Write the docker- or oci-archive of `items` to `out` as it is made
/// (standard output, a pipe); the caller owns what a failure leaves there.
pub fn save_to_writer(
    store: &ImageStore,
    items: &[SaveItem],
    format: Format,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<()> {
    if items.is_empty() {
        return Err(Error::Invalid("nothing to save: no images given".into()));
    }
    let mut builder = tar::Builder::new(out);
    match format {
        Format::OciDir => {
            return Err(Error::Invalid(
                "an oci-dir layout is a directory: it cannot be written to a stream".into(),
            ))
        }
        Format::OciArchive => oci::save_tar(store, items, &mut builder, progress)?,
        Format::DockerArchive => docker::save(store, items, &mut builder, progress)?,
    }
    builder
        .into_inner()
        .ctx(|| "writing the archive".to_string())?;
    Ok(())
}

/// Load the images of an archive or OCI layout directory; returns them with
/// the names they got.
pub fn load(
    store: &mut ImageStore,
    input: &Path,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>> {
    let lock = store.write_lock()?;
    let loaded = load_locked(store, input, progress);
    drop(lock);
    if loaded.is_err() {
        // Blobs that verified before something else failed are referenced
        // by no image: a failed load leaves nothing (as a failed pull).
        if let Err(gc_err) = store.gc() {
            tracing::warn!("cleaning up after a failed load: {gc_err}");
        }
    }
    loaded
}

fn load_locked(
    store: &mut ImageStore,
    input: &Path,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>> {
    if input.is_dir() {
        if !input.join("oci-layout").is_file() {
            return Err(Error::Invalid(format!(
                "loading {}: a directory must be an OCI image layout (it has no oci-layout file)",
                show(input)
            )));
        }
        return oci::load(
            store,
            &oci::DirSource(input.to_path_buf()),
            &show(input),
            progress,
        );
    }
    let mut head = BufReader::new(File::open(input).ctx(|| format!("opening {}", show(input)))?);
    let compression =
        Compression::sniff(head.fill_buf().ctx(|| format!("reading {}", show(input)))?);
    // A compressed archive (`docker save | gzip`) is decompressed to a
    // temporary file first: loading needs to seek in the tar.
    let _decompressed;
    let tar_path = if compression == Compression::None {
        input.to_path_buf()
    } else {
        let mut tmp = tempfile::Builder::new()
            .prefix("load-")
            .tempfile_in(store.content().ingest_dir())
            .ctx(|| format!("creating a temporary file to decompress {}", show(input)))?;
        let mut decoder: Box<dyn Read> = match compression {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(head)),
            _ => Box::new(
                zstd::stream::read::Decoder::with_buffer(head)
                    .ctx(|| format!("decompressing {}", show(input)))?,
            ),
        };
        std::io::copy(&mut decoder, tmp.as_file_mut())
            .ctx(|| format!("decompressing {}", show(input)))?;
        let path = tmp.path().to_path_buf();
        _decompressed = tmp;
        path
    };
    let index = TarIndex::open(&tar_path).map_err(|e| match e {
        Error::Io { source, .. } => Error::io(format!("reading archive {}", show(input)), source),
        other => other,
    })?;
    if index.contains("manifest.json") {
        docker::load(store, &index, &show(input), progress)
    } else if index.contains("oci-layout") && index.contains("index.json") {
        oci::load(store, &index, &show(input), progress)
    } else {
        Err(Error::Invalid(format!(
            "loading {}: neither a docker-archive (no manifest.json) nor an OCI layout (no oci-layout and index.json)",
            show(input)
        )))
    }
}

/// Where loaders read archive members from: a tar or a directory.
pub(crate) trait Source {
    /// Open a member by its path inside the archive; returns the reader and its size.
    fn open(&self, path: &str) -> Result<(Box<dyn Read + '_>, u64)>;

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let (mut r, size) = self.open(path)?;
        if size > 64 << 20 {
            return Err(Error::Invalid(format!(
                "archive member {path} is {size} bytes, too large for metadata"
            )));
        }
        let mut out = Vec::with_capacity(size as usize);
        r.read_to_end(&mut out)
            .ctx(|| format!("reading archive member {path}"))?;
        Ok(out)
    }
}
