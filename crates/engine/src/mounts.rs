//! A container's own mounts (`-v`, `--tmpfs`, `--mount`, the image's
//! volumes): checked and completed at create, turned into runtime-spec
//! mounts, and shown as docker's `Mounts` in inspect.

use std::fs;
use std::path::Path;

use oci_spec::runtime::MountBuilder;
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::record::{Container, HostConfig, Mount, MountType};
use crate::volume::{self, VolumeCreate};

/// `/a/b/` and `/a//b` are `/a/b`: destinations compare cleaned.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Refuse two mounts on one path (docker's "Duplicate mount point") and add
/// an anonymous volume for each of the image's `Volumes` the user did not
/// mount something else on.
pub(crate) fn plan(host: &mut HostConfig, image_volumes: &[String]) -> Result<()> {
    let mut seen: Vec<String> = Vec::new();
    let dests = host
        .binds
        .iter()
        .map(|b| b.destination.as_str())
        .chain(host.tmpfs.iter().map(|t| t.destination.as_str()))
        .chain(host.mounts.iter().map(|m| m.target.as_str()));
    for d in dests {
        let d = clean(d);
        if seen.contains(&d) {
            return Err(Error::Invalid(format!("duplicate mount point: {d}")));
        }
        seen.push(d);
    }
    for v in image_volumes {
        let d = clean(v);
        if !seen.contains(&d) {
            host.mounts.push(Mount::volume("", &d, false, false));
            seen.push(d);
        }
    }
    Ok(())
}

/// Depth of a destination: parents mount before what lies inside them.
fn depth(p: &str) -> usize {
    clean(p).matches('/').count()
}

