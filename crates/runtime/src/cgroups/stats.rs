//! Resource statistics in the JSON shape `runc events --stats` prints under
//! "data", which containerd's and podman's runc shims decode.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{fsio, FsKind, Result};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    /// By page size ("2MB").
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// All in nanoseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct MemoryStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PidsStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BlkioStats {
    #[serde(
        rename = "ioServiceBytesRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServicedRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HugetlbStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// cpuacct.stat counts USER_HZ ticks; runc reports nanoseconds.
fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    ticks.saturating_mul(1_000_000_000 / hz)
}

fn numbers(dir: &Path, file: &str) -> Result<Vec<u64>> {
    let text = fsio::read_opt(dir, file)?.unwrap_or_default();
    text.split_whitespace()
        .map(|n| fsio::parse_u64(dir, file, n))
        .collect()
}

pub fn v1_cpuacct(dir: &Path, cpu: &mut CpuStats) -> Result<()> {
    cpu.usage.total = fsio::read_u64(dir, "cpuacct.usage")?;
    cpu.usage.percpu = numbers(dir, "cpuacct.usage_percpu")?;
    cpu.usage.percpu_kernel = numbers(dir, "cpuacct.usage_percpu_sys")?;
    cpu.usage.percpu_user = numbers(dir, "cpuacct.usage_percpu_user")?;
    let stat = fsio::read_opt(dir, "cpuacct.stat")?.unwrap_or_default();
    for (k, v) in fsio::parse_flat_keyed(&stat) {
        match k {
            "user" => cpu.usage.user = ticks_to_ns(v),
            "system" => cpu.usage.kernel = ticks_to_ns(v),
            _ => {}
        }
    }
    Ok(())
}

pub fn v1_cpu_throttling(dir: &Path, cpu: &mut CpuStats) -> Result<()> {
    let stat = fsio::read_opt(dir, "cpu.stat")?.unwrap_or_default();
    for (k, v) in fsio::parse_flat_keyed(&stat) {
        match k {
            "nr_periods" => cpu.throttling.periods = v,
            "nr_throttled" => cpu.throttling.throttled_periods = v,
            "throttled_time" => cpu.throttling.throttled_time = v,
            _ => {}
        }
    }
    Ok(())
}

/// v2 cpu.stat: usage in microseconds, converted to nanoseconds.
pub fn v2_cpu(dir: &Path, cpu: &mut CpuStats) -> Result<()> {
    let stat = fsio::read_opt(dir, "cpu.stat")?.unwrap_or_default();
    for (k, v) in fsio::parse_flat_keyed(&stat) {
        let ns = v.saturating_mul(1000);
        match k {
            "usage_usec" => cpu.usage.total = ns,
            "user_usec" => cpu.usage.user = ns,
            "system_usec" => cpu.usage.kernel = ns,
            "nr_periods" => cpu.throttling.periods = v,
            "nr_throttled" => cpu.throttling.throttled_periods = v,
            "throttled_usec" => cpu.throttling.throttled_time = ns,
            _ => {}
        }
    }
    Ok(())
}

fn raw_stat(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    let text = fsio::read_opt(dir, file)?.unwrap_or_default();
    Ok(fsio::parse_flat_keyed(&text)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect())
}

fn v1_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        limit: fsio::read_u64(dir, &format!("{prefix}.limit_in_bytes"))?,
        usage: fsio::read_u64(dir, &format!("{prefix}.usage_in_bytes"))?,
        max: fsio::read_u64(dir, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: fsio::read_u64(dir, &format!("{prefix}.failcnt"))?,
    })
}

pub fn v1_memory(dir: &Path) -> Result<MemoryStats> {
    let raw = raw_stat(dir, "memory.stat")?;
    Ok(MemoryStats {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: v1_entry(dir, "memory")?,
        // memsw is memory+swap, reported as such (as runc does).
        swap: v1_entry(dir, "memory.memsw")?,
        kernel: v1_entry(dir, "memory.kmem")?,
        kernel_tcp: v1_entry(dir, "memory.kmem.tcp")?,
        raw,
    })
}

pub fn v2_memory(dir: &Path) -> Result<MemoryStats> {
    let raw = raw_stat(dir, "memory.stat")?;
    let events = raw_stat(dir, "memory.events")?;
    let usage = fsio::read_u64(dir, "memory.current")?;
    let swap_usage = fsio::read_u64(dir, "memory.swap.current")?;
    Ok(MemoryStats {
        cache: raw.get("file").copied().unwrap_or(0),
        usage: MemoryEntry {
            limit: fsio::read_u64(dir, "memory.max")?,
            usage,
            max: fsio::read_u64(dir, "memory.peak")?,
            failcnt: events.get("max").copied().unwrap_or(0),
        },
        // Like runc on v2: swap is reported as memory+swap, to keep v1's meaning.
        swap: MemoryEntry {
            limit: fsio::read_u64(dir, "memory.swap.max")?,
            usage: usage.saturating_add(swap_usage),
            max: 0,
            failcnt: 0,
        },
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    })
}

