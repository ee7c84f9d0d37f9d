//! The etcd v3 backend, through etcd's JSON gateway (`/v3/kv/*`, `/v3/watch`)
//! over plain HTTP: etcd's revisions are the store's revisions one to one,
//! writes are transactions comparing `mod_revision` (optimistic concurrency)
//! and etcd acknowledges a write only once it is in its fsynced log.
//! Keys live under a prefix, so several stores can share one etcd.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::fanout::{offer_all, Change, Sub};
use crate::{
    matches, stamp, unstamp, FieldSelector, LabelSelector, ListOptions, ListResult, Result, Store,
    StoreError, Stored, Watcher,
};

pub struct EtcdStore {
    endpoint: String,
    prefix: String,
    agent: ureq::Agent,
    hub: Arc<Mutex<Hub>>,
}

/// How many recent changes (and bytes of them) the hub keeps, so that a
/// watch starting a little behind (from a list's revision) is served from
/// memory.
const RECENT: usize = 2048;
const RECENT_BYTES: usize = 8 << 20;

/// The store's one etcd watch (on its whole prefix), shared by every watcher:
/// a reader thread decodes each etcd event once and offers it to the
/// subscribers. Watches from before `horizon` get an etcd watch of their own.
#[derive(Default)]
struct Hub {
    running: bool,
    /// Every change after this revision is in `recent` or still to come.
    horizon: u64,
    recent: VecDeque<Arc<Change>>,
    recent_bytes: usize,
    subs: Vec<Sub>,
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
            hub: Arc::default(),
        };
        // The shared watch starts now, so that every list this store answers
        // is at or after its horizon and the watches following them share it.
        let mut hub = s.hub()?;
        s.start_hub(&mut hub)?;
        drop(hub);
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

/// The store's changes in one message of etcd's watch stream (keys without
/// the store's `prefix`); `None` when the watch ended.
fn decode_watch_message(line: &str, prefix: &str) -> Option<Vec<Change>> {
    let msg = serde_json::from_str::<Value>(line).ok()?;
    if msg["result"]["canceled"] == true {
        return None;
    }
    let strip = |kv: &Value, rev: u64| -> Option<Stored> {
        let key = String::from_utf8_lossy(&unb64(&kv["key"])).to_string();
        let key = key.strip_prefix(prefix).unwrap_or(&key).to_string();
        let mut value: Value = serde_json::from_slice(&unb64(&kv["value"])).ok()?;
        stamp(&mut value, rev);
        Some(Stored {
            key,
            revision: rev,
            value,
        })
    };
    let mut out: Vec<Change> = Vec::new();
    for ev in msg["result"]["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let rev = num(&ev["kv"]["mod_revision"]);
        let size = ["kv", "prev_kv"]
            .iter()
            .map(|k| ev[k]["value"].as_str().map_or(0, str::len))
            .sum::<usize>()
            + 256;
        let before = out.len();
        if ev["type"] == "DELETE" {
            if let Some(gone) = strip(&ev["prev_kv"], rev) {
                out.push(Change::new(None, None, Some(gone)));
            }
        } else if let Some(new) = strip(&ev["kv"], rev) {
            let created = num(&ev["kv"]["create_revision"]) == rev;
            let old = (!created)
                .then(|| strip(&ev["prev_kv"], 0).map(|s| s.value))
                .flatten();
            out.push(Change::new(Some(new), old, None));
        }
        if out.len() > before {
            if let Some(ch) = out.last_mut() {
                ch.size = size;
            }
        }
    }
    Some(out)
}

