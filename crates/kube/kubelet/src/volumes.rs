//! A Pod's volumes on the node: each volume type gets its host directory (created or
//! checked here), and each container's volumeMounts become CRI mounts of those
//! directories.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, Pod, Volume,
};

use crate::atomic_writer::{self, FileProjection, Payload};
use crate::env::{field_ref, resource_field_ref, EnvContext};
use crate::objects::PodObjects;
use crate::quantity::parse_units;
use crate::spec::{pod_dir, uid};

/// What the volume types need to know about the pod and the node.
pub struct VolumeContext<'a> {
    pub pod: &'a Pod,
    pub root: &'a Path,
    pub objects: &'a PodObjects,
    pub node_name: &'a str,
    pub host_ip: &'a str,
    pub node_cpu_milli: i128,
    pub node_memory: i128,
}

impl VolumeContext<'_> {
    fn fs_group(&self) -> Option<i64> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
    }
}

/// The host directories of the pod's volumes, by volume name, created or brought up to
/// date (ConfigMap, Secret, downwardAPI and projected contents follow their sources:
/// this runs at every sync of the pod).
pub fn prepare_volumes(cx: &VolumeContext) -> Result<HashMap<String, PathBuf>> {
    let mut out = HashMap::new();
    let spec = cx.pod.spec.as_ref();
    for v in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        // Upstream's FailedMount message.
        let path = prepare_volume(v, cx).map_err(|e| {
            anyhow::anyhow!("MountVolume.SetUp failed for volume {:?} : {e:#}", v.name)
        })?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// One volume's host directory, by type.
fn prepare_volume(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    if v.empty_dir.is_some() {
        empty_dir(v, cx)
    } else if let Some(h) = &v.host_path {
        host_path(h)
    } else if v.config_map.is_some() {
        config_map(v, cx)
    } else if v.secret.is_some() {
        secret(v, cx)
    } else if v.downward_api.is_some() {
        downward_api(v, cx)
    } else if v.projected.is_some() {
        projected(v, cx)
    } else {
        bail!("this volume type is not supported yet (emptyDir, hostPath, configMap, secret, downwardAPI and projected are)")
    }
}

/// Whether the volume's mounts are always read-only (kubelet-written contents).
fn read_only_type(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// The directory of a volume of plugin `plugin` (e.g. `kubernetes.io~empty-dir`) under
/// the pod directory, as upstream lays it out.
fn plugin_dir(cx: &VolumeContext, plugin: &str, name: &str) -> PathBuf {
    pod_dir(cx.root, uid(cx.pod))
        .join("volumes")
        .join(plugin)
        .join(name)
}

/// Mount a tmpfs of `size` bytes (None: the kernel's default) at `dir` unless one is there.
fn mount_tmpfs(dir: &Path, size: Option<i128>, mode: u32) -> Result<()> {
    if atomic_writer::is_mount_point(dir) {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size {
        opts.push_str(&format!(",size={s}"));
    }
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .context("the volume path has a NUL byte")?;
    let opts = std::ffi::CString::new(opts).context("tmpfs options")?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mounting a tmpfs at {}", dir.display()));
    }
    Ok(())
}

/// Unmount the tmpfs volumes of the pod directory `dir` (before it is removed).
pub fn unmount_pod_volumes(dir: &Path) {
    let Ok(plugins) = std::fs::read_dir(dir.join("volumes")) else {
        return;
    };
    for p in plugins.flatten() {
        for v in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
            let path = v.path();
            if atomic_writer::is_mount_point(&path) {
                if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
                    // SAFETY: a valid NUL-terminated path.
                    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                    if r != 0 {
                        tracing::warn!(
                            "unmounting volume {}: {}",
                            path.display(),
                            std::io::Error::last_os_error()
                        );
                    }
                }
            }
        }
    }
}

/// emptyDir: a world-writable directory under the pod directory; `medium: Memory` is a
/// tmpfs whose size is the sizeLimit.
fn empty_dir(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    let p = plugin_dir(cx, "kubernetes.io~empty-dir", &v.name);
    let ed = v.empty_dir.as_ref();
    let memory = ed.and_then(|e| e.medium.as_deref()) == Some("Memory");
    let fs_group = cx.fs_group();
    if !p.exists() {
        std::fs::create_dir_all(&p)
            .with_context(|| format!("creating emptyDir volume {:?}", v.name))?;
    }
    if memory && !atomic_writer::is_mount_point(&p) {
        let size = ed
            .and_then(|e| e.size_limit.as_ref())
            .map(|q| {
                parse_units(&q.0)
                    .ok_or_else(|| anyhow::anyhow!("sizeLimit {:?} is not a quantity", q.0))
            })
            .transpose()?;
        mount_tmpfs(&p, size, 0o777)?;
    } else if std::fs::metadata(&p)?.permissions().mode() & 0o777 == 0o777 {
        return Ok(p);
    }
    // World-writable as upstream's emptyDir; setgid to the fsGroup.
    let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of emptyDir volume {:?}", v.name))?;
    if let Some(g) = fs_group {
        std::os::unix::fs::chown(&p, None, Some(g as u32))
            .with_context(|| format!("giving emptyDir volume {:?} to group {g}", v.name))?;
    }
    Ok(p)
}