/// The runtime-spec mounts of the user's binds, tmpfs and `Mounts`, in
/// mount order (shallow before deep, else as given).
pub(crate) fn spec_mounts(
    h: &HostConfig,
    volumes_dir: &Path,
) -> std::result::Result<Vec<oci_spec::runtime::Mount>, oci_spec::OciSpecError> {
    let mut out: Vec<(String, oci_spec::runtime::Mount)> = Vec::new();
    let build = |dst: &str, typ: &str, src: &Path, opts: Vec<String>| {
        MountBuilder::default()
            .destination(dst)
            .typ(typ)
            .source(src)
            .options(opts)
            .build()
    };
    let rw = |ro: bool| if ro { "ro" } else { "rw" }.to_string();
    for t in &h.tmpfs {
        let mut opts = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
        opts.extend(t.options.iter().cloned());
        out.push((
            t.destination.clone(),
            build(&t.destination, "tmpfs", Path::new("tmpfs"), opts)?,
        ));
    }
    for b in &h.binds {
        let opts = vec!["rbind".into(), b.propagation().into(), rw(b.read_only)];
        out.push((
            b.destination.clone(),
            build(&b.destination, "bind", Path::new(&b.source), opts)?,
        ));
    }
    for m in &h.mounts {
        let mount = match m.typ {
            MountType::Volume => {
                let src = volumes_dir.join(&m.source).join("_data");
                let opts = vec!["rbind".into(), "rprivate".into(), rw(m.read_only)];
                build(&m.target, "bind", &src, opts)?
            }
            MountType::Bind => {
                let prop = m
                    .bind_options
                    .as_ref()
                    .map(|b| b.propagation.clone())
                    .unwrap_or_else(|| "rprivate".into());
                let recursive = m.bind_options.as_ref().map_or("", |b| b.recursive.as_str());
                let bind = if recursive == "disabled" {
                    "bind"
                } else {
                    "rbind"
                };
                let mut opts = vec![bind.into(), prop, rw(m.read_only)];
                if recursive == "readonly" {
                    // Submounts too (mount_setattr AT_RECURSIVE, Linux 5.12).
                    opts.push("rro".into());
                }
                build(&m.target, "bind", Path::new(&m.source), opts)?
            }
            MountType::Tmpfs => {
                let mut opts = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                if let Some(t) = &m.tmpfs_options {
                    if t.size_bytes > 0 {
                        opts.push(format!("size={}", t.size_bytes));
                    }
                    if t.mode > 0 {
                        opts.push(format!("mode={:o}", t.mode));
                    }
                }
                if m.read_only {
                    opts.push("ro".into());
                }
                build(&m.target, "tmpfs", Path::new("tmpfs"), opts)?
            }
        };
        out.push((m.target.clone(), mount));
    }
    // Stable: equal depths keep the user's order.
    out.sort_by_key(|(d, _)| depth(d));
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

impl Engine {
    /// Copy the binds and volume mounts of each `--volumes-from` container
    /// (`NAME[:ro|:rw]`; the mode overrides theirs) onto paths the user's
    /// own mounts left free, as docker does. Inherited volumes are not
    /// pre-filled again.
    pub(crate) fn add_volumes_from(&self, host: &mut HostConfig) -> Result<()> {
        for spec in host.volumes_from.clone() {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m @ ("ro" | "rw"))) => (n, Some(m == "ro")),
                Some((_, m)) => {
                    return Err(Error::Invalid(format!(
                        "--volumes-from {spec:?}: unknown mode {m:?} (ro or rw)"
                    )))
                }
                None => (spec.as_str(), None),
            };
            let from = self.find(name)?;
            let taken = |h: &HostConfig, d: &str| {
                let d = clean(d);
                h.binds.iter().any(|b| clean(&b.destination) == d)
                    || h.tmpfs.iter().any(|t| clean(&t.destination) == d)
                    || h.mounts.iter().any(|m| clean(&m.target) == d)
            };
            for b in &from.host.binds {
                if !taken(host, &b.destination) {
                    let mut b = b.clone();
                    b.read_only = mode.unwrap_or(b.read_only);
                    host.binds.push(b);
                }
            }
            for m in from
                .host
                .mounts
                .iter()
                .filter(|m| m.typ != MountType::Tmpfs)
            {
                if !taken(host, &m.target) {
                    let mut m = m.clone();
                    m.read_only = mode.unwrap_or(m.read_only);
                    if let Some(vo) = m.volume_options.as_mut() {
                        vo.no_copy = true;
                    }
                    host.mounts.push(m);
                }
            }
        }
        Ok(())
    }

    /// Name the container's anonymous volumes and create every volume it
    /// mounts that does not exist yet. The caller holds the volume lock
    /// until the container is recorded. Returns the volumes made now.
    pub(crate) fn resolve_volumes(&self, host: &mut HostConfig) -> Result<Vec<String>> {
        let mut made = Vec::new();
        for m in host
            .mounts
            .iter_mut()
            .filter(|m| m.typ == MountType::Volume)
        {
            let mut o = VolumeCreate::default();
            if let Some(vo) = &m.volume_options {
                o.labels = vo.labels.clone();
                if let Some(d) = &vo.driver_config {
                    o.driver = Some(d.name.clone());
                    o.options = d.options.clone();
                }
            }
            if m.source.is_empty() {
                m.source = crate::names::new_id();
                o.labels
                    .insert(volume::ANONYMOUS_LABEL.to_string(), String::new());
            }
            o.name = Some(m.source.clone());
            let (_, created) = self.create_volume_locked(&o)?;
            if created {
                made.push(m.source.clone());
            }
        }
        Ok(made)
    }

    /// Before the first start, with the root filesystem mounted at
    /// `rootfs`: mount volumes that have driver options, pre-fill empty
    /// volumes from the image (unless nocopy), and check bind sources.
    pub(crate) fn prepare_mounts(&self, c: &Container, rootfs: &Path) -> Result<()> {
        for m in &c.host.mounts {
            match m.typ {
                MountType::Volume => {
                    let v = self.volume(&m.source)?;
                    let data = self.volume_path(&v.name);
                    if !data.exists() {
                        fs::create_dir_all(&data).map_err(|e| {
                            Error::io(format!("recreating the directory of volume {}", v.name), e)
                        })?;
                    }
                    let _busy = self.volume_use_lock(&v.name)?;
                    volume::ensure_mounted(&v, &data)?;
                    if !m.no_copy() {
                        volume::prefill(rootfs, &m.target, &data, &v.name)?;
                    }
                }
                // --mount, unlike -v, does not create a missing source (docker).
                MountType::Bind if !Path::new(&m.source).exists() => {
                    return Err(Error::Invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                MountType::Bind | MountType::Tmpfs => {}
            }
        }
        Ok(())
    }

    /// Before each start: volumes with driver options mounted again (after
    /// a reboot, or a `volume rm -f` race).
    pub(crate) fn mount_volumes(&self, c: &Container) -> Result<()> {
        for m in c.host.mounts.iter().filter(|m| m.typ == MountType::Volume) {
            let v = self.volume(&m.source)?;
            volume::ensure_mounted(&v, &self.volume_path(&v.name))?;
        }
        Ok(())
    }

    /// Remove the anonymous volumes of a removed container that no other
    /// container uses (`rm -v`, `--rm`). Named volumes always stay.
    pub(crate) fn remove_anonymous_volumes(&self, c: &Container) -> Result<()> {
        let _lock = self.volume_lock()?;
        for m in c.host.mounts.iter().filter(|m| m.typ == MountType::Volume) {
            let Some(v) = self.db.get_volume(&m.source)? else {
                continue;
            };
            if v.is_anonymous() && !self.volume_in_use(&v.name)? {
                self.remove_volume_locked(&v)?;
            }
        }
        Ok(())
    }

    /// Docker's `Mounts` of a container: binds, volumes, tmpfs mounts.
    pub(crate) fn mount_points(&self, c: &Container) -> Vec<Value> {
        let mut out: Vec<Value> = c
            .host
            .binds
            .iter()
            .map(|b| {
                json!({
                    "Type": "bind",
                    "Source": b.source,
                    "Destination": b.destination,
                    "Mode": if b.read_only { "ro" } else { "" },
                    "RW": !b.read_only,
                    "Propagation": b.propagation(),
                })
            })
            .collect();
        for m in &c.host.mounts {
            out.push(match m.typ {
                MountType::Volume => json!({
                    "Type": "volume",
                    "Name": m.source,
                    "Source": self.volume_path(&m.source),
                    "Destination": m.target,
                    "Driver": volume::DRIVER,
                    "Mode": if m.read_only { "ro" } else { "z" },
                    "RW": !m.read_only,
                    "Propagation": "",
                }),
                MountType::Bind => json!({
                    "Type": "bind",
                    "Source": m.source,
                    "Destination": m.target,
                    "Mode": "",
                    "RW": !m.read_only,
                    "Propagation": m.bind_options.as_ref().map(|b| b.propagation.as_str()).unwrap_or("rprivate"),
                }),
                MountType::Tmpfs => json!({
                    "Type": "tmpfs",
                    "Source": "",
                    "Destination": m.target,
                    "Mode": "",
                    "RW": !m.read_only,
                    "Propagation": "",
                }),
            });
        }
        out
    }
}

/// The root's propagation that binds with shared or slave propagation need
/// (as containerd and docker set it): "rshared" for a shared bind, whose
/// host side must be on a shared mount, or mounts made in the container
/// could not reach the host; "rslave" for a slave one. None: the runtime's
/// default (rslave for runc and hako-runtime).
pub(crate) fn rootfs_propagation(mounts: &[oci_spec::runtime::Mount]) -> Result<Option<String>> {
    let mut out = None;
    for m in mounts {
        let opts = m.options().as_deref().unwrap_or_default();
        if m.typ().as_deref() != Some("bind") {
            continue;
        }
        if opts.iter().any(|o| o == "shared" || o == "rshared") {
            let source = m.source().clone().unwrap_or_default();
            let (point, optional) = containing_mount(&source);
            if !optional.split(' ').any(|f| f.starts_with("shared:")) {
                return Err(crate::error::Error::Invalid(format!(
                    "bind mount {} on {}: path {} is mounted on {} but it is not a shared mount (make it one: mount --make-shared {})",
                    source.display(),
                    m.destination().display(),
                    source.display(),
                    point,
                    point
                )));
            }
            out = Some("rshared".to_string());
        } else if out.is_none() && opts.iter().any(|o| o == "slave" || o == "rslave") {
            out = Some("rslave".to_string());
        }
    }
    Ok(out)
}

/// The mount point of the mount `path` is on, and its optional mountinfo
/// fields ("shared:N master:M ...").
fn containing_mount(path: &Path) -> (String, String) {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(String, String)> = None;
    for line in info.lines() {
        let (head, _) = line.split_once(" - ").unwrap_or((line, ""));
        let fields: Vec<&str> = head.split(' ').collect();
        let Some(point) = fields.get(4).map(|p| unescape_mountinfo(p)) else {
            continue;
        };
        if !path.starts_with(&point) {
            continue;
        }
        // Later lines are mounted over earlier ones at the same point.
        if best.as_ref().is_none_or(|(b, _)| point.len() >= b.len()) {
            best = Some((point, fields.get(6..).unwrap_or_default().join(" ")));
        }
    }
    best.unwrap_or_else(|| ("/".into(), String::new()))
}

/// mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Bind, Tmpfs};

    #[test]
    fn image_volumes_fill_gaps_and_duplicates_fail() {
        let mut h = HostConfig {
            binds: vec![Bind {
                source: "/srv".into(),
                destination: "/data/".into(),
                read_only: false,
                propagation: String::new(),
            }],
            mounts: vec![Mount::volume("v1", "/logs", false, false)],
            ..Default::default()
        };
        plan(&mut h, &["/data".into(), "/cache".into()]).unwrap();
        let targets: Vec<&str> = h.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, vec!["/logs", "/cache"]);
        assert!(h.mounts[1].source.is_empty());
        let mut h = HostConfig {
            tmpfs: vec![Tmpfs {
                destination: "/x".into(),
                options: vec![],
            }],
            mounts: vec![Mount::volume("v1", "//x", false, false)],
            ..Default::default()
        };
        let e = plan(&mut h, &[]).unwrap_err().to_string();
        assert_eq!(e, "duplicate mount point: /x");
    }

    #[test]
    fn parents_mount_first() {
        let h = HostConfig {
            mounts: vec![
                Mount::volume("inner", "/a/b", true, false),
                Mount::volume("outer", "/a", false, false),
            ],
            ..Default::default()
        };
        let m = spec_mounts(&h, Path::new("/vols")).unwrap();
        assert_eq!(m[0].destination(), Path::new("/a"));
        assert_eq!(
            m[0].source().as_deref(),
            Some(Path::new("/vols/outer/_data"))
        );
        assert!(m[1].options().as_ref().unwrap().contains(&"ro".to_string()));
    }
}
