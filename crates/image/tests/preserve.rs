//! Unpacking keeps what a layer says: hardlinks, symlinks, device nodes,
//! fifos, xattrs, owners, modes and mtimes; whiteouts and opaque directories
//! become overlayfs whiteouts; gzip, zstd and plain layers all unpack; and an
//! overlay mount of the image shows the merged tree. Run as root.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{Layer, MountGuard};
use hako_image::manifest::Compression;
use hako_image::{ImageStore, NoProgress};

const T1: u64 = 1_600_000_000;
const T2: u64 = 1_650_000_000;

fn base_layer() -> Vec<u8> {
    Layer::new()
        .dir("d", 0o750, 1000, 1001, T1)
        .file("d/f", b"hello", 0o4755, 123, 456, T2)
        .hardlink("d/h", "d/f")
        .symlink("s", "d/f")
        .dir("dev", 0o755, 0, 0, T1)
        .device("dev/null2", tar::EntryType::Char, 1, 3)
        .device("dev/loopx", tar::EntryType::Block, 7, 200)
        .device("dev/fifo", tar::EntryType::Fifo, 0, 0)
        .file_with_xattrs(
            "x",
            b"attrs",
            &[("user.hako", b"value"), ("trusted.hako", b"t")],
        )
        .file_with_xattrs("y", b"", &[("trusted.overlay.redirect", b"/elsewhere")])
        .file("gone", b"will be whited out", 0o644, 0, 0, T1)
        .dir("o", 0o755, 0, 0, T1)
        .file("o/old", b"hidden by opaque", 0o644, 0, 0, T1)
        .file("keep", b"lower", 0o644, 0, 0, T1)
        .tar()
}

fn top_layer() -> Vec<u8> {
    Layer::new()
        .file(".wh.gone", b"", 0o644, 0, 0, T1)
        .dir("o", 0o700, 0, 0, T2)
        .file("o/.wh..wh..opq", b"", 0o644, 0, 0, T1)
        .file("o/new", b"visible", 0o644, 0, 0, T1)
        .file("keep", b"upper", 0o600, 0, 0, T2)
        .tar()
}

fn third_layer() -> Vec<u8> {
    Layer::new().file("third", b"3", 0o644, 0, 0, T1).tar()
}