/// hostPath: the host path as given, checked against its type with upstream's messages.
fn host_path(h: &HostPathVolumeSource) -> Result<PathBuf> {
    let p = PathBuf::from(&h.path);
    let md = std::fs::metadata(&p).ok();
    let ft = md.as_ref().map(|m| m.file_type());
    let fail = |what: &str| anyhow::anyhow!("hostPath type check failed: {} is not {what}", h.path);
    match h.type_.as_deref().unwrap_or("") {
        "" => {}
        "DirectoryOrCreate" => match ft {
            None => {
                std::fs::create_dir_all(&p)
                    .with_context(|| format!("creating hostPath {}", h.path))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
            }
            Some(t) if !t.is_dir() => return Err(fail("a directory")),
            _ => {}
        },
        "Directory" => {
            if !ft.is_some_and(|t| t.is_dir()) {
                return Err(fail("a directory"));
            }
        }
        "FileOrCreate" => match ft {
            None => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .with_context(|| format!("creating hostPath {}", h.path))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
            }
            Some(t) if !t.is_file() => return Err(fail("a file")),
            _ => {}
        },
        "File" => {
            if !ft.is_some_and(|t| t.is_file()) {
                return Err(fail("a file"));
            }
        }
        "Socket" => {
            if !ft.is_some_and(|t| t.is_socket()) {
                return Err(fail("a socket file"));
            }
        }
        "CharDevice" => {
            if !ft.is_some_and(|t| t.is_char_device()) {
                return Err(fail("a character device"));
            }
        }
        "BlockDevice" => {
            if !ft.is_some_and(|t| t.is_block_device()) {
                return Err(fail("a block device"));
            }
        }
        t => bail!("hostPath type {t:?} is not supported"),
    }
    Ok(p)
}

/// A payload from `data` by `items` (all keys when there are none), as upstream's
/// MakePayload for ConfigMaps and Secrets.
fn key_payload(
    data: &std::collections::BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
    what: &str,
    payload: &mut Payload,
) -> Result<()> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, d) in data {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: d.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                let Some(d) = data.get(&it.key) else {
                    if optional {
                        continue;
                    }
                    bail!("{what} references non-existent {} key: {}", what, it.key);
                };
                payload.insert(
                    it.path.clone(),
                    FileProjection {
                        data: d.clone(),
                        mode: it.mode.map(|m| m as u32).unwrap_or(default_mode),
                    },
                );
            }
        }
    }
    Ok(())
}

/// A ConfigMap's data and binaryData as bytes; None when it does not exist.
fn config_map_data(
    cx: &VolumeContext,
    name: &str,
) -> Option<std::collections::BTreeMap<String, Vec<u8>>> {
    let cm = cx.objects.config_maps.get(name)?.as_ref()?;
    let mut d: std::collections::BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    d.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    Some(d)
}

fn secret_data(
    cx: &VolumeContext,
    name: &str,
) -> Option<std::collections::BTreeMap<String, Vec<u8>>> {
    let s = cx.objects.secrets.get(name)?.as_ref()?;
    Some(
        s.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
    )
}

/// Write `payload` into `dir` atomically; with an fsGroup the files get it and at least
/// 0440 (upstream's SetVolumeOwnership of a read-only volume).
fn write_payload(dir: &Path, mut payload: Payload, cx: &VolumeContext) -> Result<()> {
    let gid = cx.fs_group().map(|g| g as u32);
    if gid.is_some() {
        for f in payload.values_mut() {
            f.mode |= 0o440;
        }
    }
    atomic_writer::write(dir, &payload, gid)?;
    Ok(())
}

const DEFAULT_MODE: u32 = 0o644;

/// configMap: the ConfigMap's keys as files, updated in place.
fn config_map(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    let src = v.config_map.as_ref().context("no configMap")?;
    let dir = plugin_dir(cx, "kubernetes.io~configmap", &v.name);
    let optional = src.optional == Some(true);
    let mut payload = Payload::new();
    match config_map_data(cx, &src.name) {
        Some(d) => key_payload(
            &d,
            src.items.as_ref(),
            src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE),
            optional,
            "configMap",
            &mut payload,
        )?,
        None if optional => {}
        None => bail!("configmap {:?} not found", src.name),
    }
    write_payload(&dir, payload, cx)?;
    Ok(dir)
}

