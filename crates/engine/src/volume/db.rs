//! Volume records in the engine's database (table `volumes` beside
//! `containers` in `<root>/containers.db`). Labels and driver options are
//! JSON: only the engine reads them, and filters run over the decoded rows.

use rusqlite::{params, OptionalExtension, Row};

use crate::db::Db;
use crate::error::{Context, Result};
use crate::volume::Volume;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    created TEXT NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL
);
";

impl Db {
    pub(crate) fn insert_volume(&self, v: &Volume) -> Result<()> {
        let labels = serde_json::to_string(&v.labels).expect("labels serialise");
        let options = serde_json::to_string(&v.options).expect("options serialise");
        self.conn
            .execute(
                "INSERT INTO volumes (name, driver, created, labels, options) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![v.name, v.driver, v.created_at, labels, options],
            )
            .ctx(|| format!("recording volume {}", v.name))?;
        Ok(())
    }

    pub(crate) fn get_volume(&self, name: &str) -> Result<Option<Volume>> {
        self.conn
            .query_row(
                "SELECT name, driver, created, labels, options FROM volumes WHERE name = ?1",
                params![name],
                volume_from_row,
            )
            .optional()
            .ctx(|| format!("reading volume {name}"))?
            .transpose()
    }

    /// Every volume, by name.
    pub(crate) fn list_volumes(&self) -> Result<Vec<Volume>> {
        let what = || "listing volumes".to_string();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, driver, created, labels, options FROM volumes ORDER BY name",
            )
            .ctx(what)?;
        let rows = stmt
            .query_map([], volume_from_row)
            .ctx(what)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx(what)?;
        rows.into_iter().collect()
    }

    pub(crate) fn delete_volume(&self, name: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM volumes WHERE name = ?1", params![name])
            .ctx(|| format!("removing the record of volume {name}"))?;
        Ok(())
    }
}

fn volume_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Volume>> {
    let name: String = r.get(0)?;
    let driver: String = r.get(1)?;
    let created: String = r.get(2)?;
    let labels: String = r.get(3)?;
    let options: String = r.get(4)?;
    let parsed = (|| -> Result<Volume> {
        Ok(Volume {
            labels: serde_json::from_str(&labels)
                .ctx(|| format!("reading the labels of volume {name}"))?,
            options: serde_json::from_str(&options)
                .ctx(|| format!("reading the options of volume {name}"))?,
            name: name.clone(),
            driver,
            created_at: created,
        })
    })();
    Ok(parsed)
}
