//! Control groups: placing a container in its cgroups, applying
//! `linux.resources`, freezing, signalling, statistics and removal.
//!
//! Works on the three layouts a Linux host may have, read from the mount table
//! rather than assumed:
//! - v1: one cgroupfs mount per hierarchy (controllers possibly co-mounted),
//! - v2: one cgroup2 mount holding every controller,
//! - hybrid: v1 hierarchies plus a cgroup2 mount (often `/sys/fs/cgroup/unified`)
//!   that may hold controllers not bound to v1 (on these machines, hugetlb).
//!
//! Each controller is used where it actually lives: on a hybrid host a resource
//! goes to the v1 hierarchy that has its controller, else to the v2 one.
//!
//! With `--systemd-cgroup`, "slice:prefix:name" paths are expanded to the path
//! systemd would use, but the directories are managed through cgroupfs: no
//! systemd runs on these machines, so no transient unit is created over D-Bus.
//!
//! Device rules use the v1 devices controller, or on a host without one an
//! eBPF device program attached to the cgroup2 directory (`bpf.rs`).
//!
//! A [`Cgroup`] is resolved once, at `create` time, into concrete directories and
//! serialised into the container's state so later runtime invocations (kill,
//! pause, delete, events, update) act on exactly the same directories.

mod bpf;
mod devices;
mod fsio;
pub mod mountinfo;
mod stats;
mod systemd;
mod v1;
mod v2;

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use devices::{default_device_rules, device_allow_rules};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
pub use systemd::expand as expand_systemd_path;

use mountinfo::{CgroupMount, ProcCgroup};

/// Which cgroup filesystem a hierarchy is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    V1,
    V2,
}

/// The host's cgroup layout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    V1,
    V2,
    Hybrid,
    /// No cgroup filesystem is mounted.
    None,
}

/// One hierarchy the container has a directory in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub fs: FsKind,
    /// v1: the hierarchy's controllers, exactly as mount options take them
    /// (`["cpu", "cpuacct"]`, `["name=systemd"]`). v2: the controllers available
    /// at the hierarchy's root (informational; cgroup2 mounts take no controller
    /// options).
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted on the host.
    pub mount_point: PathBuf,
    /// The basename under /sys/fs/cgroup (`cpu`, `cpu,cpuacct`, `systemd`,
    /// `unified`), or empty for a v2 hierarchy mounted at /sys/fs/cgroup itself.
    pub mount_point_name: String,
    /// The container's cgroup as a path inside the hierarchy ("/hako/abc"): what
    /// the container sees as its root under a cgroup namespace.
    pub cgroup_path: PathBuf,
    /// The container's directory on the host.
    pub path: PathBuf,
}

