//! The content store verifies every blob on the way in; a wrong digest or
//! size leaves nothing behind; garbage collection is mark-and-sweep.

mod common;

use hako_image::digest::{Algorithm, Digest};
use hako_image::manifest::Compression;
use hako_image::store::ContentStore;
use hako_image::{Error, ImageStore, NoProgress};

#[test]
fn wrong_digest_blob_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let claimed = Digest::sha256_of(b"the real content");
    let err = store
        .ingest(&claimed, None, &b"forged content"[..])
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&claimed.to_string()));
    assert!(!store.contains(&claimed));
    assert!(store.list().unwrap().is_empty());
    assert!(common::tree(store.ingest_dir()).is_empty());
}

#[test]
fn wrong_size_blob_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let d = Digest::sha256_of(b"abc");
    let err = store.ingest(&d, Some(4), &b"abc"[..]).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn sha512_blobs_are_verified_and_stored_by_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let mut h = Algorithm::Sha512.hasher();
    h.update(b"five-twelve");
    let d = h.finish();
    store.ingest(&d, Some(11), &b"five-twelve"[..]).unwrap();
    assert!(tmp.path().join("blobs/sha512").join(d.hex()).is_file());
    assert_eq!(store.read(&d).unwrap(), b"five-twelve");
    let wrong = Digest::new(Algorithm::Sha512, &"0".repeat(128)).unwrap();
    assert!(store.ingest(&wrong, None, &b"five-twelve"[..]).is_err());
    assert_eq!(store.list().unwrap(), vec![d]);
}

#[test]
fn corrupted_layer_in_a_layout_is_refused_and_collected() {
    // Corrupt the middle of the compressed stream (decompression fails) and
    // its trailer (only the gzip checksum fails): both are digest mismatches.
    for from_end in [None, Some(5)] {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("layout");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let tar = common::Layer::new().file("f", &data, 0o644, 0, 0, 1).tar();
        common::write_layout(
            &layout,
            &[(tar, Compression::Gzip)],
            "docker.io/library/bad:1",
        );
        let blobs = layout.join("blobs/sha256");
        for e in std::fs::read_dir(&blobs).unwrap() {
            let p = e.unwrap().path();
            let mut bad = std::fs::read(&p).unwrap();
            if bad.starts_with(&[0x1f, 0x8b]) {
                let n = bad.len();
                let at = from_end.map(|k| n - k).unwrap_or(n / 2);
                bad[at] ^= 0xff;
                std::fs::write(&p, bad).unwrap();
            }
        }
        let mut store = ImageStore::open(&tmp.path().join("root")).unwrap();
        let err = hako_image::archive::load(&mut store, &layout, &NoProgress).unwrap_err();
        assert!(
            matches!(err, Error::DigestMismatch { .. }),
            "{from_end:?}: {err}"
        );
        assert!(store.list().unwrap().is_empty());
        // The bad layer's blob never got its name; config and manifest are
        // unreferenced and go at the next collection.
        store.gc().unwrap();
        assert!(store.content().list().unwrap().is_empty());
        assert!(store.snapshots().list().unwrap().is_empty());
    }
}

#[test]
fn prune_and_gc_follow_the_image_table() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let l1 = tmp.path().join("l1");
    let l2 = tmp.path().join("l2");
    let t1 = common::Layer::new().file("v", b"1", 0o644, 0, 0, 1).tar();
    let t2 = common::Layer::new().file("v", b"2", 0o644, 0, 0, 1).tar();
    let (_, id1) = common::write_layout(&l1, &[(t1, Compression::Gzip)], "docker.io/library/app:1");
    let (_, id2) = common::write_layout(&l2, &[(t2, Compression::Gzip)], "docker.io/library/app:1");
    hako_image::archive::load(&mut store, &l1, &NoProgress).unwrap();
    hako_image::archive::load(&mut store, &l2, &NoProgress).unwrap();
    // The name moved to the second image; the first is dangling.
    let first = store.find(&id1.to_string()).unwrap();
    assert!(first.names.is_empty());
    assert_eq!(store.find("app:1").unwrap().id, id2);
    assert_eq!(store.content().list().unwrap().len(), 6);
    assert_eq!(store.prune(false).unwrap(), vec![id1]);
    assert_eq!(store.content().list().unwrap().len(), 3);
    assert_eq!(store.snapshots().list().unwrap().len(), 1);
    // A blob nothing references (an interrupted pull's) goes at the next collection.
    let orphan = store.content().put(b"orphan").unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.blobs, 1);
    assert!(!store.content().contains(&orphan));
    assert_eq!(store.prune(true).unwrap(), vec![id2]);
    assert!(store.content().list().unwrap().is_empty());
    assert!(store.snapshots().list().unwrap().is_empty());
}

#[test]
fn gc_finishes_interrupted_work() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = ImageStore::open(&root).unwrap();
    // What a killed process leaves: a half-written blob and a half-unpacked snapshot.
    std::fs::write(store.content().ingest_dir().join("blob-partial"), b"half").unwrap();
    std::fs::create_dir_all(root.join("snapshots/tmp-killed/fs/usr")).unwrap();
    let w = store.content().writer(None, Algorithm::Sha256).unwrap();
    drop(w); // an abandoned writer removes its own temp file
    assert_eq!(
        common::tree(store.content().ingest_dir()),
        vec!["blob-partial".to_string()]
    );
    store.gc().unwrap();
    assert!(common::tree(store.content().ingest_dir()).is_empty());
    assert!(common::tree(&root.join("snapshots")).is_empty());
}
