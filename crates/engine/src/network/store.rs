//! The `networks` table of the engine database: the record as JSON beside
//! its unique name.

use rusqlite::{params, OptionalExtension};

use super::Network;
use crate::db::Db;
use crate::error::{Context, Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    record TEXT NOT NULL
);
";

impl Db {
    pub(crate) fn init_networks(&self) -> Result<()> {
        self.conn
            .execute_batch(SCHEMA)
            .ctx(|| "creating the networks table".to_string())
    }

    pub(crate) fn insert_network(&self, n: &Network) -> Result<()> {
        let record = serde_json::to_string(n).expect("network serialises");
        match self.conn.execute(
            "INSERT INTO networks (id, name, created, record) VALUES (?1, ?2, ?3, ?4)",
            params![n.id, n.name, n.created, record],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict(format!(
                    "network with name {} already exists",
                    n.name
                )))
            }
            Err(e) => Err(e).ctx(|| format!("recording network {}", n.name)),
        }
    }

    pub(crate) fn delete_network(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM networks WHERE id = ?1", params![id])
            .ctx(|| format!("removing the record of network {id}"))?;
        Ok(())
    }

    /// By exact name, full id, then unique id prefix.
    pub(crate) fn find_network(&self, what: &str) -> Result<Option<Network>> {
        let one = |sql: &str| -> Result<Option<String>> {
            self.conn
                .query_row(sql, params![what], |r| r.get(0))
                .optional()
                .ctx(|| format!("looking up network {what}"))
        };
        let rec = match one("SELECT record FROM networks WHERE name = ?1")? {
            Some(r) => Some(r),
            None => one("SELECT record FROM networks WHERE id = ?1")?,
        };
        if let Some(r) = rec {
            return parse(&r).map(Some);
        }
        if what.len() >= 3 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<Network> = self
                .list_networks()?
                .into_iter()
                .filter(|n| n.id.starts_with(what))
                .collect();
            return match found.len() {
                0 => Ok(None),
                1 => Ok(found.into_iter().next()),
                n => Err(Error::Invalid(format!(
                    "network id prefix {what} is ambiguous: {n} networks match"
                ))),
            };
        }
        Ok(None)
    }

    /// Every network, oldest first.
    pub(crate) fn list_networks(&self) -> Result<Vec<Network>> {
        let what = || "listing networks".to_string();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM networks ORDER BY created, name")
            .ctx(what)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .ctx(what)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx(what)?;
        rows.iter().map(|r| parse(r)).collect()
    }
}

fn parse(record: &str) -> Result<Network> {
    serde_json::from_str(record).ctx(|| "reading a network record".to_string())
}

impl Db {
    /// Replace a container's host config (networks connected or disconnected).
    pub(crate) fn set_host_config(&self, id: &str, h: &crate::record::HostConfig) -> Result<()> {
        let host = serde_json::to_string(h).expect("host config serialises");
        self.conn
            .execute(
                "UPDATE containers SET host_config = ?2 WHERE id = ?1",
                params![id, host],
            )
            .ctx(|| format!("updating the host config of container {id}"))?;
        Ok(())
    }
}
