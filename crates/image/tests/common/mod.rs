//! Helpers for hako-image's integration tests: crafting layer tarballs
//! (including hostile ones), OCI layouts, and overlay mount guards.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hako_image::digest::Digest;
use hako_image::manifest::Compression;
use hako_image::snapshot::Snapshotter;

/// Builds a layer tarball entry by entry.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

fn header(
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn dir(mut self, path: &str, mode: u32, uid: u64, gid: u64, mtime: u64) -> Self {
        let mut h = header(tar::EntryType::Directory, mode, uid, gid, mtime, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn file(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> Self {
        let mut h = header(
            tar::EntryType::Regular,
            mode,
            uid,
            gid,
            mtime,
            data.len() as u64,
        );
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, 1_000_000, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 1_000_000, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn device(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut h = header(kind, 0o620, 0, 5, 1_000_000, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A file carrying extended attributes in a PAX header, as GNU tar and docker write them.
    pub fn file_with_xattrs(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let keys: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(path, data, 0o644, 0, 0, 1_000_000)
    }

    /// An entry whose name is written raw into the header, bypassing the
    /// tar crate's own path checks — the way a hostile archive is made.
    pub fn raw(
        mut self,
        name: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
    ) -> Self {
        let mut h = header(kind, 0o644, 0, 0, 1_000_000, data.len() as u64);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// A header announcing `size` bytes of content that never follow.
    pub fn lying_size(mut self, name: &str, size: u64) -> Self {
        let mut h = header(tar::EntryType::Regular, 0o644, 0, 0, 1_000_000, 0);
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_cksum();
        self.b.get_mut().extend_from_slice(h.as_bytes());
        self
    }

    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

fn put_blob(layout: &Path, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(d.hex()), data).unwrap();
    d
}

/// Write an OCI layout directory holding one image made of `layers` (tar
/// bytes and the compression to store them with), named `name`.
/// Returns the manifest digest and the image id (config digest).
pub fn write_layout(
    layout: &Path,
    layers: &[(Vec<u8>, Compression)],
    name: &str,
) -> (Digest, Digest) {
    let arch = hako_image::manifest::PlatformSpec::host().architecture;
    let img = write_image(layout, layers, &arch, false);
    let entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": img.manifest.to_string(),
        "size": img.manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": name}
    });
    write_index(layout, vec![entry]);
    (img.manifest, img.config)
}

/// The blobs of one image written into a layout.
pub struct WrittenImage {
    pub manifest: Digest,
    pub manifest_size: usize,
    pub config: Digest,
}

/// Write an image's layers, config and manifest as blobs of `layout`, with
/// OCI media types or (`docker`) Docker schema2 ones.
pub fn write_image(
    layout: &Path,
    layers: &[(Vec<u8>, Compression)],
    arch: &str,
    docker: bool,
) -> WrittenImage {
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for (tar, c) in layers {
        diff_ids.push(Digest::sha256_of(tar).to_string());
        let blob = compress(tar, *c);
        let d = put_blob(layout, &blob);
        let media_type = match (docker, c) {
            (true, Compression::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            (true, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (true, Compression::Zstd) => "application/vnd.docker.image.rootfs.diff.tar.zstd",
            (false, c) => c.oci_media_type(),
        };
        descs.push(serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": blob.len()}));
    }
    let history: Vec<_> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("layer {i}")}))
        .collect();
    let config = serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Labels": {"test": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(layout, &config);
    let (manifest_type, config_type) = if docker {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
        )
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest.to_string(), "size": config.len()},
        "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put_blob(layout, &manifest);
    WrittenImage {
        manifest: manifest_digest,
        manifest_size: manifest.len(),
        config: config_digest,
    }
}

/// Store a JSON document as a blob of `layout`; returns its digest and size.
pub fn put_json(layout: &Path, doc: &serde_json::Value) -> (Digest, usize) {
    let bytes = serde_json::to_vec(doc).unwrap();
    (put_blob(layout, &bytes), bytes.len())
}

/// Write `index.json` (with these entries) and `oci-layout`.
pub fn write_index(layout: &Path, manifests: Vec<serde_json::Value>) {
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// Unmounts and removes a container directory when dropped, so a failing
/// assertion never leaves an overlay mounted.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = Snapshotter::remove_container_dir(&self.0) {
            eprintln!("cleanup of {} failed: {e}", self.0.display());
        }
    }
}

/// Every path under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Read an extended attribute without following symlinks.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}
