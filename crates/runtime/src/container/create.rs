//! `create`: set up a container from a bundle and leave its init waiting for
//! `start`.
//!
//! Process layout (all synchronous, one fork per stage):
//! runtime ──fork──▶ stage one: joins/creates namespaces (the parent writes the
//! user-namespace id maps), then forks ──▶ init: pid 1 of a new pid namespace,
//! which builds the rootfs, reports `Ready`, blocks on exec.fifo until `start`,
//! and execs the container process. Any failure is reported over the sync
//! socket and everything made so far is removed.

use super::init::{self, InitArgs};
use crate::capabilities::CapSets;
use crate::cgroups::Cgroup;
use crate::channel::{self, Msg};
use crate::error::{Context, Error, Result};
use crate::namespaces::Plan;
use crate::state::{self, Container, Status};
use crate::{hooks, spec, util};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
    /// The bundle's config.json when the caller has already read it (else
    /// it is read here): starting up, the runtime reads it once.
    pub spec: Option<oci_spec::runtime::Spec>,
}

/// Removes whatever a failed create made: processes, cgroup, state directory.
struct Undo {
    dir: Option<PathBuf>,
    /// The rootfs of a container sharing the host's mount namespace, whose
    /// mounts the init made on the host.
    shared_rootfs: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    pids: Vec<i32>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        for &p in &self.pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(p), None);
        }
        if let Some(r) = &self.shared_rootfs {
            crate::rootfs::unmount_below(r);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn create(opts: &CreateOptions) -> Result<Container> {
    state::validate_id(&opts.id)?;
    let bundle = opts
        .bundle
        .canonicalize()
        .ctx(|| format!("bundle {}", opts.bundle.display()))?;
    let spec = match &opts.spec {
        Some(s) => s.clone(),
        None => spec::load(&bundle)?,
    };
    spec::validate(&spec)?;
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    // Without a process (allowed at create) the init waits for a `start`
    // that refuses.
    let process = spec.process().clone().unwrap_or_default();
    let linux = spec.linux().clone().unwrap_or_default();

    // Everything that can be checked is checked before anything is made.
    let caps = match process.capabilities() {
        Some(c) => CapSets::from_spec(c)?,
        None => CapSets::default(),
    };
    let seccomp = match linux.seccomp() {
        Some(s) => Some(
            crate::seccomp::compile_cached(s, &opts.root.join(crate::seccomp::CACHE_DIR))
                .map_err(|e| Error::Spec(e.to_string()))?,
        ),
        None => None,
    };
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let plan = Plan::from_spec(&namespaces)?;
    // May re-execute the runtime (before anything exists) when hako-dmz is
    // not enough for this container.
    let guard = crate::selfexe::guard_for(&spec)?;
    let terminal = process.terminal().unwrap_or(false);
    let console = crate::console::connect_for(opts.console_socket.as_deref(), terminal)?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&opts.root)
        .ctx(|| format!("creating runtime root {}", opts.root.display()))?;
    let dir = Container::dir(&opts.root, &opts.id);
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::State(format!(
                "container {:?} already exists",
                opts.id
            )))
        }
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let mut undo = Undo {
        dir: Some(dir.clone()),
        shared_rootfs: (!super::delete::has_mount_ns(&spec)).then(|| rootfs.clone()),
        cgroup: None,
        pids: Vec::new(),
    };

    let cgroup = Cgroup::new(
        linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
        &opts.id,
        opts.systemd_cgroup,
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    cgroup.create().map_err(|e| Error::Other(e.to_string()))?;
    undo.cgroup = Some(cgroup.clone());
    // The device nodes the spec creates are also allowed in the device cgroup,
    // after the spec's own rules (which usually start with "deny all"), unless
    // those decide on the node (their access holds).
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    let allow =
        crate::cgroups::device_allow_rules(linux.devices().as_deref().unwrap_or_default(), &rules);
    if !allow.is_empty() {
        rules.extend(allow);
        res.set_devices(Some(rules));
    }
    if linux.resources().is_some() || res.devices().is_some() {
        cgroup
            .apply(&res)
            .map_err(|e| Error::Other(e.to_string()))?;
    }

    let fifo_path = dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .ctx(|| format!("creating {}", fifo_path.display()))?;
    // mkfifo honours the umask; the init may run as any user (or a mapped root)
    // and must be able to open it for writing.
    std::fs::set_permissions(
        &fifo_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o622),
    )
    .ctx(|| format!("chmod {}", fifo_path.display()))?;
    // An O_PATH handle survives pivot_root; init reopens it for writing.
    let fifo: OwnedFd = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening {}", fifo_path.display()))?;

    let mut container = Container {
        id: opts.id.clone(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        pid: 0,
        pid_start: None,
        created: util::rfc3339(std::time::SystemTime::now()),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup: cgroup.clone(),
        systemd_cgroup: opts.systemd_cgroup,
        spec: spec.clone(),
    };

    let (parent_ch, child_ch) = channel::pair()?;
    let args = InitArgs {
        spec: &spec,
        rootfs: &rootfs,
        plan: &plan,
        caps: &caps,
        seccomp: seccomp.as_ref(),
        cgroup: &cgroup,
        console_fd: console.as_ref().map(|c| c.as_raw_fd()),
        fifo_fd: fifo.as_raw_fd(),
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        preserve_fds: opts.preserve_fds,
        id: &opts.id,
        dmz_fd: guard.dmz_fd(),
    };
    // Stage one joins the container's cgroups without a migration wait; the
    // init it forks inherits them.
    // SAFETY: the runtime is single-threaded, so the child may run arbitrary code;
    // it leaves only through _exit and never returns into the caller.
    let (stage1, in_v2) = match unsafe { super::fork_joined(&cgroup) }? {
        super::Forked::Child(joined) => {
            drop(parent_ch);
            let code = match joined.and_then(|()| init::stage_one(&args, &child_ch)) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_ch.send(&Msg::Error(e.to_string()));
                    1
                }
            };
            // SAFETY: _exit skips the parent's destructors (e.g. `undo`).
            unsafe { libc::_exit(code) }
        }
        super::Forked::Parent { child, placed_v2 } => (child, placed_v2),
    };
    drop(child_ch);
    undo.pids.push(stage1.as_raw());
    // The first move into a v1 cgroup waits out an RCU grace period (~10 ms).
    // The init is moved while it sets up its mounts: it asks (CgroupWait)
    // before it unshares a cgroup namespace, and waits for the hooks answer,
    // which comes after the move, before anything of the container runs.
    parent_ch.send(&Msg::Go)?;
    let mut cgroup_waiting = false;
    let mut hooks_waiting = false;

    let mut init_pid = 0;
    loop {
        match parent_ch.recv()? {
            Some(Msg::MapsRequest) => {
                write_id_maps(stage1.as_raw(), &linux)?;
                parent_ch.send(&Msg::MapsDone)?;
            }
            Some(Msg::Pid(p)) => {
                init_pid = p;
                undo.pids.push(p);
                // Only what stage one could not join itself (the cgroup2 one
                // after a plain fork).
                if !in_v2 {
                    cgroup
                        .add_pid_to(p, false, true)
                        .map_err(|e| Error::Other(e.to_string()))?;
                }
                if cgroup_waiting {
                    parent_ch.send(&Msg::CgroupJoined)?;
                }
                let _ = waitpid(stage1, None);
                undo.pids.retain(|&x| x != stage1.as_raw());
                if hooks_waiting {
                    hooks_waiting = false;
                    answer_hooks(&mut container, init_pid, &spec, &opts.root, &parent_ch)?;
                }
            }
            // The init may ask before stage one's Pid message arrives.
            Some(Msg::CgroupWait) if init_pid == 0 => cgroup_waiting = true,
            Some(Msg::CgroupWait) => parent_ch.send(&Msg::CgroupJoined)?,
            // Stage one's Pid and the init's messages race on the channel: the
            // hooks (and with them the saved state) wait until the pid is known,
            // and the init waits for HooksDone before it can be Ready.
            Some(Msg::HooksRequest) if init_pid == 0 => hooks_waiting = true,
            Some(Msg::HooksRequest) => {
                answer_hooks(&mut container, init_pid, &spec, &opts.root, &parent_ch)?
            }
            Some(Msg::SeccompFd) => {
                let st = state::hook_state(&container, Status::Creating);
                super::pass_seccomp_fd(&spec, parent_ch.take_fd(), &st)?;
                parent_ch.send(&Msg::SeccompDone)?;
            }
            Some(Msg::Ready) => break,
            Some(Msg::Error(e)) => return Err(Error::Container(e)),
            Some(other) => {
                return Err(Error::Other(format!(
                    "unexpected message {other:?} from the container"
                )))
            }
            None => {
                return Err(Error::Container(
                    "container init exited during setup".into(),
                ))
            }
        }
    }
    // The init asks for the hooks before Ready, and the state was saved then with
    // this same pid: rewriting it would only replace a file (on a disk-backed
    // --root, freeing its blocks can wait for a synchronous discard).
    if container.pid != init_pid {
        container.pid = init_pid;
        container.pid_start = util::proc_start_time(init_pid);
        container.save(&opts.root)?;
    }
    if let Some(pf) = &opts.pid_file {
        util::write_atomic(pf, init_pid.to_string().as_bytes(), 0o644)?;
    }
    // Success: keep everything.
    undo.pids.clear();
    undo.shared_rootfs = None;
    undo.cgroup = None;
    undo.dir = None;
    Ok(container)
}

