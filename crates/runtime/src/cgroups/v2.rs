//! cgroup v2: one hierarchy, controllers enabled per subtree, and its own file
//! names and units, translated from the v1-shaped OCI resources the way runc
//! and crun translate them (runc's docs/cgroup-v2.md lists the conversions).

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};

use super::{fsio, v1::mkdir_all, CgroupError, FsKind, Hierarchy, Result, RETRIES, RETRY_STEP};

/// mkdir -p, then enable every controller the hierarchy offers on the way down
/// so the new cgroup has them. Enabling can fail (EBUSY when a parent holds
/// processes itself: the "no internal processes" rule); such controllers are
/// left off, and apply() reports them by name if a resource needs them.
pub fn create(h: &Hierarchy) -> Result<()> {
    mkdir_all(&h.path)?;
    let rel = h.path.strip_prefix(&h.mount_point).unwrap_or(&h.path);
    let mut dir = h.mount_point.clone();
    for c in rel.components() {
        let available = fsio::read_opt(&dir, "cgroup.controllers")?.unwrap_or_default();
        let enabled = fsio::read_opt(&dir, "cgroup.subtree_control")?.unwrap_or_default();
        for ctrl in available.split_whitespace() {
            if !enabled.split_whitespace().any(|e| e == ctrl) {
                let _ = fsio::write(&dir, "cgroup.subtree_control", &format!("+{ctrl}"));
            }
        }
        dir.push(c);
    }
    Ok(())
}

fn unsupported(field: &str, reason: &str) -> CgroupError {
    CgroupError::Unsupported {
        field: field.into(),
        fs: FsKind::V2,
        reason: reason.into(),
    }
}

