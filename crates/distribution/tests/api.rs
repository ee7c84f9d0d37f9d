//! The distribution-spec API driven over real HTTP against a real server.

mod common;

use common::{sha256, TestRegistry};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn client() -> Client {
    Client::builder().build().unwrap()
}

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.expect("error body is JSON");
    v["errors"][0]["code"]
        .as_str()
        .expect("error has a code")
        .to_string()
}

async fn push_blob(c: &Client, reg: &TestRegistry, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = c
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "pushing blob {d}");
    d
}

/// Push a config and one layer, returning (manifest bytes, config digest, layer digest).
async fn push_image_parts(
    c: &Client,
    reg: &TestRegistry,
    repo: &str,
    seed: &str,
) -> (Vec<u8>, String, String) {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
    let layer = format!("layer bytes {seed}");
    let cd = push_blob(c, reg, repo, config.as_bytes()).await;
    let ld = push_blob(c, reg, repo, layer.as_bytes()).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    (manifest, cd, ld)
}

async fn put_manifest(
    c: &Client,
    reg: &TestRegistry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> reqwest::Response {
    c.put(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("Content-Type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_check_and_headers() {
    let reg = TestRegistry::start().await;
    let r = client().get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["Docker-Distribution-API-Version"],
        "registry/2.0"
    );
    let r = client().get(reg.url("/v2/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let m = client()
        .get(reg.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("hako_registry_http_requests_total{method=\"GET\",code=\"200\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_upload_forms_and_reads() {
    let reg = TestRegistry::start().await;
    let c = client();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();

    // Monolithic POST with digest.
    let d = sha256(&data);
    let r = c
        .post(reg.url(&format!("/v2/a/b/blobs/uploads/?digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["Location"],
        format!("/v2/a/b/blobs/{d}").as_str()
    );
    assert_eq!(r.headers()["Docker-Content-Digest"], d.as_str());

    // HEAD and GET.
    let r = c
        .head(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["Content-Length"], "100000");
    assert_eq!(r.headers()["Docker-Content-Digest"], d.as_str());
    let r = c
        .get(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);

    // Ranges.
    let r = c
        .get(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["Content-Range"], "bytes 10-19/100000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    let r = c
        .get(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .header("Range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[99_995..]);
    let r = c
        .get(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .header("Range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["Content-Range"], "bytes */100000");

    // POST then PUT with the body.
    let small = b"post then put".to_vec();
    let r = c
        .post(reg.url("/v2/a/b/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    assert!(r.headers().contains_key("Docker-Upload-UUID"));
    let r = c
        .put(reg.url(&format!("{loc}?digest={}", sha256(&small))))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = c
        .get(reg.url(&format!("/v2/a/b/blobs/{}", sha256(&small))))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), &small[..]);

    // sha512 digests.
    let d512 = hako_distribution::digest::Digest::of(
        hako_distribution::digest::Algorithm::Sha512,
        b"sha512 blob",
    )
    .to_string();
    let r = c
        .post(reg.url(&format!("/v2/a/b/blobs/uploads/?digest={d512}")))
        .body("sha512 blob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(reg.url(&format!("/v2/a/b/blobs/{d512}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["Docker-Content-Digest"], d512.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"sha512 blob");

    // Another repository cannot read the blob by digest.
    let r = c
        .get(reg.url(&format!("/v2/other/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");

    // Cross-repository mount, then delete from the source.
    let r = c
        .post(reg.url(&format!("/v2/other/blobs/uploads/?mount={d}&from=a/b")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["Location"],
        format!("/v2/other/blobs/{d}").as_str()
    );
    let r = c
        .head(reg.url(&format!("/v2/other/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Mounting a blob the source lacks opens an ordinary upload instead.
    let missing = sha256(b"nowhere");
    let r = c
        .post(reg.url(&format!(
            "/v2/other/blobs/uploads/?mount={missing}&from=a/b"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .delete(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .head(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .delete(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let r = c
        .get(reg.url(&format!("/v2/other/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.bytes().await.unwrap().len(),
        100_000,
        "the mount survives the source's delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_with_content_range_and_416() {
    let reg = TestRegistry::start().await;
    let c = client();
    let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = c
        .post(reg.url("/v2/chunky/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["Range"], "0-0");

    let patch = |start: usize, end: usize| {
        c.patch(reg.url(&loc))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{start}-{}", end - 1))
            .body(data[start..end].to_vec())
            .send()
    };
    let r = patch(0, 10_000).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["Range"], "0-9999");

    // Out of order: the next chunk must start at 10000.
    let r = patch(20_000, 30_000).await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["Range"], "0-9999");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");
    // A repeated chunk is out of order too.
    let r = patch(0, 10_000).await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // Malformed Content-Range.
    let r = c
        .patch(reg.url(&loc))
        .header("Content-Range", "bogus")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Status is unchanged by the rejected chunks.
    let r = c.get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["Range"], "0-9999");

    // The closing PUT may carry a chunk too; out of order it is refused like a PATCH.
    let r = c
        .put(reg.url(&format!("{loc}?digest={}", sha256(&data))))
        .header("Content-Range", "25000-29999")
        .body(data[25_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["Range"], "0-9999");
    let r = patch(10_000, 20_000).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A chunk without Content-Range (streamed) is appended.
    let r = c
        .patch(reg.url(&loc))
        .body(data[20_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["Range"], "0-29999");

    // Wrong digest: rejected, nothing committed, the upload stays resumable.
    let wrong = sha256(b"something else");
    let r = c
        .put(reg.url(&format!("{loc}?digest={wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c
        .head(reg.url(&format!("/v2/chunky/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let d = sha256(&data);
    let r = c
        .put(reg.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = c
        .get(reg.url(&format!("/v2/chunky/blobs/{d}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), &data[..]);
    // The finished upload is gone.
    let r = c.get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_unknown_uploads() {
    let reg = TestRegistry::start().await;
    let c = client();
    let r = c
        .post(reg.url("/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let r = c.delete(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c.patch(reg.url(&loc)).body("late").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // An upload belongs to its repository.
    let r = c
        .post(reg.url("/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["Docker-Upload-UUID"]
        .to_str()
        .unwrap()
        .to_string();
    let r = c
        .get(reg.url(&format!("/v2/y/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // Ids that could be paths never reach storage.
    let r = c
        .get(reg.url("/v2/x/blobs/uploads/..%2F..%2Fetc"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // PUT without a digest.
    let r = c
        .put(reg.url(&format!("/v2/x/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_errors_are_400_never_500() {
    let reg = TestRegistry::start().await;
    let c = client();
    for bad in [
        "sha256:xyz",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    ] {
        let r = c
            .post(reg.url(&format!("/v2/r/blobs/uploads/?digest={bad}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(r).await, "DIGEST_INVALID");
        let r = c
            .get(reg.url(&format!("/v2/r/blobs/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(r).await, "DIGEST_INVALID");
        if bad.contains(':') {
            // Without a ':' the reference is a (valid) tag name, not a digest.
            let r = c
                .get(reg.url(&format!("/v2/r/manifests/{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(error_code(r).await, "DIGEST_INVALID");
        }
        let r = c
            .get(reg.url(&format!("/v2/r/referrers/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // Content that does not match its digest is refused and not stored.
    let claimed = sha256(b"the real content");
    let r = c
        .post(reg.url(&format!("/v2/r/blobs/uploads/?digest={claimed}")))
        .body("tampered content")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = c
        .get(reg.url(&format!("/v2/r/blobs/{claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    // The failed one-shot upload left nothing behind.
    let uploads = reg.storage().join("uploads");
    let left = std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left, 0,
        "failed monolithic upload left files in {uploads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_tags_and_indexes() {
    let reg = TestRegistry::start().await;
    let c = client();
    let (manifest, _cd, ld) = push_image_parts(&c, &reg, "app", "one").await;
    let md = sha256(&manifest);

    // Referenced blobs must exist.
    let orphan = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"missing config"), "size": 14},
        "layers": [],
    })).unwrap();
    let r = put_manifest(&c, &reg, "app", "orphan", OCI_MANIFEST, &orphan).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // Not JSON, wrong schema, disagreeing media type.
    let r = put_manifest(&c, &reg, "app", "bad", OCI_MANIFEST, b"{not json").await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = put_manifest(&c, &reg, "app", "bad", OCI_INDEX, &manifest).await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    // Digest reference that does not match the bytes.
    let r = put_manifest(&c, &reg, "app", &sha256(b"other"), OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");

    let r = put_manifest(&c, &reg, "app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["Docker-Content-Digest"], md.as_str());
    assert_eq!(
        r.headers()["Location"],
        format!("/v2/app/manifests/{md}").as_str()
    );

    for reference in ["v1", md.as_str()] {
        let r = c
            .get(reg.url(&format!("/v2/app/manifests/{reference}")))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["Content-Type"], OCI_MANIFEST);
        assert_eq!(r.headers()["Docker-Content-Digest"], md.as_str());
        assert_eq!(r.bytes().await.unwrap().as_ref(), &manifest[..]);
        let r = c
            .head(reg.url(&format!("/v2/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["Content-Length"],
            manifest.len().to_string().as_str()
        );
    }
    // A client that only takes Docker manifests is not handed an OCI one by tag.
    let r = c
        .get(reg.url("/v2/app/manifests/v1"))
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = c
        .get(reg.url("/v2/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");

    // A Docker schema2 manifest with a foreign layer the registry does not hold.
    let dcfg = push_blob(&c, &reg, "app", b"{\"os\":\"windows\"}").await;
    let docker = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": dcfg, "size": 16},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": 13},
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": sha256(b"foreign"), "size": 7,
             "urls": ["https://example.invalid/foreign.tar.gz"]},
        ],
    })).unwrap();
    let r = put_manifest(&c, &reg, "app", "win", DOCKER_MANIFEST, &docker).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(reg.url("/v2/app/manifests/win"))
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["Content-Type"], DOCKER_MANIFEST);

    // An index over the manifest; and one naming a manifest the repository lacks.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": manifest.len(),
                        "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    let r = put_manifest(&c, &reg, "app", "multi", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(reg.url("/v2/app/manifests/multi"))
        .header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["Content-Type"], OCI_INDEX);
    let bad_index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"absent"), "size": 6}],
    }))
    .unwrap();
    let r = put_manifest(&c, &reg, "app", "badmulti", OCI_INDEX, &bad_index).await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");

    // Oversize manifests are refused before they are read whole.
    // (The server may answer 413 and close before the client finished sending.)
    let huge = vec![b' '; 5 << 20];
    let r = c
        .put(reg.url("/v2/app/manifests/huge"))
        .header("Content-Type", OCI_MANIFEST)
        .body(huge)
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let r = c
        .get(reg.url("/v2/app/manifests/huge"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");

    // Tag delete, then manifest delete by digest (which removes remaining tags).
    let r = put_manifest(&c, &reg, "app", "v1-alias", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .delete(reg.url("/v2/app/manifests/v1-alias"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .get(reg.url("/v2/app/manifests/v1-alias"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .delete(reg.url(&format!("/v2/app/manifests/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c.get(reg.url("/v2/app/manifests/v1")).send().await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let tags: Value = c
        .get(reg.url("/v2/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["multi", "win"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_catalog_pagination() {
    let reg = TestRegistry::start().await;
    let c = client();
    let (manifest, _, _) = push_image_parts(&c, &reg, "pag/one", "p").await;
    for t in ["e", "a", "c", "b", "d"] {
        assert_eq!(
            put_manifest(&c, &reg, "pag/one", t, OCI_MANIFEST, &manifest)
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let r = c
        .get(reg.url("/v2/pag/one/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["Link"],
        "</v2/pag/one/tags/list?n=2&last=b>; rel=\"next\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"name": "pag/one", "tags": ["a", "b"]}));
    let r = c
        .get(reg.url("/v2/pag/one/tags/list?n=2&last=b"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("Link"));
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["c", "d"]));
    let r = c
        .get(reg.url("/v2/pag/one/tags/list?n=2&last=d"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("Link"), "last page has no Link");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["e"]));
    let r = c
        .get(reg.url("/v2/pag/one/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["tags"],
        json!(["a", "b", "c", "d", "e"])
    );
    let r = c
        .get(reg.url("/v2/pag/one/tags/list?n=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .get(reg.url("/v2/never/pushed/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");

    push_blob(&c, &reg, "pag/two", b"x").await;
    push_blob(&c, &reg, "zzz", b"y").await;
    let r = c.get(reg.url("/v2/_catalog?n=2")).send().await.unwrap();
    assert_eq!(
        r.headers()["Link"],
        "</v2/_catalog?n=2&last=pag%2Ftwo>; rel=\"next\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"repositories": ["pag/one", "pag/two"]})
    );
    let r = c
        .get(reg.url("/v2/_catalog?n=2&last=pag%2Ftwo"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("Link"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"repositories": ["zzz"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_api() {
    let reg = TestRegistry::start().await;
    let c = client();
    let (manifest, _, _) = push_image_parts(&c, &reg, "ref", "s").await;
    let subject = sha256(&manifest);
    assert_eq!(
        put_manifest(&c, &reg, "ref", "v1", OCI_MANIFEST, &manifest)
            .await
            .status(),
        StatusCode::CREATED
    );

    // Before anything refers to it (or for an unknown digest) the list is empty, not 404.
    let r = c
        .get(reg.url(&format!("/v2/ref/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["Content-Type"], OCI_INDEX);
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));

    let empty = push_blob(&c, &reg, "ref", b"{}").await;
    let sig_layer = push_blob(&c, &reg, "ref", b"signature").await;
    let mut artifacts = Vec::new();
    for (atype, note) in [
        ("application/vnd.example.sig", "sig"),
        ("application/vnd.example.sbom", "sbom"),
    ] {
        let art = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": atype,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig_layer, "size": 9}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": manifest.len()},
            "annotations": {"note": note},
        })).unwrap();
        let ad = sha256(&art);
        let r = put_manifest(&c, &reg, "ref", &ad, OCI_MANIFEST, &art).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["OCI-Subject"], subject.as_str());
        artifacts.push(ad);
    }
    let r = c
        .get(reg.url(&format!("/v2/ref/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("OCI-Filters-Applied"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mediaType"], OCI_INDEX);
    let listed: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    for a in &artifacts {
        assert!(listed.contains(&a.as_str()));
    }
    let r = c
        .get(reg.url(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/vnd.example.sbom"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["OCI-Filters-Applied"], "artifactType");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(v["manifests"][0]["annotations"]["note"], "sbom");

    // Deleting a referrer removes it from the list.
    let r = c
        .delete(reg.url(&format!("/v2/ref/manifests/{}", artifacts[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = c
        .get(reg.url(&format!("/v2/ref/referrers/{subject}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
}

/// Send a request line verbatim (clients normalise `..` away, attackers do not).
async fn raw_request(reg: &TestRegistry, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(reg.addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        reg.host()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_rejected() {
    let reg = TestRegistry::start().await;
    let d = sha256(b"x");
    let hostile = [
        "/v2/../../etc/tags/list".to_string(),
        "/v2/a/../../../tags/list".to_string(),
        "/v2/%2e%2e/tags/list".to_string(),
        "/v2/a%2F..%2F..%2Fb/tags/list".to_string(),
        "/v2/UPPER/tags/list".to_string(),
        "/v2/a//b/tags/list".to_string(),
        "/v2/_uploads/tags/list".to_string(),
        format!("/v2/../x/blobs/{d}"),
        "/v2/./x/manifests/latest".to_string(),
        "/v2/x/manifests/..".to_string(),
        "/v2/x/manifests/.hidden".to_string(),
    ];
    for path in &hostile {
        for method in ["GET", "PUT", "DELETE", "POST"] {
            let (status, text) = raw_request(&reg, method, path).await;
            assert!(
                (400..500).contains(&status),
                "{method} {path} answered {status}:\n{text}"
            );
        }
        let (_, text) = raw_request(&reg, "GET", path).await;
        assert!(
            text.contains("NAME_INVALID")
                || text.contains("MANIFEST_INVALID")
                || text.contains("UNSUPPORTED"),
            "GET {path}: {text}"
        );
    }
    let (_, text) = raw_request(&reg, "GET", "/v2/../../etc/tags/list").await;
    assert!(text.contains("NAME_INVALID"), "{text}");
    // Nothing was created outside the storage root, and no repository appeared.
    let parent: Vec<_> = std::fs::read_dir(reg.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(parent, vec![std::ffi::OsString::from("storage")]);
    let cat: Value = client()
        .get(reg.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cat["repositories"], json!([]));
}

/// Blob bodies over plain HTTP go out with sendfile (and, configured off, from memory):
/// whole blobs and ranges that cross window boundaries arrive intact, several at once on
/// one keep-alive client, and /metrics says which path sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bodies_with_and_without_sendfile() {
    // Five 2 MiB windows and a bit, no two windows alike.
    let data: Vec<u8> = (0..(10 << 20) + 12_345u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for sendfile in [true, false] {
        let config = hako_distribution::config::Config {
            sendfile,
            ..Default::default()
        };
        let reg = TestRegistry::start_with(config).await;
        let c = client();
        let d = push_blob(&c, &reg, "zc/big", &data).await;
        let url = reg.url(&format!("/v2/zc/big/blobs/{d}"));
        let gets = (0..4).map(|_| {
            let (c, url) = (c.clone(), url.clone());
            async move { c.get(url).send().await.unwrap().bytes().await.unwrap() }
        });
        for body in futures_util::future::join_all(gets).await {
            assert_eq!(body.len(), data.len(), "sendfile={sendfile}");
            assert!(
                body.as_ref() == &data[..],
                "sendfile={sendfile}: bytes differ"
            );
        }
        let (from, to) = ((2 << 20) - 7, (6 << 20) + 3);
        let r = c
            .get(&url)
            .header("Range", format!("bytes={from}-{to}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert!(r.bytes().await.unwrap().as_ref() == &data[from..=to]);
        // The connection is still in step after the sendfile bodies.
        let r = c.get(reg.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let m = c
            .get(reg.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sent: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("hako_registry_blob_bytes_sendfile_total "))
            .expect("sendfile counter in /metrics")
            .parse()
            .unwrap();
        if sendfile {
            assert!(
                sent >= 4 * data.len() as u64,
                "only {sent} bytes by sendfile"
            );
        } else {
            assert_eq!(sent, 0);
        }
    }
}
