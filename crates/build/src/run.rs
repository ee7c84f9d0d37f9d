//! RUN: a process in a container over the step's overlay, started with an
//! OCI runtime by its runc command line (`run --bundle`), with a minimal
//! runtime-spec: docker's default capabilities, seccomp profile, masked
//! paths and device rules; no network namespace for `--network=host|default`
//! (like buildkit's host network), an empty one for `none`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    ProcessBuilder, RootBuilder, SpecBuilder, UserBuilder,
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
    /// Bytes of /dev/shm (0: 64 MiB).
    pub shm_size: i64,
    pub ulimits: Vec<hako_engine::record::Ulimit>,
}

pub use hako_engine::spec::{bind, mount};

fn spec_err(e: oci_spec::OciSpecError) -> Error {
    Error::Invalid(format!("building the runtime config of a RUN step: {e}"))
}

/// The mounts every RUN gets, then the process's own.
pub fn all_mounts(p: &Process) -> Vec<Mount> {
    let mut mounts = hako_engine::spec::base_mounts_with_shm(p.insecure, p.shm_size);
    mounts.extend(p.mounts.iter().cloned());
    mounts
}

/// Write the bundle's config.json into `bundle` (whose `rootfs/` is mounted).
fn write_spec(bundle: &Path, id: &str, p: &Process) -> Result<()> {
    let caps = hako_engine::security::capabilities(p.insecure, &[], &[])?;
    let seccomp = hako_engine::seccomp::default_profile(&caps);
    // All five sets as docker sets them (the engine's): a non-root RUN gets
    // the bounding set only, no ambient capabilities.
    let capabilities =
        hako_engine::security::process_capabilities(&caps, p.uid).map_err(spec_err)?;
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
        .rlimits(
            hako_engine::spec::rlimits(&p.ulimits, id)
                .map_err(|e| Error::Invalid(format!("RUN step {id}: {e}")))?,
        )
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

/// The guardian of a RUN step: a shell in its own session that waits on a
/// pipe whose write end only this process holds. When the build ends
/// normally it writes `done`; when the build dies (SIGKILL included) the
/// pipe reaches EOF and the guardian removes the step's container (`delete
/// --force` kills every process in it) and detaches its overlay, so nothing
/// keeps running under an orphaned runtime.
const GUARDIAN: &str = r#"read -r word
[ "$word" = done ] && exit 0
"$1" --root "$2" delete --force "$3" >/dev/null 2>&1
umount -l "$4" >/dev/null 2>&1
exit 0"#;

/// The record in a step directory of the build that owns it (see
/// [`owner_alive`]): `pid start-time`, then the runtime, its state root and
/// the container id, one a line.
pub const OWNER_FILE: &str = "owner";

/// A process's start time (clock ticks since boot), to tell a reused pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn write_owner(bundle: &Path, runtime: &Path, state_root: &Path, id: &str) -> Result<()> {
    let pid = std::process::id();
    let text = format!(
        "{pid} {}\n{}\n{}\n{id}\n",
        start_time(pid).unwrap_or(0),
        runtime.display(),
        state_root.display()
    );
    let path = bundle.join(OWNER_FILE);
    std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))
}

/// Whether the build that owns a step directory still runs (true when the
/// directory has no owner record: an older build's, or one being set up).
pub fn owner_alive(step_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(step_dir.join(OWNER_FILE)) else {
        return true;
    };
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (Some(pid), Some(start)) = (
        first.next().and_then(|p| p.parse::<u32>().ok()),
        first.next().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return false;
    };
    start_time(pid) == Some(start)
}

/// Remove the container a dead build left in `step_dir`; whether no
/// container is left (then the caller may unmount the step's overlay).
/// False while the owner still runs.
pub fn reap(step_dir: &Path) -> bool {
    if owner_alive(step_dir) {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(step_dir.join(OWNER_FILE)) else {
        return true;
    };
    let lines: Vec<&str> = text.lines().collect();
    let [_, runtime, state_root, id, ..] = lines[..] else {
        return true;
    };
    let gone = || !Path::new(state_root).join(id).exists();
    if !gone() {
        let _ = Command::new(runtime)
            .arg("--root")
            .arg(state_root)
            .arg("delete")
            .arg("--force")
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    gone()
}

/// Start the guardian of a step; dropping the returned pipe end without
/// writing `done` (the build died) makes it clean up.
fn guard(runtime: &Path, state_root: &Path, id: &str, rootfs: &Path) -> Result<std::fs::File> {
    use std::os::unix::process::CommandExt;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .ctx(|| "creating the pipe of a RUN step's guardian".to_string())?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(GUARDIAN)
        .arg("hako-build-guardian")
        .arg(runtime)
        .arg(state_root)
        .arg(id)
        .arg(rootfs)
        .stdin(Stdio::from(r))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; in its own session, the guardian
    // does not get the terminal's SIGINT or SIGHUP meant for the build.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .ctx(|| "starting the guardian of a RUN step".to_string())?;
    // Not waited for: it exits on its own ("done" or the cleanup); a reaper
    // thread collects it so it does not linger as a zombie.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(std::fs::File::from(w))
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
    write_owner(bundle, runtime, state_root, id)?;
    let mut guardian = guard(runtime, state_root, id, &bundle.join("rootfs"))?;
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
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe. The runtime
    // dies with the thread that started it (this one waits for it, so only
    // when the build dies); the guardian removes the container itself.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
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
    // The step is over: the guardian leaves.
    let _ = std::io::Write::write_all(&mut guardian, b"done\n");
    drop(guardian);
    Ok(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    }))
}
