//! The API server load: CLIENTS clients create, get, list (limit 50, label
//! selector) and merge-patch N ConfigMaps on an open-loop schedule, while
//! WATCHERS watchers from the starting resourceVersion check that each sees
//! all 2N events, in increasing resourceVersion order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::kubeconfig::KubeConfig;
use crate::stats::{due, Latencies};

pub struct Load {
    pub n: u64,
    pub clients: u64,
    pub watchers: u64,
    /// Target writes per second (creates + patches); 0: as fast as it goes.
    pub rate: f64,
}

/// One request's outcome: an error message for a failure.
async fn call(req: reqwest::RequestBuilder) -> Result<Vec<u8>, String> {
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
        return Err(format!("{status}: {text}"));
    }
    Ok(body.to_vec())
}

struct ClientResult {
    lat: Latencies,
    errors: Vec<String>,
    last_done: Instant,
}

async fn client(
    http: reqwest::Client,
    base: Arc<String>,
    load: Arc<Load>,
    c: u64,
    start: Instant,
) -> ClientResult {
    let mut out = ClientResult {
        lat: Latencies::default(),
        errors: Vec::new(),
        last_done: start,
    };
    // Two of each object's four requests are writes.
    let req_rate = load.rate * 2.0;
    let mut i = c;
    while i < load.n {
        let name = format!("bench-{i}");
        let item = format!("{base}/{name}");
        let ops: [(&'static str, reqwest::RequestBuilder); 4] = [
            (
                "create",
                http.post(base.as_str())
                    .header("content-type", "application/json")
                    .body(
                        json!({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": name, "labels": {"bench": "kube-api"}},
                               "data": {"k": "v"}})
                        .to_string(),
                    ),
            ),
            ("get", http.get(&item)),
            (
                "list",
                http.get(format!("{base}?limit=50&labelSelector=bench%3Dkube-api")),
            ),
            (
                "patch",
                http.patch(&item)
                    .header("content-type", "application/merge-patch+json")
                    .body(r#"{"data":{"k":"w"}}"#),
            ),
        ];
        for (j, (op, req)) in ops.into_iter().enumerate() {
            let at = due(start, 4 * i + j as u64, req_rate);
            tokio::time::sleep_until(at.into()).await;
            let from = if load.rate > 0.0 { at } else { Instant::now() };
            let res = call(req).await;
            let done = Instant::now();
            out.lat.add(op, done - from);
            out.last_done = done;
            if let Err(e) = res {
                out.errors.push(format!("{op} {name}: {e}"));
            }
        }
        i += load.clients;
    }
    out
}

#[derive(Default)]
struct WatchResult {
    seen: u64,
    in_order: bool,
    error: Option<String>,
    done_at: Option<Instant>,
}

/// The string value after `"name":"` in a watch line.
fn string_field<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let pat = format!("\"{name}\":\"");
    let at = line.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let len = line[at..].iter().position(|b| *b == b'"')?;
    Some(&line[at..at + len])
}

/// Read one watch until it has seen `expected` events (or ends). Lines are
/// scanned for their type and resourceVersion, not decoded: 100 watchers
/// decoding every object would make the client the bottleneck.
async fn watcher(
    http: reqwest::Client,
    url: String,
    expected: u64,
    ready: Arc<Barrier>,
) -> WatchResult {
    let mut r = WatchResult {
        in_order: true,
        ..Default::default()
    };
    let resp = http.get(&url).send().await;
    ready.wait().await;
    let mut resp = match resp {
        Ok(resp) if resp.status().is_success() => resp,
        Ok(resp) => {
            r.error = Some(format!("watch answered {}", resp.status()));
            return r;
        }
        Err(e) => {
            r.error = Some(format!("watch failed: {e}"));
            return r;
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut last = 0u64;
    while r.seen < expected {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                r.error = Some(format!("the watch ended after {} events", r.seen));
                break;
            }
            Err(e) => {
                r.error = Some(format!("reading the watch: {e}"));
                break;
            }
        };
        buf.extend_from_slice(&chunk);
        let mut used = 0;
        while let Some(nl) = buf[used..].iter().position(|b| *b == b'\n') {
            let line = &buf[used..used + nl];
            used += nl + 1;
            if string_field(line, "type") == Some(b"ERROR") {
                r.error = Some(String::from_utf8_lossy(line).chars().take(300).collect());
                return r;
            }
            let rv = string_field(line, "resourceVersion")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            if rv <= last {
                r.in_order = false;
            }
            last = rv;
            r.seen += 1;
        }
        buf.drain(..used);
    }
    r.done_at = Some(Instant::now());
    r
}

pub async fn run(cfg: &KubeConfig, load: Load) -> Result<Value> {
    let load = Arc::new(load);
    let base = Arc::new(format!(
        "{}/api/v1/namespaces/default/configmaps",
        cfg.server
    ));
    let first = call(cfg.client()?.get(format!("{base}?limit=1")))
        .await
        .map_err(|e| anyhow!("listing configmaps at {base}: {e}"))?;
    let list: Value = serde_json::from_slice(&first).context("decoding the first list")?;
    let start_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    // Each object: ADDED by the create, MODIFIED by the patch.
    let expected = 2 * load.n;
    let ready = Arc::new(Barrier::new(load.watchers as usize + 1));
    let mut watches = Vec::new();
    for _ in 0..load.watchers {
        let url = format!("{base}?watch=1&resourceVersion={start_rv}&timeoutSeconds=3600");
        watches.push(tokio::spawn(watcher(
            cfg.client()?,
            url,
            expected,
            ready.clone(),
        )));
    }
    ready.wait().await;
    let start = Instant::now() + Duration::from_millis(100);
    let mut clients = Vec::new();
    for c in 0..load.clients {
        clients.push(tokio::spawn(client(
            cfg.client()?,
            base.clone(),
            load.clone(),
            c,
            start,
        )));
    }
    let mut lat = Latencies::default();
    let mut errors = Vec::new();
    let mut end = start;
    for c in clients {
        let r = c.await.context("a load client panicked")?;
        lat.merge(r.lat);
        errors.extend(r.errors);
        end = end.max(r.last_done);
    }
    let wall = (end - start).as_secs_f64().max(1e-3);
    // The watchers have a minute after the last write to see its event.
    let mut results = Vec::new();
    for w in watches {
        let aborter = w.abort_handle();
        match tokio::time::timeout_at((end + Duration::from_secs(60)).into(), w).await {
            Ok(r) => results.push(r.context("a watcher panicked")?),
            Err(_) => {
                aborter.abort();
                results.push(WatchResult {
                    error: Some("no end within 60 s of the last write".into()),
                    ..Default::default()
                });
            }
        }
    }
    let tail = results
        .iter()
        .filter_map(|r| r.done_at)
        .max()
        .map(|t| (t.saturating_duration_since(end).as_secs_f64() * 1000.0).round());
    let mut out = json!({
        "objects": load.n, "clients": load.clients, "watchers": load.watchers,
        "target_writes_per_s": load.rate,
        "requests_per_s": (lat.count(&["create", "get", "list", "patch"]) as f64 / wall).round(),
        "writes_per_s": (lat.count(&["create", "patch"]) as f64 / wall).round(),
        "errors": errors.len(), "first_error": errors.first(),
        "watchers_saw_all": results.iter().filter(|r| r.seen == expected).count(),
        "watchers_in_order": results.iter().filter(|r| r.in_order && r.seen == expected).count(),
        "first_watch_error": results.iter().find_map(|r| r.error.clone()),
        "last_watch_event_after_last_write_ms": tail,
    });
    if let (Value::Object(o), Value::Object(s)) = (&mut out, lat.summary()) {
        o.extend(s);
    }
    Ok(out)
}
