//! Several `hako` processes on one root at once: imports, listings and a
//! prune run side by side (SQLite WAL for metadata, the store lock keeps
//! garbage collection away from content not yet recorded). Run as root.

mod common;

use std::process::{Child, Command, Stdio};

use common::{tar_dir, Hako};

fn spawn(h: &Hako, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_ok(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn parallel_imports_lists_and_prunes_keep_the_store_consistent() {
    let h = Hako::new();
    const N: usize = 6;
    let mut tarballs = Vec::new();
    for i in 0..N {
        let dir = h.dir().join(format!("rootfs{i}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // Distinct content per image, some of it large enough to take a moment.
        std::fs::write(dir.join("data/id"), format!("{i}")).unwrap();
        std::fs::write(dir.join("data/bulk"), vec![i as u8; 4 << 20]).unwrap();
        let t = h.dir().join(format!("r{i}.tar"));
        tar_dir(&dir, &t, i % 2 == 0);
        tarballs.push(t);
    }
    // The store exists before the race starts.
    h.ok(&["images"]);
    let mut children = Vec::new();
    for (i, t) in tarballs.iter().enumerate() {
        children.push((
            format!("import {i}"),
            spawn(
                &h,
                &["import", "-q", t.to_str().unwrap(), &format!("par:{i}")],
            ),
        ));
        children.push((format!("images {i}"), spawn(&h, &["images"])));
        if i % 2 == 1 {
            children.push((format!("prune {i}"), spawn(&h, &["image", "prune"])));
        }
    }
    let mut ids = Vec::new();
    for (what, child) in children {
        let out = wait_ok(child, &what);
        if what.starts_with("import") {
            ids.push(out.trim().to_string());
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N);
    let listed = h.ok(&["images", "-q", "--no-trunc"]);
    let mut listed: Vec<String> = listed.lines().map(str::to_string).collect();
    listed.sort();
    assert_eq!(listed, ids);
    // Every image is complete: it mounts with its own content.
    for i in 0..N {
        let m = common::Mounted::new(&h, &format!("par:{i}"));
        assert_eq!(
            std::fs::read_to_string(m.path.join("data/id")).unwrap(),
            i.to_string()
        );
        assert_eq!(
            std::fs::metadata(m.path.join("data/bulk")).unwrap().len(),
            4 << 20
        );
    }
    // Config, manifest and one layer per image; nothing else.
    assert_eq!(
        std::fs::read_dir(h.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        3 * N
    );
}

mod engine_common;

/// `run -d --name x` racing `rm -f x` (retried until it finds the record,
/// so it lands while the run is creating the container): whoever wins,
/// nothing is left behind: no record, no container directory, no mount,
/// no mount record holding the image, no lock file once pruned.
#[test]
fn run_racing_rm_leaves_nothing_behind() {
    let r = engine_common::Root::new();
    let spawn_r = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(r.root())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    for _ in 0..30 {
        let mut run = spawn_r(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "x",
            "busybox",
            "sleep",
            "600",
        ]);
        loop {
            let rm = r.run(&["rm", "-f", "x"]);
            if rm.status.success() || run.try_wait().unwrap().is_some() {
                break;
            }
        }
        run.wait().unwrap();
        // A run that won keeps its container: removed now.
        let _ = r.run(&["rm", "-f", "x"]);
        assert_eq!(r.ok(&["ps", "-a", "-q"]), "");
    }
    let containers = r.root().join("containers");
    let dirs: Vec<String> = std::fs::read_dir(&containers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(dirs, Vec::<String>::new(), "container directories left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = containers.to_string_lossy().into_owned();
    assert!(
        !mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|p| p.starts_with(prefix.as_str())),
        "mounts left under {prefix}"
    );
    r.ok(&["container", "prune", "-f"]);
    let locks: Vec<String> = std::fs::read_dir(&containers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert_eq!(locks, Vec::<String>::new(), "lock files left");
    // No mount record holds the image.
    r.ok(&["rmi", "busybox"]);
}
