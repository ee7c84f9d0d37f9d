//! The image service: ties the content store, the metadata database and the
//! snapshotter together into images with names. Commands and the engine use
//! this; it knows nothing of the command line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::digest::Digest;
use crate::error::{show, Error, IoContext, Result};
use crate::lock::StoreLock;
use crate::manifest::{self, Compression, Document};
use crate::metadata::{now, ImageRecord, Metadata, MountRecord};
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::snapshot::{self, LayerSource, Rootfs, Snapshotter};
use crate::store::ContentStore;

/// An image with its manifest and config loaded.
#[derive(Debug, Clone)]
pub struct Image {
    pub record: ImageRecord,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// The config as stored, for showing fields oci-spec does not model.
    pub config_json: serde_json::Value,
}

impl Image {
    /// The layers' diff ids, bottom first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse())
            .collect()
    }

    /// The layers' chain ids, bottom first (the snapshot keys).
    pub fn chain_ids(&self) -> Result<Vec<Digest>> {
        Ok(snapshot::chain_ids(&self.diff_ids()?))
    }
}

/// What `remove` did, in order, for reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Untagged(Reference),
    Deleted(Digest),
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: usize,
    pub snapshots: usize,
    pub bytes: u64,
}

/// The image store of one hako root.
pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    meta: Metadata,
    snapshots: Snapshotter,
}

