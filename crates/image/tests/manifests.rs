//! Docker schema2 manifests and manifest lists: the host's platform is
//! selected from a list, Docker media types unpack, and the image keeps both
//! the list digest (what the name resolved to) and the manifest digest.

mod common;

use common::Layer;
use hako_image::manifest::{Compression, PlatformSpec};
use hako_image::{ImageStore, NoProgress};

#[test]
fn docker_manifest_list_selects_the_host_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let host = PlatformSpec::host();
    let other_arch = if host.architecture == "s390x" {
        "ppc64le"
    } else {
        "s390x"
    };
    let mine = common::write_image(
        &layout,
        &[(
            Layer::new()
                .file("arch", host.architecture.as_bytes(), 0o644, 0, 0, 1)
                .tar(),
            Compression::Gzip,
        )],
        &host.architecture,
        true,
    );
    let other = common::write_image(
        &layout,
        &[(
            Layer::new()
                .file("arch", other_arch.as_bytes(), 0o644, 0, 0, 1)
                .tar(),
            Compression::None,
        )],
        other_arch,
        true,
    );
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": other.manifest.to_string(),
             "size": other.manifest_size, "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": mine.manifest.to_string(),
             "size": mine.manifest_size, "platform": {"os": "linux", "architecture": host.architecture, "variant": host.variant}},
        ]
    });
    let (list_digest, list_size) = common::put_json(&layout, &list);
    common::write_index(
        &layout,
        vec![serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "digest": list_digest.to_string(),
            "size": list_size,
            "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}
        })],
    );

    let mut store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let loaded = hako_image::archive::load(&mut store, &layout, &NoProgress).unwrap();
    assert_eq!(loaded.len(), 1);
    let rec = &loaded[0];
    assert_eq!(rec.id, mine.config);
    assert_eq!(rec.manifest_digest, mine.manifest);
    assert_eq!(rec.target_digest, list_digest);
    assert_eq!(
        rec.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(rec.names[0].to_string(), "docker.io/library/multi:1");
    // name@digest finds it by the list digest and by the manifest digest.
    assert_eq!(
        store.find(&format!("multi@{list_digest}")).unwrap().id,
        mine.config
    );
    assert_eq!(
        store.find(&format!("multi@{}", mine.manifest)).unwrap().id,
        mine.config
    );

    let image = store.load_image(rec).unwrap();
    let chain = image.chain_ids().unwrap();
    let unpacked = std::fs::read(store.snapshots().fs_path(&chain[0]).join("arch")).unwrap();
    assert_eq!(unpacked, host.architecture.as_bytes());
    // The other platform's layer was never unpacked.
    assert_eq!(store.snapshots().list().unwrap().len(), 1);
    // The list and the chosen manifest survive collection; the other
    // platform's manifest is kept as part of the list, its unpulled config
    // and layer were never copied in.
    store.gc().unwrap();
    for d in [&list_digest, &mine.manifest, &mine.config] {
        assert!(store.content().contains(d), "{d} was collected");
    }
    assert!(!store.content().contains(&other.config));
}

#[test]
fn a_list_without_the_host_platform_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let other = common::write_image(
        &layout,
        &[(Layer::new().tar(), Compression::None)],
        "s390x",
        true,
    );
    let host = PlatformSpec::host();
    if host.architecture == "s390x" {
        return;
    }
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": other.manifest.to_string(),
                       "size": other.manifest_size, "platform": {"os": "linux", "architecture": "s390x"}}]
    });
    let (d, size) = common::put_json(&layout, &list);
    common::write_index(
        &layout,
        vec![
            serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d.to_string(), "size": size}),
        ],
    );
    let mut store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let err = hako_image::archive::load(&mut store, &layout, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("linux/{}", host.architecture)) && err.contains("linux/s390x"),
        "{err}"
    );
}