/// A v2 byte limit: any negative value is unlimited, spelled "max".
pub fn limit_value(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// memory.swap.max from the OCI values. OCI's `swap` is memory+swap (the v1
/// memsw meaning); v2 limits swap alone, so the value is swap - limit.
/// `limit` is the effective memory limit (from this update or the cgroup).
/// Returns None when nothing is to be written.
pub fn swap_max(
    limit: Option<i64>,
    swap: Option<i64>,
) -> std::result::Result<Option<String>, String> {
    match (limit, swap) {
        // Memory unlimited and swap unspecified: both unlimited, as on v1.
        (Some(l), None) if l < 0 => Ok(Some("max".into())),
        (_, None) | (_, Some(0)) => Ok(None),
        (_, Some(s)) if s < 0 => Ok(Some("max".into())),
        (None, Some(_)) => Err("memory.swap needs a memory.limit to subtract".into()),
        (Some(l), Some(_)) if l <= 0 => Err("memory.swap needs a memory.limit to subtract".into()),
        (Some(l), Some(s)) if s < l => Err(format!(
            "memory.swap ({s}, memory+swap) is below memory.limit ({l})"
        )),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    if let Some(limit) = m.limit().filter(|l| *l >= 0) {
        if m.check_before_update() == Some(true) {
            let usage = fsio::read_u64(dir, "memory.current")?;
            if (limit as u64) < usage {
                return Err(CgroupError::InvalidValue {
                    field: "memory.limit".into(),
                    reason: format!(
                        "{limit} is below the current usage {usage} and checkBeforeUpdate is set"
                    ),
                });
            }
        }
    }
    if m.kernel_tcp().is_some() {
        return Err(unsupported(
            "memory.kernelTCP",
            "cgroup v2 has no TCP buffer limit",
        ));
    }
    if m.swappiness().is_some() {
        return Err(unsupported(
            "memory.swappiness",
            "cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(unsupported(
            "memory.disableOOMKiller",
            "cgroup v2 cannot disable the OOM killer",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(unsupported(
            "memory.useHierarchy",
            "cgroup v2 is always hierarchical",
        ));
    }
    // memory.kernel is deprecated by the spec and has no v2 equivalent; like runc,
    // it is ignored.
    let effective_limit = match m.limit() {
        Some(l) => Some(l),
        None if m.swap().is_some_and(|s| s > 0) => {
            let cur = fsio::read(dir, "memory.max")?;
            cur.trim().parse::<i64>().ok()
        }
        None => None,
    };
    let swap = swap_max(effective_limit, m.swap()).map_err(|reason| CgroupError::InvalidValue {
        field: "memory.swap".into(),
        reason,
    })?;
    if let Some(l) = m.limit() {
        fsio::write(dir, "memory.max", &limit_value(l))?;
    }
    if let Some(s) = swap {
        if !fsio::exists(dir, "memory.swap.max") {
            if s != "max" {
                return Err(unsupported(
                    "memory.swap",
                    "swap accounting is disabled (no memory.swap.max)",
                ));
            }
        } else {
            fsio::write(dir, "memory.swap.max", &s)?;
        }
    }
    if let Some(r) = m.reservation() {
        fsio::write(dir, "memory.low", &limit_value(r))?;
    }
    Ok(())
}

/// cpu.weight from cpu.shares: the linear map of v1's [2, 262144] onto v2's
/// [1, 10000] that runc, crun and the kubelet use (1024 shares → weight 39).
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// cpu.max ("QUOTA PERIOD") from the spec's quota and period, keeping the
/// current value's other half when only one is given.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>, current: &str) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let mut cur = current.split_whitespace();
    let cur_quota = cur.next().unwrap_or("max").to_string();
    let cur_period = cur.next().unwrap_or("100000").to_string();
    let q = match quota {
        Some(q) if q < 0 => "max".to_string(),
        Some(0) | None => cur_quota,
        Some(q) => q.to_string(),
    };
    let p = match period {
        Some(0) | None => cur_period,
        Some(p) => p.to_string(),
    };
    Some(format!("{q} {p}"))
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
        return Err(unsupported(
            "cpu.realtimeRuntime",
            "cgroup v2 has no realtime CPU bandwidth",
        ));
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        fsio::write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if c.quota().is_some() || c.period().is_some() {
        let current = fsio::read_opt(dir, "cpu.max")?.unwrap_or_default();
        if let Some(v) = cpu_max(c.quota(), c.period(), &current) {
            fsio::write(dir, "cpu.max", &v)?;
        }
    }
    if let Some(b) = c.burst() {
        fsio::write(dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        fsio::write(dir, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

/// io.weight from blkio.weight: v1's [10, 1000] onto v2's [1, 10000]
/// (the default 500 maps to 5000, not to v2's default 100, as in runc/crun).
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// The writes for blockIO on v2: (file, value) pairs in order. BFQ's
/// io.bfq.weight takes v1-range weights as they are; io.weight needs converting.
pub fn io_writes(b: &LinuxBlockIo, bfq: bool) -> Result<Vec<(&'static str, String)>> {
    if b.leaf_weight().is_some()
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        return Err(unsupported(
            "blockIO.leafWeight",
            "cgroup v2 has no leaf weights",
        ));
    }
    let (file, conv): (&'static str, fn(u16) -> u64) = if bfq {
        ("io.bfq.weight", u64::from)
    } else {
        ("io.weight", blkio_weight_to_io_weight)
    };
    let mut out = Vec::new();
    if let Some(w) = b.weight() {
        out.push((file, format!("default {}", conv(w))));
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            out.push((file, format!("{}:{} {}", d.major(), d.minor(), conv(w))));
        }
    }
    let throttles = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in throttles {
        for d in list.iter().flatten() {
            // 0 means "no limit" in the spec's v1 heritage; v2 spells it max.
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            out.push((
                "io.max",
                format!("{}:{} {key}={rate}", d.major(), d.minor()),
            ));
        }
    }
    Ok(out)
}

pub fn io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let bfq = fsio::exists(dir, "io.bfq.weight");
    for (file, value) in io_writes(b, bfq)? {
        fsio::write(dir, file, &value)?;
    }
    Ok(())
}

/// hugetlb.<size>.max, and the reservation limit (.rsvd.max) alongside where the
/// kernel has it, so reserved-but-unfaulted pages count too.
pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let file = format!("hugetlb.{}.max", l.page_size());
        if !fsio::exists(dir, &file) {
            return Err(CgroupError::InvalidValue {
                field: "hugepageLimits".into(),
                reason: format!(
                    "page size {:?} is not supported by this host",
                    l.page_size()
                ),
            });
        }
        fsio::write(dir, &file, &limit_value(l.limit()))?;
        let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
        if fsio::exists(dir, &rsvd) {
            fsio::write(dir, &rsvd, &limit_value(l.limit()))?;
        }
    }
    Ok(())
}

/// `linux.resources.unified`: v2 file names and values written as given. Keys
/// are checked so they can only name a control file of this cgroup.
pub fn unified(dir: &Path, map: &HashMap<String, String>) -> Result<()> {
    let enabled = fsio::read_opt(dir, "cgroup.controllers")?.unwrap_or_default();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let bad = |reason: String| CgroupError::InvalidValue {
            field: format!("unified[{key:?}]"),
            reason,
        };
        let Some((ctrl, _)) = key.split_once('.') else {
            return Err(bad("not a cgroup control file name".into()));
        };
        if key.contains('/') || ctrl.is_empty() {
            return Err(bad("not a cgroup control file name".into()));
        }
        if ctrl != "cgroup" && !enabled.split_whitespace().any(|c| c == ctrl) {
            return Err(CgroupError::NotEnabled {
                field: format!("unified[{key:?}]"),
                controller: ctrl.into(),
                dir: dir.to_path_buf(),
            });
        }
        if !fsio::exists(dir, key) {
            return Err(bad(format!("no such control file in {}", dir.display())));
        }
        fsio::write(dir, key, &map[key])?;
    }
    Ok(())
}

/// Writes cgroup.freeze=1 and waits until cgroup.events reports "frozen 1"
/// (the kernel freezes tasks asynchronously).
pub fn freeze(dir: &Path) -> Result<()> {
    fsio::write(dir, "cgroup.freeze", "1")?;
    for _ in 0..RETRIES {
        if is_frozen(dir)? {
            return Ok(());
        }
        std::thread::sleep(RETRY_STEP);
    }
    fsio::write(dir, "cgroup.freeze", "0")?;
    Err(CgroupError::Other {
        dir: dir.to_path_buf(),
        what: "freezing: cgroup.events never reported frozen; thawed again".into(),
    })
}

pub fn is_frozen(dir: &Path) -> Result<bool> {
    let events = fsio::read(dir, "cgroup.events")?;
    Ok(fsio::parse_flat_keyed(&events)
        .iter()
        .any(|(k, v)| *k == "frozen" && *v == 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    #[test]
    fn shares_convert_to_weight() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out of range values clamp rather than overflow.
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
    }

    #[test]
    fn blkio_weight_converts_to_io_weight() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_is_memory_plus_swap_minus_memory() {
        assert_eq!(swap_max(Some(100), Some(300)), Ok(Some("200".into())));
        assert_eq!(swap_max(Some(100), Some(100)), Ok(Some("0".into())));
        assert_eq!(swap_max(Some(100), Some(-1)), Ok(Some("max".into())));
        assert_eq!(swap_max(Some(-1), None), Ok(Some("max".into())));
        assert_eq!(swap_max(Some(100), None), Ok(None));
        assert_eq!(swap_max(Some(100), Some(0)), Ok(None));
        assert!(swap_max(Some(300), Some(100))
            .unwrap_err()
            .contains("below"));
        assert!(swap_max(None, Some(100)).is_err());
        assert!(swap_max(Some(-1), Some(100)).is_err());
    }

    #[test]
    fn cpu_max_merges_with_current() {
        assert_eq!(cpu_max(None, None, "max 100000"), None);
        assert_eq!(
            cpu_max(Some(50_000), None, "max 100000").as_deref(),
            Some("50000 100000")
        );
        assert_eq!(
            cpu_max(None, Some(20_000), "30000 100000").as_deref(),
            Some("30000 20000")
        );
        assert_eq!(
            cpu_max(Some(-1), Some(10_000), "").as_deref(),
            Some("max 10000")
        );
    }

    #[test]
    fn io_writes_translate_weights_and_throttles() {
        let b = LinuxBlockIoBuilder::default()
            .weight(500u16)
            .weight_device(vec![LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(0)
                .weight(1000u16)
                .build()
                .unwrap()])
            .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(1_048_576u64)
                .build()
                .unwrap()])
            .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(16)
                .rate(0u64)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let w = io_writes(&b, false).unwrap();
        assert_eq!(
            w,
            vec![
                ("io.weight", "default 4950".to_string()),
                ("io.weight", "8:0 10000".to_string()),
                ("io.max", "8:0 rbps=1048576".to_string()),
                ("io.max", "8:16 wiops=max".to_string()),
            ]
        );
        let w = io_writes(&b, true).unwrap();
        assert_eq!(w[0], ("io.bfq.weight", "default 500".to_string()));
        let leaf = LinuxBlockIoBuilder::default()
            .leaf_weight(10u16)
            .build()
            .unwrap();
        assert!(io_writes(&leaf, false)
            .unwrap_err()
            .to_string()
            .contains("leafWeight"));
    }

    #[test]
    fn limit_values() {
        assert_eq!(limit_value(-1), "max");
        assert_eq!(limit_value(4096), "4096");
    }
}
