//! Image metadata in SQLite (WAL mode, so several `hako` processes can read
//! and write at once): images by id (the config digest, as docker and podman
//! do), names pointing at images, and mounts that keep an image alive.
//!
//! There are no reference counters here: garbage collection marks what the
//! image table reaches and sweeps the rest, so no crash can leave a count wrong.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::digest::Digest;
use crate::error::{DbContext, Error, Result};
use crate::reference::Reference;

/// One stored image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Image id: the digest of its config blob.
    pub id: Digest,
    /// The manifest for this platform.
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// What a name resolved to when the image was stored: the manifest, or
    /// the index (manifest list) it was selected from.
    pub target_digest: Digest,
    /// Creation time from the image config (unix seconds), 0 if absent.
    pub created: i64,
    /// When the image was stored here (unix seconds).
    pub stored: i64,
    /// Sum of the layer sizes as stored (compressed, as docker shows).
    pub size: u64,
    /// Names (repository:tag) pointing at this image, sorted.
    pub names: Vec<Reference>,
}

/// A mount of an image (an overlay rootfs): keeps the image from being collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRecord {
    pub id: String,
    pub image_id: Digest,
    /// The container directory holding upper/, work/ and the merged rootfs/.
    pub dir: String,
    pub created: i64,
}

/// Outcome of removing a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untagged {
    pub image_id: Digest,
    /// True when the name was the image's last and the image record was deleted.
    pub image_removed: bool,
}

/// The metadata database.
pub struct Metadata {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    target_digest TEXT NOT NULL,
    created INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS names_by_image ON names(image_id);
CREATE TABLE IF NOT EXISTS mounts (
    id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id),
    dir TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
";

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e: Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Metadata {
    /// Open (creating if needed) `<root>/images.db`.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("images.db");
        let what = || format!("opening image database {}", path.display());
        let conn = Connection::open(&path).db_ctx(what)?;
        // Other hako processes may hold the write lock briefly; wait rather than fail.
        conn.busy_timeout(Duration::from_secs(60)).db_ctx(what)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .db_ctx(what)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .db_ctx(what)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .db_ctx(what)?;
        conn.execute_batch(SCHEMA).db_ctx(what)?;
        Ok(Metadata { conn })
    }

    fn names_of(&self, id: &Digest) -> Result<Vec<Reference>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM names WHERE image_id = ?1 ORDER BY name")
            .db_ctx(|| format!("listing names of image {id}"))?;
        let names = stmt
            .query_map([id.to_string()], |r| r.get::<_, String>(0))
            .db_ctx(|| format!("listing names of image {id}"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db_ctx(|| format!("listing names of image {id}"))?;
        names.iter().map(|n| Reference::parse(n)).collect()
    }

    fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
        Ok(ImageRecord {
            id: digest_col(r.get(0)?)?,
            manifest_digest: digest_col(r.get(1)?)?,
            manifest_media_type: r.get(2)?,
            target_digest: digest_col(r.get(3)?)?,
            created: r.get(4)?,
            stored: r.get(5)?,
            size: r.get::<_, i64>(6)? as u64,
            names: Vec::new(),
        })
    }

    const COLUMNS: &'static str =
        "id, manifest_digest, manifest_media_type, target_digest, created, stored, size";

