//! `hako import`, `images`, `image inspect`, `image history`, `tag`, `rmi`,
//! `image prune`, `image mount`/`unmount` on a busybox image built at test
//! time. Run as root.

mod common;

use std::process::Command;

use common::{busybox_rootfs, describe, tar_dir, Hako, Mounted};
use serde_json::Value;

/// A hako root with busybox imported as `name`; returns the image id and the rootfs dir.
fn with_busybox(h: &Hako, name: &str, gzip: bool) -> (String, std::path::PathBuf) {
    let rootfs = h.dir().join(format!("rootfs-{}", common::unique("bb")));
    busybox_rootfs(&rootfs);
    let tarball = h
        .dir()
        .join(if gzip { "rootfs.tar.gz" } else { "rootfs.tar" });
    tar_dir(&rootfs, &tarball, gzip);
    let id = h.ok(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        "--change",
        "LABEL team=infra",
        tarball.to_str().unwrap(),
        name,
    ]);
    (id.trim().to_string(), rootfs)
}

#[test]
fn import_list_inspect_history() {
    let h = Hako::new();
    let name = common::unique("localhost/busybox");
    let (id, _) = with_busybox(&h, &format!("{name}:1"), true);
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let short = &id[7..19];

    let table = h.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY") && header.contains("IMAGE ID") && header.contains("SIZE"),
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&name) && row.contains(short), "{table}");
    assert!(h.ok(&["images", "--digests"]).contains("sha256:"));
    assert_eq!(h.ok(&["images", "-q"]).trim(), short);

    // docker's `images --format json`: one object per line, docker's keys.
    let lines = h.ok(&["images", "--format", "json"]);
    assert_eq!(lines.lines().count(), 1, "{lines}");
    let json: Value = serde_json::from_str(&lines).unwrap();
    assert_eq!(json["ID"], short);
    assert_eq!(json["Repository"], name.as_str());
    assert_eq!(json["Tag"], "1");
    assert!(
        json["CreatedAt"].as_str().unwrap().ends_with(" +0000 UTC"),
        "{json}"
    );
    assert_eq!(json["Labels"]["team"], "infra");

    // Filters.
    assert_eq!(
        h.ok(&["images", "-q", "--filter", &format!("reference={name}")])
            .trim(),
        short
    );
    assert_eq!(
        h.ok(&["images", "-q", "--filter", "reference=nothing-like-it"])
            .trim(),
        ""
    );
    assert_eq!(
        h.ok(&["images", "-q", "--filter", "label=team=infra"])
            .trim(),
        short
    );
    assert_eq!(
        h.ok(&["images", "-q", "--filter", "label=team=other"])
            .trim(),
        ""
    );
    assert_eq!(
        h.ok(&["images", "-q", "--filter", "dangling=true"]).trim(),
        ""
    );
    let err = h.fails(&["images", "--filter", "colour=blue"]);
    assert!(
        err.starts_with("Error: ") && err.contains("colour") && err.lines().count() == 1,
        "{err}"
    );

    let inspect: Value =
        serde_json::from_str(&h.ok(&["image", "inspect", &format!("{name}:1")])).unwrap();
    let i = &inspect[0];
    assert_eq!(i["Id"], id);
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["Architecture"], hako_image_arch());
    assert_eq!(i["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(i["Size"].as_u64().unwrap() > 1_000_000);
    assert_eq!(i["RepoTags"][0], format!("{name}:1"));
    // By id prefix too.
    let by_prefix: Value = serde_json::from_str(&h.ok(&["image", "inspect", short])).unwrap();
    assert_eq!(by_prefix[0]["Id"], id);

    let history = h.ok(&["image", "history", &format!("{name}:1")]);
    assert!(
        history.contains("CREATED BY")
            && history.contains("hako import")
            && history.contains(short),
        "{history}"
    );

    let err = h.fails(&["image", "inspect", "no-such-image"]);
    assert_eq!(err.trim(), "Error: image no-such-image not found");
}

fn hako_image_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn tag_rmi_prune() {
    let h = Hako::new();
    let name = common::unique("localhost/app");
    let (id, _) = with_busybox(&h, &format!("{name}:1"), false);
    h.ok(&[
        "tag",
        &format!("{name}:1"),
        &format!("{name}:2"),
        "example.com:5000/team/app:v9",
    ]);
    let listed = h.ok(&["images"]);
    assert!(
        listed.contains("example.com:5000/team/app") && listed.contains(" v9 "),
        "{listed}"
    );

    // Removing the id while several names point at it needs -f.
    let err = h.fails(&["rmi", &id]);
    assert!(err.contains("referenced by 3 names"), "{err}");
    // Removing a name only untags.
    let out = h.ok(&["rmi", &format!("{name}:2")]);
    assert_eq!(out.trim(), format!("Untagged: {name}:2"));
    assert!(h.root().join("blobs/sha256").join(&id[7..]).exists());

    // Re-importing under the same name leaves the old image dangling.
    let rootfs2 = h.dir().join("rootfs2");
    std::fs::create_dir_all(rootfs2.join("etc")).unwrap();
    std::fs::write(rootfs2.join("etc/version"), "2").unwrap();
    let tar2 = h.dir().join("r2.tar");
    tar_dir(&rootfs2, &tar2, false);
    h.ok(&["rmi", "example.com:5000/team/app:v9"]);
    let id2 = h
        .ok(&["import", tar2.to_str().unwrap(), &format!("{name}:1")])
        .trim()
        .to_string();
    assert_ne!(id, id2);
    let dangling = h.ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert_eq!(dangling.trim(), id);
    assert!(h.ok(&["images"]).contains("<none>"));

    let pruned = h.ok(&["image", "prune"]);
    // docker's form: the ids, then the space given back.
    let mut lines = pruned.lines();
    assert_eq!(lines.next(), Some("Deleted Images:"), "{pruned}");
    assert_eq!(
        lines.next(),
        Some(format!("deleted: {id}").as_str()),
        "{pruned}"
    );
    assert_eq!(lines.next(), Some(""), "{pruned}");
    let total = lines.next().unwrap_or_default();
    assert!(
        total.starts_with("Total reclaimed space: ") && !total.ends_with(" 0B"),
        "{pruned}"
    );
    assert!(!h.root().join("blobs/sha256").join(&id[7..]).exists());
    assert_eq!(h.ok(&["images", "-q"]).lines().count(), 1);

    // rmi of the last name deletes the image and its blobs and snapshots.
    let out = h.ok(&["rmi", &format!("{name}:1")]);
    assert!(
        out.contains("Untagged") && out.contains(&format!("Deleted: {id2}")),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(h.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(h.root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );

    // prune -a removes named images too.
    h.ok(&["import", tar2.to_str().unwrap(), "x:1"]);
    h.ok(&["image", "prune", "-a"]);
    assert_eq!(h.ok(&["images", "-q"]).trim(), "");
    assert_eq!(
        std::fs::read_dir(h.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    let err = h.fails(&["rmi", "ghost:1"]);
    assert!(
        err.contains("ghost:1") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn mounted_image_is_the_rootfs_and_runs() {
    let h = Hako::new();
    let name = common::unique("localhost/mnt");
    let (_, rootfs) = with_busybox(&h, &name, true);
    let m = Mounted::new(&h, &name);
    common::assert_same_tree(&describe(&rootfs), &describe(&m.path));
    // The merged tree is a working root filesystem.
    let out = Command::new("chroot")
        .arg(&m.path)
        .args(["/bin/sh", "-c", "echo hello from $(cat /etc/hostname)"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from hako"
    );
    // A mounted image cannot be removed.
    let err = h.fails(&["rmi", &name]);
    assert!(err.contains("mounted"), "{err}");
    drop(m);
    h.ok(&["rmi", &name]);
}

#[test]
fn hostile_import_fails_with_one_line_naming_the_entry() {
    let h = Hako::new();
    let mut b = tar::Builder::new(Vec::new());
    let new_header = || {
        let mut hd = tar::Header::new_gnu();
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_mtime(1_700_000_000);
        hd
    };
    let mut hd = new_header();
    hd.set_entry_type(tar::EntryType::Symlink);
    hd.set_size(0);
    hd.set_mode(0o777);
    b.append_link(&mut hd, "etc", "/etc").unwrap();
    let mut hd = new_header();
    hd.set_entry_type(tar::EntryType::Regular);
    hd.set_size(2);
    hd.set_mode(0o644);
    b.append_data(&mut hd, "etc/hako-pwned", &b"x\n"[..])
        .unwrap();
    let tarball = h.dir().join("evil.tar");
    std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();
    let err = h.fails(&["import", tarball.to_str().unwrap(), "evil:1"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("etc/hako-pwned") && err.contains("evil.tar") && err.contains("refusing"),
        "{err}"
    );
    assert!(!std::path::Path::new("/etc/hako-pwned").exists());
    assert_eq!(h.ok(&["images", "-q"]).trim(), "");
}
