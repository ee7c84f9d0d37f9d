//! The etcd v3 backend, through etcd's JSON gateway (`/v3/kv/*`, `/v3/watch`)
//! over plain HTTP: etcd's revisions are the store's revisions one to one,
//! writes are transactions comparing `mod_revision` (optimistic concurrency)
//! and etcd acknowledges a write only once it is in its fsynced log.
//! Keys live under a prefix, so several stores can share one etcd.

use std::io::{BufRead, BufReader};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use crate::{
    matches, stamp, unstamp, EventType, FieldSelector, LabelSelector, ListOptions, ListResult,
    Result, Store, StoreError, Stored, WatchEvent, Watcher,
};

pub struct EtcdStore {
    endpoint: String,
    prefix: String,
    agent: ureq::Agent,
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// etcd's JSON gateway writes int64s as strings.
fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return b;
        }
    }
    vec![0]
}

/// etcd's gRPC code for "required revision has been compacted".
const OUT_OF_RANGE: u64 = 11;

impl EtcdStore {
    /// A store on the etcd at `endpoint` (`http://127.0.0.1:2379`), keeping
    /// its keys under `prefix` (e.g. `/hako`).
    pub fn new(endpoint: &str, prefix: &str) -> Result<Self> {
        let s = EtcdStore {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new().build(),
        };
        s.current_revision()?;
        Ok(s)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn call(&self, path: &str, body: Value) -> Result<Value> {
        let url = format!("{}/v3/{path}", self.endpoint);
        let what =
            |e: String| StoreError::Backend(format!("etcd {path} at {}: {e}", self.endpoint));
        let resp = match self.agent.post(&url).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(what(e.to_string())),
        };
        // The gateway ends error bodies with HTTP trailers ureq does not
        // parse: keep what was read before that.
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut resp.into_reader(), &mut buf);
        let v: Value = serde_json::from_slice(&buf).map_err(|e| what(e.to_string()))?;
        if let Some(code) = v.get("code") {
            if num(code) == OUT_OF_RANGE {
                return Err(StoreError::Gone {
                    requested: 0,
                    compacted: 0,
                });
            }
            let msg = v["message"].as_str().unwrap_or("error").to_string();
            return Err(what(msg));
        }
        Ok(v)
    }

    fn stored(&self, kv: &Value, revision: u64) -> Result<Stored> {
        let key = String::from_utf8_lossy(&unb64(&kv["key"])).to_string();
        let key = key.strip_prefix(&self.prefix).unwrap_or(&key).to_string();
        let mut value: Value = serde_json::from_slice(&unb64(&kv["value"]))
            .map_err(|e| StoreError::Backend(format!("decoding the stored value of {key}: {e}")))?;
        stamp(&mut value, revision);
        Ok(Stored {
            key,
            revision,
            value,
        })
    }

    /// The current kv of `key`, if any.
    fn range_one(&self, key: &str) -> Result<Option<Value>> {
        let r = self.call("kv/range", json!({"key": b64(self.full(key).as_bytes())}))?;
        Ok(r["kvs"].as_array().and_then(|k| k.first()).cloned())
    }

    /// Why a guarded write on `key` failed: it is missing or at another revision.
    fn refused(&self, key: &str, expected: Option<u64>) -> StoreError {
        match self.range_one(key) {
            Ok(None) => StoreError::NotFound { key: key.into() },
            Ok(Some(kv)) => StoreError::Conflict {
                key: key.into(),
                expected: expected.unwrap_or(0),
                actual: num(&kv["mod_revision"]),
            },
            Err(e) => e,
        }
    }

    fn guard(&self, key: &str, expected: Option<u64>) -> Value {
        let k = b64(self.full(key).as_bytes());
        match expected {
            Some(rev) => {
                json!({"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()})
            }
            None => {
                json!({"key": k, "target": "CREATE", "result": "GREATER", "create_revision": "0"})
            }
        }
    }
}

impl Store for EtcdStore {
    fn create(&self, key: &str, value: &Value) -> Result<Stored> {
        let k = b64(self.full(key).as_bytes());
        let bytes = serde_json::to_vec(&unstamp(value))
            .map_err(|e| StoreError::Backend(format!("encoding {key}: {e}")))?;
        let r = self.call(
            "kv/txn",
            json!({
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [{"request_put": {"key": k, "value": b64(&bytes)}}],
            }),
        )?;
        if r["succeeded"] != true {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let rev = num(&r["header"]["revision"]);
        self.stored(&json!({"key": k, "value": b64(&bytes)}), rev)
    }

    fn get(&self, key: &str) -> Result<Stored> {
        match self.range_one(key)? {
            Some(kv) => self.stored(&kv, num(&kv["mod_revision"])),
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    fn update(&self, key: &str, value: &Value, expected: Option<u64>) -> Result<Stored> {
        let k = b64(self.full(key).as_bytes());
        let bytes = serde_json::to_vec(&unstamp(value))
            .map_err(|e| StoreError::Backend(format!("encoding {key}: {e}")))?;
        let r = self.call(
            "kv/txn",
            json!({
                "compare": [self.guard(key, expected)],
                "success": [{"request_put": {"key": k, "value": b64(&bytes)}}],
            }),
        )?;
        if r["succeeded"] != true {
            return Err(self.refused(key, expected));
        }
        self.stored(
            &json!({"key": k, "value": b64(&bytes)}),
            num(&r["header"]["revision"]),
        )
    }

    fn delete(&self, key: &str, expected: Option<u64>) -> Result<Stored> {
        let k = b64(self.full(key).as_bytes());
        let r = self.call(
            "kv/txn",
            json!({
                "compare": [self.guard(key, expected)],
                "success": [{"request_delete_range": {"key": k, "prev_kv": true}}],
            }),
        )?;
        if r["succeeded"] != true {
            return Err(self.refused(key, expected));
        }
        let prev = &r["responses"][0]["response_delete_range"]["prev_kvs"][0];
        self.stored(prev, num(&r["header"]["revision"]))
    }

    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        let (rev, start) = match &opts.continue_token {
            Some(t) => {
                let t = crate::sqlite::decode_continue(t, prefix)?;
                (t.rv, t.start)
            }
            None => (self.current_revision()?, String::new()),
        };
        // Start after the last key of the previous page.
        let from = if start.is_empty() {
            self.full(prefix).into_bytes()
        } else {
            let mut k = self.full(&start).into_bytes();
            k.push(0);
            k
        };
        let r = self
            .call(
                "kv/range",
                json!({"key": b64(&from), "range_end": b64(&prefix_end(&self.full(prefix))),
                       "revision": rev.to_string()}),
            )
            .map_err(|e| match e {
                StoreError::Gone { .. } => StoreError::Gone {
                    requested: rev,
                    compacted: rev + 1,
                },
                e => e,
            })?;
        let mut items: Vec<Stored> = Vec::new();
        let mut continue_token = None;
        for kv in r["kvs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let s = self.stored(kv, num(&kv["mod_revision"]))?;
            if !matches(&s.value, &opts.labels, &opts.fields) {
                continue;
            }
            if opts.limit > 0 && items.len() == opts.limit {
                let last = &items[items.len() - 1].key;
                continue_token = Some(crate::sqlite::encode_continue(rev, last));
                break;
            }
            items.push(s);
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
        let full = self.full(prefix);
        let url = format!("{}/v3/watch", self.endpoint);
        let resp = self
            .agent
            .post(&url)
            .send_json(json!({"create_request": {
                "key": b64(full.as_bytes()), "range_end": b64(&prefix_end(&full)),
                "start_revision": (from + 1).to_string(), "prev_kv": true}}))
            .map_err(|e| StoreError::Backend(format!("etcd watch at {}: {e}", self.endpoint)))?;
        let mut lines = BufReader::new(resp.into_reader()).lines();
        // etcd answers "created" and, for a compacted start, "canceled" with
        // the horizon right after. A read at `from` tells whether that comes.
        let compacted = from > 0
            && matches!(
                self.call(
                    "kv/range",
                    json!({"key": b64(b"\0"), "limit": "1", "revision": from.to_string()}),
                ),
                Err(StoreError::Gone { .. })
            );
        if compacted {
            let horizon = lines
                .by_ref()
                .take(2)
                .filter_map(|l| l.ok())
                .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
                .map(|m| num(&m["result"]["compact_revision"]))
                .max()
                .unwrap_or(0);
            return Err(StoreError::Gone {
                requested: from,
                compacted: horizon,
            });
        }
        let (tx, rx) = unbounded_channel();
        let prefix_len = self.prefix.clone();
        // One reader thread per watch, translating etcd events in order.
        std::thread::spawn(move || {
            let strip = |kv: &Value, rev: u64| -> Option<Stored> {
                let key = String::from_utf8_lossy(&unb64(&kv["key"])).to_string();
                let key = key.strip_prefix(&prefix_len).unwrap_or(&key).to_string();
                let mut value: Value = serde_json::from_slice(&unb64(&kv["value"])).ok()?;
                stamp(&mut value, rev);
                Some(Stored {
                    key,
                    revision: rev,
                    value,
                })
            };
            let m = |v: &Value| matches(v, &labels, &fields);
            for line in lines {
                let Ok(line) = line else { break };
                let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                    break;
                };
                if msg["result"]["canceled"] == true {
                    break;
                }
                for ev in msg["result"]["events"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let rev = num(&ev["kv"]["mod_revision"]);
                    let out = if ev["type"] == "DELETE" {
                        strip(&ev["prev_kv"], rev)
                            .filter(|s| m(&s.value))
                            .map(|s| WatchEvent {
                                kind: EventType::Deleted,
                                object: s,
                            })
                    } else {
                        let Some(new) = strip(&ev["kv"], rev) else {
                            continue;
                        };
                        let old = strip(&ev["prev_kv"], 0).map(|s| m(&s.value));
                        let created = num(&ev["kv"]["create_revision"]) == rev;
                        let old = if created { None } else { old };
                        let kind = match (old, m(&new.value)) {
                            (None, true) | (Some(false), true) => Some(EventType::Added),
                            (Some(true), true) => Some(EventType::Modified),
                            (Some(true), false) => Some(EventType::Deleted),
                            (_, false) => None,
                        };
                        kind.map(|kind| WatchEvent { kind, object: new })
                    };
                    if let Some(ev) = out {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Watcher { events: rx })
    }

    fn current_revision(&self) -> Result<u64> {
        let r = self.call("kv/range", json!({"key": b64(b"\0"), "limit": "1"}))?;
        Ok(num(&r["header"]["revision"]))
    }

    fn compact(&self, revision: u64) -> Result<()> {
        let revision = revision.min(self.current_revision()?);
        match self.call(
            "kv/compaction",
            json!({"revision": revision.to_string(), "physical": true}),
        ) {
            Ok(_) | Err(StoreError::Gone { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EtcdStore;
    use std::process::{Child, Command, Stdio};

    /// An etcd server of the test's own (Debian's etcd-server), killed on drop.
    pub struct Etcd {
        child: Child,
        _dir: tempfile::TempDir,
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn open() -> (Etcd, EtcdStore) {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd (Debian's etcd-server)");
        let guard = Etcd { child, _dir: dir };
        // Ready when it answers; give up after a minute.
        for _ in 0..600 {
            if let Ok(s) = EtcdStore::new(&url, "/hako-test") {
                return (guard, s);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("etcd at {url} did not start");
    }

    crate::store_suite!(open);
}