impl ImageStore {
    /// Open (creating if needed) the image store under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).ctx(|| format!("creating hako root {}", show(root)))?;
        Ok(ImageStore {
            root: root.to_path_buf(),
            content: ContentStore::open(root)?,
            meta: Metadata::open(root)?,
            snapshots: Snapshotter::open(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Take the shared store lock: hold it while adding content that no
    /// image record references yet, so garbage collection cannot remove it.
    pub fn write_lock(&self) -> Result<StoreLock> {
        StoreLock::shared(&self.root)
    }

    /// Find an image by name (`busybox`, `busybox:1`, `name@sha256:…`), by
    /// id (`sha256:…`) or by a unique id prefix (at least 3 hex digits).
    pub fn find(&self, what: &str) -> Result<ImageRecord> {
        let not_found = || Error::not_found(format!("image {what}"));
        let by_id =
            |id: &Digest| -> Result<ImageRecord> { self.meta.image(id)?.ok_or_else(not_found) };
        if let Ok(d) = what.parse::<Digest>() {
            return by_id(&d);
        }
        let hexish = what.len() >= 3
            && what.len() <= 64
            && what
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if let Ok(r) = Reference::parse(what) {
            if let Some(digest) = r.digest() {
                // name@digest: any image of that repository whose manifest (or index) has the digest.
                for rec in self.meta.images()? {
                    let matches_digest =
                        &rec.manifest_digest == digest || &rec.target_digest == digest;
                    let same_repo = rec.names.iter().any(|n| n.repository() == r.repository());
                    if matches_digest && (same_repo || rec.names.is_empty()) {
                        return Ok(rec);
                    }
                }
                return Err(not_found());
            }
            if let Some(id) = self.meta.resolve_name(&r)? {
                return by_id(&id);
            }
        }
        if hexish {
            let ids = self.meta.ids_with_prefix(what)?;
            match ids.len() {
                0 => {}
                1 => return by_id(&ids[0]),
                n => {
                    return Err(Error::Invalid(format!(
                        "image id prefix {what} is ambiguous: {n} images match"
                    )))
                }
            }
        }
        Err(not_found())
    }

    /// All images, newest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        self.meta.images()
    }

    /// Load manifest and config of an image.
    pub fn load_image(&self, record: &ImageRecord) -> Result<Image> {
        let bytes = self.content.read(&record.manifest_digest)?;
        let manifest =
            match manifest::parse_document(&bytes, &record.manifest_digest.to_string())?.1 {
                Document::Manifest(m) => *m,
                Document::Index(_) => {
                    return Err(Error::Invalid(format!(
                        "image {}: manifest {} is an index",
                        record.id, record.manifest_digest
                    )))
                }
            };
        let config_bytes = self.content.read(&record.id)?;
        let config = manifest::parse_config(&config_bytes, &record.id.to_string())?;
        let config_json = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::json(format!("parsing config {}", record.id), e))?;
        Ok(Image {
            record: record.clone(),
            manifest,
            config,
            config_json,
        })
    }

    /// Make a manifest already in the content store (with its config and
    /// layers) an image: unpack its layers into snapshots (in parallel),
    /// verify everything, then record it under `names`. `target` is what the
    /// names resolved to (the manifest itself, or the index it came from).
    /// Call with the write lock held since the blobs were added.
    pub fn commit(
        &mut self,
        manifest_digest: &Digest,
        target: &Digest,
        names: &[Reference],
        progress: &dyn Progress,
    ) -> Result<ImageRecord> {
        let bytes = self.content.read(manifest_digest)?;
        let (media_type, doc) = manifest::parse_document(&bytes, &manifest_digest.to_string())?;
        let Document::Manifest(m) = doc else {
            return Err(Error::Invalid(format!(
                "{manifest_digest} is an index, not an image manifest"
            )));
        };
        let config_digest = manifest::descriptor_digest(m.config())?;
        // Every blob the manifest names must be here with the digest and
        // size its descriptor gives before any name points at it, whatever
        // path (pull, load, import, build, commit) brought it in.
        let what = format!("manifest {manifest_digest}");
        self.content
            .check_descriptor(&what, &config_digest, m.config().size())?;
        for layer in m.layers() {
            let d = manifest::descriptor_digest(layer)?;
            self.content.check_descriptor(&what, &d, layer.size())?;
        }
        let config_bytes = self.content.read(&config_digest)?;
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
        self.unpack_layers(&m, &diff_ids, &chain, progress)?;
        let created = config
            .created()
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(0);
        let mut size = 0;
        for id in &chain {
            size += self.snapshots.info(id)?.size;
        }
        let record = ImageRecord {
            id: config_digest.clone(),
            manifest_digest: manifest_digest.clone(),
            manifest_media_type: media_type,
            target_digest: target.clone(),
            created,
            stored: now(),
            size,
            names: Vec::new(),
        };
        self.meta.store_image(&record, names)?;
        self.meta
            .image(&config_digest)?
            .ok_or_else(|| Error::not_found(format!("image {config_digest} just stored")))
    }

    fn unpack_layers(
        &self,
        m: &ImageManifest,
        diff_ids: &[Digest],
        chain: &[Digest],
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut jobs = Vec::new();
        for (i, layer) in m.layers().iter().enumerate() {
            let digest = manifest::descriptor_digest(layer)?;
            if self.snapshots.exists(&chain[i]) {
                progress.finish(&digest.to_string(), "already unpacked");
                continue;
            }
            let compression = Compression::from_media_type(layer.media_type().as_ref())?;
            jobs.push((digest, layer.size(), compression, &diff_ids[i], &chain[i]));
        }
        let (content, snapshots) = (&self.content, &self.snapshots);
        crate::ingest::parallel(&jobs, |(digest, size, compression, diff_id, chain_id)| {
            let name = digest.to_string();
            progress.start(&name, "Unpacking layer", Some(*size));
            let reader = ProgressReader {
                inner: content.open_blob(digest)?,
                id: &name,
                progress,
            };
            let source = LayerSource {
                name: &name,
                compression: *compression,
                expected_blob: Some((digest, Some(*size))),
                expected_diff_id: diff_id,
            };
            snapshots.create(chain_id, &source, reader)?;
            progress.finish(&name, "done");
            Ok(())
        })?;
        Ok(())
    }

    /// The layer ingester of this store (for loaders and registry clients).
    pub fn layers(&self) -> crate::ingest::LayerIngest<'_> {
        crate::ingest::LayerIngest {
            content: &self.content,
            snapshots: &self.snapshots,
        }
    }

