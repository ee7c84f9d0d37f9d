//! Compressed copies of a build's layers (`--compression gzip|zstd`): the
//! uncompressed blob stays (it is the diff id the cache and snapshots use);
//! the manifest points at the compressed copy. Copies are remembered by diff
//! id, so a cached rebuild does not compress again.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use hako_image::digest::Algorithm;
use hako_image::manifest::Compression;
use hako_image::store::ContentStore;
use hako_image::Digest;

use crate::error::{Error, IoContext, Result};
use crate::fsops::LAYER_MEDIA_TYPE;
use crate::state::{Layer, State};

/// The state with its uncompressed layers replaced by compressed copies.
pub fn layers(content: &ContentStore, dir: &Path, mut st: State, c: Compression) -> Result<State> {
    if c == Compression::None {
        return Ok(st);
    }
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    for l in &mut st.layers {
        if l.media_type == LAYER_MEDIA_TYPE {
            *l = compressed(content, dir, l, c)?;
        }
    }
    Ok(st)
}

fn compressed(content: &ContentStore, dir: &Path, l: &Layer, c: Compression) -> Result<Layer> {
    let diff: Digest = l.diff_id.parse()?;
    let ext = match c {
        Compression::Gzip => "gzip",
        _ => "zstd",
    };
    let memo = dir.join(format!("{}.{ext}", diff.hex()));
    if let Ok(bytes) = fs::read(&memo) {
        if let Ok(known) = serde_json::from_slice::<Layer>(&bytes) {
            if known
                .blob
                .parse()
                .is_ok_and(|d: Digest| content.contains(&d))
            {
                return Ok(known);
            }
        }
    }
    let blob: Digest = l.blob.parse()?;
    let mut src = content.open_blob(&blob)?;
    let writer = content.writer(None, Algorithm::Sha256)?;
    let what = || format!("compressing layer {diff}");
    let writer = match c {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
            io::copy(&mut src, &mut enc).map_err(|e| Error::io(what(), e))?;
            enc.finish().map_err(|e| Error::io(what(), e))?
        }
        _ => {
            let mut enc =
                zstd::stream::write::Encoder::new(writer, 3).map_err(|e| Error::io(what(), e))?;
            io::copy(&mut src, &mut enc).map_err(|e| Error::io(what(), e))?;
            enc.finish().map_err(|e| Error::io(what(), e))?
        }
    };
    let size = writer.written();
    let digest = writer.commit()?;
    let layer = Layer {
        blob: digest.to_string(),
        media_type: c.oci_media_type().to_string(),
        size,
        diff_id: l.diff_id.clone(),
    };
    let json =
        serde_json::to_vec(&layer).map_err(|e| Error::Invalid(format!("{}: {e}", what())))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).ctx(what)?;
    tmp.write_all(&json).ctx(what)?;
    tmp.persist(&memo).map_err(|e| Error::io(what(), e.error))?;
    Ok(layer)
}
