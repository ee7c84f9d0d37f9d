//! Helpers for the `hako` command tests: a temp root per test, a busybox
//! root filesystem built at test time from Debian's busybox-static, and a
//! description of a directory tree for comparisons.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::Digest as _;

/// A hako root in a temp directory; the binary is run against it. Reset on
/// drop (containers, networks and their bridges, mounts), even when a test fails.
pub struct Hako {
    pub tmp: tempfile::TempDir,
}

impl Drop for Hako {
    fn drop(&mut self) {
        if self.root().exists() {
            let _ = self.run(&["system", "reset", "-f"]);
        }
    }
}

impl Hako {
    pub fn new() -> Self {
        Hako {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .unwrap()
    }

    /// Run, require success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hako {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run, require failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "hako {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Build a busybox root filesystem in `dir`: /bin/busybox from Debian's
/// busybox-static, a symlink per applet, a few files with varied metadata.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static must be installed (/bin/busybox)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    assert!(list.status.success());
    let applets = String::from_utf8(list.stdout).unwrap();
    let mut n = 0;
    for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        n += 1;
    }
    assert!(n > 100, "busybox --list gave only {n} applets");
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/hostname"), "hako\n").unwrap();
    fs::hard_link(dir.join("etc/hostname"), dir.join("etc/hostname.link")).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(dir.join("home/user")).unwrap();
    std::os::unix::fs::chown(dir.join("home/user"), Some(1000), Some(1000)).unwrap();
    fs::write(dir.join("home/user/.profile"), "export PS1='$ '\n").unwrap();
    std::os::unix::fs::chown(dir.join("home/user/.profile"), Some(1000), Some(1000)).unwrap();
    // Whole-second mtimes everywhere, as tar formats keep them.
    let status = Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d", "@1700000000", "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Tar `dir` into `out` with GNU tar (gzip when `gzip`).
pub fn tar_dir(dir: &Path, out: &Path, gzip: bool) {
    let status = Command::new("tar")
        .arg(if gzip { "-czf" } else { "-cf" })
        .arg(out)
        .arg("--numeric-owner")
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
}

/// Describe every entry under `dir`: kind, mode, owner, size, content hash
/// or link target, mtime — what a faithful unpack must reproduce.
pub fn describe(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("link->{}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                "dir".to_string()
            } else {
                let data = fs::read(&p).unwrap();
                format!("file:{:x}", sha2::Sha256::digest(&data))
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                format!(
                    "{what} mode={mode:o} uid={} gid={} mtime={} nlink={}",
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    if ft.is_dir() { 0 } else { m.nlink() }
                ),
            );
            if ft.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Assert two descriptions match, listing the differences.
pub fn assert_same_tree(expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing {k}: {v}")),
            Some(a) if a != v => diffs.push(format!("differs {k}: expected {v}, got {a}")),
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        diffs.push(format!("extra {k}: {}", actual[k]));
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

/// Mounts an image with `hako image mount` and unmounts it on drop, even
/// when the test fails.
pub struct Mounted<'a> {
    pub hako: &'a Hako,
    pub path: PathBuf,
}

impl<'a> Mounted<'a> {
    pub fn new(hako: &'a Hako, image: &str) -> Self {
        let path = PathBuf::from(hako.ok(&["image", "mount", image]).trim());
        Mounted { hako, path }
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let out = self
            .hako
            .run(&["image", "unmount", &self.path.display().to_string()]);
        if !out.status.success() {
            // Last resort so no overlay outlives the test.
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
            eprintln!(
                "unmount of {} failed: {}",
                self.path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A podman with its own temporary storage, never the machine's.
pub struct Podman {
    pub tmp: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Self {
        Podman {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .arg("--root")
            .arg(self.tmp.path().join("root"))
            .arg("--runroot")
            .arg(self.tmp.path().join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