pub fn pids(dir: &Path) -> Result<PidsStats> {
    let limit = fsio::read_opt(dir, "pids.max")?.unwrap_or_default();
    Ok(PidsStats {
        current: fsio::read_u64(dir, "pids.current")?,
        // Unlimited reads as 0, as runc reports it.
        limit: match limit.trim() {
            "max" | "" => 0,
            n => fsio::parse_u64(dir, "pids.max", n)?,
        },
    })
}

/// v1 blkio "MAJ:MIN Op value" lines (plus a "Total" line, skipped).
fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, value) = (f.next()?, f.next()?, f.next()?);
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

pub fn v1_blkio(dir: &Path) -> Result<BlkioStats> {
    // The throttle files count I/O whatever the scheduler is; the CFQ/BFQ ones
    // exist only with those schedulers.
    let pick = |names: [&str; 2]| -> Result<Vec<BlkioEntry>> {
        for n in names {
            if let Some(t) = fsio::read_opt(dir, n)? {
                let e = blkio_entries(&t);
                if !e.is_empty() {
                    return Ok(e);
                }
            }
        }
        Ok(Vec::new())
    };
    Ok(BlkioStats {
        io_service_bytes_recursive: pick([
            "blkio.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        ])?,
        io_serviced_recursive: pick([
            "blkio.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
        ])?,
    })
}

/// v2 io.stat: "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.." per device, mapped
/// to v1's Read/Write entries.
pub fn v2_io(dir: &Path) -> Result<BlkioStats> {
    let text = fsio::read_opt(dir, "io.stat")?.unwrap_or_default();
    let mut out = BlkioStats::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut out.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut out.io_service_bytes_recursive, "Write"),
                "rios" => (&mut out.io_serviced_recursive, "Read"),
                "wios" => (&mut out.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    Ok(out)
}

/// Page sizes from the hugetlb.<size>.* file names present.
pub fn hugetlb(dir: &Path, fs: FsKind) -> Result<BTreeMap<String, HugetlbStats>> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(out),
    };
    let (usage_suffix, max_suffix) = match fs {
        FsKind::V1 => ("usage_in_bytes", "max_usage_in_bytes"),
        FsKind::V2 => ("current", "max"),
    };
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("hugetlb.")?;
            let (size, file) = rest.split_once('.')?;
            (file == usage_suffix).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    for size in sizes {
        let usage = fsio::read_u64(dir, &format!("hugetlb.{size}.{usage_suffix}"))?;
        let (max, failcnt) = match fs {
            FsKind::V1 => (
                fsio::read_u64(dir, &format!("hugetlb.{size}.{max_suffix}"))?,
                fsio::read_u64(dir, &format!("hugetlb.{size}.failcnt"))?,
            ),
            // v2 has no high-water mark; the limit stands in (runc does the same)
            // and failures are counted as "max" events.
            FsKind::V2 => {
                let events =
                    fsio::read_opt(dir, &format!("hugetlb.{size}.events"))?.unwrap_or_default();
                let failcnt = fsio::parse_flat_keyed(&events)
                    .into_iter()
                    .find(|(k, _)| *k == "max")
                    .map(|(_, v)| v)
                    .unwrap_or(0);
                (
                    fsio::read_u64(dir, &format!("hugetlb.{size}.max"))?,
                    failcnt,
                )
            }
        };
        out.insert(
            size,
            HugetlbStats {
                usage,
                max,
                failcnt,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_runc_events() {
        let mut s = Stats::default();
        s.cpu.usage.total = 5;
        s.cpu.usage.percpu = vec![2, 3];
        s.memory.usage.limit = u64::MAX;
        s.memory.raw.insert("cache".into(), 1);
        s.pids.current = 2;
        s.hugetlb.insert("2MB".into(), HugetlbStats::default());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5);
        assert_eq!(v["cpu"]["usage"]["percpu"][1], 3);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert!(v["cpu"]["throttling"].is_object());
        assert_eq!(v["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(v["memory"]["usage"]["failcnt"], 0);
        assert!(v["memory"]["swap"].is_object());
        assert!(v["memory"]["kernelTCP"].is_object());
        assert_eq!(v["memory"]["raw"]["cache"], 1);
        assert_eq!(v["pids"]["current"], 2);
        assert_eq!(v["hugetlb"]["2MB"]["failcnt"], 0);
        assert!(v["blkio"].is_object());
    }

    #[test]
    fn parses_blkio_and_io_stat() {
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n";
        let e = blkio_entries(v1);
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[1].major, e[1].minor, e[1].op.as_str(), e[1].value),
            (8, 0, "Write", 8192)
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("io.stat"),
            "253:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n",
        )
        .unwrap();
        let s = v2_io(dir.path()).unwrap();
        assert_eq!(s.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.io_serviced_recursive[1].value, 2);
        assert_eq!(s.io_serviced_recursive[1].major, 253);
    }

    #[test]
    fn v2_cpu_stat_in_nanoseconds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n",
        )
        .unwrap();
        let mut c = CpuStats::default();
        v2_cpu(dir.path(), &mut c).unwrap();
        assert_eq!(c.usage.total, 10_000);
        assert_eq!(c.usage.user, 6_000);
        assert_eq!(c.usage.kernel, 4_000);
        assert_eq!(c.throttling.throttled_time, 7_000);
        assert_eq!(c.throttling.throttled_periods, 1);
    }
}
