//! The floor: the same shape of load (put, get, range of 50, put) straight
//! into etcd's JSON gateway, which any etcd-backed API server sits on.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::stats::{due, Latencies};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn worker(
    http: reqwest::Client,
    url: Arc<String>,
    n: u64,
    clients: u64,
    c: u64,
    rate: f64,
    start: Instant,
) -> (Latencies, usize, Instant) {
    let (mut lat, mut errors, mut last) = (Latencies::default(), 0, start);
    let mut i = c;
    while i < n {
        let key = format!("/floor/{i:06}");
        let value =
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":"v"}}"#;
        let ops: [(&'static str, &str, Value); 4] = [
            (
                "put",
                "kv/put",
                json!({"key": b64(&key), "value": b64(value)}),
            ),
            ("get", "kv/range", json!({"key": b64(&key)})),
            (
                "range50",
                "kv/range",
                json!({"key": b64("/floor/"), "range_end": b64("/floor0"), "limit": "50"}),
            ),
            (
                "put",
                "kv/put",
                json!({"key": b64(&key), "value": b64(value)}),
            ),
        ];
        for (j, (op, path, body)) in ops.into_iter().enumerate() {
            let at = due(start, 4 * i + j as u64, rate * 2.0);
            tokio::time::sleep_until(at.into()).await;
            let from = if rate > 0.0 { at } else { Instant::now() };
            let ok = match http
                .post(format!("{url}/v3/{path}"))
                .body(body.to_string())
                .send()
                .await
            {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            last = Instant::now();
            lat.add(op, last - from);
            if !ok {
                errors += 1;
            }
        }
        i += clients;
    }
    (lat, errors, last)
}

pub async fn run(url: &str, n: u64, clients: u64, rate: f64) -> Result<Value> {
    let url = Arc::new(url.trim_end_matches('/').to_string());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .context("building an HTTP client")?;
        tasks.push(tokio::spawn(worker(
            http,
            url.clone(),
            n,
            clients,
            c,
            rate,
            start,
        )));
    }
    let (mut lat, mut errors, mut end) = (Latencies::default(), 0, start);
    for t in tasks {
        let (l, e, last) = t.await.context("an etcd client panicked")?;
        lat.merge(l);
        errors += e;
        end = end.max(last);
    }
    let wall = (end - start).as_secs_f64().max(1e-3);
    let mut out = json!({
        "objects": n, "clients": clients, "target_writes_per_s": rate,
        "requests_per_s": (lat.count(&["put", "get", "range50"]) as f64 / wall).round(),
        "puts_per_s": (lat.count(&["put"]) as f64 / wall).round(),
        "errors": errors,
    });
    if let (Value::Object(o), Value::Object(s)) = (&mut out, lat.summary()) {
        o.extend(s);
    }
    Ok(out)
}