impl Hierarchy {
    /// The `-o` options to mount this hierarchy (e.g. "cpu,cpuacct",
    /// "name=systemd"); empty for v2.
    pub fn mount_options(&self) -> String {
        match self.fs {
            FsKind::V1 => self.controllers.join(","),
            FsKind::V2 => String::new(),
        }
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {}: writing {file}={value}: {}", dir.display(), os_error(source))]
    Write {
        dir: PathBuf,
        file: String,
        value: String,
        source: std::io::Error,
    },
    #[error("reading {}: {}", path.display(), os_error(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {}: creating directory: {}", dir.display(), os_error(source))]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {}: removing directory: {}", dir.display(), os_error(source))]
    Remove {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {what}: {detail}")]
    Parse { what: String, detail: String },
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("linux.resources.{field}: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error("linux.resources.{field}: needs the {controller} cgroup controller, which this host does not have")]
    MissingController { field: String, controller: String },
    #[error("linux.resources.{field}: the {controller} controller is not enabled for cgroup {} (the parent's cgroup.subtree_control lacks it)", dir.display())]
    NotEnabled {
        field: String,
        controller: String,
        dir: PathBuf,
    },
    #[error("linux.resources.{field}: not supported on cgroup {}: {reason}", match fs { FsKind::V1 => "v1", FsKind::V2 => "v2" })]
    Unsupported {
        field: String,
        fs: FsKind,
        reason: String,
    },
    #[error("cgroup {}: {what}", dir.display())]
    Other { dir: PathBuf, what: String },
    #[error("sending signal {sig} to pid {pid} of cgroup {}: {source}", dir.display())]
    Kill {
        dir: PathBuf,
        pid: i32,
        sig: i32,
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// An OS error as the kernel's message alone ("Invalid argument"), without
/// std's " (os error 22)" suffix.
fn os_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// The host's layout, read from /proc/self/mountinfo once per process.
pub fn layout() -> Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    *LAYOUT.get_or_init(|| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|t| mountinfo::parse_mountinfo(&t).ok())
            .map(|m| mountinfo::detect_layout(&m))
            .unwrap_or(Layout::None)
    })
}

/// A container's cgroup: its directory in every hierarchy of the host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    layout: Layout,
    hierarchies: Vec<Hierarchy>,
}

/// How long destroy() retries rmdir while exiting processes still pin the
/// cgroup, and freeze() waits for tasks to reach the frozen state. These bound
/// the runtime's own waiting; they are not correctness thresholds.
const RETRY_STEP: Duration = Duration::from_millis(10);
const RETRIES: u32 = 500;

impl Cgroup {
    /// Resolves the container's cgroup from the running host's mount table.
    ///
    /// `cgroups_path` is the spec's `linux.cgroupsPath`: absolute ("/a/b", inside
    /// each hierarchy's root), relative ("a/b", under the runtime's own cgroup in
    /// each hierarchy) or `None` ("/hako/<id>"). With `systemd` the path is
    /// "slice:prefix:name" (see [`expand_systemd_path`]); `None` then means
    /// "system.slice:hako:<id>".
    pub fn new(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Self> {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
            CgroupError::Read {
                path: "/proc/self/mountinfo".into(),
                source,
            }
        })?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").map_err(|source| CgroupError::Read {
                path: "/proc/self/cgroup".into(),
                source,
            })?;
        Self::from_tables(&mi, &own, cgroups_path, id, systemd)
    }

    /// A cgroup on a pure cgroup v2 hierarchy mounted at `root` (any directory):
    /// for exercising the v2 code paths against a fake tree in tests, since a
    /// host whose controllers are bound to v1 cannot mount a second cgroup2 with
    /// them.
    pub fn with_root(root: &Path, cgroups_path: Option<&str>, id: &str) -> Result<Self> {
        let mi = format!(
            "1 0 0:0 / {} rw - cgroup2 cgroup2 rw\n",
            root.display().to_string().replace(' ', "\\040")
        );
        Self::from_tables(&mi, "0::/\n", cgroups_path, id, false)
    }

    /// Resolves against given mountinfo and /proc/self/cgroup texts.
    pub fn from_tables(
        mountinfo_text: &str,
        self_cgroup_text: &str,
        cgroups_path: Option<&str>,
        id: &str,
        systemd: bool,
    ) -> Result<Self> {
        let mounts = mountinfo::parse_mountinfo(mountinfo_text)?;
        let own = mountinfo::parse_proc_cgroup(self_cgroup_text)?;
        let layout = mountinfo::detect_layout(&mounts);
        if layout == Layout::None {
            return Err(CgroupError::Parse {
                what: "/proc/self/mountinfo".into(),
                detail: "no cgroup filesystem is mounted".into(),
            });
        }
        let requested = match (cgroups_path, systemd) {
            (Some(p), true) => systemd::expand(p)?,
            (None, true) => systemd::expand(&format!("system.slice:hako:{id}"))?,
            (Some(p), false) => PathBuf::from(p),
            (None, false) => PathBuf::from("/hako").join(id),
        };
        let shown = requested.display().to_string();
        let clean = normalize(&requested).map_err(|reason| CgroupError::InvalidPath {
            path: cgroups_path.unwrap_or(&shown).to_string(),
            reason,
        })?;
        let hierarchies = mounts
            .iter()
            .filter(|m| m.fs == FsKind::V2 || !m.controllers.is_empty())
            .map(|m| resolve(m, &own, &requested, &clean))
            .collect();
        Ok(Cgroup {
            layout,
            hierarchies,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Every hierarchy the container has a directory in (for mounting cgroupfs
    /// inside the container and for joining them).
    pub fn hierarchies(&self) -> Vec<Hierarchy> {
        self.hierarchies.clone()
    }

    /// The hierarchy holding `controller`: its v1 hierarchy if bound there, else
    /// the v2 hierarchy if that offers it.
    fn find(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.fs == FsKind::V1 && h.has(controller))
            .or_else(|| {
                self.hierarchies
                    .iter()
                    .find(|h| h.fs == FsKind::V2 && h.has(controller))
            })
    }

    fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.fs == FsKind::V2)
    }

    /// The hierarchy for `controller`, or an error naming the resource field that
    /// needed it. On v2 the controller must also be enabled for this cgroup.
    fn need(&self, controller: &str, field: &str) -> Result<&Hierarchy> {
        let h = self
            .find(controller)
            .ok_or_else(|| CgroupError::MissingController {
                field: field.into(),
                controller: controller.into(),
            })?;
        if h.fs == FsKind::V2 {
            let enabled = fsio::read_opt(&h.path, "cgroup.controllers")?.unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == controller) {
                return Err(CgroupError::NotEnabled {
                    field: field.into(),
                    controller: controller.into(),
                    dir: h.path.clone(),
                });
            }
        }
        Ok(h)
    }

    /// Creates the directories in every hierarchy. v1 cpuset directories get
    /// their parent's cpus/mems (a new cpuset is empty and would refuse tasks);
    /// on v2 every available controller is enabled down the path to this cgroup.
    ///
    /// On failure the directories already made are removed again, so a failed
    /// create leaves no half-made cgroup behind.
    pub fn create(&self) -> Result<()> {
        for (i, h) in self.hierarchies.iter().enumerate() {
            let made = match h.fs {
                FsKind::V1 => v1::create(h),
                FsKind::V2 => v2::create(h),
            };
            if let Err(e) = made {
                for done in &self.hierarchies[..=i] {
                    let _ = remove_tree(&done.path);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Applies `linux.resources`. Every resource set must be honoured: a missing
    /// controller or an unsupported field is an error, never silently skipped.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        if let Some(mem) = res.memory() {
            if v1::memory_is_set(mem) {
                let h = self.need("memory", "memory")?;
                match h.fs {
                    FsKind::V1 => v1::memory(&h.path, mem)?,
                    FsKind::V2 => v2::memory(&h.path, mem)?,
                }
            }
        }
        if let Some(cpu) = res.cpu() {
            if v1::cpu_is_set(cpu) {
                let h = self.need("cpu", "cpu")?;
                match h.fs {
                    FsKind::V1 => v1::cpu(&h.path, cpu)?,
                    FsKind::V2 => v2::cpu(&h.path, cpu)?,
                }
            }
            if cpu.cpus().is_some() || cpu.mems().is_some() {
                let h = self.need("cpuset", "cpu.cpus")?;
                // The file names are the same on v1 and v2.
                if let Some(cpus) = cpu.cpus() {
                    fsio::write(&h.path, "cpuset.cpus", cpus)?;
                }
                if let Some(mems) = cpu.mems() {
                    fsio::write(&h.path, "cpuset.mems", mems)?;
                }
            }
        }
        if let Some(pids) = res.pids() {
            if let Some(value) = pids_value(pids.limit()) {
                let h = self.need("pids", "pids.limit")?;
                fsio::write(&h.path, "pids.max", &value)?;
            }
        }
        if let Some(bio) = res.block_io() {
            if v1::blkio_is_set(bio) {
                match self.find("blkio") {
                    Some(h) => v1::blkio(&h.path, bio)?,
                    None => v2::io(&self.need("io", "blockIO")?.path, bio)?,
                }
            }
        }
        if let Some(limits) = res.hugepage_limits() {
            if !limits.is_empty() {
                let h = self.need("hugetlb", "hugepageLimits")?;
                match h.fs {
                    FsKind::V1 => v1::hugetlb(&h.path, limits)?,
                    FsKind::V2 => v2::hugetlb(&h.path, limits)?,
                }
            }
        }
        if let Some(net) = res.network() {
            v1::network(self, net)?;
        }
        if let Some(rdma) = res.rdma() {
            if !rdma.is_empty() {
                let h = self.need("rdma", "rdma")?;
                for (dev, limit) in rdma {
                    let mut value = dev.clone();
                    if let Some(n) = limit.hca_handles() {
                        value.push_str(&format!(" hca_handle={n}"));
                    }
                    if let Some(n) = limit.hca_objects() {
                        value.push_str(&format!(" hca_object={n}"));
                    }
                    fsio::write(&h.path, "rdma.max", &value)?;
                }
            }
        }
        if let Some(rules) = res.devices() {
            self.apply_devices(rules)?;
        }
        if let Some(unified) = res.unified() {
            if !unified.is_empty() {
                let h = self.v2().ok_or_else(|| CgroupError::Unsupported {
                    field: "unified".into(),
                    fs: FsKind::V1,
                    reason: "this host has no cgroup2 hierarchy".into(),
                })?;
                v2::unified(&h.path, unified)?;
            }
        }
        Ok(())
    }

    /// Device rules, followed by the devices every container gets (see
    /// [`default_device_rules`]). v1 uses the devices controller; a host without
    /// one (pure v2) gets an eBPF device program on the v2 cgroup.
    fn apply_devices(&self, rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<()> {
        let mut all = rules.to_vec();
        all.extend(default_device_rules());
        if let Some(h) = self.find("devices").filter(|h| h.fs == FsKind::V1) {
            return devices::apply_v1(&h.path, &all);
        }
        match self.v2() {
            Some(h) => devices::apply_v2(&h.path, &all),
            None => Err(CgroupError::MissingController {
                field: "devices".into(),
                controller: "devices".into(),
            }),
        }
    }

    /// Moves `pid` into the cgroup in every hierarchy, including named ones
    /// (name=systemd) and the cgroup2 one of a hybrid host.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        self.add_pid_to(pid, true, true)
    }

    /// Like [`Cgroup::add_pid`], in the v1 and/or the v2 hierarchies only.
    pub fn add_pid_to(&self, pid: i32, v1: bool, v2: bool) -> Result<()> {
        for h in &self.hierarchies {
            if (h.fs == FsKind::V1 && v1) || (h.fs == FsKind::V2 && v2) {
                fsio::write(&h.path, "cgroup.procs", &pid.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves the calling thread into the cgroup of every v1 hierarchy by
    /// writing 0 to `tasks`. A thread moving itself is the one migration for
    /// which the kernel skips the global threadgroup lock, whose first taker
    /// otherwise waits out an RCU grace period (10-15 ms here, the largest
    /// single cost of a container start). Call from a single-threaded process,
    /// so that the thread is the whole process.
    pub fn join_self_v1(&self) -> Result<()> {
        for h in self.hierarchies.iter().filter(|h| h.fs == FsKind::V1) {
            fsio::write(&h.path, "tasks", "0")?;
        }
        Ok(())
    }

    /// The cgroup2 directory opened for clone3(CLONE_INTO_CGROUP), which starts
    /// a child in it without any migration; None without a v2 hierarchy.
    pub fn open_v2_dir(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        use std::os::unix::fs::OpenOptionsExt;
        let h = self.v2()?;
        Some(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&h.path)
                .map(std::os::fd::OwnedFd::from),
        )
    }

    /// Where freezing happens: the v1 freezer, else cgroup.freeze on v2.
    fn freezer(&self) -> Result<&Hierarchy> {
        self.find("freezer")
            .or_else(|| self.v2())
            .ok_or_else(|| CgroupError::MissingController {
                field: "(pause)".into(),
                controller: "freezer".into(),
            })
    }

    /// Freezes every process and returns once the kernel reports the cgroup
    /// frozen (v1 passes through FREEZING; v2 reports in cgroup.events).
    pub fn freeze(&self) -> Result<()> {
        let h = self.freezer()?;
        match h.fs {
            FsKind::V1 => v1::freeze(&h.path),
            FsKind::V2 => v2::freeze(&h.path),
        }
    }

    pub fn thaw(&self) -> Result<()> {
        let h = self.freezer()?;
        match h.fs {
            FsKind::V1 => fsio::write(&h.path, "freezer.state", "THAWED"),
            FsKind::V2 => fsio::write(&h.path, "cgroup.freeze", "0"),
        }
    }

    pub fn is_frozen(&self) -> Result<bool> {
        let h = self.freezer()?;
        match h.fs {
            FsKind::V1 => Ok(fsio::read(&h.path, "freezer.state")?.trim() == "FROZEN"),
            FsKind::V2 => v2::is_frozen(&h.path),
        }
    }

    /// The hierarchy whose membership lists the container's processes: v2 on a
    /// pure v2 host, else the v1 freezer (or any v1 hierarchy, as add_pid
    /// writes to all).
    fn listing(&self) -> Option<&Hierarchy> {
        if self.layout == Layout::V2 {
            return self.v2();
        }
        self.find("freezer")
            .filter(|h| h.fs == FsKind::V1)
            .or_else(|| self.hierarchies.iter().find(|h| h.fs == FsKind::V1))
            .or_else(|| self.v2())
    }

    /// Every pid in the cgroup and its descendants. A cgroup that does not exist
    /// (already destroyed) has none.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        if let Some(h) = self.listing() {
            collect_pids(&h.path, &mut out)?;
        }
        Ok(out)
    }

    /// Sends `sig` to every process, as runc does: freeze first so no process can
    /// fork a new one between listing and signalling, then thaw so the signals
    /// are delivered. Hosts without a freezer signal without freezing. SIGKILL
    /// on v2 goes through cgroup.kill where the kernel has it.
    pub fn kill_all(&self, sig: i32) -> Result<()> {
        if !(1..=libc::SIGRTMAX()).contains(&sig) {
            return Err(CgroupError::Sys {
                what: format!("signal number {sig}"),
                source: nix::errno::Errno::EINVAL,
            });
        }
        // cgroup.kill (Linux 5.14+) kills the whole v2 subtree atomically, forks
        // included, so SIGKILL needs no freeze there.
        if sig == libc::SIGKILL && self.layout == Layout::V2 {
            if let Some(h) = self.v2().filter(|h| fsio::exists(&h.path, "cgroup.kill")) {
                return fsio::write(&h.path, "cgroup.kill", "1");
            }
        }
        let frozen = self.freezer().is_ok() && self.freeze().is_ok();
        let mut result = Ok(());
        let dir = self.listing().map(|h| h.path.clone()).unwrap_or_default();
        match self.pids() {
            Ok(pids) => {
                for pid in pids {
                    // libc::kill rather than nix's: nix's Signal cannot carry
                    // realtime signals, which `kill --all` may be given.
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    let ret = unsafe { libc::kill(pid, sig) };
                    match nix::errno::Errno::result(ret) {
                        Ok(_) | Err(nix::errno::Errno::ESRCH) => {}
                        Err(source) => {
                            result = Err(CgroupError::Kill {
                                dir: dir.clone(),
                                pid,
                                sig,
                                source,
                            });
                        }
                    }
                }
            }
            Err(e) => result = Err(e),
        }
        if frozen {
            self.thaw()?;
        }
        result
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup, for
    /// `events` to report "oom" when it grows. 0 without a memory controller.
    pub fn oom_kill_count(&self) -> Result<u64> {
        let Some(h) = self.find("memory") else {
            return Ok(0);
        };
        let file = match h.fs {
            FsKind::V1 => "memory.oom_control",
            FsKind::V2 => "memory.events",
        };
        let text = fsio::read(&h.path, file)?;
        Ok(fsio::parse_flat_keyed(&text)
            .into_iter()
            .find(|(k, _)| *k == "oom_kill")
            .map(|(_, v)| v)
            .unwrap_or(0))
    }

    /// Resource usage in the shape `runc events --stats` prints under "data".
    pub fn stats(&self) -> Result<Stats> {
        // Missing files read as zero below (features the kernel lacks), so a
        // missing cgroup must be caught here rather than reported as idle.
        if let Some(h) = self.listing().filter(|h| !h.path.is_dir()) {
            return Err(CgroupError::Other {
                dir: h.path.clone(),
                what: "reading statistics: the cgroup does not exist".into(),
            });
        }
        let mut s = Stats::default();
        if let Some(h) = self.find("cpu") {
            match h.fs {
                FsKind::V1 => stats::v1_cpu_throttling(&h.path, &mut s.cpu)?,
                FsKind::V2 => stats::v2_cpu(&h.path, &mut s.cpu)?,
            }
        }
        if let Some(h) = self.find("cpuacct") {
            stats::v1_cpuacct(&h.path, &mut s.cpu)?;
        } else if let Some(h) = self.v2().filter(|_| self.layout == Layout::V2) {
            // cpu.stat usage is always present on v2, even without the cpu
            // controller enabled.
            stats::v2_cpu(&h.path, &mut s.cpu)?;
        }
        if let Some(h) = self.find("memory") {
            s.memory = match h.fs {
                FsKind::V1 => stats::v1_memory(&h.path)?,
                FsKind::V2 => stats::v2_memory(&h.path)?,
            };
        }
        if let Some(h) = self.find("pids") {
            s.pids = stats::pids(&h.path)?;
        }
        if let Some(h) = self.find("blkio") {
            s.blkio = stats::v1_blkio(&h.path)?;
        } else if let Some(h) = self.find("io") {
            s.blkio = stats::v2_io(&h.path)?;
        }
        if let Some(h) = self.find("hugetlb") {
            s.hugetlb = stats::hugetlb(&h.path, h.fs)?;
        }
        Ok(s)
    }

    /// Removes the cgroup (and any sub-cgroups the container made) everywhere.
    /// rmdir is retried briefly while exiting processes still pin a directory;
    /// directories already gone are fine.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for h in &self.hierarchies {
            if let Err(e) = remove_tree(&h.path) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Resolves the requested path in one hierarchy into a [`Hierarchy`].
fn resolve(m: &CgroupMount, own: &[ProcCgroup], requested: &Path, clean: &Path) -> Hierarchy {
    let cgroup_path = if requested.is_absolute() {
        clean.to_path_buf()
    } else {
        mountinfo::own_path(m, own).join(clean)
    };
    let controllers = match m.fs {
        FsKind::V1 => m.controllers.clone(),
        FsKind::V2 => fsio::read_opt(&m.mount_point, "cgroup.controllers")
            .ok()
            .flatten()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    let mount_point_name = if m.mount_point == Path::new("/sys/fs/cgroup") {
        String::new()
    } else {
        m.mount_point
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Hierarchy {
        fs: m.fs,
        controllers,
        path: mountinfo::host_dir(m, &cgroup_path),
        mount_point: m.mount_point.clone(),
        mount_point_name,
        cgroup_path,
    }
}

/// Drops "." components and rejects ".." (which could leave the hierarchy) and
/// the root itself (destroy() would then try to remove the root cgroup).
fn normalize(path: &Path) -> std::result::Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err("\"..\" is not allowed".into()),
            Component::Prefix(_) => return Err("not a Unix path".into()),
        }
    }
    if out.as_os_str().is_empty() || out == Path::new("/") {
        return Err("must name a cgroup below the root".into());
    }
    Ok(out)
}

/// pids.max value: runtime-spec says -1 (any negative) is unlimited; 0 is "not
/// set" as runc treats it.
fn pids_value(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = match fsio::read_opt(dir, "cgroup.procs")? {
        Some(p) => p,
        None => return Ok(()),
    };
    for line in procs.lines() {
        if let Ok(pid) = line.trim().parse() {
            out.push(pid);
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// rmdir children first; cgroupfs directories contain only control files,
/// which rmdir removes together with the directory.
fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Remove {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < RETRIES => {
                tries += 1;
                std::thread::sleep(RETRY_STEP);
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    dir: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN: &str = "4:memory:/process_api/x\n1:cpu:/\n2:cpuacct:/\n9:name=systemd:/\n0::/\n";

    #[test]
    fn default_absolute_relative_and_systemd_paths() {
        let cg = Cgroup::from_tables(HYBRID, OWN, None, "c1", false).unwrap();
        assert_eq!(cg.layout(), Layout::Hybrid);
        let hs = cg.hierarchies();
        assert_eq!(hs.len(), 5);
        assert_eq!(hs[0].path, PathBuf::from("/sys/fs/cgroup/cpu/hako/c1"));
        assert_eq!(hs[3].mount_options(), "name=systemd");
        assert_eq!(hs[3].mount_point_name, "systemd");
        assert_eq!(hs[4].path, PathBuf::from("/sys/fs/cgroup/unified/hako/c1"));
        assert_eq!(hs[4].mount_point_name, "unified");

        let cg = Cgroup::from_tables(HYBRID, OWN, Some("pod/c1"), "c1", false).unwrap();
        let hs = cg.hierarchies();
        assert_eq!(
            hs[2].path,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/x/pod/c1")
        );
        assert_eq!(hs[2].cgroup_path, PathBuf::from("/process_api/x/pod/c1"));
        assert_eq!(hs[0].path, PathBuf::from("/sys/fs/cgroup/cpu/pod/c1"));

        let cg =
            Cgroup::from_tables(HYBRID, OWN, Some("machine.slice:libpod:c1"), "c1", true).unwrap();
        assert_eq!(
            cg.hierarchies()[1].path,
            PathBuf::from("/sys/fs/cgroup/cpuacct/machine.slice/libpod-c1.scope")
        );
    }

    #[test]
    fn rejects_escaping_and_root_paths() {
        for p in ["/a/../../etc", "/", ".", "a/.."] {
            let err = Cgroup::from_tables(HYBRID, OWN, Some(p), "c", false).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidPath { .. }), "{p}: {err}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let cg = Cgroup::from_tables(HYBRID, OWN, Some("/x/y"), "y", false).unwrap();
        let json = serde_json::to_string(&cg).unwrap();
        let back: Cgroup = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cg);
    }

    #[test]
    fn pids_limit_values() {
        assert_eq!(pids_value(0), None);
        assert_eq!(pids_value(-1).as_deref(), Some("max"));
        assert_eq!(pids_value(42).as_deref(), Some("42"));
    }
}
