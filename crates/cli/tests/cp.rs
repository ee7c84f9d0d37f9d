//! `hako cp` between the host and real containers (needs root).

mod engine_common;

use std::fs;

use engine_common::Root;

#[test]
fn copies_in_and_out_with_docker_naming_rules() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let src = r.dir().join("site");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "a\n").unwrap();
    fs::write(src.join("sub/b.txt"), "b\n").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let s = src.display().to_string();

    // Into an existing directory: the source arrives by its name, owned by root.
    r.ok(&["cp", &s, "c:/tmp"]);
    let out = r.ok(&[
        "exec",
        "c",
        "sh",
        "-c",
        "cat /tmp/site/sub/b.txt; readlink /tmp/site/link; stat -c %u /tmp/site/a.txt",
    ]);
    assert_eq!(out, "b\nlink-target\n0\n".replace("link-target", "a.txt"));
    // `dir/.` copies the contents; a missing destination becomes the copy.
    r.ok(&["cp", &format!("{s}/."), "c:/srv"]);
    r.ok(&["cp", &format!("{s}/a.txt"), "c:/renamed.txt"]);
    assert_eq!(
        r.ok(&["exec", "c", "cat", "/srv/a.txt", "/renamed.txt"]),
        "a\na\n"
    );

    // Out: a file to a new name, a directory into an existing one.
    let back = r.dir().join("back");
    fs::create_dir(&back).unwrap();
    r.ok(&["cp", "c:/tmp/site", back.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(back.join("site/sub/b.txt")).unwrap(),
        "b\n"
    );
    assert_eq!(
        fs::read_link(back.join("site/link")).unwrap().to_str(),
        Some("a.txt")
    );
    r.ok(&["cp", "c:/renamed.txt", back.join("r.txt").to_str().unwrap()]);
    assert_eq!(fs::read_to_string(back.join("r.txt")).unwrap(), "a\n");
    // The engine's /etc/hosts (a bind mount) is what the container sees.
    r.ok(&["cp", "c:/etc/hosts", back.join("hosts").to_str().unwrap()]);
    assert!(fs::read_to_string(back.join("hosts"))
        .unwrap()
        .contains("localhost"));
    // A tar on stdout.
    let out = r.run(&["cp", "c:/tmp/site", "-"]);
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "site",
            "site/a.txt",
            "site/link",
            "site/sub",
            "site/sub/b.txt"
        ]
    );
}

