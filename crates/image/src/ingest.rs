//! Layer ingest: one streaming pass from a reader (an archive member now, a
//! registry response body when pulling) to a verified blob in the content
//! store *and* an unpacked snapshot: read → hash → store → decompress →
//! hash (diff id) → unpack. Nothing is published unless both digests match.

use std::io::Read;

use crate::digest::{self, Algorithm, Digest};
use crate::error::Result;
use crate::layer::{self, ApplyLimits};
use crate::manifest::Compression;
use crate::progress::{Progress, ProgressReader};
use crate::snapshot::{SnapshotInfo, Snapshotter};
use crate::store::{ContentStore, TeeReader};

/// A layer to ingest.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec<'a> {
    /// Names the layer in errors and progress.
    pub name: &'a str,
    pub compression: Compression,
    /// The blob's digest and size, when announced (a manifest descriptor);
    /// without, the blob is hashed with sha256 and stored under that.
    pub blob: Option<(&'a Digest, Option<u64>)>,
    /// The uncompressed digest the config lists for this layer.
    pub diff_id: &'a Digest,
    /// The snapshot key: the chain id up to this layer.
    pub chain_id: &'a Digest,
}

/// Ingests layers into a content store and a snapshotter. It is `Sync`, so
/// layers of one image can be ingested in parallel.
#[derive(Debug, Clone, Copy)]
pub struct LayerIngest<'a> {
    pub content: &'a ContentStore,
    pub snapshots: &'a Snapshotter,
}

impl LayerIngest<'_> {
    /// Ingest one layer from `reader`; returns the blob digest. Work already
    /// done (blob stored, snapshot unpacked) is not redone. The caller holds
    /// the store's write lock.
    pub fn ingest(
        &self,
        spec: &LayerSpec<'_>,
        reader: impl Read,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let have_snapshot = self.snapshots.exists(spec.chain_id);
        let reader = ProgressReader {
            inner: reader,
            id: spec.name,
            progress,
        };
        if let Some((d, size)) = spec.blob {
            if have_snapshot && self.content.contains(d) {
                // Nothing to store or unpack, but the copy offered is still
                // verified (digest and size): a truncated or mislabelled
                // layer must fail here, not end up in a manifest.
                self.content
                    .verify_stream(d, size, reader)
                    .map_err(|e| layer_error(spec.name, e))?;
                progress.finish(spec.name, "already present");
                return Ok(d.clone());
            }
            if have_snapshot {
                self.content.ingest(d, size, reader)?;
                progress.finish(spec.name, "done");
                return Ok(d.clone());
            }
        }
        let algorithm = spec
            .blob
            .map(|(d, _)| d.algorithm())
            .unwrap_or(Algorithm::Sha256);
        let mut writer = self
            .content
            .writer(spec.blob.map(|(d, s)| (d.clone(), s)), algorithm)?;
        let staged = self.snapshots.stage()?;
        let limits = ApplyLimits::for_target(staged.fs())?;
        let tee = TeeReader {
            inner: reader,
            out: &mut writer,
        };
        let applied = match spec.blob {
            Some((d, _)) => {
                layer::apply_expecting(staged.fs(), spec.name, tee, spec.compression, d, &limits)?
            }
            None => layer::apply(
                staged.fs(),
                spec.name,
                tee,
                spec.compression,
                algorithm,
                &limits,
            )?,
        };
        // The blob first: a wrong blob explains a wrong diff id, not the other way round.
        if let Some((d, size)) = spec.blob {
            digest::verify(
                &format!("layer {}", spec.name),
                d,
                &applied.compressed_digest,
                size,
                applied.compressed_size,
            )?;
        }
        digest::verify(
            &format!("layer {} (uncompressed, the config's diff id)", spec.name),
            spec.diff_id,
            &applied.diff_id,
            None,
            0,
        )?;
        // Verifies the announced digest and size before the blob gets its name.
        let blob = writer.commit()?;
        if !have_snapshot {
            let info = SnapshotInfo {
                chain_id: spec.chain_id.clone(),
                diff_id: applied.diff_id,
                size: applied.size,
            };
            self.snapshots.publish(staged, &info)?;
        }
        progress.finish(spec.name, "done");
        Ok(blob)
    }
}

/// Name the layer in a blob error (the archive member or digest it came as).
fn layer_error(name: &str, e: crate::Error) -> crate::Error {
    match e {
        crate::Error::DigestMismatch {
            expected, actual, ..
        } => crate::Error::DigestMismatch {
            what: format!("layer {name}"),
            expected,
            actual,
        },
        crate::Error::SizeMismatch {
            expected, actual, ..
        } => crate::Error::SizeMismatch {
            what: format!("layer {name}"),
            expected,
            actual,
        },
        other => other,
    }
}

/// Run `f` over `items` on a few threads (layers are independent: each
/// unpacks into its own directory); the first error wins.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
        .min(items.len().max(1));
    if workers <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    let mut results: Vec<(usize, Result<R>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(item) = items.get(i) else { return out };
                        let r = f(item);
                        let failed = r.is_err();
                        out.push((i, r));
                        if failed {
                            // Stop taking work; the others finish what they hold.
                            next.store(items.len(), std::sync::atomic::Ordering::SeqCst);
                            return out;
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("layer worker panicked"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
