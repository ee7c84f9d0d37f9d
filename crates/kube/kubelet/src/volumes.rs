//! A Pod's volumes on the node: each volume type gets its host directory (created or
//! checked here), and each container's volumeMounts become CRI mounts of those
//! directories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, HostPathVolumeSource, Pod, Volume};

use crate::spec::{pod_dir, uid};

/// What every volume type may need to know about the pod.
struct VolumeContext<'a> {
    pod: &'a Pod,
    root: &'a Path,
    fs_group: Option<i64>,
}

/// The host directories of the pod's volumes, by volume name (emptyDir under the pod
/// directory, hostPath as given); created when missing.
pub fn prepare_volumes(pod: &Pod, root: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut out = HashMap::new();
    let spec = pod.spec.as_ref();
    let cx = VolumeContext {
        pod,
        root,
        fs_group: spec
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group),
    };
    for v in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let path = prepare_volume(v, &cx)?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// One volume's host directory, by type.
fn prepare_volume(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    if v.empty_dir.is_some() {
        empty_dir(v, cx)
    } else if let Some(h) = &v.host_path {
        host_path(v, h)
    } else {
        bail!(
            "volume {:?}: only emptyDir and hostPath volumes are supported yet",
            v.name
        )
    }
}

/// The directory of a volume of plugin `plugin` (e.g. `kubernetes.io~empty-dir`) under
/// the pod directory, as upstream lays it out.
fn plugin_dir(cx: &VolumeContext, plugin: &str, name: &str) -> PathBuf {
    pod_dir(cx.root, uid(cx.pod))
        .join("volumes")
        .join(plugin)
        .join(name)
}

/// emptyDir: a world-writable directory under the pod directory.
fn empty_dir(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    let p = plugin_dir(cx, "kubernetes.io~empty-dir", &v.name);
    if !p.exists() {
        std::fs::create_dir_all(&p)
            .with_context(|| format!("creating emptyDir volume {:?}", v.name))?;
        use std::os::unix::fs::PermissionsExt as _;
        // World-writable as upstream's emptyDir; setgid to the fsGroup.
        let mode = if cx.fs_group.is_some() { 0o2777 } else { 0o777 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of emptyDir volume {:?}", v.name))?;
        if let Some(g) = cx.fs_group {
            std::os::unix::fs::chown(&p, None, Some(g as u32))
                .with_context(|| format!("giving emptyDir volume {:?} to group {g}", v.name))?;
        }
    }
    Ok(p)
}

/// hostPath: the host path as given, checked against its type.
fn host_path(v: &Volume, h: &HostPathVolumeSource) -> Result<PathBuf> {
    let p = PathBuf::from(&h.path);
    match h.type_.as_deref().unwrap_or("") {
        "DirectoryOrCreate" if !p.exists() => std::fs::create_dir_all(&p)
            .with_context(|| format!("creating hostPath volume {:?} at {}", v.name, h.path))?,
        "Directory" if !p.is_dir() => {
            bail!(
                "hostPath volume {:?}: {} is not a directory",
                v.name,
                h.path
            )
        }
        "File" if !p.is_file() => {
            bail!("hostPath volume {:?}: {} is not a file", v.name, h.path)
        }
        _ => {}
    }
    Ok(p)
}

/// The CRI mounts of container `c`'s volumeMounts over the pod's prepared `volumes`.
pub fn container_mounts(
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<cri::Mount>> {
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let host = volumes.get(&m.name).ok_or_else(|| {
            anyhow::anyhow!("volumeMount {:?}: the pod has no such volume", m.name)
        })?;
        let mut host = host.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                bail!(
                    "volumeMount {:?}: subPath {sub:?} must be a relative path inside the volume",
                    m.name
                );
            }
            host = host.join(sub);
            if !host.exists() {
                std::fs::create_dir_all(&host)
                    .with_context(|| format!("creating subPath {sub:?} of volume {:?}", m.name))?;
            }
        }
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
            _ => cri::MountPropagation::PropagationPrivate,
        };
        mounts.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    Ok(mounts)
}
