//! Volumes with real containers (needs root): `hako volume`, `-v` with
//! named and anonymous volumes, `--mount`, pre-fill from the image, `rm -v`
//! and `--rm`, prune. A temp root per test, busybox imported at test time.

mod engine_common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use engine_common::{busybox_rootfs, Root};

/// Import busybox plus `extra` files as image `name`, with `--change`s.
fn import_image(r: &Root, name: &str, changes: &[&str], extra: impl FnOnce(&Path)) {
    let rootfs = r.dir().join(format!("rootfs-{name}"));
    busybox_rootfs(&rootfs);
    extra(&rootfs);
    let tar = r.dir().join(format!("{name}.tar"));
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("--numeric-owner")
        .arg("--xattrs")
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("--change".into());
        args.push(c.to_string());
    }
    args.push(tar.to_string_lossy().into_owned());
    args.push(name.into());
    r.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// An image whose /data holds `file` (uid 1000, mode 0640) and a symlink.
fn image_with_data(r: &Root, name: &str, changes: &[&str]) {
    import_image(r, name, changes, |root| {
        let data = root.join("data");
        fs::create_dir_all(data.join("sub")).unwrap();
        fs::write(data.join("file"), "from the image\n").unwrap();
        fs::set_permissions(data.join("file"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::lchown(data.join("file"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::symlink("file", data.join("link")).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o750)).unwrap();
    });
}

fn volumes(r: &Root) -> BTreeSet<String> {
    r.ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failed command's error: one line, naming `what`.
fn one_line_error(out: &std::process::Output, what: &str) -> String {
    assert!(!out.status.success());
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("Error: ") && err.contains(what), "{err}");
    err
}

#[test]
fn volume_commands_create_ls_inspect_rm() {
    let r = Root::new();
    assert_eq!(
        r.ok(&["volume", "create", "--label", "team=db", "data"]),
        "data\n"
    );
    // Creating an existing volume is no error (docker).
    assert_eq!(r.ok(&["volume", "create", "data"]), "data\n");
    let random = r.ok(&["volume", "create"]).trim().to_string();
    assert!(random.len() == 64 && random.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        volumes(&r),
        BTreeSet::from(["data".to_string(), random.clone()])
    );
    let table = r.ok(&["volume", "ls"]);
    assert!(table.starts_with("DRIVER    VOLUME NAME\n") && table.contains("local     data\n"));
    let json = r.ok(&[
        "volume",
        "ls",
        "--format",
        "json",
        "--filter",
        "label=team=db",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        (v["Name"].as_str(), v["Labels"].as_str()),
        (Some("data"), Some("team=db"))
    );
    assert_eq!(r.ok(&["volume", "ls", "-q", "-f", "name=dat"]), "data\n");
    assert_eq!(r.ok(&["volume", "ls", "-q", "-f", "dangling=false"]), "");

    let v: serde_json::Value = serde_json::from_str(&r.ok(&["volume", "inspect", "data"])).unwrap();
    let v = &v[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "db");
    assert!(v["Options"].is_null());
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'));
    let mountpoint = r.root().join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.to_str().unwrap());
    assert!(mountpoint.is_dir());
    assert_eq!(
        r.ok(&["volume", "inspect", "-f", "{{ .Mountpoint }}", "data"]),
        format!("{}\n", mountpoint.display())
    );
    assert_eq!(
        r.ok(&[
            "volume",
            "ls",
            "-f",
            "name=data",
            "--format",
            "{{.Name}}\\t{{.Driver}}"
        ]),
        "data\tlocal\n"
    );

    one_line_error(
        &r.run(&["volume", "inspect", "nope"]),
        "no such volume: nope",
    );
    one_line_error(&r.run(&["volume", "rm", "nope"]), "nope");
    r.ok(&["volume", "rm", "-f", "nope"]);
    assert_eq!(
        r.ok(&["volume", "rm", "data", &random]),
        format!("data\n{random}\n")
    );
    assert!(volumes(&r).is_empty());
    assert!(!r.root().join("volumes/data").exists());
}

#[test]
fn named_volume_outlives_containers_and_is_refused_removal_while_used() {
    let r = Root::new();
    r.ok(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert!(volumes(&r).contains("shared"));
    let out = r.ok(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out, "kept\n");

    r.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "shared:/data",
        "busybox",
        "sleep",
        "1000",
    ]);
    let err = one_line_error(&r.run(&["volume", "rm", "shared"]), "in use");
    assert!(err.contains("shared") && err.contains("user"), "{err}");
    // -f does not override use (docker).
    one_line_error(&r.run(&["volume", "rm", "-f", "shared"]), "in use");
    // A stopped container still uses it.
    r.ok(&["stop", "-t", "0", "user"]);
    one_line_error(&r.run(&["volume", "rm", "shared"]), "user");
    assert_eq!(
        r.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]),
        ""
    );
    // rm -v keeps named volumes.
    r.ok(&["rm", "-v", "user"]);
    assert_eq!(
        r.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]),
        "shared\n"
    );
    r.ok(&["volume", "rm", "shared"]);
    assert!(volumes(&r).is_empty());
}

