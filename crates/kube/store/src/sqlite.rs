//! The SQLite backend: one append-only table, each row a revision (kine's
//! layout). WAL with `synchronous=FULL`, so a write is on disk before it is
//! acknowledged. One connection behind a mutex: writes are serialised, which
//! also keeps watch delivery in revision order.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::fanout::{offer_all, Change, Sub};
use crate::{
    matches, stamp, unstamp, FieldSelector, LabelSelector, ListOptions, ListResult, Result, Store,
    StoreError, Stored, Watcher,
};

struct Inner {
    conn: Connection,
    subs: Vec<Sub>,
}

/// The SQLite store. Open it once per process.
pub struct SqliteStore {
    inner: Mutex<Inner>,
}

fn db<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

/// The first key after every key that starts with `prefix` (keys are ASCII).
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).unwrap_or_else(|_| "\u{7f}".into());
        }
    }
    "\u{7f}".into()
}

fn parse_value(key: &str, bytes: &[u8], revision: u64) -> Result<Stored> {
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("decoding the stored value of {key}: {e}")))?;
    stamp(&mut value, revision);
    Ok(Stored {
        key: key.to_string(),
        revision,
        value,
    })
}

/// A row of the log: (id, deleted, value).
type Row = (u64, bool, Vec<u8>);

impl SqliteStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let what = format!("opening the Kubernetes store {}", path.display());
        let conn = Connection::open(path).map_err(db(&what))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db(&what))?;
        // FULL: the WAL is synced at each commit, so an acknowledged write
        // survives a crash of the process or the machine.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db(&what))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db(&what))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 key TEXT NOT NULL,
                 created INTEGER NOT NULL,
                 prev INTEGER NOT NULL,
                 deleted INTEGER NOT NULL,
                 value BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS log_key_id ON log(key, id);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(db(&what))?;
        Ok(SqliteStore {
            inner: Mutex::new(Inner {
                conn,
                subs: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("the store lock is poisoned".into()))
    }
}

impl Inner {
    fn current(&self, key: &str) -> Result<Option<Row>> {
        self.conn
            .query_row(
                "SELECT id, deleted, value FROM log WHERE key = ?1 ORDER BY id DESC LIMIT 1",
                params![key],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db(&format!("reading {key}")))
            .map(|row| row.filter(|(_, deleted, _)| !deleted))
    }

    fn revision(&self) -> Result<u64> {
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'log'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("reading the current revision"))?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn compacted(&self) -> Result<u64> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db("reading the compaction horizon"))?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Append a row; durable when this returns.
    fn append(
        &mut self,
        key: &str,
        created: Option<u64>,
        prev: u64,
        deleted: bool,
        value: &[u8],
    ) -> Result<u64> {
        let what = format!("writing {key}");
        let tx = self.conn.transaction().map_err(db(&what))?;
        tx.execute(
            "INSERT INTO log (key, created, prev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                key,
                created.unwrap_or(0) as i64,
                prev as i64,
                deleted,
                value
            ],
        )
        .map_err(db(&what))?;
        let id = tx.last_insert_rowid() as u64;
        if created.is_none() {
            tx.execute(
                "UPDATE log SET created = ?1 WHERE id = ?1",
                params![id as i64],
            )
            .map_err(db(&what))?;
        }
        tx.commit().map_err(db(&what))?;
        Ok(id)
    }

    /// Tell each watcher about a write (under the lock: in revision order).
    fn notify(&mut self, new: Option<Stored>, old: Option<Value>, deleted: Option<Stored>) {
        if self.subs.is_empty() {
            return;
        }
        offer_all(&mut self.subs, &Change::new(new, old, deleted));
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ContinueToken {
    pub(crate) rv: u64,
    pub(crate) start: String,
}

pub(crate) fn encode_continue(rv: u64, start: &str) -> String {
    let json = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode_continue(token: &str, prefix: &str) -> Result<ContinueToken> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidContinue)?;
    let t: ContinueToken =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidContinue)?;
    if !t.start.starts_with(prefix) {
        return Err(StoreError::InvalidContinue);
    }
    Ok(t)
}

