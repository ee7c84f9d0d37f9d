//! Hostile layer tarballs are refused with a one-line error naming the
//! layer and the entry, and nothing is ever written outside the target.
//! Each test crafts its archive with the tar crate. Run as root.

mod common;

use std::fs;
use std::path::Path;

use common::Layer;
use hako_image::digest::Algorithm;
use hako_image::layer::{self, ApplyLimits};
use hako_image::manifest::Compression;
use hako_image::{Error, ImageStore, NoProgress};

/// A target directory and, beside it, a directory an escape would reach.
struct Sandbox {
    _tmp: tempfile::TempDir,
    target: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let outside = tmp.path().join("outside");
    fs::create_dir(&target).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"keep").unwrap();
    Sandbox {
        _tmp: tmp,
        target,
        outside,
    }
}

fn apply(s: &Sandbox, tar: &[u8]) -> hako_image::Result<layer::Applied> {
    let limits = ApplyLimits::for_target(&s.target).unwrap();
    layer::apply(
        &s.target,
        "sha256:hostile",
        tar,
        Compression::None,
        Algorithm::Sha256,
        &limits,
    )
}

/// The outside directory is exactly as it was.
fn assert_outside_untouched(s: &Sandbox) {
    assert_eq!(common::tree(&s.outside), vec!["secret".to_string()]);
    assert_eq!(fs::read(s.outside.join("secret")).unwrap(), b"keep");
}

fn assert_refused(err: Error, entry: &str) {
    let msg = err.to_string();
    assert!(
        matches!(err, Error::HostileEntry { .. }),
        "expected a refusal, got: {msg}"
    );
    assert!(
        msg.contains("sha256:hostile"),
        "error does not name the layer: {msg}"
    );
    assert!(
        msg.contains(entry),
        "error does not name the entry {entry:?}: {msg}"
    );
    assert!(!msg.contains('\n'), "error is not one line: {msg}");
}

#[test]
fn dotdot_components_are_refused() {
    let s = sandbox();
    let tar = Layer::new()
        .raw(b"../outside/pwned", tar::EntryType::Regular, None, b"x")
        .tar();
    assert_refused(apply(&s, &tar).unwrap_err(), "../outside/pwned");
    let tar = Layer::new()
        .dir("a", 0o755, 0, 0, 1)
        .raw(
            b"a/../../outside/pwned",
            tar::EntryType::Regular,
            None,
            b"x",
        )
        .tar();
    assert_refused(apply(&s, &tar).unwrap_err(), "a/../../outside/pwned");
    assert_outside_untouched(&s);
}

#[test]
fn absolute_paths_are_refused() {
    let s = sandbox();
    let name = format!("{}/pwned", s.outside.display());
    let tar = Layer::new()
        .raw(name.as_bytes(), tar::EntryType::Regular, None, b"x")
        .tar();
    assert_refused(apply(&s, &tar).unwrap_err(), &name);
    assert_outside_untouched(&s);
}

#[test]
fn writes_through_a_symlinked_parent_are_refused() {
    for which in 0..3 {
        let s = sandbox();
        let link = match which {
            0 => s.outside.display().to_string(),
            1 => "../outside".to_string(),
            _ => format!("../../../../../../../..{}", s.outside.display()),
        };
        let tar = Layer::new()
            .symlink("evil", &link)
            .file("evil/pwned", b"x", 0o644, 0, 0, 1)
            .tar();
        assert_refused(apply(&s, &tar).unwrap_err(), "evil/pwned");
        assert_outside_untouched(&s);
        // The symlink itself was created, inside the target, pointing where it says.
        assert_eq!(
            fs::read_link(s.target.join("evil"))
                .unwrap()
                .to_string_lossy(),
            link
        );
    }
}

#[test]
fn a_symlinked_directory_cannot_be_used_by_a_later_directory_entry() {
    let s = sandbox();
    let tar = Layer::new()
        .symlink("d", "../outside")
        .dir("d/sub", 0o755, 0, 0, 1)
        .tar();
    assert_refused(apply(&s, &tar).unwrap_err(), "d/sub");
    assert_outside_untouched(&s);
}

