//! The OCI runtime-spec `config.json` of a container, with docker's defaults:
//! the standard mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys,
//! /sys/fs/cgroup), the default capability set, masked and read-only paths,
//! the device allow-list, resource limits, plus the user's bind and tmpfs
//! mounts and the engine-managed /etc/hostname, /etc/hosts, /etc/resolv.conf.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::error::{Error, Result};
use crate::record::{Config, HostConfig};
use crate::security;
use crate::user;

/// CFS period docker uses with `--cpus`.
const CPU_PERIOD: u64 = 100_000;

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount builds")
}

fn bind(dst: &str, src: &Path, read_only: bool) -> Mount {
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

/// The runtime-spec for container `id` whose bundle is `dir` (with its
/// rootfs mounted at `dir/rootfs` and the /etc files written into `dir`).
/// `netns`: the network namespace to join (set up by CNI); None with
/// network mode "none" makes a new, empty one and with "host" none at all.
/// The container's cgroup in every hierarchy (the monitor reads its OOM
/// kill count there).
pub fn cgroups_path(id: &str) -> String {
    format!("/hako/{id}")
}

pub fn build(
    id: &str,
    dir: &Path,
    c: &Config,
    h: &HostConfig,
    netns: Option<&Path>,
) -> Result<Spec> {
    let rootfs = dir.join("rootfs");
    let u = user::resolve(&rootfs, &c.user)?;
    let caps = security::capabilities(h.privileged, &h.cap_add, &h.cap_drop)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(build_err("capabilities", id))?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(u.uid)
                .gid(u.gid)
                .additional_gids(u.additional_gids)
                .build()
                .map_err(build_err("user", id))?,
        )
        .args(
            c.entrypoint
                .iter()
                .chain(c.cmd.iter())
                .cloned()
                .collect::<Vec<_>>(),
        )
        .env(c.env.clone())
        .cwd(PathBuf::from(&c.working_dir))
        .capabilities(capabilities)
        .no_new_privileges(false)
        .build()
        .map_err(build_err("process", id))?;

    let sys_opts: &[&str] = if h.privileged {
        &["nosuid", "noexec", "nodev", "rw"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let mut mounts = vec![
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
        mount("/sys", "sysfs", "sysfs", sys_opts),
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
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    for (file, dst) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        if dir.join(file).exists() {
            mounts.push(bind(dst, &dir.join(file), false));
        }
    }
    for t in &h.tmpfs {
        let mut opts = vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "noexec".to_string(),
        ];
        opts.extend(t.options.iter().cloned());
        mounts.push(
            MountBuilder::default()
                .destination(&t.destination)
                .typ("tmpfs")
                .source("tmpfs")
                .options(opts)
                .build()
                .map_err(build_err("tmpfs mount", id))?,
        );
    }
    for b in &h.binds {
        mounts.push(bind(&b.destination, Path::new(&b.source), b.read_only));
    }

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
    ];
    if h.network_mode != "host" {
        namespaces.push(LinuxNamespaceType::Network);
        namespaces.push(LinuxNamespaceType::Uts);
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

    let mut resources =
        LinuxResourcesBuilder::default().devices(security::device_rules(h.privileged));
    if h.memory > 0 {
        // Docker: swap defaults to as much again as the memory limit.
        let swap = match h.memory_swap {
            0 => h.memory * 2,
            s => s,
        };
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(h.memory)
                .swap(swap)
                .build()
                .map_err(build_err("memory limit", id))?,
        );
    }
    if h.nano_cpus > 0 {
        let quota = (h.nano_cpus as i128 * CPU_PERIOD as i128 / 1_000_000_000) as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD)
                .build()
                .map_err(build_err("cpu limit", id))?,
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
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build().map_err(build_err("resources", id))?)
        .cgroups_path(PathBuf::from(cgroups_path(id)));
    if !h.privileged {
        linux = linux
            .masked_paths(
                security::MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                security::READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
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
