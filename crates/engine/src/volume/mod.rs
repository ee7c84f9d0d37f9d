//! Volumes: directories the engine owns, `<root>/volumes/<name>/_data` as
//! docker lays them out, recorded in the `volumes` table of the engine's
//! database ([`db`]). A volume outlives the containers that mount it; an
//! anonymous one (random 64-hex name, docker's `com.docker.volume.anonymous`
//! label) goes with its container on `rm -v` and `--rm`.
//!
//! Only docker's `local` driver exists. Its `type`/`device`/`o` options
//! mount a filesystem on `_data` ([`local`]) when a container first uses
//! the volume; it stays mounted until the volume is removed.
//!
//! Volume records change under one flock (`<root>/volumes/.lock`), also
//! held by container `create` while it names and records the volumes it
//! uses, so `volume rm` and `prune` never remove a volume a container is
//! about to mount.

mod copy;
pub(crate) mod db;
mod local;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::record::{Container, MountType};

pub(crate) use copy::prefill;
pub(crate) use local::ensure_mounted;

/// The label docker (23+) puts on anonymous volumes; `prune` without
/// `--all` removes only volumes that carry it.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The only volume driver.
pub const DRIVER: &str = "local";

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    /// RFC 3339, seconds, UTC (as docker shows it).
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`--opt`): for `local`, `type`, `device` and `o`.
    pub options: BTreeMap<String, String>,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// What `volume create` asks for.
#[derive(Debug, Clone, Default)]
pub struct VolumeCreate {
    /// None: a random 64-hex name.
    pub name: Option<String>,
    /// None: `local`.
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters; to mount a host directory give an absolute path"
        )))
    }
}

/// A `volume ls --filter` term. Terms with the same key match if any does;
/// terms with different keys must all match (docker's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The name contains this text.
    Name(String),
    /// The label is set (to this value, if given).
    Label(String, Option<String>),
    /// Whether no container uses the volume.
    Dangling(bool),
    Driver(String),
}

impl Filter {
    /// `name=x`, `label=k`, `label=k=v`, `dangling=true|false`, `driver=local`.
    pub fn parse(s: &str) -> Result<Filter> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| Error::Invalid(format!("invalid filter {s:?}: expected KEY=VALUE")))?;
        Ok(match key {
            "name" => Filter::Name(value.to_string()),
            "label" => match value.split_once('=') {
                Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
                None => Filter::Label(value.to_string(), None),
            },
            "dangling" => Filter::Dangling(match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(Error::Invalid(format!(
                        "invalid filter {s:?}: dangling is true or false"
                    )))
                }
            }),
            "driver" => Filter::Driver(value.to_string()),
            _ => {
                return Err(Error::Invalid(format!(
                    "invalid filter {key:?}: volume filters are name, label, dangling and driver"
                )))
            }
        })
    }

    fn key(&self) -> &'static str {
        match self {
            Filter::Name(_) => "name",
            Filter::Label(..) => "label",
            Filter::Dangling(_) => "dangling",
            Filter::Driver(_) => "driver",
        }
    }

    fn matches(&self, v: &Volume, in_use: bool) -> bool {
        match self {
            Filter::Name(n) => v.name.contains(n.as_str()),
            Filter::Label(k, None) => v.labels.contains_key(k),
            Filter::Label(k, Some(val)) => v.labels.get(k) == Some(val),
            Filter::Dangling(d) => *d != in_use,
            Filter::Driver(d) => &v.driver == d,
        }
    }
}

/// Whether `v` passes every filter (see [`Filter`] for how terms combine).
pub fn matches(filters: &[Filter], v: &Volume, in_use: bool) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(Filter::key).collect();
    keys.dedup();
    keys.iter().all(|k| {
        filters
            .iter()
            .filter(|f| f.key() == *k)
            .any(|f| f.matches(v, in_use))
    })
}

impl Engine {
    /// `<root>/volumes`, absolute: runtimes and users get it as mount sources.
    pub fn volumes_dir(&self) -> PathBuf {
        let dir = self.root.join("volumes");
        std::path::absolute(&dir).unwrap_or(dir)
    }