#[test]
fn hardlinks_to_outside_are_refused() {
    let s = sandbox();
    let outside_secret = format!("{}/secret", s.outside.display());
    // Absolute target.
    let tar = Layer::new()
        .hardlink_raw("h", outside_secret.as_bytes())
        .tar();
    assert_refused(apply(&s, &tar).unwrap_err(), "h");
    // `..` target.
    let tar = Layer::new().hardlink_raw("h", b"../outside/secret").tar();
    assert_refused(apply(&s, &tar).unwrap_err(), "h");
    // Through a symlink inside the layer that points outside.
    let s2 = sandbox();
    let tar = Layer::new()
        .symlink("out", &s2.outside.display().to_string())
        .hardlink("h", "out/secret")
        .tar();
    assert_refused(apply(&s2, &tar).unwrap_err(), "h");
    // The file outside still has exactly one link: no hardlink to it was made.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(s.outside.join("secret")).unwrap().nlink(), 1);
    assert_eq!(fs::metadata(s2.outside.join("secret")).unwrap().nlink(), 1);
    assert_outside_untouched(&s);
    assert_outside_untouched(&s2);
}

trait RawLink {
    fn hardlink_raw(self, name: &str, target: &[u8]) -> Self;
}

impl RawLink for Layer {
    fn hardlink_raw(self, name: &str, target: &[u8]) -> Self {
        self.raw(name.as_bytes(), tar::EntryType::Link, Some(target), b"")
    }
}

#[test]
fn absurd_sizes_are_refused_before_writing() {
    let s = sandbox();
    // 1 PiB announced: more than any free space here; refused from the header alone.
    let tar = Layer::new().lying_size("huge", 1 << 50).tar();
    let err = apply(&s, &tar).unwrap_err();
    assert_refused(err, "huge");
    assert!(!s.target.join("huge").exists());
    // A tight limit refuses a layer whose entries add up past it.
    let limits = ApplyLimits {
        max_entry_size: 1000,
        max_total_size: 1500,
    };
    let tar = Layer::new()
        .file("a", &[1u8; 1000], 0o644, 0, 0, 1)
        .file("b", &[2u8; 1000], 0o644, 0, 0, 1)
        .tar();
    let err = layer::apply(
        &s.target,
        "sha256:hostile",
        &tar[..],
        Compression::None,
        Algorithm::Sha256,
        &limits,
    )
    .unwrap_err();
    assert_refused(err, "b");
}

#[test]
fn a_hostile_layer_in_an_image_leaves_no_image_and_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let good = Layer::new().file("ok", b"fine", 0o644, 0, 0, 1).tar();
    let bad = Layer::new()
        .symlink("etc", "/etc")
        .file("etc/hako-pwned", b"x", 0o644, 0, 0, 1)
        .tar();
    common::write_layout(
        &layout,
        &[(good, Compression::Gzip), (bad, Compression::Gzip)],
        "docker.io/library/evil:1",
    );
    let root = tmp.path().join("root");
    let mut store = ImageStore::open(&root).unwrap();
    let err = hako_image::archive::load(&mut store, &layout, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("etc/hako-pwned"), "{err}");
    assert!(!Path::new("/etc/hako-pwned").exists());
    assert!(store.list().unwrap().is_empty());
    // The good layer may have been unpacked in parallel; the hostile one left nothing.
    let snaps = store.snapshots().list().unwrap();
    assert!(snaps.len() <= 1, "{snaps:?}");
    // Collection removes the orphaned blobs and snapshot of the failed load.
    store.gc().unwrap();
    assert!(store.content().list().unwrap().is_empty());
    assert!(store.snapshots().list().unwrap().is_empty());
    assert!(common::tree(&root.join("snapshots")).is_empty());
}

#[test]
fn an_entry_replacing_a_symlink_never_writes_through_it() {
    let s = sandbox();
    let secret = s.outside.join("secret");
    let tar = Layer::new()
        .symlink("passwd", &secret.display().to_string())
        .file("passwd", b"replaced", 0o600, 0, 0, 1)
        .symlink("d", &s.outside.display().to_string())
        .dir("d", 0o700, 0, 0, 1)
        .file("d/inside", b"i", 0o644, 0, 0, 1)
        .tar();
    apply(&s, &tar).unwrap();
    // The symlinks were replaced by real entries inside the target.
    assert_eq!(fs::read(s.target.join("passwd")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(s.target.join("passwd"))
        .unwrap()
        .is_file());
    assert!(fs::symlink_metadata(s.target.join("d")).unwrap().is_dir());
    assert!(s.target.join("d/inside").is_file());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_outside_untouched(&s);
}
