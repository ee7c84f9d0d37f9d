//! Latencies per operation and the open-loop schedule.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// When the k-th request of a run is due: `rate` requests per second from
/// `start` (0: now, closed loop). Latency counts from this time, not from
/// when the request could be sent, so queueing behind a slow server counts.
pub fn due(start: Instant, k: u64, rate: f64) -> Instant {
    if rate <= 0.0 {
        return Instant::now();
    }
    start + Duration::from_secs_f64(k as f64 / rate)
}

#[derive(Default)]
pub struct Latencies(pub BTreeMap<&'static str, Vec<f64>>);

impl Latencies {
    pub fn add(&mut self, op: &'static str, d: Duration) {
        self.0.entry(op).or_default().push(d.as_secs_f64() * 1000.0);
    }

    pub fn merge(&mut self, other: Latencies) {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().extend(v);
        }
    }

    pub fn count(&self, ops: &[&str]) -> usize {
        ops.iter().map(|o| self.0.get(o).map_or(0, Vec::len)).sum()
    }

    /// `{"p50_ms": {op: ..}, "p99_ms": {..}, "max_ms": {..}}`.
    pub fn summary(&mut self) -> Value {
        let mut out = json!({"p50_ms": {}, "p99_ms": {}, "max_ms": {}});
        for (op, v) in self.0.iter_mut() {
            v.sort_by(f64::total_cmp);
            let at = |p: f64| {
                let i = ((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1));
                (v.get(i).copied().unwrap_or(0.0) * 100.0).round() / 100.0
            };
            out["p50_ms"][*op] = json!(at(0.5));
            out["p99_ms"][*op] = json!(at(0.99));
            out["max_ms"][*op] = json!(at(1.0));
        }
        out
    }
}
