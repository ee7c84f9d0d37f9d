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

/// Name and content of each regular member of a tar.
type Members = Vec<(String, Vec<u8>)>;

/// The members of a tar, in order.
fn read_tar(path: &Path) -> Members {
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

/// A small deterministic generator (xorshift64*): the mutation runs are
/// reproducible from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_bytes_archive_fails_in_one_clean_line() {
    let h = Hako::new();
    let mut rng = Rng(0x5eed_0001);
    for (i, len) in [100usize, 512, 5000, 70_000].into_iter().enumerate() {
        let path = h.dir().join(format!("random-{i}.tar"));
        fs::write(&path, rng.bytes(len)).unwrap();
        let err = h.fails(&["load", "-i", path.to_str().unwrap()]);
        assert_one_clean_line(&err);
        assert!(err.contains(&format!("random-{i}.tar")), "{err}");
    }
}

/// A docker-archive of one image whose only layer is `layer` (uncompressed).
fn docker_archive_with_layer(path: &Path, name: &str, layer: &[u8]) {
    let diff_id = format!("sha256:{}", sha256(layer));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha256(&config));
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [name],
        "Layers": ["layer.tar"],
    }]);
    write_tar(
        path,
        &[
            (
                "manifest.json".into(),
                serde_json::to_vec(&manifest).unwrap(),
            ),
            (config_name, config),
            ("layer.tar".into(), layer.to_vec()),
        ],
    );
}

#[test]
fn unknown_tar_entry_type_is_named_by_its_byte() {
    let h = Hako::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_ustar();
    hd.set_size(0);
    hd.set_mode(0o644);
    hd.set_uid(0);
    hd.set_gid(0);
    hd.set_mtime(0);
    hd.set_entry_type(tar::EntryType::new(b'Z'));
    b.append_data(&mut hd, "weird", std::io::empty()).unwrap();
    let layer = b.into_inner().unwrap();

    let archive = h.dir().join("weird-type.tar");
    docker_archive_with_layer(&archive, &common::unique("localhost/weird"), &layer);
    let err = h.fails(&["load", "-i", archive.to_str().unwrap()]);
    assert_one_clean_line(&err);
    assert!(err.contains("unsupported entry type 'Z'"), "{err}");

    let tarball = h.dir().join("weird-layer.tar");
    fs::write(&tarball, &layer).unwrap();
    let err = h.fails(&["import", tarball.to_str().unwrap()]);
    assert_one_clean_line(&err);
    assert!(err.contains("unsupported entry type 'Z'"), "{err}");
    // Nothing was recorded.
    assert_eq!(h.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn load_prints_the_names_the_archive_gives() {
    let h = Hako::new();
    let first = format!("{}:1", common::unique("localhost/first"));
    let second = format!("{}:1", common::unique("localhost/second"));
    let rootfs = small_rootfs_tar(&h, "names");
    h.ok(&["import", rootfs.to_str().unwrap(), &first]);
    // An archive of the same image under another name only.
    h.ok(&["tag", &first, &second]);
    let archive = h.dir().join("second.tar");
    h.ok(&["save", "-o", archive.to_str().unwrap(), &second]);
    h.ok(&["rmi", &second]);

    // A failed load first (the same image, its layer cut short).
    let mut members = read_tar(&archive);
    let manifest: Value = serde_json::from_slice(member(&mut members, "manifest.json")).unwrap();
    let layer = manifest[0]["Layers"][0].as_str().unwrap().to_string();
    let l = member(&mut members, &layer);
    l.truncate(l.len() / 2);
    let bad = h.dir().join("second-cut.tar");
    write_tar(&bad, &members);
    assert_one_clean_line(&h.fails(&["load", "-i", bad.to_str().unwrap()]));

    // The good archive names only `second`, though the image is also `first` here.
    let out = h.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image: {second}"));
    let out = h.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
}

/// One mutation of a valid archive: bytes flipped, cut short, a stretch
/// overwritten with noise, or a member's content damaged (re-tarred, so the
/// loader gets past the tar headers to the JSON and layers).
fn mutate(rng: &mut Rng, original: &[u8], members: &[(String, Vec<u8>)], out: &Path) -> String {
    let mut data = original.to_vec();
    match rng.below(5) {
        0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            fs::write(out, &data).unwrap();
            format!("{n} bit flips")
        }
        1 => {
            let len = rng.below(data.len());
            data.truncate(len);
            fs::write(out, &data).unwrap();
            format!("cut to {len} bytes")
        }
        2 => {
            let at = rng.below(data.len());
            let n = (1 + rng.below(600)).min(data.len() - at);
            let noise = rng.bytes(n);
            data[at..at + n].copy_from_slice(&noise);
            fs::write(out, &data).unwrap();
            format!("{n} noise bytes at {at}")
        }
        _ => {
            let mut members = members.to_vec();
            let k = rng.below(members.len());
            let m = &mut members[k].1;
            let what = match rng.below(3) {
                0 if !m.is_empty() => {
                    let i = rng.below(m.len());
                    m[i] = rng.next() as u8;
                    "a byte replaced"
                }
                1 => {
                    let len = rng.below(m.len());
                    m.truncate(len);
                    "cut short"
                }
                _ => {
                    let at = rng.below(m.len());
                    let n = 1 + rng.below(64);
                    let noise = rng.bytes(n);
                    m.splice(at..at, noise);
                    "noise inserted"
                }
            };
            let desc = format!("member {}: {what}", members[k].0);
            write_tar(out, &members);
            desc
        }
    }
}

/// Address space allowed to a `hako load` of a mutant: a parser that lets a
/// length field or a count drive an allocation fails (aborts) instead of
/// growing; real loads of these small archives stay far below it.
const MEMORY_CAP: u64 = 2 << 30;

fn load_with_memory_cap(h: &Hako, archive: &Path) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hako"));
    cmd.arg("--root")
        .arg(h.root())
        .args(["load", "-i"])
        .arg(archive);
    // SAFETY: between fork and exec only setrlimit, an async-signal-safe system
    // call, runs; nothing is allocated or locked.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_AS,
                MEMORY_CAP,
                MEMORY_CAP,
            )
            .map_err(std::io::Error::from)
        });
    }
    cmd.output().unwrap()
}