#[test]
fn container_symlinks_stay_inside_and_errors_are_clear() {
    let r = Root::new();
    let vol = r.dir().join("vol");
    fs::create_dir(&vol).unwrap();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "none",
        "-v",
        &format!("{}:/data", vol.display()),
        "busybox",
        "sleep",
        "1000",
    ]);
    let f = r.dir().join("f");
    fs::write(&f, "x").unwrap();
    let f = f.display().to_string();
    // A symlink to an absolute host-looking path resolves inside the container.
    let host_target = r.dir().join("host-only");
    fs::create_dir(&host_target).unwrap();
    r.ok(&[
        "exec",
        "c",
        "ln",
        "-s",
        host_target.to_str().unwrap(),
        "/evil",
    ]);
    let out = r.run(&["cp", &f, "c:/evil/pwned"]);
    assert!(
        !host_target.join("pwned").exists(),
        "wrote through a symlink to the host"
    );
    assert!(
        !out.status.success(),
        "the target directory does not exist in the container"
    );
    r.ok(&["exec", "c", "ln", "-s", "/", "/up"]);
    r.ok(&["cp", &f, "c:/up/tmp/"]);
    assert_eq!(r.ok(&["exec", "c", "cat", "/tmp/f"]), "x");
    // Into a bind mount: the host directory receives it.
    r.ok(&["cp", &f, "c:/data/"]);
    assert_eq!(fs::read_to_string(vol.join("f")).unwrap(), "x");

    for (args, want) in [
        (
            vec!["cp", f.as_str(), "c:/nonexistent/dir/x"],
            "does not exist",
        ),
        (
            vec!["cp", "c:/no/such", "/tmp"],
            "no such file or directory /no/such",
        ),
        (vec!["cp", f.as_str(), "nosuch:/tmp"], "no such container"),
        (vec!["cp", f.as_str(), "/tmp/y"], "CONTAINER:PATH"),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn copies_reach_tmpfs_mounts_of_a_running_container() {
    let r = Root::new();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "--network",
        "none",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "echo made inside > /scratch/in.txt; sleep 1000",
    ]);
    engine_common::wait_for("the file in the tmpfs", || {
        r.run(&["exec", "t", "test", "-e", "/scratch/in.txt"])
            .status
            .success()
    });
    // Out of the tmpfs: what the container wrote there.
    let dst = r.dir().join("out");
    fs::create_dir_all(&dst).unwrap();
    r.ok(&["cp", "t:/scratch/in.txt", dst.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(dst.join("in.txt")).unwrap(),
        "made inside\n"
    );
    // Into it: the container sees the file (it is not in the root filesystem beneath).
    let src = r.dir().join("host.txt");
    fs::write(&src, "from the host\n").unwrap();
    r.ok(&["cp", src.to_str().unwrap(), "t:/scratch/"]);
    assert_eq!(
        r.ok(&["exec", "t", "cat", "/scratch/host.txt"]),
        "from the host\n"
    );
    // A new name in the tmpfs, and a directory copied out whole.
    r.ok(&["cp", src.to_str().unwrap(), "t:/scratch/renamed.txt"]);
    assert_eq!(
        r.ok(&["exec", "t", "cat", "/scratch/renamed.txt"]),
        "from the host\n"
    );
    r.ok(&["cp", "t:/scratch", dst.to_str().unwrap()]);
    let mut names: Vec<String> = fs::read_dir(dst.join("scratch"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["host.txt", "in.txt", "renamed.txt"]);
    // Errors inside the namespace come back in one line.
    let out = r.run(&["cp", "t:/scratch/nosuch", dst.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/scratch/nosuch"), "{err}");
}

/// A program that swaps two paths atomically (renameat2 RENAME_EXCHANGE)
/// in a loop, as an exploit in a container would; busybox has none.
const SWAPPER_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE);
}
"#;

/// CVE-2018-15664's race: a process in the container swaps a directory with
/// a symlink to a host directory, atomically and over and over, while `cp`
/// copies out of it (a directory of many files, walked entry by entry, so
/// the swap lands in the middle of the walk) and into it. The container is
/// frozen during each copy, so no copy ever reaches the host directory.
#[test]
fn a_container_swapping_symlinks_cannot_redirect_cp_to_the_host() {
    let r = Root::new();
    let victim = r.dir().join("victim");
    fs::create_dir(&victim).unwrap();
    for i in 0..2000 {
        fs::write(victim.join(format!("f{i}")), "host secret\n").unwrap();
    }
    // An image with the swapper, built statically with the host's compiler.
    let rootfs = r.dir().join("swapper-rootfs");
    engine_common::busybox_rootfs(&rootfs);
    let src = r.dir().join("swap.c");
    fs::write(&src, SWAPPER_C).unwrap();
    let st = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(rootfs.join("swap"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc -static failed (libc6-dev needed)");
    let tar = r.dir().join("swapper.tar");
    let st = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .args(["--numeric-owner", "-C"])
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    r.ok(&["import", tar.to_str().unwrap(), "swapper"]);
    let script = format!(
        "mkdir /w; i=0; while [ $i -lt 2000 ]; do echo inside > /w/f$i; i=$((i+1)); done; \
         ln -s {v} /wl; touch /ready; exec /swap /w /wl",
        v = victim.display()
    );
    r.ok(&[
        "run",
        "-d",
        "--name",
        "swap",
        "--network",
        "none",
        "swapper",
        "sh",
        "-c",
        &script,
    ]);
    engine_common::wait_for("the files", || {
        r.run(&["exec", "swap", "test", "-e", "/ready"])
            .status
            .success()
    });
    let mut outs = 0;
    for _ in 0..8 {
        let out = r.run(&["cp", "swap:/w", "-"]);
        if out.status.success() {
            outs += 1;
        }
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("host secret"),
            "cp read the host's files through the container"
        );
    }
    let payload = r.dir().join("payload");
    fs::write(&payload, "from cp\n").unwrap();
    let mut ins = 0;
    for _ in 0..30 {
        if r.run(&["cp", payload.to_str().unwrap(), "swap:/w/"])
            .status
            .success()
        {
            ins += 1;
        }
        assert!(
            !victim.join("payload").exists(),
            "cp wrote into the host's directory through the container"
        );
    }
    // Copies did happen (those that found the symlink failed inside).
    assert!(ins > 0 && outs > 0, "{ins} copies in, {outs} out");
    // And the container runs on, thawed.
    assert_eq!(r.state_of("swap").unwrap().0, "running");
    r.ok(&["exec", "swap", "true"]);
}