#[test]
fn empty_volumes_are_prefilled_from_the_image_unless_nocopy() {
    let r = Root::new();
    image_with_data(&r, "withdata", &[]);
    let out = r.ok(&[
        "run",
        "--rm",
        "-v",
        "pre:/data",
        "withdata",
        "sh",
        "-c",
        "cat /data/file; cat /data/link",
    ]);
    assert_eq!(out, "from the image\nfrom the image\n");
    let data = r.root().join("volumes/pre/_data");
    let f = fs::metadata(data.join("file")).unwrap();
    assert_eq!((f.uid(), f.mode() & 0o7777), (1000, 0o640));
    assert_eq!(fs::read_link(data.join("link")).unwrap(), Path::new("file"));
    assert!(data.join("sub").is_dir());
    // The volume root takes the image directory's mode.
    assert_eq!(fs::metadata(&data).unwrap().mode() & 0o7777, 0o750);

    // Not empty any more: the next container sees the volume's content, not the image's.
    r.ok(&[
        "run",
        "--rm",
        "-v",
        "pre:/data",
        "withdata",
        "sh",
        "-c",
        "echo changed > /data/file",
    ]);
    let out = r.ok(&[
        "run",
        "--rm",
        "-v",
        "pre:/data",
        "withdata",
        "cat",
        "/data/file",
    ]);
    assert_eq!(out, "changed\n");

    for spec in [
        vec!["-v", "nc1:/data:nocopy"],
        vec!["--mount", "type=volume,src=nc2,dst=/data,volume-nocopy"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(spec);
        args.extend(["withdata", "ls", "-A", "/data"]);
        assert_eq!(r.ok(&args), "", "{args:?}");
    }
    assert_eq!(
        fs::read_dir(r.root().join("volumes/nc1/_data"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn image_volumes_become_anonymous_volumes() {
    let r = Root::new();
    image_with_data(&r, "withvol", &["VOLUME /data"]);
    r.ok(&["run", "-d", "--name", "iv", "withvol", "sleep", "1000"]);
    let mounts = r.inspect("iv")["Mounts"].clone();
    let m = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/data")
        .unwrap_or_else(|| panic!("{mounts}"))
        .clone();
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Driver"], "local");
    assert_eq!(m["RW"], true);
    let name = m["Name"].as_str().unwrap().to_string();
    assert_eq!(name.len(), 64);
    let v: serde_json::Value = serde_json::from_str(&r.ok(&["volume", "inspect", &name])).unwrap();
    assert!(v[0]["Labels"]
        .as_object()
        .unwrap()
        .contains_key("com.docker.volume.anonymous"));
    assert_eq!(m["Source"], v[0]["Mountpoint"]);
    let out = r.ok(&["exec", "iv", "cat", "/data/file"]);
    assert_eq!(out, "from the image\n");
    // A user mount on the same path replaces the image's volume.
    let out = r.ok(&[
        "run", "--rm", "--tmpfs", "/data", "withvol", "ls", "-A", "/data",
    ]);
    assert_eq!(out, "");
    r.ok(&["rm", "-f", "-v", "iv"]);
    assert!(volumes(&r).is_empty(), "{:?}", volumes(&r));
}

#[test]
fn read_only_volumes_refuse_writes() {
    let r = Root::new();
    for spec in [
        vec!["-v", "ro1:/data:ro"],
        vec!["--mount", "type=volume,source=ro1,target=/data,readonly"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(spec);
        args.extend(["busybox", "touch", "/data/x"]);
        let out = r.run(&args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!r.root().join("volumes/ro1/_data/x").exists());
    r.ok(&[
        "run",
        "--rm",
        "-v",
        "ro1:/data",
        "busybox",
        "touch",
        "/data/x",
    ]);
    assert!(r.root().join("volumes/ro1/_data/x").exists());
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_rm_but_stay_with_plain_rm() {
    let r = Root::new();
    let anon_of = |name: &str| -> String {
        let v = r.inspect(name);
        v["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == "/anon")
            .unwrap()["Name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    r.ok(&[
        "run", "-d", "--name", "plain", "-v", "/anon", "busybox", "sleep", "1000",
    ]);
    let kept = anon_of("plain");
    assert!(volumes(&r).contains(&kept));
    r.ok(&["rm", "-f", "plain"]);
    assert!(
        volumes(&r).contains(&kept),
        "plain rm keeps anonymous volumes"
    );

    r.ok(&[
        "run",
        "-d",
        "--name",
        "withv",
        "-v",
        "/anon",
        "-v",
        "named:/named",
        "busybox",
        "sleep",
        "1000",
    ]);
    let gone = anon_of("withv");
    r.ok(&["rm", "-f", "-v", "withv"]);
    let now = volumes(&r);
    assert!(
        !now.contains(&gone) && now.contains("named") && now.contains(&kept),
        "{now:?}"
    );

    // --rm takes its anonymous volumes (foreground and detached).
    let before = volumes(&r);
    r.ok(&[
        "run",
        "--rm",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo x > /anon/f",
    ]);
    r.ok(&[
        "run",
        "--rm",
        "-d",
        "--name",
        "bg",
        "--mount",
        "type=volume,target=/anon",
        "busybox",
        "sleep",
        "1000",
    ]);
    let bg = anon_of("bg");
    assert!(volumes(&r).contains(&bg));
    r.ok(&["stop", "-t", "0", "bg"]);
    engine_common::wait_for("the --rm container and its volume to go", || {
        r.state_of("bg").is_none() && !volumes(&r).contains(&bg)
    });
    assert_eq!(volumes(&r), before);
}

#[test]
fn prune_removes_unused_anonymous_volumes_then_all_unused() {
    let r = Root::new();
    r.ok(&["volume", "create", "named1"]);
    r.ok(&["run", "--name", "left", "-v", "/anon", "busybox", "true"]);
    r.ok(&["rm", "left"]);
    let left: Vec<String> = volumes(&r).into_iter().filter(|v| v.len() == 64).collect();
    assert_eq!(left.len(), 1);
    r.ok(&[
        "run", "-d", "--name", "busy", "-v", "/anon", "-v", "used:/u", "busybox", "sleep", "1000",
    ]);
    fs::write(
        r.root().join("volumes").join(&left[0]).join("_data/f"),
        "12345",
    )
    .unwrap();

    // What an interrupted create or rm left goes with the next prune.
    let vols = r.root().join("volumes");
    for leftover in [".trash-gone-0123/_data/sub", ".new-half/_data"] {
        fs::create_dir_all(vols.join(leftover)).unwrap();
    }
    let out = r.ok(&["volume", "prune", "-f"]);
    assert!(!vols.join(".trash-gone-0123").exists() && !vols.join(".new-half").exists());
    assert_eq!(
        out,
        format!(
            "Deleted Volumes:\n{}\n\nTotal reclaimed space: 5B\n",
            left[0]
        )
    );
    let now = volumes(&r);
    assert!(
        now.contains("named1") && now.contains("used") && now.len() == 3,
        "{now:?}"
    );

    let out = r.ok(&["volume", "prune", "-f", "--all"]);
    assert_eq!(
        out,
        "Deleted Volumes:\nnamed1\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(
        r.ok(&["volume", "prune", "-f", "-a"]),
        "Total reclaimed space: 0B\n"
    );
    // What the running container uses stays.
    assert_eq!(volumes(&r).len(), 2);
    r.ok(&["rm", "-f", "busy"]);
    r.ok(&["volume", "prune", "-f", "-a", "--filter", "label=nothing"]);
    assert_eq!(volumes(&r).len(), 2);
    r.ok(&["volume", "prune", "-f", "-a"]);
    assert!(volumes(&r).is_empty());
}

#[test]
fn mount_flag_bind_tmpfs_and_inspect_shape() {
    let r = Root::new();
    let host = r.dir().join("hostdir");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "host file\n").unwrap();
    let bind = format!("type=bind,source={},target=/h,readonly", host.display());
    r.ok(&[
        "run",
        "-d",
        "--name",
        "m",
        "--mount",
        &bind,
        "--mount",
        "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
        "--mount",
        "type=volume,src=mv,dst=/v",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(r.ok(&["exec", "m", "cat", "/h/in"]), "host file\n");
    let out = r.run(&["exec", "m", "touch", "/h/x"]);
    assert_ne!(out.status.code(), Some(0));
    let mounts = r.ok(&["exec", "m", "cat", "/proc/mounts"]);
    let t = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/t"))
        .unwrap();
    assert!(
        t.starts_with("tmpfs /t tmpfs") && t.contains("size=1024k") && t.contains("mode=1770"),
        "{t}"
    );
    r.ok(&["exec", "m", "sh", "-c", "echo v > /v/f"]);
    assert!(r.root().join("volumes/mv/_data/f").exists());

    let v = r.inspect("m");
    let by_dest = |d: &str| -> serde_json::Value {
        v["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == d)
            .unwrap()
            .clone()
    };
    let h = by_dest("/h");
    assert_eq!(
        (h["Type"].as_str(), h["RW"].as_bool()),
        (Some("bind"), Some(false))
    );
    assert_eq!(h["Source"], host.to_str().unwrap());
    assert_eq!(h["Propagation"], "rprivate");
    let t = by_dest("/t");
    assert_eq!(
        (t["Type"].as_str(), t["RW"].as_bool()),
        (Some("tmpfs"), Some(true))
    );
    let vm = by_dest("/v");
    assert_eq!(
        (vm["Type"].as_str(), vm["Name"].as_str()),
        (Some("volume"), Some("mv"))
    );
    assert_eq!(vm["Driver"], "local");
    assert_eq!(v["HostConfig"]["Mounts"].as_array().unwrap().len(), 3);
    r.ok(&["rm", "-f", "m"]);
}

#[test]
fn local_driver_options_mount_a_tmpfs_volume() {
    let r = Root::new();
    r.ok(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=2m,mode=700",
        "tv",
    ]);
    let out = r.ok(&[
        "run",
        "--rm",
        "-v",
        "tv:/t",
        "busybox",
        "sh",
        "-c",
        "grep ' /t ' /proc/mounts; echo x > /t/f",
    ]);
    assert!(
        out.starts_with("tmpfs /t tmpfs") && out.contains("size=2048k"),
        "{out}"
    );
    let data = r.root().join("volumes/tv/_data");
    let on_host = |p: &Path| {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
    };
    assert!(on_host(&data));
    assert!(data.join("f").exists());
    let v: serde_json::Value = serde_json::from_str(&r.ok(&["volume", "inspect", "tv"])).unwrap();
    assert_eq!(v[0]["Options"]["type"], "tmpfs");
    // Gone after a reboot (here: unmounted by hand), mounted again by start.
    r.ok(&[
        "create",
        "--name",
        "again",
        "-v",
        "tv:/t",
        "busybox",
        "grep",
        " /t ",
        "/proc/mounts",
    ]);
    nix::mount::umount(&data).unwrap();
    assert!(!on_host(&data));
    r.ok(&["start", "again"]);
    assert_eq!(r.ok(&["wait", "again"]).trim(), "0");
    assert!(on_host(&data));
    r.ok(&["rm", "again"]);
    r.ok(&["volume", "rm", "tv"]);
    assert!(!on_host(&data));
    one_line_error(
        &r.run(&["volume", "create", "--opt", "size=1g", "bad1"]),
        "invalid option \"size\"",
    );
    one_line_error(
        &r.run(&["volume", "create", "--driver", "nfs", "bad2"]),
        "nfs",
    );
}

#[test]
fn bad_names_and_malformed_mounts_are_one_line_errors() {
    let r = Root::new();
    one_line_error(
        &r.run(&["volume", "create", "a"]),
        "invalid volume name \"a\"",
    );
    one_line_error(&r.run(&["volume", "create", "bad/name"]), "bad/name");
    let cases: &[(&[&str], &str)] = &[
        (&["-v", "bad name:/x"], "bad name"),
        (&["-v", "data:relative"], "must be absolute"),
        (&["-v", "data:/x:bogus"], "bogus"),
        (&["--mount", "type=bind,target=/x"], "needs a source"),
        (&["--mount", "type=volume,src=data"], "target is required"),
        (&["--mount", "type=nfs,target=/x"], "nfs"),
        (&["--mount", "target=/x,colour=red"], "colour"),
        (
            &["--mount", "type=tmpfs,target=/x,tmpfs-mode=9"],
            "tmpfs-mode",
        ),
        (
            &["--mount", "type=bind,source=/no/such/dir,target=/x"],
            "bind source path does not exist",
        ),
        (
            &["-v", "a1:/x", "--mount", "type=tmpfs,target=/x/"],
            "duplicate mount point: /x",
        ),
    ];
    for (flags, what) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "true"]);
        let out = r.run(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        one_line_error(&out, what);
    }
    assert!(r.ps_all().is_empty(), "{:?}", r.ps_all());
    assert!(volumes(&r).is_empty(), "{:?}", volumes(&r));
}

#[test]
fn concurrent_first_use_prefills_once() {
    let r = Root::new();
    image_with_data(&r, "withdata", &[]);
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    r.run(&[
                        "run",
                        "--rm",
                        "-v",
                        "race:/data",
                        "withdata",
                        "cat",
                        "/data/file",
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert!(out.status.success(), "{}", stderr(out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from the image\n");
    }
    assert_eq!(volumes(&r), BTreeSet::from(["race".to_string()]));
}

#[test]
fn volumes_from_shares_another_containers_mounts() {
    let r = Root::new();
    let host = r.dir().join("h");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "bound\n").unwrap();
    let bind = format!("{}:/h", host.display());
    r.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "-v",
        "/anon",
        "-v",
        "named2:/n",
        "-v",
        &bind,
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = r.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "src",
        "busybox",
        "sh",
        "-c",
        "echo shared > /anon/f; cat /h/in",
    ]);
    assert_eq!(out, "bound\n");
    assert_eq!(r.ok(&["exec", "src", "cat", "/anon/f"]), "shared\n");
    // :ro overrides the source's mode; the user's own mount on a path wins.
    let out = r.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "src:ro",
        "busybox",
        "touch",
        "/anon/g",
    ]);
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    let out = r.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "src",
        "--tmpfs",
        "/anon",
        "busybox",
        "ls",
        "-A",
        "/anon",
    ]);
    assert_eq!(out, "");
    // The --rm users did not take the shared anonymous volume with them.
    let anon: Vec<String> = volumes(&r).into_iter().filter(|v| v.len() == 64).collect();
    assert_eq!(anon.len(), 1);
    one_line_error(
        &r.run(&["run", "--rm", "--volumes-from", "nosuch", "busybox", "true"]),
        "nosuch",
    );
    one_line_error(
        &r.run(&["run", "--rm", "--volumes-from", "src:rx", "busybox", "true"]),
        "rx",
    );
    r.ok(&["rm", "-f", "-v", "src"]);
    assert_eq!(volumes(&r), BTreeSet::from(["named2".to_string()]));
}

/// A tmpfs mounted on the host for a test; unmounted on drop.
struct HostTmpfs(std::path::PathBuf);

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn bind_recursive_options_decide_what_submounts_become() {
    let r = Root::new();
    let src = r.dir().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("top"), "t").unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &src.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let _sub = HostTmpfs(src.join("sub"));
    fs::write(src.join("sub/inner"), "i").unwrap();
    let run = |opts: &str, script: &str| {
        r.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--mount",
            &format!("type=bind,src={},dst=/m{opts}", src.display()),
            "busybox",
            "sh",
            "-c",
            script,
        ])
    };
    let text = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    // Default: the submount comes along.
    assert_eq!(text(run("", "cat /m/sub/inner")), "i");
    // disabled (and the older bind-nonrecursive): the directory beneath only.
    for opt in [",bind-recursive=disabled", ",bind-nonrecursive=true"] {
        assert_eq!(
            text(run(opt, "ls /m/sub | wc -l; cat /m/top")),
            "0\nt",
            "{opt}"
        );
    }
    // readonly alone: the top is read-only, the submount stays writable
    // (docker's "writable"); bind-recursive=readonly makes both read-only.
    let script = "touch /m/new 2>/dev/null && echo top-rw || echo top-ro; \
                  touch /m/sub/new 2>/dev/null && echo sub-rw || echo sub-ro";
    assert_eq!(
        text(run(",readonly,bind-recursive=writable", script)),
        "top-ro\nsub-rw\n"
    );
    assert_eq!(
        text(run(",readonly,bind-recursive=readonly", script)),
        "top-ro\nsub-ro\n"
    );
    for (opts, want) in [
        (",bind-recursive=readonly", "needs readonly"),
        (",bind-recursive=sometimes", "use enabled, disabled"),
    ] {
        let out = run(opts, "true");
        assert!(!out.status.success(), "{opts}");
        assert!(one_line_error(&out, want).contains(want));
    }
    let out = r.run(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,dst=/v,bind-recursive=disabled",
        "busybox",
        "true",
    ]);
    one_line_error(&out, "bind-recursive is for type=bind");
}
