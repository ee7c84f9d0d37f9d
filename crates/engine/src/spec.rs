//! The OCI runtime-spec `config.json` of a container, with docker's defaults:
//! the standard mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys,
//! /sys/fs/cgroup), the default capability set, masked and read-only paths,
//! the device allow-list, resource limits, plus the user's bind and tmpfs
//! mounts ([`crate::mounts`]) and the engine-managed /etc/hostname, /etc/hosts, /etc/resolv.conf.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use crate::error::{Error, Result};
use crate::record::{Config, HostConfig};
use crate::security;
use crate::user;

/// CFS period docker uses with `--cpus`.
const CPU_PERIOD: u64 = 100_000;

/// One runtime-spec mount.
pub fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount builds")
}

/// A recursive, private bind mount of `src` at `dst`.
pub fn bind(dst: &str, src: &Path, read_only: bool) -> Mount {
    MountBuilder::default()
        .destination(dst)
        .typ("bind")
        .source(src)
        .options(vec![
            "rbind".to_string(),
            "rprivate".to_string(),
            if read_only { "ro" } else { "rw" }.to_string(),
        ])
        .build()
        .expect("mount builds")
}

fn build_err(what: &str, id: &str) -> impl FnOnce(oci_spec::OciSpecError) -> Error {
    let (what, id) = (what.to_string(), id.to_string());
    move |e| {
        Error::Invalid(format!(
            "building the runtime config of container {id}: {what}: {e}"
        ))
    }
}

/// The mounts every container gets: /proc, /dev (tmpfs), /dev/pts, /sys
/// (read-only unless `writable_sys`), /dev/mqueue and /dev/shm.
pub fn base_mounts(writable_sys: bool) -> Vec<Mount> {
    base_mounts_with_shm(writable_sys, 0)
}

/// [`base_mounts`] with /dev/shm of `shm_size` bytes (0: docker's 64 MiB).
pub fn base_mounts_with_shm(writable_sys: bool, shm_size: i64) -> Vec<Mount> {
    let shm = if shm_size > 0 {
        format!("size={}k", (shm_size + 1023) / 1024)
    } else {
        "size=65536k".to_string()
    };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if writable_sys { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
    ]
}

/// The container's cgroup in every hierarchy (the monitor reads its OOM
/// kill count there).
pub fn cgroups_path(id: &str) -> String {
    format!("/hako/{id}")
}

/// The cgroup of a container: under `--cgroup-parent` when given, else
/// [`cgroups_path`].
pub fn container_cgroup(h: &HostConfig, id: &str) -> String {
    match h.cgroup_parent.trim_matches('/') {
        "" => cgroups_path(id),
        parent => format!("/{parent}/{id}"),
    }
}