impl EtcdStore {
    fn hub(&self) -> Result<MutexGuard<'_, Hub>> {
        self.hub
            .lock()
            .map_err(|_| StoreError::Backend("the etcd watch hub lock is poisoned".into()))
    }

    /// An etcd watch of `full` (a full key prefix) from after `from`,
    /// with previous values; the response streams one JSON message a line.
    fn open_watch(&self, full: &str, from: u64) -> Result<ureq::Response> {
        let url = format!("{}/v3/watch", self.endpoint);
        // Its own agent: a long-poll response must not hold a pooled connection.
        ureq::AgentBuilder::new()
            .build()
            .post(&url)
            .send_json(json!({"create_request": {
                "key": b64(full.as_bytes()), "range_end": b64(&prefix_end(full)),
                "start_revision": (from + 1).to_string(), "prev_kv": true}}))
            .map_err(|e| StoreError::Backend(format!("etcd watch at {}: {e}", self.endpoint)))
    }

    /// Start the hub's etcd watch unless it runs: from the current revision.
    fn start_hub(&self, hub: &mut Hub) -> Result<()> {
        if hub.running {
            return Ok(());
        }
        let start = self.current_revision()?;
        let resp = self.open_watch(&format!("{}/", self.prefix), start)?;
        hub.running = true;
        hub.horizon = start;
        hub.recent.clear();
        hub.recent_bytes = 0;
        let shared = self.hub.clone();
        let prefix = self.prefix.clone();
        std::thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || {
                for line in BufReader::new(resp.into_reader()).lines() {
                    let Some(changes) = line.ok().and_then(|l| decode_watch_message(&l, &prefix))
                    else {
                        break;
                    };
                    let Ok(mut hub) = shared.lock() else { return };
                    for ch in changes {
                        offer_all(&mut hub.subs, &ch);
                        hub.recent_bytes += ch.size;
                        hub.recent.push_back(Arc::new(ch));
                        while hub.recent.len() > RECENT || hub.recent_bytes > RECENT_BYTES {
                            let Some(old) = hub.recent.pop_front() else {
                                break;
                            };
                            hub.horizon = old.rev;
                            hub.recent_bytes -= old.size;
                        }
                    }
                }
                // The etcd watch ended (etcd went away): end every watch (the
                // clients watch again) and start afresh at the next one.
                if let Ok(mut hub) = shared.lock() {
                    *hub = Hub::default();
                }
            })
            .map_err(|e| StoreError::Backend(format!("starting the etcd watch thread: {e}")))?;
        Ok(())
    }

    /// A watch from before the hub's horizon: an etcd watch of its own (etcd
    /// answers `Gone` for a compacted revision), read by its own thread. It
    /// replays history, so a slow reader holds back its own etcd stream
    /// rather than expire.
    fn watch_direct(
        &self,
        prefix: &str,
        from: u64,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> Result<Watcher> {
        let resp = self.open_watch(&self.full(prefix), from)?;
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
        let (sub, watcher) = Sub::new(prefix, from, labels, fields);
        let store_prefix = self.prefix.clone();
        std::thread::Builder::new()
            .name("etcd-watch-old".into())
            .spawn(move || {
                for line in lines {
                    let Some(changes) = line
                        .ok()
                        .and_then(|l| decode_watch_message(&l, &store_prefix))
                    else {
                        return;
                    };
                    if !changes.iter().all(|ch| sub.send_blocking(ch)) {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("starting an etcd watch thread: {e}")))?;
        Ok(watcher)
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
        let (mut rev, start) = match &opts.continue_token {
            Some(t) => {
                let t = crate::sqlite::decode_continue(t, prefix)?;
                (Some(t.rv), t.start)
            }
            None => (None, String::new()),
        };
        let end = b64(&prefix_end(&self.full(prefix)));
        // Start after the last key of the previous page.
        let mut from = if start.is_empty() {
            self.full(prefix).into_bytes()
        } else {
            let mut k = self.full(&start).into_bytes();
            k.push(0);
            k
        };
        let mut items: Vec<Stored> = Vec::new();
        let mut continue_token = None;
        // Read in batches of what the page still needs (plus one, to know
        // whether more follow), not the whole prefix: the first batch fixes
        // the revision the following ones (and the next pages) read at.
        loop {
            let want = if opts.limit > 0 {
                (opts.limit + 1 - items.len()).max(16)
            } else {
                0
            };
            let mut req = json!({"key": b64(&from), "range_end": end, "limit": want.to_string()});
            if let Some(rev) = rev {
                req["revision"] = json!(rev.to_string());
            }
            let r = self.call("kv/range", req).map_err(|e| match e {
                StoreError::Gone { .. } => StoreError::Gone {
                    requested: rev.unwrap_or(0),
                    compacted: rev.unwrap_or(0) + 1,
                },
                e => e,
            })?;
            let at = *rev.get_or_insert_with(|| num(&r["header"]["revision"]));
            let kvs = r["kvs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            for kv in kvs {
                let s = self.stored(kv, num(&kv["mod_revision"]))?;
                if !matches(&s.value, &opts.labels, &opts.fields) {
                    continue;
                }
                if opts.limit > 0 && items.len() == opts.limit {
                    let last = &items[items.len() - 1].key;
                    continue_token = Some(crate::sqlite::encode_continue(at, last));
                    break;
                }
                items.push(s);
            }
            let more = r["more"] == true;
            match kvs.last() {
                Some(last) if more && continue_token.is_none() => {
                    from = unb64(&last["key"]);
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(ListResult {
            items,
            revision: rev.unwrap_or(0),
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
        let mut hub = self.hub()?;
        self.start_hub(&mut hub)?;
        if from < hub.horizon {
            drop(hub);
            return self.watch_direct(prefix, from, labels, fields);
        }
        // Recent changes after `from` first, then live ones: both under the
        // hub's lock, so nothing is missed or seen twice.
        let (sub, mut watcher) = Sub::new(prefix, from, labels, fields);
        for ch in &hub.recent {
            sub.replay(ch, &mut watcher);
        }
        hub.subs.push(sub);
        Ok(watcher)
    }

    fn current_revision(&self) -> Result<u64> {
        let r = self.call("kv/range", json!({"key": b64(b"\0"), "limit": "1"}))?;
        Ok(num(&r["header"]["revision"]))
    }

    fn compact(&self, revision: u64) -> Result<()> {
        let revision = revision.min(self.current_revision()?);
        {
            // Watches from before the horizon must get etcd's Gone.
            let mut hub = self.hub()?;
            while hub.recent.front().is_some_and(|c| c.rev <= revision) {
                if let Some(old) = hub.recent.pop_front() {
                    hub.recent_bytes -= old.size;
                }
            }
            hub.horizon = hub.horizon.max(revision);
        }
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
        url: String,
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
        let guard = Etcd {
            child,
            url: url.clone(),
            _dir: dir,
        };
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

    /// How many watchers etcd itself serves (its own metric).
    fn etcd_watchers(url: &str) -> u64 {
        let text = ureq::get(&format!("{url}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .expect("etcd reports etcd_debugging_mvcc_watcher_total")
            .trim()
            .parse::<f64>()
            .unwrap() as u64
    }

    /// 100 watches of the store are one etcd watch, and each sees every event.
    #[test]
    fn many_watches_share_one_etcd_watch() {
        use crate::{FieldSelector, LabelSelector, Store};
        let (etcd, s) = open();
        let from = s.current_revision().unwrap();
        let mut watches: Vec<_> = (0..100)
            .map(|_| {
                s.watch(
                    "/cm/",
                    from,
                    LabelSelector::default(),
                    FieldSelector::default(),
                )
                .unwrap()
            })
            .collect();
        let a = s.create("/cm/ns/a", &serde_json::json!({})).unwrap();
        let b = s
            .update("/cm/ns/a", &serde_json::json!({"v": 2}), None)
            .unwrap();
        for w in &mut watches {
            assert_eq!(w.next_blocking().unwrap().object.revision, a.revision);
            assert_eq!(w.next_blocking().unwrap().object.revision, b.revision);
        }
        assert_eq!(etcd_watchers(&etcd.url), 1);
    }
}
