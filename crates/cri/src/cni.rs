//! The pod network's CNI configuration directory, as kubelet and containerd
//! use it: the first `.conflist`/`.conf` file (in name order) is the pod
//! network; when the directory holds none, a default bridge network is
//! written so a single node works out of the box.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file name of the default configuration.
pub const DEFAULT_CONF_NAME: &str = "10-hako-cri.conflist";

/// The bridge of the default pod network (a host object shared by every root).
pub const DEFAULT_BRIDGE: &str = "hako-cri0";

/// Taken shared around each CNI ADD and exclusively by [`remove_idle_bridge`],
/// so a bridge a CNI ADD just created is never deleted before its veth joins it.
const BRIDGE_LOCK: &str = "/run/hako-cri0.lock";

fn lock_bridge(arg: nix::fcntl::FlockArg) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(BRIDGE_LOCK)
        .map_err(|e| Error::io(format!("opening {BRIDGE_LOCK}"), e))?;
    nix::fcntl::Flock::lock(f, arg)
        .map_err(|(_, e)| Error::io(format!("locking {BRIDGE_LOCK}"), e.into()))
}

/// Held while a pod joins the pod network.
pub fn bridge_in_use() -> Result<nix::fcntl::Flock<std::fs::File>> {
    lock_bridge(nix::fcntl::FlockArg::LockShared)
}

/// Delete the default pod bridge when no interface is attached to it (no pod of
/// any root uses it); what `system reset` does so a temporary root leaves no
/// host link behind. True when it was deleted.
pub fn remove_idle_bridge() -> Result<bool> {
    let dev = Path::new("/sys/class/net").join(DEFAULT_BRIDGE);
    if !dev.exists() {
        return Ok(false);
    }
    let _lock = lock_bridge(nix::fcntl::FlockArg::LockExclusive)?;
    let ports = match std::fs::read_dir(dev.join("brif")) {
        Ok(d) => d.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(Error::io(
                format!("reading the ports of {DEFAULT_BRIDGE}"),
                e,
            ))
        }
    };
    if ports > 0 {
        return Ok(false);
    }
    let out = std::process::Command::new("ip")
        .args(["link", "delete", "dev", DEFAULT_BRIDGE])
        .output()
        .map_err(|e| Error::io(format!("deleting bridge {DEFAULT_BRIDGE}: running ip"), e))?;
    if !out.status.success() && dev.exists() {
        return Err(Error::io(
            format!("deleting bridge {DEFAULT_BRIDGE}"),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(true)
}

/// The default pod network: a bridge with host-local addresses, the
/// loopback, and portmap for hostPort.
fn default_conf() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "hako-cri",
        "plugins": [
            {
                "type": "bridge",
                "bridge": DEFAULT_BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.85.0.0/16"}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

/// The configuration files of `dir`, in the order CNI users pick them.
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(
                format!("reading CNI directory {}", dir.display()),
                e,
            ))
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Write the default configuration into `dir` when it holds none (to a
/// temporary name, then renamed: a reader never sees half a file).
pub fn ensure_conf(dir: &Path) -> Result<()> {
    if !conf_files(dir)?.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating CNI directory {}", dir.display()), e))?;
    let path = dir.join(DEFAULT_CONF_NAME);
    let tmp = dir.join(format!(".{DEFAULT_CONF_NAME}.tmp"));
    let text = serde_json::to_vec_pretty(&default_conf()).expect("a JSON value serialises");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_is_written_only_into_an_empty_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net.d");
        ensure_conf(&dir).unwrap();
        assert_eq!(conf_files(&dir).unwrap(), vec![dir.join(DEFAULT_CONF_NAME)]);
        let mine = tmp.path().join("other");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("05-mine.conflist"), "{}").unwrap();
        ensure_conf(&mine).unwrap();
        assert_eq!(
            conf_files(&mine).unwrap(),
            vec![mine.join("05-mine.conflist")]
        );
    }
}
