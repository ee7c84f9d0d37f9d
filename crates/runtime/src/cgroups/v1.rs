//! cgroup v1: one hierarchy per controller (or co-mounted group), each with its
//! own control-file names.

use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxThrottleDevice,
};

use super::{fsio, Cgroup, CgroupError, FsKind, Hierarchy, Result, RETRIES, RETRY_STEP};

/// mkdir -p the container's directory. In a cpuset hierarchy every newly made
/// directory is empty (no cpus, no mems) and the kernel refuses tasks there, so
/// each level copies its parent's sets.
pub fn create(h: &Hierarchy) -> Result<()> {
    mkdir_all(&h.path)?;
    if h.has("cpuset") {
        let rel = h.path.strip_prefix(&h.mount_point).unwrap_or(&h.path);
        let mut dir = h.mount_point.clone();
        for c in rel.components() {
            let parent = dir.clone();
            dir.push(c);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if fsio::read(&dir, file)?.trim().is_empty() {
                    let value = fsio::read(&parent, file)?;
                    fsio::write(&dir, file, value.trim())?;
                }
            }
        }
    }
    Ok(())
}

pub fn mkdir_all(dir: &Path) -> Result<()> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

pub fn memory_is_set(m: &LinuxMemory) -> bool {
    m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some()
}

/// The value to write for a byte limit: -1 means unlimited, which v1 spells -1.
fn bytes(v: i64) -> String {
    if v < 0 {
        "-1".into()
    } else {
        v.to_string()
    }
}

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    if m.check_before_update() == Some(true) {
        if let Some(limit) = m.limit().filter(|l| *l >= 0) {
            let usage = fsio::read_u64(dir, "memory.usage_in_bytes")?;
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
    // memory.memsw.limit_in_bytes (memory+swap) may never be below
    // memory.limit_in_bytes, so the order of the two writes depends on whether
    // the limits grow or shrink.
    // Lifting the memory limit without a swap value lifts memory+swap too, or
    // the old memsw limit would keep capping memory.
    let swap = match (m.limit(), m.swap()) {
        (Some(l), None) if l < 0 && fsio::exists(dir, "memory.memsw.limit_in_bytes") => Some(-1),
        (_, s) => s,
    };
    match (m.limit(), swap) {
        (limit, Some(swap)) => {
            if !fsio::exists(dir, "memory.memsw.limit_in_bytes") {
                if swap != 0 && Some(swap) != limit && swap != -1 {
                    return Err(CgroupError::Unsupported {
                        field: "memory.swap".into(),
                        fs: FsKind::V1,
                        reason: "swap accounting is disabled in this kernel (no memory.memsw.limit_in_bytes)".into(),
                    });
                }
                if let Some(l) = limit {
                    fsio::write(dir, "memory.limit_in_bytes", &bytes(l))?;
                }
            } else {
                let current = fsio::read_u64(dir, "memory.memsw.limit_in_bytes")?;
                let grows = swap < 0 || swap as u64 > current;
                if grows {
                    fsio::write(dir, "memory.memsw.limit_in_bytes", &bytes(swap))?;
                }
                if let Some(l) = limit {
                    fsio::write(dir, "memory.limit_in_bytes", &bytes(l))?;
                }
                if !grows {
                    fsio::write(dir, "memory.memsw.limit_in_bytes", &bytes(swap))?;
                }
            }
        }
        (Some(limit), None) => fsio::write(dir, "memory.limit_in_bytes", &bytes(limit))?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        fsio::write(dir, "memory.soft_limit_in_bytes", &bytes(r))?;
    }
    // Kernel memory limits are deprecated in the spec and gone from recent
    // kernels (runc ignores them); write them only where the kernel has them.
    if let Some(k) = m.kernel() {
        if fsio::exists(dir, "memory.kmem.limit_in_bytes") {
            fsio::write(dir, "memory.kmem.limit_in_bytes", &bytes(k))?;
        }
    }
    if let Some(k) = m.kernel_tcp() {
        fsio::write(dir, "memory.kmem.tcp.limit_in_bytes", &bytes(k))?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::InvalidValue {
                field: "memory.swappiness".into(),
                reason: format!("{s} is not within 0..=100"),
            });
        }
        fsio::write(dir, "memory.swappiness", &s.to_string())?;
    }
    if let Some(d) = m.disable_oom_killer() {
        fsio::write(dir, "memory.oom_control", if d { "1" } else { "0" })?;
    }
    if let Some(u) = m.use_hierarchy() {
        fsio::write(dir, "memory.use_hierarchy", if u { "1" } else { "0" })?;
    }
    Ok(())
}

