//! A `hako import` killed with SIGKILL in the middle of its layer leaves no
//! image and no published blob or snapshot; the next collection removes its
//! leftovers and the same import then succeeds. Run as root.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tar_dir, Hako};

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn killed_import_leaves_a_consistent_store() {
    let h = Hako::new();
    h.ok(&["images"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .args(["import", "-", "killed:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A tar announcing a 64 MiB file, of which only 8 MiB ever arrive.
    let mut header = tar::Header::new_gnu();
    header.set_path("big").unwrap();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    stdin.write_all(header.as_bytes()).unwrap();
    stdin.write_all(&vec![0x5a; 8 << 20]).unwrap();
    stdin.flush().unwrap();
    // Wait (bounded) until the import is visibly mid-layer: a temporary
    // blob and a staged snapshot exist.
    let snapshots = h.root().join("snapshots");
    let ingest = h.root().join("ingest");
    let mut started = false;
    for _ in 0..1200 {
        let staged = entries(&snapshots).iter().any(|e| e.starts_with("tmp-"));
        let partial = entries(&ingest).iter().any(|e| e.starts_with("blob-"));
        if staged && partial {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started, "the import never reached its layer");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    assert_eq!(h.ok(&["images", "-q"]).trim(), "");
    assert!(entries(&h.root().join("blobs/sha256")).is_empty());
    assert!(entries(&snapshots).iter().all(|e| e.starts_with("tmp-")));
    // Collection finishes the interrupted work.
    h.ok(&["image", "prune"]);
    assert!(entries(&ingest).is_empty(), "{:?}", entries(&ingest));
    assert!(entries(&snapshots).is_empty(), "{:?}", entries(&snapshots));

    let rootfs = h.dir().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("big"), vec![0x5a; 1 << 20]).unwrap();
    let tarball = h.dir().join("ok.tar");
    tar_dir(&rootfs, &tarball, false);
    h.ok(&["import", tarball.to_str().unwrap(), "killed:1"]);
    let m = common::Mounted::new(&h, "killed:1");
    assert_eq!(
        std::fs::metadata(m.path.join("big")).unwrap().len(),
        1 << 20
    );
}
