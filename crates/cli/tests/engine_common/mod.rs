//! Helpers for the container tests: a temp hako root per test with a
//! busybox image imported at test time, and a guard that removes every
//! container, mount and process of the root on drop, even when a test fails.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A hako root with the `busybox` image; cleaned up on drop.
pub struct Root {
    pub tmp: tempfile::TempDir,
}

fn hako_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hako"))
}

impl Root {
    pub fn new() -> Root {
        let bin = hako_bin();
        for helper in ["hako-monitor", "hako-runtime"] {
            assert!(
                bin.with_file_name(helper).is_file(),
                "{helper} must be built next to {} (cargo build --workspace)",
                bin.display()
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = Root { tmp };
        let rootfs = root.dir().join("rootfs");
        busybox_rootfs(&rootfs);
        let tar = root.dir().join("busybox.tar");
        let st = Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&rootfs)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        root.ok(&["import", tar.to_str().unwrap(), "busybox"]);
        root
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(hako_bin())
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
            "hako {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The inspect object of a container.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// `ps -a --format json` as (name, state, status) rows.
    pub fn ps_all(&self) -> Vec<(String, String, String)> {
        self.ok(&["ps", "-a", "--format", "json"])
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["Names"].as_str().unwrap().to_string(),
                    v["State"].as_str().unwrap().to_string(),
                    v["Status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub fn state_of(&self, name: &str) -> Option<(String, String)> {
        self.ps_all()
            .into_iter()
            .find(|r| r.0 == name)
            .map(|r| (r.1, r.2))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Everything the root made (bridges included); what follows is for
        // a reset that fails.
        let reset = self.root().exists() && self.run(&["system", "reset", "-f"]).status.success();
        if !reset {
            self.clean_up_piecemeal();
        }
        // Anything a failed removal (or the test itself) left mounted under this root.
        let root = self.tmp.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(root.as_str()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Root {
    /// What `system reset` does, step by step, for when it fails.
    fn clean_up_piecemeal(&self) {
        let ids = self.run(&["ps", "-a", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.run(&["rm", "-f", id]);
        }
        // Networks: user-defined ones are removed with their bridges; the
        // default one cannot be removed, so its bridge is deleted here.
        let nets = self.run(&["network", "ls", "--format", "json"]);
        for l in String::from_utf8_lossy(&nets.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            let name = v["Name"].as_str().unwrap_or_default().to_string();
            let bridge = self.run(&["network", "inspect", &name]).stdout.clone();
            let _ = self.run(&["network", "rm", &name]);
            if let Ok(info) = serde_json::from_slice::<serde_json::Value>(&bridge) {
                if let Some(b) = info[0]["Options"]["com.docker.network.bridge.name"].as_str() {
                    let _ = Command::new("ip")
                        .args(["link", "delete", "dev", b])
                        .output();
                }
            }
        }
    }
}

/// Poll `cond` until it holds; panics with `what` after a minute. Not a
/// timing assertion: only a bound so a broken build fails instead of hanging.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A busybox root filesystem: Debian's busybox-static with a symlink per applet.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static must be installed (/bin/busybox)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    assert!(list.status.success());
    for applet in String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
    for d in ["tmp", "root", "home/user"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// Whether a process runs.
pub fn pid_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}