/// Whether the cpu controller (not cpuset) has anything to set.
pub fn cpu_is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some()
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        fsio::write(dir, "cpu.shares", &s.to_string())?;
    }
    // The kernel checks quota against the period, so the period goes first.
    if let Some(p) = c.period().filter(|p| *p != 0) {
        fsio::write(dir, "cpu.cfs_period_us", &p.to_string())?;
    }
    if let Some(q) = c.quota().filter(|q| *q != 0) {
        fsio::write(dir, "cpu.cfs_quota_us", &q.max(-1).to_string())?;
    }
    if let Some(b) = c.burst() {
        fsio::write(dir, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        fsio::write(dir, "cpu.idle", &i.to_string())?;
    }
    // Likewise the realtime period before the runtime.
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        fsio::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        fsio::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    Ok(())
}

pub fn blkio_is_set(b: &LinuxBlockIo) -> bool {
    b.weight().is_some()
        || b.leaf_weight().is_some()
        || nonempty(b.weight_device())
        || nonempty(b.throttle_read_bps_device())
        || nonempty(b.throttle_write_bps_device())
        || nonempty(b.throttle_read_iops_device())
        || nonempty(b.throttle_write_iops_device())
}

fn nonempty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

pub fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ exposes blkio.weight; kernels without CFQ (5.0+) have BFQ's
    // blkio.bfq.weight instead, when BFQ is the device's scheduler.
    let weight_file = if fsio::exists(dir, "blkio.weight") {
        "blkio.weight"
    } else {
        "blkio.bfq.weight"
    };
    let unsupported = |field: &str, file: &str| CgroupError::Unsupported {
        field: format!("blockIO.{field}"),
        fs: FsKind::V1,
        reason: format!("this kernel has no {file} (no CFQ/BFQ I/O scheduler)"),
    };
    if let Some(w) = b.weight() {
        if !fsio::exists(dir, weight_file) {
            return Err(unsupported("weight", "blkio.weight"));
        }
        fsio::write(dir, weight_file, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight() {
        if !fsio::exists(dir, "blkio.leaf_weight") {
            return Err(unsupported("leafWeight", "blkio.leaf_weight"));
        }
        fsio::write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let file = format!("{weight_file}_device");
            if !fsio::exists(dir, &file) {
                return Err(unsupported("weightDevice", "blkio.weight_device"));
            }
            fsio::write(dir, &file, &format!("{}:{} {w}", d.major(), d.minor()))?;
        }
        if let Some(w) = d.leaf_weight() {
            if !fsio::exists(dir, "blkio.leaf_weight_device") {
                return Err(unsupported(
                    "weightDevice.leafWeight",
                    "blkio.leaf_weight_device",
                ));
            }
            let v = format!("{}:{} {w}", d.major(), d.minor());
            fsio::write(dir, "blkio.leaf_weight_device", &v)?;
        }
    }
    let throttles: [(&Option<Vec<LinuxThrottleDevice>>, &str); 4] = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (list, file) in throttles {
        for d in list.iter().flatten() {
            let v = format!("{}:{} {}", d.major(), d.minor(), d.rate());
            fsio::write(dir, file, &v)?;
        }
    }
    Ok(())
}

/// hugetlb.<size>.limit_in_bytes; the page size names ("2MB", "1GB") are the
/// kernel's, so a size the host lacks shows up as a missing file.
pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
        if !fsio::exists(dir, &file) {
            return Err(CgroupError::InvalidValue {
                field: "hugepageLimits".into(),
                reason: format!(
                    "page size {:?} is not supported by this host",
                    l.page_size()
                ),
            });
        }
        fsio::write(dir, &file, &bytes(l.limit()))?;
    }
    Ok(())
}

/// net_cls / net_prio exist only on v1; elsewhere setting them is an error.
pub fn network(cg: &Cgroup, net: &LinuxNetwork) -> Result<()> {
    if let Some(id) = net.class_id() {
        let h = cg.need("net_cls", "network.classID")?;
        fsio::write(&h.path, "net_cls.classid", &id.to_string())?;
    }
    for p in net.priorities().iter().flatten() {
        let h = cg.need("net_prio", "network.priorities")?;
        let v = format!("{} {}", p.name(), p.priority());
        fsio::write(&h.path, "net_prio.ifpriomap", &v)?;
    }
    Ok(())
}

/// Writes FROZEN and waits while the state reads FREEZING. The write is
/// repeated while waiting: a task forking during the freeze can leave the
/// cgroup stuck in FREEZING until it is asked again.
pub fn freeze(dir: &Path) -> Result<()> {
    for i in 0..RETRIES {
        if i % 10 == 0 {
            fsio::write(dir, "freezer.state", "FROZEN")?;
        }
        if fsio::read(dir, "freezer.state")?.trim() == "FROZEN" {
            return Ok(());
        }
        std::thread::sleep(RETRY_STEP);
    }
    // Leave the processes running rather than half-frozen.
    fsio::write(dir, "freezer.state", "THAWED")?;
    Err(CgroupError::Other {
        dir: dir.to_path_buf(),
        what: "freezing: processes did not reach FROZEN; thawed again".into(),
    })
}
