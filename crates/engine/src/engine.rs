//! The engine of one hako root: the container database, the container
//! directories and where runtimes keep their state.
//!
//! Layout:
//! - `<root>/containers.db` — the records ([`crate::db`]);
//! - `<root>/containers/<id>/` — one directory per container: the OCI bundle
//!   (`config.json`, `rootfs/` as an overlay over the image's snapshots with
//!   `upper/` and `work/` beside it), `container.log` (json-file), `exit.json`
//!   (written by the monitor), `pid`, `hostname`, `hosts`, `resolv.conf`;
//! - `<run root>/runtime/<runtime name>/` — the OCI runtime's `--root`. The
//!   run root is `/run/hako` for the default root and `<root>/run` for any
//!   other, so separate roots (tests) never share runtime state.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::db::Db;
use crate::error::{Context, Result};
use crate::record::Container;
use crate::runtime::Runtime;

/// The default persistent root and its run root.
pub const DEFAULT_ROOT: &str = "/var/lib/hako";
pub const DEFAULT_RUN_ROOT: &str = "/run/hako";

/// Programs the engine starts.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The `hako-monitor` binary.
    pub monitor: PathBuf,
    /// The command the monitor runs after the container exits, before the
    /// container id: e.g. `[hako, --root, R, container-cleanup]`.
    pub exit_command: Vec<String>,
    /// The command that serves a user network's names, before the network's
    /// name: e.g. `[hako, --root, R, network, dns-serve]`. Empty: no server
    /// (names come from /etc/hosts only).
    pub dns_server: Vec<String>,
}

/// An open engine.
pub struct Engine {
    pub(crate) root: PathBuf,
    pub(crate) run_root: PathBuf,
    pub(crate) db: Db,
}

/// An event of container `c`: its labels, name and image as attributes (as
/// docker), and `extra`.
pub(crate) fn container_event(
    c: &Container,
    action: &str,
    extra: &[(&str, String)],
) -> crate::events::Event {
    let mut e = crate::events::Event::new("container", action, &c.id);
    for (k, v) in &c.config.labels {
        e = e.attr(k, v.clone());
    }
    e = e
        .attr("name", c.name.clone())
        .attr("image", c.image.clone());
    for (k, v) in extra {
        e = e.attr(k, v.clone());
    }
    e
}

/// The run state directory (tmpfs for the default root) of an engine root.
pub fn run_root_for(root: &Path) -> PathBuf {
    if root == Path::new(DEFAULT_ROOT) {
        PathBuf::from(DEFAULT_RUN_ROOT)
    } else {
        root.join("run")
    }
}

impl Engine {
    /// Open (creating if needed) the engine state under `root`.
    pub fn open(root: &Path) -> Result<Engine> {
        // Paths under the root go to other processes (the monitor, the
        // runtime, CNI plugins) that may run elsewhere: never relative.
        let root = &std::path::absolute(root)
            .ctx(|| format!("making the root {} absolute", root.display()))?;
        fs::create_dir_all(root.join("containers"))
            .ctx(|| format!("creating the container directory under {}", root.display()))?;
        let run_root = run_root_for(root);
        let db = Db::open(root)?;
        db.init_networks()?;
        Ok(Engine {
            root: root.to_path_buf(),
            run_root,
            db,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The event log of this root (`events`).
    pub fn events(&self) -> crate::events::EventLog {
        crate::events::EventLog::at(&self.run_root)
    }

    /// Record that `action` happened to container `c` (its name, image and
    /// labels as attributes, as docker), with `extra` attributes.
    pub fn container_event(&self, c: &Container, action: &str, extra: &[(&str, String)]) {
        self.events().emit(&container_event(c, action, extra));
    }

    /// The directory (and OCI bundle) of a container.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// The json-file log of a container.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    /// Where the monitor writes a container's output: the json-file log,
    /// or the `path` of the `cri` log driver (kubelet's log file).
    pub fn log_file(&self, c: &Container) -> PathBuf {
        match c.host.log_config.config.get("path") {
            Some(p) if c.host.log_config.typ == crate::record::CRI_LOG_DRIVER => PathBuf::from(p),
            _ => self.log_path(&c.id),
        }
    }

    /// The runtime of a container, with its state directory.
    pub fn runtime_of(&self, c: &Container) -> Runtime {
        let name = Path::new(&c.host.runtime_path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into());
        Runtime {
            path: PathBuf::from(&c.host.runtime_path),
            root: self.run_root.join("runtime").join(name),
        }
    }

    /// Find a container by id, name or id prefix (its state as last recorded).
    pub fn find(&self, what: &str) -> Result<Container> {
        self.db.find(what)
    }

    /// Take the per-container lock: lifecycle verbs on one container from
    /// separate processes run one after the other. Released on drop.
    /// The container's lock if no other command holds it (None then).
    pub(crate) fn try_lock(&self, id: &str) -> Result<Option<nix::fcntl::Flock<File>>> {
        let path = self.root.join("containers").join(format!(".{id}.lock"));
        let f = File::create(&path).ctx(|| format!("creating lock {}", path.display()))?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(l)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).ctx(|| format!("locking container {id}")),
        }
    }

    pub(crate) fn lock(&self, id: &str) -> Result<nix::fcntl::Flock<File>> {
        let path = self.root.join("containers").join(format!(".{id}.lock"));
        let f = File::create(&path).ctx(|| format!("creating lock {}", path.display()))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking container {id}"))
    }
}
