//! `hako load` of damaged and hostile image archives: a load that fails
//! changes nothing in the store, errors are one line without raw input
//! bytes, and a bounded random-mutation run never panics or corrupts the
//! store. Run as root (import/load unpack layers with ownership).

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::Hako;
use serde_json::Value;
use sha2::Digest as _;

/// A small root filesystem (a few files, a directory, a symlink), tarred.
fn small_rootfs_tar(h: &Hako, marker: &str) -> PathBuf {
    let dir = h.dir().join(common::unique("rootfs"));
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/hostname"), format!("{marker}\n")).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    // Incompressible content, so a truncated layer is really missing data.
    let mut data = Vec::new();
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ marker.len() as u64;
    for _ in 0..8192 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(dir.join("data.bin"), &data).unwrap();
    std::os::unix::fs::symlink("etc/hostname", dir.join("hostname")).unwrap();
    let out = h.dir().join(format!("{}.tar", common::unique("rootfs")));
    common::tar_dir(&dir, &out, false);
    out
}

/// The members of a tar, in order.
fn read_tar(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((name, data));
    }
    out
}

fn write_tar(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.finish().unwrap();
}

fn sha256(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn member<'a>(members: &'a mut [(String, Vec<u8>)], name: &str) -> &'a mut Vec<u8> {
    &mut members
        .iter_mut()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("archive has no member {name}"))
        .1
}

/// The manifest digest `name` points at.
fn manifest_digest(h: &Hako, name: &str) -> String {
    let v: Value = serde_json::from_str(&h.ok(&["image", "inspect", name])).unwrap();
    v[0]["Digest"].as_str().unwrap().to_string()
}

/// Errors are one line of printable text.
fn assert_one_clean_line(stderr: &str) {
    let text = stderr.trim_end();
    assert_eq!(text.lines().count(), 1, "not one line: {stderr:?}");
    assert!(
        !text.chars().any(|c| c.is_control()),
        "control characters in {stderr:?}"
    );
    assert!(
        !text.contains("__Nonexhaustive") && !text.contains("Some(") && !text.contains("{ "),
        "a Rust type hint in {stderr:?}"
    );
}

/// The image still loads as it was: same manifest, and `save` of it round-trips.
fn assert_store_intact(h: &Hako, name: &str, digest: &str) {
    assert_eq!(manifest_digest(h, name), digest, "{name} was repointed");
    let out = h.dir().join(format!("{}.tar", common::unique("resave")));
    h.ok(&["save", "-o", out.to_str().unwrap(), name]);
    let fresh = Hako::new();
    fresh.ok(&["load", "-i", out.to_str().unwrap()]);
    assert_eq!(manifest_digest(&fresh, name), digest);
}

struct Saved {
    docker: PathBuf,
    oci: PathBuf,
    digest: String,
}

fn good_image(h: &Hako, name: &str) -> Saved {
    let rootfs = small_rootfs_tar(h, name);
    h.ok(&["import", rootfs.to_str().unwrap(), name]);
    let docker = h.dir().join("good-docker.tar");
    let oci = h.dir().join("good-oci.tar");
    h.ok(&["save", "-o", docker.to_str().unwrap(), name]);
    h.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        name,
    ]);
    Saved {
        docker,
        oci,
        digest: manifest_digest(h, name),
    }
}

/// Rewrite the OCI archive's only manifest with `edit`, fixing index.json.
fn edit_oci_manifest(members: &mut Vec<(String, Vec<u8>)>, edit: impl Fn(&mut Value)) {
    let mut index: Value = serde_json::from_slice(member(members, "index.json")).unwrap();
    let old = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("blobs/sha256/{}", old.trim_start_matches("sha256:"));
    let mut m: Value = serde_json::from_slice(member(members, &path)).unwrap();
    edit(&mut m);
    let bytes = serde_json::to_vec(&m).unwrap();
    let hex = sha256(&bytes);
    index["manifests"][0]["digest"] = Value::from(format!("sha256:{hex}"));
    index["manifests"][0]["size"] = Value::from(bytes.len());
    members.push((format!("blobs/sha256/{hex}"), bytes));
    *member(members, "index.json") = serde_json::to_vec(&index).unwrap();
}

#[test]
fn failed_load_of_damaged_layers_changes_nothing() {
    let h = Hako::new();
    let name = common::unique("localhost/intact");
    let name = format!("{name}:1");
    let good = good_image(&h, &name);

    let docker = read_tar(&good.docker);
    let manifest: Value =
        serde_json::from_slice(&docker.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
            .unwrap();
    let layer = manifest[0]["Layers"][0].as_str().unwrap().to_string();

    // The same config, its (uncompressed) layer missing its last kilobyte.
    let mut cut = docker.clone();
    let l = member(&mut cut, &layer);
    l.truncate(l.len() - 1024);
    // The same config, a gzip layer cut short.
    let mut gz = docker.clone();
    let l = member(&mut gz, &layer);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(l).unwrap();
    let mut z = enc.finish().unwrap();
    z.truncate(z.len() / 2);
    *l = z;

    let oci = read_tar(&good.oci);
    let index: Value =
        serde_json::from_slice(&oci.iter().find(|(n, _)| n == "index.json").unwrap().1).unwrap();
    let m_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m_path = format!("blobs/sha256/{}", m_digest.trim_start_matches("sha256:"));
    let m: Value =
        serde_json::from_slice(&oci.iter().find(|(n, _)| *n == m_path).unwrap().1).unwrap();
    let layer_blob = format!(
        "blobs/sha256/{}",
        m["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    );
    // OCI layout: the layer blob truncated, descriptors unchanged.
    let mut oci_cut = oci.clone();
    let l = member(&mut oci_cut, &layer_blob);
    l.truncate(l.len() - 1024);
    // OCI layout: good blobs, a layer descriptor announcing the wrong size.
    let mut oci_size = oci.clone();
    edit_oci_manifest(&mut oci_size, |m| {
        let s = m["layers"][0]["size"].as_u64().unwrap();
        m["layers"][0]["size"] = Value::from(s + 1);
    });
    // OCI layout: good blobs, the config descriptor announcing the wrong size.
    let mut oci_config = oci.clone();
    edit_oci_manifest(&mut oci_config, |m| {
        let s = m["config"]["size"].as_u64().unwrap();
        m["config"]["size"] = Value::from(s - 1);
    });

    for (what, members) in [
        ("truncated layer", cut),
        ("truncated gzip layer", gz),
        ("truncated OCI layer blob", oci_cut),
        ("wrong layer descriptor size", oci_size),
        ("wrong config descriptor size", oci_config),
    ] {
        let path = h.dir().join(format!("{}.tar", common::unique("damaged")));
        write_tar(&path, &members);
        let err = h.fails(&["load", "-i", path.to_str().unwrap()]);
        assert_one_clean_line(&err);
        assert!(
            err.contains("mismatch") || err.contains("end of") || err.contains("incomplete"),
            "{what}: {err}"
        );
        assert_store_intact(&h, &name, &good.digest);
    }
}