    /// One image by id.
    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let sql = format!("SELECT {} FROM images WHERE id = ?1", Self::COLUMNS);
        let rec = self
            .conn
            .query_row(&sql, [id.to_string()], Self::row_to_record)
            .optional()
            .db_ctx(|| format!("looking up image {id}"))?;
        match rec {
            Some(mut rec) => {
                rec.names = self.names_of(id)?;
                Ok(Some(rec))
            }
            None => Ok(None),
        }
    }

    /// Every image, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let sql = format!(
            "SELECT {} FROM images ORDER BY created DESC, stored DESC, id",
            Self::COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql).db_ctx(|| "listing images".into())?;
        let mut recs = stmt
            .query_map([], Self::row_to_record)
            .db_ctx(|| "listing images".into())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db_ctx(|| "listing images".into())?;
        for rec in &mut recs {
            rec.names = self.names_of(&rec.id)?;
        }
        Ok(recs)
    }

    /// The image a name points at.
    pub fn resolve_name(&self, name: &Reference) -> Result<Option<Digest>> {
        self.conn
            .query_row(
                "SELECT image_id FROM names WHERE name = ?1",
                [name.to_string()],
                |r| digest_col(r.get(0)?),
            )
            .optional()
            .db_ctx(|| format!("looking up name {name}"))
    }

    /// Image ids starting with `prefix` (hex, without algorithm).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM images WHERE substr(id, instr(id, ':') + 1, ?2) = ?1")
            .db_ctx(|| format!("looking up image id {prefix}"))?;
        let ids = stmt
            .query_map(params![prefix, prefix.len() as i64], |r| {
                digest_col(r.get(0)?)
            })
            .db_ctx(|| format!("looking up image id {prefix}"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db_ctx(|| format!("looking up image id {prefix}"))?;
        Ok(ids)
    }

    /// Insert or update an image and point `names` at it, in one transaction.
    /// Returns the images that lost a name to it.
    pub fn store_image(&mut self, rec: &ImageRecord, names: &[Reference]) -> Result<Vec<Digest>> {
        let what = || format!("storing image {}", rec.id);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db_ctx(what)?;
        tx.execute(
            "INSERT INTO images (id, manifest_digest, manifest_media_type, target_digest, created, stored, size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                 manifest_media_type = excluded.manifest_media_type,
                 target_digest = excluded.target_digest, size = excluded.size",
            params![
                rec.id.to_string(),
                rec.manifest_digest.to_string(),
                rec.manifest_media_type,
                rec.target_digest.to_string(),
                rec.created,
                rec.stored,
                rec.size as i64
            ],
        )
        .db_ctx(what)?;
        let mut displaced = Vec::new();
        for name in names {
            let prev: Option<String> = tx
                .query_row(
                    "SELECT image_id FROM names WHERE name = ?1",
                    [name.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .db_ctx(what)?;
            if let Some(prev) = prev {
                if prev != rec.id.to_string() {
                    displaced.push(prev.parse()?);
                }
            }
            tx.execute(
                "INSERT INTO names (name, image_id) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                params![name.to_string(), rec.id.to_string()],
            )
            .db_ctx(what)?;
        }
        tx.commit().db_ctx(what)?;
        Ok(displaced)
    }

    /// Point `name` at image `id`; returns the image it pointed at before, if another.
    pub fn tag(&mut self, name: &Reference, id: &Digest) -> Result<Option<Digest>> {
        let rec = self
            .image(id)?
            .ok_or_else(|| Error::not_found(format!("image {id}")))?;
        Ok(self
            .store_image(&rec, std::slice::from_ref(name))?
            .into_iter()
            .next())
    }

    /// Remove a name; delete the image record too when it was its last name
    /// and `keep_image` is false.
    pub fn untag(&mut self, name: &Reference, keep_image: bool) -> Result<Untagged> {
        let what = || format!("removing name {name}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db_ctx(what)?;
        let id: String = tx
            .query_row(
                "SELECT image_id FROM names WHERE name = ?1",
                [name.to_string()],
                |r| r.get(0),
            )
            .optional()
            .db_ctx(what)?
            .ok_or_else(|| Error::not_found(format!("image {}", name.familiar())))?;
        tx.execute("DELETE FROM names WHERE name = ?1", [name.to_string()])
            .db_ctx(what)?;
        let left: i64 = tx
            .query_row(
                "SELECT count(*) FROM names WHERE image_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .db_ctx(what)?;
        let mounted: i64 = tx
            .query_row(
                "SELECT count(*) FROM mounts WHERE image_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .db_ctx(what)?;
        let image_removed = left == 0 && mounted == 0 && !keep_image;
        if image_removed {
            tx.execute("DELETE FROM images WHERE id = ?1", [&id])
                .db_ctx(what)?;
        }
        tx.commit().db_ctx(what)?;
        Ok(Untagged {
            image_id: id.parse()?,
            image_removed,
        })
    }

    /// Delete an image record and all its names. Refused while it is mounted.
    pub fn remove_image(&mut self, id: &Digest) -> Result<Vec<Reference>> {
        let what = || format!("removing image {id}");
        let names = self.names_of(id)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db_ctx(what)?;
        let mounted: i64 = tx
            .query_row(
                "SELECT count(*) FROM mounts WHERE image_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .db_ctx(what)?;
        if mounted > 0 {
            return Err(Error::InUse {
                what: format!("image {}", id.short()),
                reason: format!("{mounted} mount(s) use it; unmount first"),
            });
        }
        let n = tx
            .execute("DELETE FROM images WHERE id = ?1", [id.to_string()])
            .db_ctx(what)?;
        if n == 0 {
            return Err(Error::not_found(format!("image {id}")));
        }
        tx.commit().db_ctx(what)?;
        Ok(names)
    }

    /// Record a mount of an image.
    pub fn add_mount(&self, rec: &MountRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO mounts (id, image_id, dir, created) VALUES (?1, ?2, ?3, ?4)",
                params![rec.id, rec.image_id.to_string(), rec.dir, rec.created],
            )
            .db_ctx(|| format!("recording mount {} of image {}", rec.id, rec.image_id))?;
        Ok(())
    }

    /// Forget a mount.
    pub fn remove_mount(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM mounts WHERE id = ?1", [id])
            .db_ctx(|| format!("removing mount record {id}"))?;
        Ok(())
    }

    /// All mounts.
    pub fn mounts(&self) -> Result<Vec<MountRecord>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, image_id, dir, created FROM mounts ORDER BY created")
            .db_ctx(|| "listing mounts".into())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(MountRecord {
                    id: r.get(0)?,
                    image_id: digest_col(r.get(1)?)?,
                    dir: r.get(2)?,
                    created: r.get(3)?,
                })
            })
            .db_ctx(|| "listing mounts".into())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db_ctx(|| "listing mounts".into())?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn rec(n: u8) -> ImageRecord {
        ImageRecord {
            id: d(n),
            manifest_digest: d(n + 100),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            target_digest: d(n + 100),
            created: n as i64,
            stored: 0,
            size: 10,
            names: vec![],
        }
    }

    #[test]
    fn names_move_between_images_and_last_untag_removes() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metadata::open(dir.path()).unwrap();
        let a = Reference::parse("a").unwrap();
        assert!(m
            .store_image(&rec(1), std::slice::from_ref(&a))
            .unwrap()
            .is_empty());
        let displaced = m.store_image(&rec(2), std::slice::from_ref(&a)).unwrap();
        assert_eq!(displaced, vec![d(1)]);
        assert_eq!(m.resolve_name(&a).unwrap(), Some(d(2)));
        assert!(m.image(&d(1)).unwrap().unwrap().names.is_empty());
        let u = m.untag(&a, false).unwrap();
        assert!(u.image_removed);
        assert!(m.image(&d(2)).unwrap().is_none());
        assert_eq!(m.ids_with_prefix(&d(1).hex()[..8]).unwrap(), vec![d(1)]);
    }

    #[test]
    fn mounted_image_cannot_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metadata::open(dir.path()).unwrap();
        m.store_image(&rec(1), &[]).unwrap();
        m.add_mount(&MountRecord {
            id: "m1".into(),
            image_id: d(1),
            dir: "/x".into(),
            created: 0,
        })
        .unwrap();
        assert!(matches!(m.remove_image(&d(1)), Err(Error::InUse { .. })));
        m.remove_mount("m1").unwrap();
        m.remove_image(&d(1)).unwrap();
    }
}
