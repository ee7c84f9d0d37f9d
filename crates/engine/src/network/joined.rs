//! `--network container:ID`: a container that lives in another container's network
//! namespace (a sidecar, or the containers of a pod around its sandbox), with that
//! container's hostname, /etc/hosts and /etc/resolv.conf, as with docker.

use std::path::PathBuf;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::record::{Container, Status};

impl Engine {
    /// Before `c` starts: point its bundle at the network namespace of the container it
    /// joins, which must be running, and give it that container's /etc files. Nothing
    /// for other network modes.
    pub(crate) fn join_network(&self, c: &Container) -> Result<()> {
        let Some(target) = c.host.network_mode.strip_prefix("container:") else {
            return Ok(());
        };
        let t = match self.get(target) {
            Ok(t) => t,
            Err(Error::NotFound { .. }) => {
                return Err(Error::Conflict(format!(
                    "cannot start container {}: container {target}, whose network it joins, no longer exists",
                    c.name
                )))
            }
            Err(e) => return Err(e),
        };
        if t.state.status != Status::Running || !crate::proc::alive(t.state.pid, t.state.pid_start)
        {
            return Err(Error::Conflict(format!(
                "cannot join network of a non running container: {}",
                t.name
            )));
        }
        // Networks and `none` have a persistent namespace file, which outlives restarts of
        // the other's processes; a container that itself joined a third is joined through
        // its init (docker too loses the network of a joined container that restarts).
        let netns: Option<PathBuf> = match t.host.network_mode.as_str() {
            "host" => None,
            m if m.starts_with("container:") => {
                Some(PathBuf::from(format!("/proc/{}/ns/net", t.state.pid)))
            }
            _ => Some(self.netns_path(&t.id)),
        };
        let dir = self.container_dir(&c.id);
        let config = dir.join("config.json");
        let mut spec = oci_spec::runtime::Spec::load(&config).map_err(|e| {
            Error::Invalid(format!("reading the bundle of container {}: {e}", c.name))
        })?;
        crate::spec::set_network_namespace(&mut spec, netns.as_deref());
        // The other's files themselves, bind-mounted: its /etc/hosts is rewritten in
        // place as containers come and go on its networks.
        let from = self.container_dir(&t.id);
        if let Some(mounts) = spec.mounts_mut() {
            for m in mounts.iter_mut() {
                let file = match m.destination().to_str() {
                    Some("/etc/hostname") => "hostname",
                    Some("/etc/hosts") => "hosts",
                    Some("/etc/resolv.conf") => "resolv.conf",
                    _ => continue,
                };
                if from.join(file).exists() {
                    m.set_source(Some(from.join(file)));
                }
            }
        }
        let json = serde_json::to_vec_pretty(&spec).expect("runtime spec serialises");
        write_atomic(&config, &json)?;
        Ok(())
    }

    /// Before `c` starts: point its bundle at the IPC and PID namespaces of
    /// the containers its `ipc_mode`/`pid_mode` `container:ID` name (the
    /// containers of a CRI pod join their sandbox's), which must be running.
    pub(crate) fn join_namespaces(&self, c: &Container) -> Result<()> {
        use oci_spec::runtime::LinuxNamespaceType;
        let wanted = [
            (&c.host.ipc_mode, LinuxNamespaceType::Ipc, "ipc"),
            (&c.host.pid_mode, LinuxNamespaceType::Pid, "pid"),
        ];
        if !wanted.iter().any(|(m, _, _)| m.starts_with("container:")) {
            return Ok(());
        }
        let config = self.container_dir(&c.id).join("config.json");
        let mut spec = oci_spec::runtime::Spec::load(&config).map_err(|e| {
            Error::Invalid(format!("reading the bundle of container {}: {e}", c.name))
        })?;
        for (mode, typ, file) in wanted {
            let Some(target) = mode.strip_prefix("container:") else {
                continue;
            };
            let t = self.get(target).map_err(|_| {
                Error::Conflict(format!(
                    "cannot start container {}: container {target}, whose {file} namespace it joins, no longer exists",
                    c.name
                ))
            })?;
            if t.state.status != Status::Running
                || !crate::proc::alive(t.state.pid, t.state.pid_start)
            {
                return Err(Error::Conflict(format!(
                    "cannot join the {file} namespace of a non running container: {}",
                    t.name
                )));
            }
            if file == "ipc" {
                // docker: a private (or none) donor's IPC cannot be joined;
                // a shareable one's /dev/shm is shared too (hako's default,
                // unset, is joinable with a /dev/shm of its own).
                if t.host.ipc_mode == "private" || t.host.ipc_mode == "none" {
                    return Err(Error::Conflict(format!(
                        "cannot start container {}: container {} has non-shareable IPC (--ipc {}; use --ipc shareable for it)",
                        c.name, t.name, t.host.ipc_mode
                    )));
                }
                if t.host.ipc_mode == "shareable" {
                    let shm = crate::shm::dir_of(&self.container_dir(&t.id));
                    crate::shm::bind_into(&mut spec, &shm);
                }
            }
            let path = PathBuf::from(format!("/proc/{}/ns/{file}", t.state.pid));
            crate::spec::set_namespace(&mut spec, typ, Some(&path));
        }
        let json = serde_json::to_vec_pretty(&spec).expect("runtime spec serialises");
        write_atomic(&config, &json)?;
        Ok(())
    }
}