impl Store for SqliteStore {
    fn create(&self, key: &str, value: &Value) -> Result<Stored> {
        let mut inner = self.lock()?;
        if inner.current(key)?.is_some() {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let bytes = serde_json::to_vec(&unstamp(value)).map_err(db("encoding"))?;
        let id = inner.append(key, None, 0, false, &bytes)?;
        let stored = parse_value(key, &bytes, id)?;
        inner.notify(Some(stored.clone()), None, None);
        Ok(stored)
    }

    fn get(&self, key: &str) -> Result<Stored> {
        let inner = self.lock()?;
        match inner.current(key)? {
            Some((id, _, bytes)) => parse_value(key, &bytes, id),
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    fn update(&self, key: &str, value: &Value, expected: Option<u64>) -> Result<Stored> {
        let mut inner = self.lock()?;
        let Some((id, _, old)) = inner.current(key)? else {
            return Err(StoreError::NotFound { key: key.into() });
        };
        if let Some(expected) = expected {
            if expected != id {
                return Err(StoreError::Conflict {
                    key: key.into(),
                    expected,
                    actual: id,
                });
            }
        }
        let created: i64 = inner
            .conn
            .query_row("SELECT created FROM log WHERE id = ?1", [id as i64], |r| {
                r.get(0)
            })
            .map_err(db(&format!("reading {key}")))?;
        let bytes = serde_json::to_vec(&unstamp(value)).map_err(db("encoding"))?;
        let rev = inner.append(key, Some(created as u64), id, false, &bytes)?;
        let stored = parse_value(key, &bytes, rev)?;
        if !inner.subs.is_empty() {
            let old: Value = serde_json::from_slice(&old).unwrap_or(Value::Null);
            inner.notify(Some(stored.clone()), Some(old), None);
        }
        Ok(stored)
    }

    fn delete(&self, key: &str, expected: Option<u64>) -> Result<Stored> {
        let mut inner = self.lock()?;
        let Some((id, _, old)) = inner.current(key)? else {
            return Err(StoreError::NotFound { key: key.into() });
        };
        if let Some(expected) = expected {
            if expected != id {
                return Err(StoreError::Conflict {
                    key: key.into(),
                    expected,
                    actual: id,
                });
            }
        }
        // The tombstone keeps the last value, so a watcher resuming later
        // still gets the object with its DELETED event.
        let rev = inner.append(key, Some(0), id, true, &old)?;
        let stored = parse_value(key, &old, rev)?;
        inner.notify(None, None, Some(stored.clone()));
        Ok(stored)
    }

    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        let inner = self.lock()?;
        let (rev, start) = match &opts.continue_token {
            Some(t) => {
                let t = decode_continue(t, prefix)?;
                (t.rv, t.start)
            }
            None => (inner.revision()?, String::new()),
        };
        let compacted = inner.compacted()?;
        if rev < compacted {
            return Err(StoreError::Gone {
                requested: rev,
                compacted,
            });
        }
        let what = format!("listing {prefix}");
        // Keys in order with their newest row at `rev`, streamed from the
        // (key, id) index: a page stops reading once it is full, so a small
        // `limit` costs a page, not the whole prefix.
        let mut keys = inner
            .conn
            .prepare_cached(
                "SELECT key, MAX(id) FROM log
                  WHERE key >= ?1 AND key < ?2 AND key > ?3 AND id <= ?4
                  GROUP BY key ORDER BY key",
            )
            .map_err(db(&what))?;
        let mut row_of = inner
            .conn
            .prepare_cached("SELECT deleted, value FROM log WHERE id = ?1")
            .map_err(db(&what))?;
        let mut rows = keys
            .query(params![prefix, prefix_end(prefix), start, rev as i64])
            .map_err(db(&what))?;
        let mut items: Vec<Stored> = Vec::new();
        let mut continue_token = None;
        while let Some(row) = rows.next().map_err(db(&what))? {
            let key: String = row.get(0).map_err(db(&what))?;
            let id: i64 = row.get(1).map_err(db(&what))?;
            let (deleted, bytes): (bool, Vec<u8>) = row_of
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db(&what))?;
            if deleted {
                continue;
            }
            let stored = parse_value(&key, &bytes, id as u64)?;
            if !matches(&stored.value, &opts.labels, &opts.fields) {
                continue;
            }
            if opts.limit > 0 && items.len() == opts.limit {
                // One more match exists: the next page starts after the last item.
                let last = &items[items.len() - 1].key;
                continue_token = Some(encode_continue(rev, last));
                break;
            }
            items.push(stored);
        }
        Ok(ListResult {
            items,
            revision: rev,
            continue_token,
        })
    }

    fn watch(
        &self,
        prefix: &str,
        from: u64,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> Result<Watcher> {
        let mut inner = self.lock()?;
        let compacted = inner.compacted()?;
        if from < compacted {
            return Err(StoreError::Gone {
                requested: from,
                compacted,
            });
        }
        let (sub, mut watcher) = Sub::new(prefix, from, labels, fields);
        // The backlog (rows after `from`) is read under the lock, before the
        // watcher is registered for live writes: no gap, no duplicate.
        let what = format!("watching {prefix}");
        {
            let mut stmt = inner
                .conn
                .prepare_cached(
                    "SELECT l.key, l.id, l.deleted, l.value, p.value FROM log l
                       LEFT JOIN log p ON p.id = l.prev
                     WHERE l.id > ?1 AND l.key >= ?2 AND l.key < ?3 ORDER BY l.id",
                )
                .map_err(db(&what))?;
            let mut rows = stmt
                .query(params![from as i64, prefix, prefix_end(prefix)])
                .map_err(db(&what))?;
            while let Some(row) = rows.next().map_err(db(&what))? {
                let key: String = row.get(0).map_err(db(&what))?;
                let id: i64 = row.get(1).map_err(db(&what))?;
                let deleted: bool = row.get(2).map_err(db(&what))?;
                let bytes: Vec<u8> = row.get(3).map_err(db(&what))?;
                let prev: Option<Vec<u8>> = row.get(4).map_err(db(&what))?;
                let stored = parse_value(&key, &bytes, id as u64)?;
                let ch = if deleted {
                    Change::new(None, None, Some(stored))
                } else {
                    let old = prev.and_then(|p| serde_json::from_slice::<Value>(&p).ok());
                    Change::new(Some(stored), old, None)
                };
                sub.replay(&ch, &mut watcher);
            }
        }
        inner.subs.push(sub);
        Ok(watcher)
    }

    fn current_revision(&self) -> Result<u64> {
        self.lock()?.revision()
    }

    fn compact(&self, revision: u64) -> Result<()> {
        let mut inner = self.lock()?;
        let revision = revision.min(inner.revision()?);
        if revision <= inner.compacted()? {
            return Ok(());
        }
        let what = format!("compacting below revision {revision}");
        let tx = inner.conn.transaction().map_err(db(&what))?;
        // Keep, per key, the newest row at or below the horizon (reads at the
        // horizon need it); drop older rows and tombstones below it.
        tx.execute(
            "DELETE FROM log WHERE id < ?1 AND id NOT IN
               (SELECT MAX(id) FROM log WHERE id <= ?1 GROUP BY key)",
            [revision as i64],
        )
        .map_err(db(&what))?;
        tx.execute(
            "DELETE FROM log WHERE id < ?1 AND deleted = 1",
            [revision as i64],
        )
        .map_err(db(&what))?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
               ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [revision as i64],
        )
        .map_err(db(&what))?;
        tx.commit().map_err(db(&what))
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteStore;

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("kube.db")).unwrap();
        (dir, store)
    }

    crate::store_suite!(open);

    #[test]
    fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube.db");
        let rev = {
            let s = SqliteStore::open(&path).unwrap();
            crate::Store::create(&s, "/a/x", &serde_json::json!({"v": 1}))
                .unwrap()
                .revision
        };
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(crate::Store::get(&s, "/a/x").unwrap().revision, rev);
    }
}
