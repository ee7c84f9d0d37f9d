//! `stats`: resource usage as docker shows it, from the runtime's stats
//! event (runc's JSON) and the container's network namespace.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::record::{Container, Status};

/// One container's usage over an interval.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Usage {
    pub id: String,
    pub name: String,
    /// Percent of one CPU.
    pub cpu_percent: f64,
    /// Bytes, without the reclaimable page cache (as docker counts).
    pub mem_usage: u64,
    /// The cgroup limit, or the host's memory when unlimited.
    pub mem_limit: u64,
    pub mem_percent: f64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

struct Sample {
    at: Instant,
    cpu_ns: u64,
    raw: serde_json::Value,
}

impl Engine {
    fn sample(&self, c: &Container) -> Result<Sample> {
        let v = self.runtime_of(c).stats(&c.id)?;
        Ok(Sample {
            at: Instant::now(),
            cpu_ns: v["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0),
            raw: v,
        })
    }

    /// Usage of running containers over `interval` (two samples).
    pub fn stats(&self, what: &[String], interval: Duration) -> Result<Vec<Usage>> {
        self.stats_all(what, interval, false)
    }

    /// `stats -a`: with no names, containers that do not run too (all
    /// zeros, as docker shows them), in the list's order.
    pub fn stats_all(&self, what: &[String], interval: Duration, all: bool) -> Result<Vec<Usage>> {
        if all && what.is_empty() {
            let everyone = self.list()?;
            let running: Vec<String> = everyone
                .iter()
                .filter(|c| c.state.status == Status::Running)
                .map(|c| c.id.clone())
                .collect();
            let mut measured = self.stats(&running, interval)?;
            return Ok(everyone
                .iter()
                .map(|c| match measured.iter().position(|u| u.id == c.id) {
                    Some(i) => measured.swap_remove(i),
                    // Stopped (or stopped meanwhile): nothing is used.
                    None => Usage {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        ..Usage::default()
                    },
                })
                .collect());
        }
        let list: Vec<Container> = if what.is_empty() {
            self.list()?
                .into_iter()
                .filter(|c| c.state.status == Status::Running)
                .collect()
        } else {
            what.iter().map(|w| self.get(w)).collect::<Result<_>>()?
        };
        for c in &list {
            if c.state.status != Status::Running {
                return Err(Error::Conflict(format!(
                    "container {} is not running",
                    c.name
                )));
            }
        }
        let first: Vec<Option<Sample>> = list.iter().map(|c| self.sample(c).ok()).collect();
        std::thread::sleep(interval);
        let mut out = Vec::new();
        for (c, a) in list.iter().zip(first) {
            // A container that exited meanwhile drops out, as in docker.
            let (Some(a), Ok(b)) = (a, self.sample(c)) else {
                continue;
            };
            out.push(usage(c, &a, &b));
        }
        Ok(out)
    }
}

fn usage(c: &Container, a: &Sample, b: &Sample) -> Usage {
    let wall = b.at.duration_since(a.at).as_nanos().max(1) as f64;
    let cpu = b.cpu_ns.saturating_sub(a.cpu_ns) as f64;
    let mem = &b.raw["data"]["memory"];
    let raw = &mem["raw"];
    let cache = raw["total_inactive_file"]
        .as_u64()
        .or_else(|| raw["inactive_file"].as_u64())
        .unwrap_or(0);
    let mem_usage = mem["usage"]["usage"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(cache);
    let host_mem = host_memory();
    let limit = mem["usage"]["limit"]
        .as_u64()
        .filter(|l| *l > 0 && *l < host_mem)
        .unwrap_or(host_mem);
    let (mut rd, mut wr) = (0, 0);
    for e in b.raw["data"]["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += e["value"].as_u64().unwrap_or(0),
            Some("write") => wr += e["value"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    let (rx, tx) = net_bytes(c.state.pid);
    Usage {
        id: c.id.clone(),
        name: c.name.clone(),
        cpu_percent: cpu / wall * 100.0,
        mem_usage,
        mem_limit: limit,
        mem_percent: if limit > 0 {
            mem_usage as f64 / limit as f64 * 100.0
        } else {
            0.0
        },
        net_rx: rx,
        net_tx: tx,
        block_read: rd,
        block_write: wr,
        pids: b.raw["data"]["pids"]["current"].as_u64().unwrap_or(0),
    }
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX)
}

/// Received and sent bytes of every interface but lo, as the container's
/// init sees them (/proc/PID/net/dev is per network namespace).
fn net_bytes(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for l in text.lines().skip(2) {
        let Some((iface, rest)) = l.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_without_lo() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 2000 5 0 0 0 0 0 0 300 2 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(t), (2000, 300));
    }
}