/// The runtime-spec for container `id` whose bundle is `dir` (with its
/// rootfs mounted at `dir/rootfs` and the /etc files written into `dir`);
/// volumes live under `volumes_dir`. `netns`: the network namespace to join
/// (a file set up at start, for CNI networks and "none"); None makes a new one
/// (for "container:", pointed at the other's at start) or, with "host", none.
pub fn build(
    id: &str,
    dir: &Path,
    volumes_dir: &Path,
    c: &Config,
    h: &HostConfig,
    netns: Option<&Path>,
) -> Result<Spec> {
    let rootfs = dir.join("rootfs");
    let mut u = user::resolve(&rootfs, &c.user)?;
    for g in user::group_ids(&rootfs, &h.group_add)? {
        if g != u.gid && !u.additional_gids.contains(&g) {
            u.additional_gids.push(g);
        }
    }
    let caps = security::capabilities(h.privileged, &h.cap_add, &h.cap_drop)?;
    let seccomp = seccomp_of(h, &caps)?;
    let capabilities =
        security::process_capabilities(&caps, u.uid).map_err(build_err("capabilities", id))?;
    let mut process = ProcessBuilder::default()
        .terminal(c.tty)
        .user(
            UserBuilder::default()
                .uid(u.uid)
                .gid(u.gid)
                .additional_gids(u.additional_gids)
                .build()
                .map_err(build_err("user", id))?,
        )
        .args(
            if h.init {
                vec![INIT_PATH.to_string(), "--".to_string()]
            } else {
                Vec::new()
            }
            .into_iter()
            .chain(c.entrypoint.iter().cloned())
            .chain(c.cmd.iter().cloned())
            .collect::<Vec<_>>(),
        )
        .env(c.env.clone())
        .cwd(PathBuf::from(&c.working_dir))
        .capabilities(capabilities)
        .no_new_privileges(
            h.security_opt
                .iter()
                .any(|o| o == "no-new-privileges" || o == "no-new-privileges=true"),
        )
        .rlimits(rlimits(&h.ulimits, id)?)
        .build()
        .map_err(build_err("process", id))?;
    process.set_oom_score_adj(h.oom_score_adj);

    let mut mounts = base_mounts_with_shm(h.privileged, h.shm_size);
    if h.ipc_mode == "none" {
        // docker's `--ipc none`: its own IPC namespace and no /dev/shm.
        mounts.retain(|m| m.destination() != Path::new("/dev/shm"));
    }
    if h.ipc_mode == "host" {
        // The host's shared memory, as docker does for --ipc host.
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/dev/shm") {
                *m = bind("/dev/shm", Path::new("/dev/shm"), false);
            }
        }
    }
    // cgroupfs goes right after /sys, which it is mounted into.
    mounts.insert(
        4,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if h.privileged { "rw" } else { "ro" },
            ],
        ),
    );
    for (file, dst) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        if dir.join(file).exists() {
            mounts.push(bind(dst, &dir.join(file), false));
        }
    }
    mounts
        .extend(crate::mounts::spec_mounts(h, volumes_dir).map_err(build_err("user mounts", id))?);
    for (i, m) in h.image_mounts.iter().enumerate() {
        mounts.push(bind(
            &m.destination,
            &crate::image_mounts::source_of(dir, i),
            true,
        ));
    }
    if h.init {
        mounts.push(bind(INIT_PATH, &init_binary()?, true));
    }

    let mut namespaces = vec![LinuxNamespaceType::Mount];
    if h.pid_mode != "host" {
        namespaces.push(LinuxNamespaceType::Pid);
    }
    if h.ipc_mode != "host" {
        namespaces.push(LinuxNamespaceType::Ipc);
    }
    if h.network_mode != "host" {
        namespaces.push(LinuxNamespaceType::Network);
        namespaces.push(LinuxNamespaceType::Uts);
    }
    if h.cgroupns_mode == "private" {
        namespaces.push(LinuxNamespaceType::Cgroup);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| match (t, netns) {
            (LinuxNamespaceType::Network, Some(p)) => {
                LinuxNamespaceBuilder::default().typ(t).path(p).build()
            }
            _ => LinuxNamespaceBuilder::default().typ(t).build(),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(build_err("namespaces", id))?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources(h, id)?)
        .cgroups_path(PathBuf::from(container_cgroup(h, id)));
    if let Some(p) = crate::mounts::rootfs_propagation(&mounts)? {
        linux = linux.rootfs_propagation(p);
    }
    if let Some(profile) = seccomp {
        linux = linux.seccomp(profile);
    }
    if !h.sysctls.is_empty() {
        linux = linux.sysctl(
            h.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let mut devices = if h.privileged {
        security::host_devices()
    } else {
        Vec::new()
    };
    for m in &h.devices {
        let (d, _) = security::mapped_device(m)?;
        devices.retain(|x| x.path() != d.path());
        devices.push(d);
    }
    if !devices.is_empty() {
        linux = linux.devices(devices);
    }
    // Given paths replace the defaults (CRI sends kubelet's list, or its
    // own); the defaults apply to unprivileged containers only.
    let paths = |given: &Option<Vec<String>>, defaults: &[&str]| match given {
        Some(p) => p.clone(),
        None if h.privileged => Vec::new(),
        None => defaults.iter().map(|s| s.to_string()).collect(),
    };
    let masked = paths(&h.masked_paths, security::MASKED_PATHS);
    let readonly = paths(&h.readonly_paths, security::READONLY_PATHS);
    if !masked.is_empty() {
        linux = linux.masked_paths(masked);
    }
    if !readonly.is_empty() {
        linux = linux.readonly_paths(readonly);
    }
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(h.read_only_rootfs)
                .build()
                .map_err(build_err("root", id))?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux.build().map_err(build_err("linux section", id))?);
    if h.network_mode != "host" {
        spec = spec.hostname(c.hostname.clone());
    }
    let mut spec = spec.build().map_err(build_err("spec", id))?;
    if h.network_mode == "host" {
        // oci-spec's defaults carry a hostname, which needs a UTS namespace.
        spec.set_hostname(None);
    }
    Ok(spec)
}

/// Make `spec` join the network namespace at `path`, or stay in the host's (None).
pub fn set_network_namespace(spec: &mut Spec, path: Option<&Path>) {
    set_namespace(spec, LinuxNamespaceType::Network, path)
}

/// Make the container join the namespace at `path` of type `typ` (None:
/// no namespace of that type, i.e. the host's).
pub fn set_namespace(spec: &mut Spec, typ: LinuxNamespaceType, path: Option<&Path>) {
    let Some(linux) = spec.linux_mut() else {
        return;
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != typ);
    if let Some(p) = path {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .path(p)
                .build()
                .expect("a namespace with a type and a path builds"),
        );
    }
    linux.set_namespaces(Some(namespaces));
}

/// Where `--init` puts tini in the container (docker's path).
const INIT_PATH: &str = "/sbin/docker-init";