#[test]
fn layers_unpack_with_metadata_and_mount_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let (manifest, id) = common::write_layout(
        &layout,
        &[
            (base_layer(), Compression::Gzip),
            (top_layer(), Compression::Zstd),
            (third_layer(), Compression::None),
        ],
        "docker.io/library/preserve:1",
    );
    let mut store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let loaded = hako_image::archive::load(&mut store, &layout, &NoProgress).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].manifest_digest, manifest);
    assert_eq!(
        loaded[0].names[0].to_string(),
        "docker.io/library/preserve:1"
    );

    let image = store.load_image(&loaded[0]).unwrap();
    let chain = image.chain_ids().unwrap();
    assert_eq!(chain.len(), 3);
    let base = store.snapshots().fs_path(&chain[0]);
    let top = store.snapshots().fs_path(&chain[1]);

    // Owners, modes (setuid included), mtimes.
    let d = fs::symlink_metadata(base.join("d")).unwrap();
    assert!(d.is_dir());
    assert_eq!(
        (d.mode() & 0o7777, d.uid(), d.gid(), d.mtime() as u64),
        (0o750, 1000, 1001, T1)
    );
    let f = fs::symlink_metadata(base.join("d/f")).unwrap();
    assert_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid(), f.mtime() as u64),
        (0o4755, 123, 456, T2)
    );
    // Hardlink: same inode.
    let h = fs::symlink_metadata(base.join("d/h")).unwrap();
    assert_eq!(h.ino(), f.ino());
    assert_eq!(f.nlink(), 2);
    // Symlink kept verbatim.
    assert_eq!(fs::read_link(base.join("s")).unwrap().to_str(), Some("d/f"));
    // Devices and fifo.
    let c = fs::symlink_metadata(base.join("dev/null2")).unwrap();
    assert!(c.file_type().is_char_device());
    assert_eq!(c.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(c.gid(), 5);
    let b = fs::symlink_metadata(base.join("dev/loopx")).unwrap();
    assert!(b.file_type().is_block_device());
    assert_eq!(b.rdev(), nix::sys::stat::makedev(7, 200));
    assert!(fs::symlink_metadata(base.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    // Xattrs.
    assert_eq!(
        common::get_xattr(&base.join("x"), "user.hako").as_deref(),
        Some(&b"value"[..])
    );
    assert_eq!(
        common::get_xattr(&base.join("x"), "trusted.hako").as_deref(),
        Some(&b"t"[..])
    );

    // A layer cannot set overlayfs' own xattrs.
    assert_eq!(
        common::get_xattr(&base.join("y"), "trusted.overlay.redirect"),
        None
    );

    // The top layer in overlay format: a 0/0 char device whiteout, an opaque directory.
    let wh = fs::symlink_metadata(top.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!top.join(".wh.gone").exists());
    assert_eq!(
        common::get_xattr(&top.join("o"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("o/.wh..wh..opq").exists());
    let o = fs::symlink_metadata(top.join("o")).unwrap();
    assert_eq!((o.mode() & 0o7777, o.mtime() as u64), (0o700, T2));

    // The merged view.
    let container = tmp.path().join("container");
    let (_, rootfs) = store.mount(&id.to_string(), &container).unwrap();
    let guard = MountGuard(container.clone());
    let r = &rootfs.rootfs;
    assert_eq!(
        common::tree(r),
        [
            "d",
            "d/f",
            "d/h",
            "dev",
            "dev/fifo",
            "dev/loopx",
            "dev/null2",
            "keep",
            "o",
            "o/new",
            "s",
            "third",
            "x",
            "y"
        ]
    );
    assert_eq!(fs::read(r.join("keep")).unwrap(), b"upper");
    assert_eq!(fs::read(r.join("s")).unwrap(), b"hello");
    assert_eq!(fs::read(r.join("o/new")).unwrap(), b"visible");
    // Writes go to the container's upper directory, not to the snapshots.
    fs::write(r.join("new-file"), b"w").unwrap();
    assert!(container.join("upper/new-file").exists());
    assert!(!base.join("new-file").exists());
    // A mounted image cannot be removed.
    assert!(store.remove(&id.to_string(), true).is_err());
    store.unmount(&container.display().to_string()).unwrap();
    drop(guard);
    assert!(!container.join("rootfs/keep").exists());
    store.remove(&id.to_string(), false).unwrap();
    assert!(store.content().list().unwrap().is_empty());
    assert!(store.snapshots().list().unwrap().is_empty());
}

#[test]
fn shared_layers_are_unpacked_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let base = Layer::new().file("base", b"b", 0o644, 0, 0, T1).tar();
    let a = Layer::new().file("a", b"a", 0o644, 0, 0, T1).tar();
    let b = Layer::new().file("b", b"b", 0o644, 0, 0, T1).tar();
    let la = tmp.path().join("la");
    let lb = tmp.path().join("lb");
    common::write_layout(
        &la,
        &[(base.clone(), Compression::Gzip), (a, Compression::Gzip)],
        "docker.io/library/a:1",
    );
    common::write_layout(
        &lb,
        &[(base, Compression::Gzip), (b, Compression::Gzip)],
        "docker.io/library/b:1",
    );
    hako_image::archive::load(&mut store, &la, &NoProgress).unwrap();
    let first = store.snapshots().list().unwrap();
    let base_snapshot = store.snapshots().fs_path(
        &first
            .iter()
            .find(|c| store.snapshots().fs_path(c).join("base").exists())
            .unwrap()
            .clone(),
    );
    let inode = fs::metadata(base_snapshot.join("base")).unwrap().ino();
    hako_image::archive::load(&mut store, &lb, &NoProgress).unwrap();
    // Three snapshots, not four: the shared base was reused, untouched.
    assert_eq!(store.snapshots().list().unwrap().len(), 3);
    assert_eq!(
        fs::metadata(base_snapshot.join("base")).unwrap().ino(),
        inode
    );
    // Removing one image keeps the shared base for the other.
    store.remove("a:1", false).unwrap();
    assert_eq!(store.snapshots().list().unwrap().len(), 2);
    assert!(base_snapshot.join("base").exists());
}

#[test]
fn many_layers_mount_beyond_a_page_of_overlay_options() {
    let tmp = tempfile::tempdir().unwrap();
    // A long root makes every lowerdir long: 70 layers need ~15 kB of options.
    let root = tmp.path().join("r".repeat(120)).join("root");
    let layout = tmp.path().join("layout");
    let n = 70;
    let mut layers = Vec::new();
    for i in 0..n {
        let mut l = Layer::new()
            .file(&format!("f{i}"), b"x", 0o644, 0, 0, T1)
            .file("top", i.to_string().as_bytes(), 0o644, 0, 0, T1);
        if i == n - 1 {
            l = l.file(".wh.f0", b"", 0o644, 0, 0, T1);
        }
        layers.push((l.tar(), Compression::Gzip));
    }
    let (_, id) = common::write_layout(&layout, &layers, "docker.io/library/tall:1");
    let mut store = ImageStore::open(&root).unwrap();
    hako_image::archive::load(&mut store, &layout, &NoProgress).unwrap();
    let container = tmp.path().join("c");
    let (_, rootfs) = store.mount(&id.to_string(), &container).unwrap();
    let _guard = MountGuard(container.clone());
    assert_eq!(
        fs::read_to_string(rootfs.rootfs.join("top")).unwrap(),
        (n - 1).to_string()
    );
    assert!(!rootfs.rootfs.join("f0").exists());
    for i in 1..n {
        assert!(rootfs.rootfs.join(format!("f{i}")).exists(), "f{i}");
    }
}