/// secret: the Secret's keys as files on a tmpfs, updated in place.
fn secret(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    let src = v.secret.as_ref().context("no secret")?;
    let name = src.secret_name.clone().unwrap_or_default();
    let dir = plugin_dir(cx, "kubernetes.io~secret", &v.name);
    let optional = src.optional == Some(true);
    let mut payload = Payload::new();
    match secret_data(cx, &name) {
        Some(d) => key_payload(
            &d,
            src.items.as_ref(),
            src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE),
            optional,
            "secret",
            &mut payload,
        )?,
        None if optional => {}
        None => bail!("secret {name:?} not found"),
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    mount_tmpfs(&dir, None, 0o755)?;
    write_payload(&dir, payload, cx)?;
    Ok(dir)
}

/// The downward API files `items` into `payload`.
fn downward_payload(
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    cx: &VolumeContext,
    payload: &mut Payload,
) -> Result<()> {
    let env = EnvContext {
        pod: cx.pod,
        pod_ips: &[],
        host_ip: cx.host_ip,
        node_name: cx.node_name,
        node_cpu_milli: cx.node_cpu_milli,
        node_memory: cx.node_memory,
        objects: cx.objects,
        warnings: Default::default(),
    };
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            field_ref(&f.field_path, &env)?
        } else if let Some(r) = &it.resource_field_ref {
            let spec = cx.pod.spec.as_ref().context("the pod has no spec")?;
            let name = r.container_name.as_deref().unwrap_or("");
            let c = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == name)
                .ok_or_else(|| anyhow::anyhow!("resourceFieldRef: no container {name:?}"))?;
            resource_field_ref(
                c,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                &env,
            )?
        } else {
            bail!(
                "downwardAPI item {:?} has neither fieldRef nor resourceFieldRef",
                it.path
            );
        };
        payload.insert(
            it.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: it.mode.map(|m| m as u32).unwrap_or(default_mode),
            },
        );
    }
    Ok(())
}

/// downwardAPI: the pod's fields as files (labels and annotations follow the pod).
fn downward_api(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    let src = v.downward_api.as_ref().context("no downwardAPI")?;
    let dir = plugin_dir(cx, "kubernetes.io~downward-api", &v.name);
    let mut payload = Payload::new();
    downward_payload(
        src.items.as_deref().unwrap_or(&[]),
        src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE),
        cx,
        &mut payload,
    )?;
    write_payload(&dir, payload, cx)?;
    Ok(dir)
}

/// projected: ConfigMaps, Secrets, downward API files and service account tokens in one
/// directory on a tmpfs.
fn projected(v: &Volume, cx: &VolumeContext) -> Result<PathBuf> {
    let src = v.projected.as_ref().context("no projected")?;
    let dir = plugin_dir(cx, "kubernetes.io~projected", &v.name);
    let mode = src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    for s in src.sources.iter().flatten() {
        if let Some(c) = &s.config_map {
            let optional = c.optional == Some(true);
            match config_map_data(cx, &c.name) {
                Some(d) => key_payload(
                    &d,
                    c.items.as_ref(),
                    mode,
                    optional,
                    "configMap",
                    &mut payload,
                )?,
                None if optional => {}
                None => bail!("configmap {:?} not found", c.name),
            }
        } else if let Some(c) = &s.secret {
            let optional = c.optional == Some(true);
            match secret_data(cx, &c.name) {
                Some(d) => {
                    key_payload(&d, c.items.as_ref(), mode, optional, "secret", &mut payload)?
                }
                None if optional => {}
                None => bail!("secret {:?} not found", c.name),
            }
        } else if let Some(d) = &s.downward_api {
            downward_payload(d.items.as_deref().unwrap_or(&[]), mode, cx, &mut payload)?;
        } else if let Some(t) = &s.service_account_token {
            let audience = t.audience.clone().unwrap_or_default();
            let token = cx
                .objects
                .tokens
                .get(&(audience.clone(), t.expiration_seconds.unwrap_or(3607)))
                .ok_or_else(|| {
                    anyhow::anyhow!("no service account token for audience {audience:?}")
                })?;
            payload.insert(
                t.path.clone(),
                FileProjection {
                    data: token.as_bytes().to_vec(),
                    mode,
                },
            );
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    mount_tmpfs(&dir, None, 0o755)?;
    write_payload(&dir, payload, cx)?;
    Ok(dir)
}

/// The CRI mounts of container `c`'s volumeMounts over the pod's prepared `volumes`.
pub fn container_mounts(
    pod: &Pod,
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<cri::Mount>> {
    let forced_ro: std::collections::HashSet<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| read_only_type(v))
        .map(|v| v.name.as_str())
        .collect();
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
            // A key of a ConfigMap/Secret volume is a symlink through ..data: the mount
            // binds the file it points to now, so it keeps that content (as upstream).
            if forced_ro.contains(m.name.as_str()) {
                host = host.canonicalize().with_context(|| {
                    format!("subPath {sub:?} of volume {:?}: no such key", m.name)
                })?;
            } else if std::fs::symlink_metadata(&host).is_err() {
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
            readonly: m.read_only.unwrap_or(false) || forced_ro.contains(m.name.as_str()),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    Ok(mounts)
}