/// A static tini on the host: `$HAKO_INIT`, else Debian's tini-static.
/// The container's `linux.resources`: device rules and the limits of its
/// HostConfig (also what `update` hands the runtime).
pub fn resources(h: &HostConfig, id: &str) -> Result<oci_spec::runtime::LinuxResources> {
    let mut resources = LinuxResourcesBuilder::default().devices({
        let mut rules = security::device_rules(h.privileged);
        for m in &h.devices {
            rules.push(security::mapped_device(m)?.1);
        }
        rules
    });
    if h.memory > 0 || h.memory_reservation > 0 || h.oom_kill_disable {
        let mut memory = LinuxMemoryBuilder::default();
        if h.oom_kill_disable {
            memory = memory.disable_oom_killer(true);
        }
        if h.memory > 0 {
            // Docker: swap defaults to as much again as the memory limit.
            let swap = match h.memory_swap {
                0 => h.memory * 2,
                s => s,
            };
            memory = memory.limit(h.memory).swap(swap);
        }
        if h.memory_reservation > 0 {
            memory = memory.reservation(h.memory_reservation);
        }
        resources = resources.memory(memory.build().map_err(build_err("memory limit", id))?);
    }
    if h.nano_cpus > 0
        || h.cpu_quota != 0
        || h.cpu_period != 0
        || h.cpu_shares > 0
        || !h.cpuset_cpus.is_empty()
        || !h.cpuset_mems.is_empty()
    {
        let mut cpu = LinuxCpuBuilder::default();
        if h.nano_cpus > 0 {
            let quota = (h.nano_cpus as i128 * CPU_PERIOD as i128 / 1_000_000_000) as i64;
            cpu = cpu.quota(quota).period(CPU_PERIOD);
        }
        if h.cpu_quota != 0 {
            cpu = cpu.quota(h.cpu_quota);
        }
        if h.cpu_period != 0 {
            cpu = cpu.period(h.cpu_period as u64);
        }
        if h.cpu_shares > 0 {
            cpu = cpu.shares(h.cpu_shares);
        }
        if !h.cpuset_cpus.is_empty() {
            cpu = cpu.cpus(h.cpuset_cpus.clone());
        }
        if !h.cpuset_mems.is_empty() {
            cpu = cpu.mems(h.cpuset_mems.clone());
        }
        resources = resources.cpu(cpu.build().map_err(build_err("cpu limit", id))?);
    }
    if h.blkio_weight > 0 {
        // Hosts without a weighted I/O scheduler: the runtime says so in one line.
        resources = resources.block_io(
            oci_spec::runtime::LinuxBlockIoBuilder::default()
                .weight(h.blkio_weight)
                .build()
                .map_err(build_err("blkio weight", id))?,
        );
    }
    if h.pids_limit > 0 {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(h.pids_limit)
                .build()
                .map_err(build_err("pids limit", id))?,
        );
    }
    resources.build().map_err(build_err("resources", id))
}

fn init_binary() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("HAKO_INIT")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            ["/usr/bin/tini-static", "/usr/libexec/docker/docker-init"]
                .iter()
                .map(PathBuf::from),
        )
        .collect();
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::Invalid(
            "--init needs a static tini (install Debian's tini: /usr/bin/tini-static, or set HAKO_INIT)"
                .into(),
        )
    })
}

/// The seccomp filter: none when privileged or `seccomp=unconfined`, a
/// docker-format profile file, else hako's default.
fn seccomp_of(
    h: &HostConfig,
    caps: &std::collections::HashSet<oci_spec::runtime::Capability>,
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>> {
    let chosen = h
        .security_opt
        .iter()
        .rev()
        .find_map(|o| o.strip_prefix("seccomp="));
    match chosen {
        _ if h.privileged => Ok(None),
        Some("unconfined") => Ok(None),
        Some(path) => crate::seccomp::load_profile(Path::new(path), caps).map(Some),
        None => Ok(Some(crate::seccomp::default_profile(caps))),
    }
}

/// `--ulimit` values as runtime-spec rlimits.
pub fn rlimits(
    ulimits: &[crate::record::Ulimit],
    id: &str,
) -> Result<Vec<oci_spec::runtime::PosixRlimit>> {
    use oci_spec::runtime::{PosixRlimitBuilder, PosixRlimitType as T};
    ulimits
        .iter()
        .map(|u| {
            let typ = match u.name.as_str() {
                "as" => T::RlimitAs,
                "core" => T::RlimitCore,
                "cpu" => T::RlimitCpu,
                "data" => T::RlimitData,
                "fsize" => T::RlimitFsize,
                "locks" => T::RlimitLocks,
                "memlock" => T::RlimitMemlock,
                "msgqueue" => T::RlimitMsgqueue,
                "nice" => T::RlimitNice,
                "nofile" => T::RlimitNofile,
                "nproc" => T::RlimitNproc,
                "rss" => T::RlimitRss,
                "rtprio" => T::RlimitRtprio,
                "rttime" => T::RlimitRttime,
                "sigpending" => T::RlimitSigpending,
                "stack" => T::RlimitStack,
                other => {
                    return Err(Error::Invalid(format!("unknown ulimit {other:?}")));
                }
            };
            let v = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(v(u.soft))
                .hard(v(u.hard))
                .build()
                .map_err(build_err("ulimit", id))
        })
        .collect()
}