    /// Point `name` at the image `source` names.
    pub fn tag(&mut self, source: &str, name: &Reference) -> Result<ImageRecord> {
        if name.digest().is_some() {
            return Err(Error::Invalid(format!(
                "cannot tag with {name}: a tag cannot hold a digest"
            )));
        }
        let rec = self.find(source)?;
        self.meta.tag(name, &rec.id)?;
        Ok(rec)
    }

    /// Remove an image or a name (like `docker rmi`): a name is untagged and
    /// the image deleted when it was its last name; an id deletes the image,
    /// refused without `force` when several names point at it or it is mounted.
    /// Unreferenced blobs and snapshots are collected afterwards.
    pub fn remove(&mut self, what: &str, force: bool) -> Result<Vec<Removal>> {
        let rec = self.find(what)?;
        let mounted = self.meta.mounts()?.iter().any(|m| m.image_id == rec.id);
        let by_name = Reference::parse(what)
            .ok()
            .filter(|r| r.digest().is_none() && rec.names.contains(r));
        // A reader (a build) holds it: refused as podman's "image is in
        // use", unless forced; forced, the record goes but the content
        // stays until the lease ends (gc honours leases).
        let deletes = by_name.is_none() || rec.names.len() <= 1;
        if deletes && !force {
            if let Some(l) = crate::lease::live(&self.root)?
                .into_iter()
                .find(|l| l.image_id.as_ref() == Some(&rec.id))
            {
                return Err(Error::InUse {
                    what: format!("image {what}"),
                    reason: format!(
                        "it is used by {}; use force to remove it anyway",
                        l.describe()
                    ),
                });
            }
        }
        let mut out = Vec::new();
        match by_name {
            Some(name) if rec.names.len() > 1 || !mounted || force => {
                let u = self.meta.untag(&name, false)?;
                out.push(Removal::Untagged(name));
                if u.image_removed {
                    out.push(Removal::Deleted(u.image_id));
                }
            }
            _ => {
                if mounted {
                    return Err(Error::InUse {
                        what: format!("image {what}"),
                        reason: "it is mounted; unmount it first".into(),
                    });
                }
                if rec.names.len() > 1 && !force {
                    return Err(Error::InUse {
                        what: format!("image {}", rec.id.short()),
                        reason: format!(
                            "it is referenced by {} names ({}); remove them one by one or use force",
                            rec.names.len(),
                            rec.names.iter().map(|n| n.familiar()).collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
                let names = self.meta.remove_image(&rec.id)?;
                out.extend(names.into_iter().map(Removal::Untagged));
                out.push(Removal::Deleted(rec.id.clone()));
            }
        }
        self.gc()?;
        Ok(out)
    }

    /// Remove dangling images (no name), or with `all` every image not
    /// mounted; then collect garbage. Returns the removed image ids.
    pub fn prune(&mut self, all: bool) -> Result<Vec<Digest>> {
        self.prune_where(all, |_| true)
    }

    /// [`Self::prune`] of only the images `pick` accepts (the prune commands'
    /// `--filter`).
    pub fn prune_where(
        &mut self,
        all: bool,
        pick: impl Fn(&ImageRecord) -> bool,
    ) -> Result<Vec<Digest>> {
        let mounted: HashSet<Digest> = self
            .meta
            .mounts()?
            .into_iter()
            .map(|m| m.image_id)
            .collect();
        let leased: HashSet<Digest> = crate::lease::live(&self.root)?
            .into_iter()
            .filter_map(|l| l.image_id)
            .collect();
        let mut removed = Vec::new();
        for rec in self.meta.images()? {
            if mounted.contains(&rec.id)
                || leased.contains(&rec.id)
                || (!all && !rec.names.is_empty())
                || !pick(&rec)
            {
                continue;
            }
            self.meta.remove_image(&rec.id)?;
            removed.push(rec.id);
        }
        self.gc()?;
        Ok(removed)
    }

    /// Mark and sweep: every blob and snapshot reachable from an image record
    /// is kept, the rest removed. There are no counters for a crash to leave
    /// wrong; an interrupted collection is simply finished by the next one.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = StoreLock::exclusive(&self.root)?;
        // What live leases hold is kept even when no record names it.
        let (mut blobs, mut chains) = crate::lease::held(&self.root)?;
        for rec in self.meta.images()? {
            blobs.insert(rec.id.clone());
            blobs.insert(rec.manifest_digest.clone());
            blobs.insert(rec.target_digest.clone());
            if rec.target_digest != rec.manifest_digest {
                // Keep the index's other manifests that are present (e.g. from --all-platforms).
                if let Ok(bytes) = self.content.read(&rec.target_digest) {
                    if let Ok((_, Document::Index(index))) = manifest::parse_document(&bytes, "") {
                        for d in index.manifests() {
                            if let Ok(d) = manifest::descriptor_digest(d) {
                                blobs.insert(d);
                            }
                        }
                    }
                }
            }
            let image = self.load_image(&rec)?;
            for layer in image.manifest.layers() {
                blobs.insert(manifest::descriptor_digest(layer)?);
            }
            chains.extend(image.chain_ids()?);
        }
        // Manifests reachable through a kept index must keep their own config and layers too.
        for d in blobs.clone() {
            if let Ok(bytes) = self.content.read(&d) {
                if let Ok((_, Document::Manifest(m))) = manifest::parse_document(&bytes, "") {
                    if let Ok(c) = manifest::descriptor_digest(m.config()) {
                        blobs.insert(c);
                    }
                    for l in m.layers() {
                        if let Ok(l) = manifest::descriptor_digest(l) {
                            blobs.insert(l);
                        }
                    }
                }
            }
        }
        let mut report = GcReport::default();
        for d in self.content.list()? {
            if !blobs.contains(&d) {
                report.bytes += self.content.size(&d).unwrap_or(0);
                self.content.delete(&d)?;
                report.blobs += 1;
            }
        }
        for c in self.snapshots.list()? {
            if !chains.contains(&c) {
                self.snapshots.remove(&c)?;
                report.snapshots += 1;
            }
        }
        self.content.clean_ingest()?;
        self.snapshots.clean_tmp()?;
        Ok(report)
    }

    /// Lease `rec` for this process (`holder` names it in messages): until
    /// the lease is dropped or the process dies, the image cannot be
    /// removed without force and its content is never collected.
    pub fn lease(&self, holder: &str, rec: &ImageRecord) -> Result<crate::lease::Lease> {
        let image = self.load_image(rec)?;
        let mut blobs = vec![
            rec.id.clone(),
            rec.manifest_digest.clone(),
            rec.target_digest.clone(),
        ];
        for layer in image.manifest.layers() {
            blobs.push(manifest::descriptor_digest(layer)?);
        }
        let lease =
            crate::lease::take(&self.root, holder, Some(&rec.id), blobs, image.chain_ids()?)?;
        // Removed between finding and leasing it: the lease came too late.
        if self.meta.image(&rec.id)?.is_none() {
            return Err(Error::not_found(format!(
                "image {} (it was just removed)",
                rec.id
            )));
        }
        Ok(lease)
    }

    /// Mount an image's root filesystem as an overlay in `container_dir`
    /// (`upper/`, `work/`, `rootfs/` are created there). The image is kept
    /// from removal until [`ImageStore::unmount`]. This is the call the
    /// engine uses to make a container's rootfs.
    pub fn mount(&mut self, what: &str, container_dir: &Path) -> Result<(MountRecord, Rootfs)> {
        self.mount_with(what, container_dir, false)
    }

    /// [`ImageStore::mount`], `volatile` as [`Snapshotter::mount_with`]'s.
    pub fn mount_with(
        &mut self,
        what: &str,
        container_dir: &Path,
        volatile: bool,
    ) -> Result<(MountRecord, Rootfs)> {
        // Recorded absolute, so unmount finds it from any working directory.
        let container_dir = &std::path::absolute(container_dir)
            .ctx(|| format!("resolving container directory {}", show(container_dir)))?;
        let _lock = self.write_lock()?;
        let rec = self.find(what)?;
        let image = self.load_image(&rec)?;
        let chain = image.chain_ids()?;
        let diff_ids = image.diff_ids()?;
        if chain.iter().any(|c| !self.snapshots.exists(c)) {
            // Snapshots are recreated from the blobs if they were lost.
            self.unpack_layers(
                &image.manifest,
                &diff_ids,
                &chain,
                &crate::progress::NoProgress,
            )?;
        }
        let id = format!("{:016x}", rand_u64());
        let record = MountRecord {
            id,
            image_id: rec.id.clone(),
            dir: container_dir.to_string_lossy().into_owned(),
            created: now(),
        };
        // Recorded before mounting: a crash in between leaves a record that
        // unmount can clear, never a mount that nothing knows of.
        self.meta.add_mount(&record)?;
        match self.snapshots.mount_with(&chain, container_dir, volatile) {
            Ok(rootfs) => Ok((record, rootfs)),
            Err(e) => {
                let _ = self.meta.remove_mount(&record.id);
                Err(e)
            }
        }
    }

    /// Mount an image under `<root>/mounts/<id>` (for `hako image mount`).
    pub fn mount_managed(&mut self, what: &str) -> Result<(MountRecord, Rootfs)> {
        let base = self.root.join("mounts");
        std::fs::create_dir_all(&base).ctx(|| format!("creating {}", show(&base)))?;
        let dir = tempfile::Builder::new()
            .prefix("m-")
            .tempdir_in(&base)
            .ctx(|| format!("creating a mount directory in {}", show(&base)))?
            .keep();
        match self.mount(what, &dir) {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Unmount a mount by id, container directory, rootfs path, or image
    /// (when exactly one mount of it exists); removes the directory when it
    /// was made by [`ImageStore::mount_managed`].
    pub fn unmount(&mut self, what: &str) -> Result<MountRecord> {
        let mounts = self.meta.mounts()?;
        let path = Path::new(what);
        let mut found: Vec<&MountRecord> = mounts
            .iter()
            .filter(|m| {
                m.id == what
                    || Path::new(&m.dir) == path
                    || Path::new(&m.dir).join("rootfs") == path
            })
            .collect();
        if found.is_empty() {
            if let Ok(rec) = self.find(what) {
                found = mounts.iter().filter(|m| m.image_id == rec.id).collect();
            }
        }
        let m = match found.as_slice() {
            [] => return Err(Error::not_found(format!("mount {what}"))),
            [m] => (*m).clone(),
            many => {
                return Err(Error::Invalid(format!(
                    "{what} is mounted {} times; name the mount: {}",
                    many.len(),
                    many.iter()
                        .map(|m| m.dir.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let dir = PathBuf::from(&m.dir);
        if dir.parent() == Some(self.root.join("mounts").as_path()) {
            Snapshotter::remove_container_dir(&dir)?;
        } else {
            Snapshotter::unmount(&dir)?;
        }
        self.meta.remove_mount(&m.id)?;
        Ok(m)
    }

    /// All mounts.
    pub fn mounts(&self) -> Result<Vec<MountRecord>> {
        self.meta.mounts()
    }
}

pub(crate) fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // getrandom cannot fail for 8 bytes on Linux >= 3.17; fall back to time.
    if nix::errno::Errno::result(
        // SAFETY: the buffer is valid for writes of its length.
        unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) },
    )
    .is_err()
    {
        return now() as u64 ^ std::process::id() as u64;
    }
    u64::from_ne_bytes(b)
}

/// Parse an RFC 3339 timestamp ("2024-01-02T03:04:05.123Z", offsets too)
/// into unix seconds. Image configs carry these.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days since the epoch from a civil date, counting in 400-year eras.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Format unix seconds as RFC 3339 UTC ("2024-01-02T03:04:05Z").
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.789Z"),
            Some(1_709_210_096)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:34:56+02:00"),
            Some(1_709_210_096)
        );
        assert_eq!(format_rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(parse_rfc3339("nonsense"), None);
    }
}