/// The init asked for the hooks: save the state with its pid (so `state` and
/// `start` see it from now on), run prestart and createRuntime, and answer.
fn answer_hooks(
    container: &mut Container,
    init_pid: i32,
    spec: &oci_spec::runtime::Spec,
    root: &std::path::Path,
    ch: &channel::Channel,
) -> Result<()> {
    container.pid = init_pid;
    container.pid_start = util::proc_start_time(init_pid);
    container.save(root)?;
    // The environment exists (lifecycle step 2 is done), so the state the
    // prestart, createRuntime and createContainer hooks get says "created",
    // as `state` does from here on (runtime-spec runtime.md, as crun).
    let st = state::hook_state(container, Status::Created);
    if let Some(h) = spec.hooks() {
        hooks::run("prestart", h.prestart().as_deref().unwrap_or_default(), &st)?;
        hooks::run(
            "createRuntime",
            h.create_runtime().as_deref().unwrap_or_default(),
            &st,
        )?;
    }
    ch.send(&Msg::HooksDone(String::from_utf8_lossy(&st).into_owned()))
}

/// Writes uid_map and gid_map of a process that just created a user namespace.
fn write_id_maps(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let fmt = |m: &[oci_spec::runtime::LinuxIdMapping]| {
        m.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.uid_mappings().as_deref().unwrap_or_default());
    let gid = fmt(linux.gid_mappings().as_deref().unwrap_or_default());
    std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .ctx(|| format!("writing uid_map {:?}", uid.trim()))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .ctx(|| format!("writing gid_map {:?}", gid.trim()))?;
    Ok(())
}
