//! RUN: a process in a container over the step's overlay, started with an
//! OCI runtime by its runc command line (`run --bundle`), with a minimal
//! runtime-spec: docker's default capabilities, seccomp profile, masked
//! paths and device rules; no network namespace for `--network=host|default`
//! (like buildkit's host network), an empty one for `none`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, ProcessBuilder, RootBuilder, SpecBuilder, UserBuilder,
};

use crate::error::{Error, IoContext, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Share the host's network (docker build's default) or none.
    pub host_network: bool,
    /// Extra mounts (RUN --mount, /etc/resolv.conf and /etc/hosts).
    pub mounts: Vec<Mount>,
    /// `--security=insecure`: every capability, no seccomp, no masked paths, all devices.
    pub insecure: bool,
}

pub use hako_engine::spec::{bind, mount};

fn spec_err(e: oci_spec::OciSpecError) -> Error {
    Error::Invalid(format!("building the runtime config of a RUN step: {e}"))
}

/// The mounts every RUN gets, then the process's own.
pub fn all_mounts(p: &Process) -> Vec<Mount> {
    let mut mounts = hako_engine::spec::base_mounts(p.insecure);
    mounts.extend(p.mounts.iter().cloned());
    mounts
}

/// Write the bundle's config.json into `bundle` (whose `rootfs/` is mounted).
fn write_spec(bundle: &Path, id: &str, p: &Process) -> Result<()> {
    let caps = hako_engine::security::capabilities(p.insecure, &[], &[])?;
    let seccomp = hako_engine::seccomp::default_profile(&caps);
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(spec_err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(p.uid)
                .gid(p.gid)
                .additional_gids(p.additional_gids.clone())
                .build()
                .map_err(spec_err)?,
        )
        .args(p.args.clone())
        .env(p.env.clone())
        .cwd(PathBuf::from(&p.cwd))
        .capabilities(capabilities)
        .no_new_privileges(false)
        .build()
        .map_err(spec_err)?;
    let mut ns = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
    ];
    if !p.host_network {
        ns.push(LinuxNamespaceType::Network);
    }
    let namespaces = ns
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(spec_err)?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(
            LinuxResourcesBuilder::default()
                .devices(hako_engine::security::device_rules(p.insecure))
                .build()
                .map_err(spec_err)?,
        )
        .cgroups_path(PathBuf::from(format!("/hako-build/{id}")));
    if !p.insecure {
        linux = linux
            .seccomp(seccomp)
            .masked_paths(
                hako_engine::security::MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                hako_engine::security::READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }
    let linux = linux.build().map_err(spec_err)?;
    let spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()
                .map_err(spec_err)?,
        )
        .hostname("buildkitsandbox")
        .process(process)
        .mounts(all_mounts(p))
        .linux(linux)
        .build()
        .map_err(spec_err)?;
    let path = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&spec)
        .map_err(|e| Error::Invalid(format!("serialising the runtime config of {id}: {e}")))?;
    std::fs::write(&path, json).ctx(|| format!("writing {}", path.display()))
}

/// Run the process in the bundle; every output line (stdout and stderr
/// merged) goes to `line`. Returns the exit code.
pub fn run(
    runtime: &Path,
    state_root: &Path,
    bundle: &Path,
    id: &str,
    p: &Process,
    line: &dyn Fn(&str),
) -> Result<i32> {
    write_spec(bundle, id, p)?;
    std::fs::create_dir_all(state_root).ctx(|| format!("creating {}", state_root.display()))?;
    let (r, w) = nix::unistd::pipe().ctx(|| "creating a pipe for RUN output".to_string())?;
    let w2 = w
        .try_clone()
        .ctx(|| "duplicating the RUN output pipe".to_string())?;
    let mut cmd = Command::new(runtime);
    cmd.arg("--root")
        .arg(state_root)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2));
    let mut child = cmd
        .spawn()
        .ctx(|| format!("starting {} run {id}", runtime.display()))?;
    // The write ends live in the child only now, so EOF comes when it exits.
    drop(cmd);
    let reader = BufReader::new(std::fs::File::from(r));
    for l in reader.split(b'\n') {
        let Ok(l) = l else { break };
        line(String::from_utf8_lossy(&l).trim_end_matches('\r'));
    }
    let status = child
        .wait()
        .ctx(|| format!("waiting for {} run {id}", runtime.display()))?;
    // `run` deletes the container itself; this only clears a leftover after a crash.
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(state_root)
        .arg("delete")
        .arg("--force")
        .arg(id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    }))
}