    /// Where a volume's content lives: `<root>/volumes/<name>/_data`.
    pub fn volume_path(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// The lock under which volume records change.
    pub(crate) fn volume_lock(&self) -> Result<nix::fcntl::Flock<File>> {
        let dir = self.volumes_dir();
        fs::create_dir_all(&dir)
            .ctx(|| format!("creating the volume directory {}", dir.display()))?;
        let path = dir.join(".lock");
        let f = File::create(&path).ctx(|| format!("creating lock {}", path.display()))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| "locking the volumes".to_string())
    }

    /// Held while a volume is mounted and pre-filled for a new container:
    /// two containers created at once must not both copy into it.
    pub(crate) fn volume_use_lock(&self, name: &str) -> Result<nix::fcntl::Flock<File>> {
        let path = self.volumes_dir().join(name).join(".use.lock");
        let f = File::create(&path).ctx(|| format!("creating lock {}", path.display()))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking volume {name}"))
    }

    /// Create a volume; one that exists already is returned as it is (as
    /// docker does), unless it has another driver.
    pub fn create_volume(&self, o: &VolumeCreate) -> Result<Volume> {
        let _lock = self.volume_lock()?;
        Ok(self.create_volume_locked(o)?.0)
    }

    /// [`Engine::create_volume`] under the volume lock; true if it was made now.
    pub(crate) fn create_volume_locked(&self, o: &VolumeCreate) -> Result<(Volume, bool)> {
        let driver = o.driver.clone().unwrap_or_else(|| DRIVER.to_string());
        let name = o.name.clone().unwrap_or_else(crate::names::new_id);
        validate_name(&name)?;
        if driver != DRIVER {
            return Err(Error::Invalid(format!(
                "creating volume {name}: volume driver {driver:?} is not available: only \"local\" exists"
            )));
        }
        local::validate(&name, &o.options)?;
        if let Some(v) = self.db.get_volume(&name)? {
            return Ok((v, false));
        }
        let dir = self.volumes_dir().join(&name);
        // A directory without a record was left by an interrupted create or rm.
        if dir.exists() {
            local::unmount(&name, &dir.join("_data"))?;
            fs::remove_dir_all(&dir).ctx(|| {
                format!(
                    "creating volume {name}: removing the leftover {}",
                    dir.display()
                )
            })?;
        }
        // Made under a temp name and renamed: the volume directory is whole or absent.
        let tmp = self.volumes_dir().join(format!(".new-{name}"));
        let _ = fs::remove_dir_all(&tmp);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(tmp.join("_data"))
            .ctx(|| format!("creating volume {name}: making {}", tmp.display()))?;
        fs::rename(&tmp, &dir)
            .ctx(|| format!("creating volume {name}: renaming into {}", dir.display()))?;
        let v = Volume {
            name: name.clone(),
            driver,
            created_at: hako_image::images::format_rfc3339(crate::clock::unix_now()),
            labels: o.labels.clone(),
            options: o.options.clone(),
        };
        if let Err(e) = self.db.insert_volume(&v) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.events().emit(
            &crate::events::Event::new("volume", "create", &v.name)
                .attr("driver", v.driver.clone()),
        );
        Ok((v, true))
    }

