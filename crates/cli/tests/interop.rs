//! Interoperability with podman and skopeo (Debian): `hako save` output
//! loads in podman and skopeo reads it; archives written by `podman save`
//! and by `skopeo copy … oci:DIR` load in hako with the same tree. Podman
//! always runs with a temporary root. Run as root.

mod common;

use common::{busybox_rootfs, describe, skopeo, tar_dir, Hako, Mounted, Podman};
use serde_json::Value;

struct Fixture {
    hako: Hako,
    name: String,
    id: String,
    diff_id: String,
    manifest: String,
    expected: std::collections::BTreeMap<String, String>,
}

fn fixture() -> Fixture {
    let hako = Hako::new();
    let rootfs = hako.dir().join("rootfs");
    busybox_rootfs(&rootfs);
    let tarball = hako.dir().join("rootfs.tar.gz");
    tar_dir(&rootfs, &tarball, true);
    let name = format!("{}:1", common::unique("localhost/interop"));
    let id = hako
        .ok(&["import", "-q", tarball.to_str().unwrap(), &name])
        .trim()
        .to_string();
    let inspect: Value = serde_json::from_str(&hako.ok(&["image", "inspect", &name])).unwrap();
    let diff_id = inspect[0]["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = inspect[0]["Digest"].as_str().unwrap().to_string();
    let expected = describe(&rootfs);
    Fixture {
        hako,
        name,
        id,
        diff_id,
        manifest,
        expected,
    }
}

/// Load `archive` into a fresh hako root, mount `image` and compare with the fixture's tree.
fn load_and_compare(f: &Fixture, archive: &std::path::Path, image: &str) -> Hako {
    let h = Hako::new();
    let out = h.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.starts_with("Loaded image"), "{out}");
    let m = Mounted::new(&h, image);
    common::assert_same_tree(&f.expected, &describe(&m.path));
    drop(m);
    h
}

#[test]
fn hako_docker_archive_loads_in_podman_and_skopeo() {
    let f = fixture();
    let archive = f.hako.dir().join("docker.tar");
    f.hako
        .ok(&["save", "-o", archive.to_str().unwrap(), &f.name]);

    let sk: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("docker-archive:{}", archive.display()),
    ]))
    .unwrap();
    assert_eq!(sk["Layers"][0], f.diff_id);
    assert_eq!(sk["Os"], "linux");

    let p = Podman::new();
    let out = p.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains(&f.name), "{out}");
    let inspect: Value = serde_json::from_str(&p.ok(&["image", "inspect", &f.name])).unwrap();
    assert_eq!(inspect[0]["Id"].as_str().unwrap(), &f.id[7..]);
    assert_eq!(inspect[0]["RootFS"]["Layers"][0], f.diff_id);
    // And back: hako loads the archive it wrote.
    load_and_compare(&f, &archive, &f.name);
}

#[test]
fn hako_oci_archive_loads_in_podman_and_skopeo() {
    let f = fixture();
    let archive = f.hako.dir().join("oci.tar");
    f.hako.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        archive.to_str().unwrap(),
        &f.name,
    ]);

    let sk: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci-archive:{}", archive.display()),
    ]))
    .unwrap();
    assert_eq!(sk["Digest"], f.manifest);
    assert_eq!(sk["Layers"][0], f.diff_id);

    let p = Podman::new();
    let out = p.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains(&f.name), "{out}");
    let inspect: Value = serde_json::from_str(&p.ok(&["image", "inspect", &f.name])).unwrap();
    assert_eq!(inspect[0]["Id"].as_str().unwrap(), &f.id[7..]);
    load_and_compare(&f, &archive, &f.name);
}

#[test]
fn hako_oci_dir_is_read_by_skopeo() {
    let f = fixture();
    let dir = f.hako.dir().join("layout");
    f.hako.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        dir.to_str().unwrap(),
        &f.name,
    ]);
    let sk: Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci:{}", dir.display())])).unwrap();
    assert_eq!(sk["Digest"], f.manifest);
    load_and_compare(&f, &dir, &f.name);
}

#[test]
fn podman_archives_load_in_hako_with_the_same_tree() {
    let f = fixture();
    let p = Podman::new();
    let archive = f.hako.dir().join("to-podman.tar");
    f.hako
        .ok(&["save", "-o", archive.to_str().unwrap(), &f.name]);
    p.ok(&["load", "-i", archive.to_str().unwrap()]);
    for format in ["docker-archive", "oci-archive"] {
        let out = f.hako.dir().join(format!("podman-{format}.tar"));
        p.ok(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            &f.name,
        ]);
        let h = load_and_compare(&f, &out, &f.name);
        // podman's oci-archive has gzip layers: saving them as a docker-archive
        // decompresses them, and the result is still the same layer.
        let again = h.dir().join("again.tar");
        h.ok(&["save", "-o", again.to_str().unwrap(), &f.name]);
        let sk: Value = serde_json::from_str(&skopeo(&[
            "inspect",
            &format!("docker-archive:{}", again.display()),
        ]))
        .unwrap();
        assert_eq!(sk["Layers"][0], f.diff_id, "{format}");
    }
}

#[test]
fn skopeo_oci_layout_loads_in_hako_with_the_same_tree() {
    let f = fixture();
    let archive = f.hako.dir().join("for-skopeo.tar");
    f.hako
        .ok(&["save", "-o", archive.to_str().unwrap(), &f.name]);
    let dir = f.hako.dir().join("skopeo-layout");
    // A full name as the layout's ref.name so the image gets a name in hako.
    skopeo(&[
        "copy",
        "-q",
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}:{}", dir.display(), f.name),
    ]);
    load_and_compare(&f, &dir, &f.name);
    // Also as a tar of the layout.
    let tarred = f.hako.dir().join("skopeo-layout.tar");
    let status = std::process::Command::new("tar")
        .args([
            "-cf",
            tarred.to_str().unwrap(),
            "-C",
            dir.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    load_and_compare(&f, &tarred, &f.name);
}

#[test]
fn compressed_archive_loads_from_standard_input() {
    let f = fixture();
    let archive = f.hako.dir().join("docker.tar");
    f.hako
        .ok(&["save", "-o", archive.to_str().unwrap(), &f.name]);
    let gz = f.hako.dir().join("docker.tar.gz");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -c '{}' > '{}'",
            archive.display(),
            gz.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let h = Hako::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .arg("load")
        .stdin(std::fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = f.name.trim_start_matches("localhost/");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(name),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let m = Mounted::new(&h, &f.name);
    common::assert_same_tree(&f.expected, &describe(&m.path));
}