#[test]
fn random_mutations_of_archives_never_panic_or_corrupt_the_store() {
    const ROUNDS: usize = 300;
    let h = Hako::new();
    let name = format!("{}:1", common::unique("localhost/fuzzed"));
    let good = good_image(&h, &name);
    let originals: Vec<(Vec<u8>, Members)> = [&good.docker, &good.oci]
        .iter()
        .map(|p| (fs::read(p).unwrap(), read_tar(p)))
        .collect();
    let mut rng = Rng(0x5eed_0006);
    let mut failed = 0;
    let mut current = good.digest.clone();
    for round in 0..ROUNDS {
        let (original, members) = &originals[round % originals.len()];
        let path = h.dir().join(format!("mutant-{round}.tar"));
        let what = mutate(&mut rng, original, members, &path);
        let out = load_with_memory_cap(&h, &path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit 0 (a harmless mutation) or 1 with an error: never a panic
        // (101) or a signal (an abort, a stack overflow, an allocation past
        // the memory cap).
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "round {round} ({what}): {:?}: {stderr}",
            out.status
        );
        assert!(
            !stderr.contains("panicked"),
            "round {round} ({what}): {stderr}"
        );
        // A failed load changes no name; one that loads (a byte of padding
        // or of a string in the config changed) may name another image.
        let now = manifest_digest(&h, &name);
        if !out.status.success() {
            failed += 1;
            assert_one_clean_line(&stderr);
            assert_eq!(
                now, current,
                "round {round} ({what}) failed but repointed {name}"
            );
        }
        current = now;
        fs::remove_file(&path).unwrap();
    }
    assert!(
        failed > ROUNDS / 2,
        "only {failed} of {ROUNDS} mutants failed"
    );
    // The store is consistent: every image it holds saves and loads
    // elsewhere (which verifies every blob against its digest and size
    // again), and the original archive still loads and names its image.
    h.ok(&["load", "-i", good.docker.to_str().unwrap()]);
    assert_store_intact(&h, &name, &good.digest);
    for id in h.ok(&["images", "-q", "--no-trunc"]).lines() {
        let out = h.dir().join(format!("{}.tar", common::unique("check")));
        h.ok(&["save", "-o", out.to_str().unwrap(), id]);
        Hako::new().ok(&["load", "-i", out.to_str().unwrap()]);
    }
    assert!(
        fs::read_dir(h.root().join("ingest"))
            .unwrap()
            .next()
            .is_none(),
        "leftovers in ingest/"
    );
}