    /// A volume by name.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        self.db
            .get_volume(name)?
            .ok_or_else(|| Error::not_found(format!("volume: {name}")))
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        self.db.list_volumes()
    }

    /// The containers (any state) whose mounts use volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<Container>> {
        Ok(self
            .db
            .list()?
            .into_iter()
            .filter(|c| uses(c, name))
            .collect())
    }

    /// Remove a volume no container uses; with `force` a missing one is no error.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let _lock = self.volume_lock()?;
        let Some(v) = self.db.get_volume(name)? else {
            if force {
                return Ok(());
            }
            return Err(Error::not_found(format!("volume: {name}")));
        };
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            let list: Vec<String> = users
                .iter()
                .map(|c| format!("{} ({})", c.name, c.short_id()))
                .collect();
            return Err(Error::Conflict(format!(
                "removing volume {name}: volume is in use by container {}",
                list.join(", ")
            )));
        }
        self.remove_volume_locked(&v)
    }

    /// Remove the volume's mount, directory and record; the caller holds the
    /// volume lock and has checked that no container uses it.
    pub(crate) fn remove_volume_locked(&self, v: &Volume) -> Result<()> {
        let dir = self.volumes_dir().join(&v.name);
        local::unmount(&v.name, &dir.join("_data"))?;
        // Renamed away first so the name is free at once and a crash midway
        // leaves only a trash directory, never a half-emptied volume.
        let trash = self.volumes_dir().join(format!(
            ".trash-{}-{}",
            v.name,
            &crate::names::new_id()[..12]
        ));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing volume {}", v.name), e)),
        }
        self.db.delete_volume(&v.name)?;
        self.events().emit(
            &crate::events::Event::new("volume", "destroy", &v.name)
                .attr("driver", v.driver.clone()),
        );
        if trash.exists() {
            fs::remove_dir_all(&trash)
                .ctx(|| format!("removing volume {}: deleting {}", v.name, trash.display()))?;
        }
        Ok(())
    }

    /// Remove volumes no container uses: only anonymous ones unless `all`
    /// (docker 23+), and only those passing `filters`. Returns each removed
    /// volume's name and the bytes it held.
    pub fn prune_volumes(&self, all: bool, filters: &[Filter]) -> Result<Vec<(String, u64)>> {
        let _lock = self.volume_lock()?;
        self.sweep_leftovers();
        let containers = self.db.list()?;
        let mut removed = Vec::new();
        for v in self.db.list_volumes()? {
            let in_use = containers.iter().any(|c| uses(c, &v.name));
            if in_use || !(all || v.is_anonymous()) || !matches(filters, &v, in_use) {
                continue;
            }
            let size = disk_usage(&self.volume_path(&v.name));
            self.remove_volume_locked(&v)?;
            removed.push((v.name, size));
        }
        Ok(removed)
    }

    /// Delete what interrupted creates and removals left (`.new-*`,
    /// `.trash-*`): both exist only while the volume lock is held, which
    /// the caller holds now.
    fn sweep_leftovers(&self) {
        let Ok(entries) = fs::read_dir(self.volumes_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".new-") || name.starts_with(".trash-") {
                let data = e.path().join("_data");
                // Never delete through a mount left on it.
                if local::unmount(&name, &data).is_ok() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Whether any container uses volume `name`.
    pub fn volume_in_use(&self, name: &str) -> Result<bool> {
        Ok(!self.volume_users(name)?.is_empty())
    }

    /// The docker-shaped inspect object of a volume (GET /volumes/{name}).
    pub fn inspect_volume(&self, v: &Volume) -> Value {
        let map_or_null = |m: &BTreeMap<String, String>| {
            if m.is_empty() {
                Value::Null
            } else {
                json!(m)
            }
        };
        json!({
            "CreatedAt": v.created_at,
            "Driver": v.driver,
            "Labels": map_or_null(&v.labels),
            "Mountpoint": self.volume_path(&v.name),
            "Name": v.name,
            "Options": map_or_null(&v.options),
            "Scope": "local",
        })
    }
}

/// Whether container `c` mounts volume `name`.
fn uses(c: &Container, name: &str) -> bool {
    c.host
        .mounts
        .iter()
        .any(|m| m.typ == MountType::Volume && m.source == name)
}

/// Bytes of the regular files under `dir`, each hard-linked inode once
/// (what docker's `system df` and `prune` report).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
                total += md.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, labels: &[(&str, &str)]) -> Volume {
        Volume {
            name: name.into(),
            driver: DRIVER.into(),
            created_at: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn names_as_docker() {
        for ok in ["db", "my-vol_1.x", "0abc"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "a", "-x", ".x", "a/b", "a b", "/abs", "ü1"] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(
                e.contains("invalid volume name") && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn filters_combine_like_docker() {
        let v = vol("data-1", &[("team", "infra"), ("tier", "")]);
        let f =
            |s: &[&str]| -> Vec<Filter> { s.iter().map(|t| Filter::parse(t).unwrap()).collect() };
        assert!(matches(&f(&["name=ta-"]), &v, false));
        assert!(!matches(&f(&["name=other"]), &v, false));
        assert!(matches(&f(&["label=team=infra", "label=tier"]), &v, false));
        // Same key: any; different keys: all.
        assert!(matches(&f(&["name=zzz", "name=data"]), &v, false));
        assert!(!matches(&f(&["name=data", "dangling=false"]), &v, false));
        assert!(matches(&f(&["name=data", "dangling=true"]), &v, false));
        assert!(!matches(&f(&["label=team=other"]), &v, false));
        assert!(matches(&f(&["driver=local"]), &v, true));
        assert!(Filter::parse("dangling=maybe").is_err());
        assert!(Filter::parse("colour=red").is_err());
        assert!(Filter::parse("name").is_err());
    }
}
