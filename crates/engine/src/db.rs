//! Container records in SQLite (`<root>/containers.db`, WAL mode with a busy
//! timeout, so many `hako` processes may read and write at once). The run
//! state has columns of its own because reconciliation updates it often;
//! the configuration is stored as JSON because only the engine reads it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Context, Error, Result};
use crate::record::{Container, State, Status};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    image_id TEXT NOT NULL,
    created TEXT NOT NULL,
    config TEXT NOT NULL,
    host_config TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    pid_start INTEGER NOT NULL DEFAULT 0,
    monitor_pid INTEGER NOT NULL DEFAULT 0,
    monitor_start INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    restart_count INTEGER NOT NULL DEFAULT 0,
    restarting INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0
);
";

/// Columns added after the first schema, for databases made before them.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("restart_count", "INTEGER NOT NULL DEFAULT 0"),
    ("restarting", "INTEGER NOT NULL DEFAULT 0"),
    ("oom_killed", "INTEGER NOT NULL DEFAULT 0"),
];

const COLUMNS: &str = "id, name, image, image_id, created, config, host_config, status, pid, \
     pid_start, monitor_pid, monitor_start, exit_code, started_at, finished_at, error, restart_count, \
     restarting, oom_killed";

/// The container database.
pub struct Db {
    pub(crate) conn: Connection,
}

impl Db {
    /// Open (creating if needed) `<root>/containers.db`.
    pub fn open(root: &Path) -> Result<Db> {
        let path = root.join("containers.db");
        let what = || format!("opening container database {}", path.display());
        let conn = Connection::open(&path).ctx(what)?;
        // Other hako processes may hold the write lock briefly; wait rather than fail.
        conn.busy_timeout(Duration::from_secs(60)).ctx(what)?;
        conn.pragma_update(None, "journal_mode", "WAL").ctx(what)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .ctx(what)?;
        conn.execute_batch(SCHEMA).ctx(what)?;
        conn.execute_batch(crate::volume::db::SCHEMA).ctx(what)?;
        add_missing_columns(&conn).ctx(what)?;
        Ok(Db { conn })
    }

    /// Add a new container; its name must be free.
    pub fn insert(&self, c: &Container) -> Result<()> {
        let config = serde_json::to_string(&c.config).expect("config serialises");
        let host = serde_json::to_string(&c.host).expect("host config serialises");
        let s = &c.state;
        let res = self.conn.execute(
            &format!(
                "INSERT INTO containers ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            ),
            params![
                c.id,
                c.name,
                c.image,
                c.image_id,
                c.created,
                config,
                host,
                s.status.as_str(),
                s.pid,
                s.pid_start as i64,
                s.monitor_pid,
                s.monitor_start as i64,
                s.exit_code,
                s.started_at,
                s.finished_at,
                s.error,
                s.restart_count,
                s.restarting,
                s.oom_killed
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let holder = self.by_name(&c.name)?.map(|o| o.id).unwrap_or_default();
                Err(Error::Conflict(format!(
                    "the container name \"/{}\" is already in use by container \"{holder}\"; remove or rename that container to reuse the name",
                    c.name
                )))
            }
            Err(e) => Err(e).ctx(|| format!("recording container {}", c.name)),
        }
    }

    /// Replace the run state of a container.
    pub fn set_state(&self, id: &str, s: &State) -> Result<()> {
        self.conn
            .execute(
                "UPDATE containers SET status = ?2, pid = ?3, pid_start = ?4, monitor_pid = ?5, \
                 monitor_start = ?6, exit_code = ?7, started_at = ?8, finished_at = ?9, error = ?10, \
                 restart_count = ?11, restarting = ?12, oom_killed = ?13 WHERE id = ?1",
                params![
                    id,
                    s.status.as_str(),
                    s.pid,
                    s.pid_start as i64,
                    s.monitor_pid,
                    s.monitor_start as i64,
                    s.exit_code,
                    s.started_at,
                    s.finished_at,
                    s.error,
                    s.restart_count,
                    s.restarting,
                    s.oom_killed
                ],
            )
            .ctx(|| format!("updating the state of container {id}"))?;
        Ok(())
    }

    /// Give a container another (free) name.
    pub fn rename(&self, id: &str, name: &str) -> Result<()> {
        match self.conn.execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, name],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict(format!(
                    "the container name \"/{name}\" is already in use"
                )))
            }
            Err(e) => Err(e).ctx(|| format!("renaming container {id}")),
        }
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", params![id])
            .ctx(|| format!("removing the record of container {id}"))?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Container>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
                params![id],
                from_row,
            )
            .optional()
            .ctx(|| format!("reading container {id}"))?
            .transpose()
    }

    fn by_name(&self, name: &str) -> Result<Option<Container>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                params![name],
                from_row,
            )
            .optional()
            .ctx(|| format!("reading container {name}"))?
            .transpose()
    }

    /// Find a container as docker does: full id, exact name (with or without
    /// the leading slash), then a unique id prefix.
    pub fn find(&self, what: &str) -> Result<Container> {
        if let Some(c) = self.get(what)? {
            return Ok(c);
        }
        if let Some(c) = self.by_name(what.strip_prefix('/').unwrap_or(what))? {
            return Ok(c);
        }
        let hex = !what.is_empty() && what.bytes().all(|b| b.is_ascii_hexdigit());
        if hex {
            let mut stmt = self
                .conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM containers WHERE substr(id, 1, ?2) = ?1"
                ))
                .ctx(|| format!("looking up container {what}"))?;
            let mut found: Vec<Container> = stmt
                .query_map(params![what, what.len() as i64], from_row)
                .ctx(|| format!("looking up container {what}"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .ctx(|| format!("looking up container {what}"))?
                .into_iter()
                .collect::<Result<_>>()?;
            match found.len() {
                0 => {}
                1 => return Ok(found.remove(0)),
                n => {
                    return Err(Error::Invalid(format!(
                        "container id prefix {what} is ambiguous: {n} containers match"
                    )))
                }
            }
        }
        Err(Error::not_found(format!("container: {what}")))
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers ORDER BY created DESC"
            ))
            .ctx(|| "listing containers".to_string())?;
        let rows = stmt
            .query_map([], from_row)
            .ctx(|| "listing containers".to_string())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| "listing containers".to_string())?;
        rows.into_iter().collect()
    }
}

/// `ALTER TABLE ADD COLUMN` for each column an older database lacks.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let have: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('containers')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, decl) in ADDED_COLUMNS {
        if have.iter().any(|h| h == name) {
            continue;
        }
        match conn.execute_batch(&format!("ALTER TABLE containers ADD COLUMN {name} {decl}")) {
            // Another hako process added it meanwhile.
            Err(e) if e.to_string().contains("duplicate column") => {}
            r => r?,
        }
    }
    Ok(())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<Container>> {
    let id: String = r.get(0)?;
    let config: String = r.get(5)?;
    let host: String = r.get(6)?;
    let status: String = r.get(7)?;
    let parsed = (|| -> Result<Container> {
        let status = Status::parse(&status).ok_or_else(|| {
            Error::Invalid(format!("container {id} has unknown status {status:?}"))
        })?;
        Ok(Container {
            id: id.clone(),
            name: r.get(1).ctx(|| format!("reading container {id}"))?,
            image: r.get(2).ctx(|| format!("reading container {id}"))?,
            image_id: r.get(3).ctx(|| format!("reading container {id}"))?,
            created: r.get(4).ctx(|| format!("reading container {id}"))?,
            config: serde_json::from_str(&config)
                .ctx(|| format!("reading the config of container {id}"))?,
            host: serde_json::from_str(&host)
                .ctx(|| format!("reading the host config of container {id}"))?,
            state: State {
                status,
                pid: r.get(8).ctx(|| format!("reading container {id}"))?,
                pid_start: r
                    .get::<_, i64>(9)
                    .ctx(|| format!("reading container {id}"))? as u64,
                monitor_pid: r.get(10).ctx(|| format!("reading container {id}"))?,
                monitor_start: r
                    .get::<_, i64>(11)
                    .ctx(|| format!("reading container {id}"))?
                    as u64,
                exit_code: r.get(12).ctx(|| format!("reading container {id}"))?,
                started_at: r.get(13).ctx(|| format!("reading container {id}"))?,
                finished_at: r.get(14).ctx(|| format!("reading container {id}"))?,
                error: r.get(15).ctx(|| format!("reading container {id}"))?,
                restart_count: r.get(16).ctx(|| format!("reading container {id}"))?,
                restarting: r.get(17).ctx(|| format!("reading container {id}"))?,
                oom_killed: r.get(18).ctx(|| format!("reading container {id}"))?,
            },
        })
    })();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_the_restart_columns_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("containers.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
                 image TEXT NOT NULL, image_id TEXT NOT NULL, created TEXT NOT NULL, \
                 config TEXT NOT NULL, host_config TEXT NOT NULL, status TEXT NOT NULL, \
                 pid INTEGER NOT NULL DEFAULT 0, pid_start INTEGER NOT NULL DEFAULT 0, \
                 monitor_pid INTEGER NOT NULL DEFAULT 0, monitor_start INTEGER NOT NULL DEFAULT 0, \
                 exit_code INTEGER NOT NULL DEFAULT 0, started_at TEXT NOT NULL DEFAULT '', \
                 finished_at TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '');
                 INSERT INTO containers (id, name, image, image_id, created, config, host_config, status, exit_code)
                 VALUES ('abc', 'old', 'busybox', 'sha256:x', 't', '{\"Hostname\":\"h\",\"User\":\"\",\"Env\":[],\"Cmd\":[\"true\"],\"Entrypoint\":[],\"WorkingDir\":\"/\",\"Image\":\"busybox\",\"Labels\":{},\"ExposedPorts\":[],\"Volumes\":[],\"StopSignal\":\"SIGTERM\",\"StopTimeout\":10}', '{\"Runtime\":\"hako-runtime\"}', 'exited', 3);",
            )
            .unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let c = db.get("abc").unwrap().unwrap();
        assert_eq!(c.state.exit_code, 3);
        assert_eq!((c.state.restart_count, c.state.restarting), (0, false));
        assert_eq!(c.host.restart_policy.name, "no");
        assert!(c.config.healthcheck.is_none());
        // A second open finds the columns there.
        let mut s = c.state.clone();
        s.restart_count = 2;
        Db::open(dir.path()).unwrap().set_state("abc", &s).unwrap();
        assert_eq!(db.get("abc").unwrap().unwrap().state.restart_count, 2);
    }
}
