//! Concurrency, interrupted clients, garbage collection, upload expiry and auth over a
//! real server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{sha256, TestRegistry};
use hako_distribution::config::{Config, TokenSettings};
use hako_distribution::gc;
use hako_distribution::storage::FsDriver;
use hako_distribution::store::Store;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_pushes_same_and_different_blobs() {
    let reg = Arc::new(TestRegistry::start().await);
    let c = Client::new();
    let same: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (reg, c, same) = (reg.clone(), c.clone(), same.clone());
        tasks.push(tokio::spawn(async move {
            // Half push the same blob (monolithic), half a distinct one (chunked).
            if i % 2 == 0 {
                let d = sha256(&same);
                let r = c
                    .post(reg.url(&format!("/v2/conc/blobs/uploads/?digest={d}")))
                    .body(same)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                (d, None)
            } else {
                let data: Vec<u8> = (0..100_000u32).map(|j| ((j + i) % 256) as u8).collect();
                let r = c
                    .post(reg.url("/v2/conc/blobs/uploads/"))
                    .send()
                    .await
                    .unwrap();
                let loc = r.headers()["Location"].to_str().unwrap().to_string();
                for (k, chunk) in data.chunks(30_000).enumerate() {
                    let start = k * 30_000;
                    let r = c
                        .patch(reg.url(&loc))
                        .header(
                            "Content-Range",
                            format!("{start}-{}", start + chunk.len() - 1),
                        )
                        .body(chunk.to_vec())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                }
                let d = sha256(&data);
                let r = c
                    .put(reg.url(&format!("{loc}?digest={d}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                (d, Some(data))
            }
        }));
    }
    for t in tasks {
        let (d, data) = t.await.unwrap();
        let got = c
            .get(reg.url(&format!("/v2/conc/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(sha256(&got), d);
        if let Some(data) = data {
            assert_eq!(got.as_ref(), &data[..]);
        }
    }
    // No upload was left behind.
    let left = std::fs::read_dir(reg.storage().join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_upload_then_resumes() {
    let reg = TestRegistry::start().await;
    let c = Client::new();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 239) as u8).collect();
    let r = c
        .post(reg.url("/v2/killed/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();

    // A body stream that dies after 700 KB: the connection breaks mid-request.
    let first = data[..700_000].to_vec();
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from(first)),
        Err(std::io::Error::other("client killed")),
    ]);
    let r = c
        .patch(reg.url(&loc))
        .header("Content-Length", data.len().to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(r.is_err(), "the interrupted request cannot have succeeded");

    // The server kept what arrived, and says where to resume.
    let mut size = 0usize;
    for _ in 0..50 {
        let r = c.get(reg.url(&loc)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let range = r.headers()["Range"].to_str().unwrap().to_string();
        size = range.trim_start_matches("0-").parse::<usize>().unwrap() + 1;
        if size > 1 {
            break;
        }
        // The server may still be finishing the broken request.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(size <= 700_000, "server claims {size} bytes");
    let r = c
        .patch(reg.url(&loc))
        .header("Content-Range", format!("{size}-{}", data.len() - 1))
        .body(data[size..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let d = sha256(&data);
    let r = c
        .put(reg.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = c
        .get(reg.url(&format!("/v2/killed/blobs/{d}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), &data[..]);
}

async fn push_blob(c: &Client, reg: &TestRegistry, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = c
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "pushing {d}: {}",
        r.text().await.unwrap()
    );
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_dry_run_and_sweep() {
    let reg = TestRegistry::start().await;
    let c = Client::new();
    let cfg = push_blob(&c, &reg, "gc/app", b"{\"os\":\"linux\"}").await;
    let keep_layer = push_blob(&c, &reg, "gc/app", b"kept layer").await;
    let old_layer = push_blob(&c, &reg, "gc/app", b"layer of the untagged image").await;
    let orphan = push_blob(&c, &reg, "gc/app", b"never referenced").await;
    let manifest = |layer: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 15},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 10}],
        }))
        .unwrap()
    };
    let kept = manifest(&keep_layer);
    let dropped = manifest(&old_layer);
    for (tag, m) in [("v1", &kept), ("v0", &dropped)] {
        let r = c
            .put(reg.url(&format!("/v2/gc/app/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(m.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Untag v0: its manifest and its layer become garbage.
    let r = c
        .delete(reg.url("/v2/gc/app/manifests/v0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // An upload in progress must survive.
    let r = c
        .post(reg.url("/v2/gc/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = r.headers()["Location"].to_str().unwrap().to_string();
    c.patch(reg.url(&upload))
        .body("partial")
        .send()
        .await
        .unwrap();

    let store = Store::new(
        Arc::new(FsDriver::new(reg.storage()).unwrap()),
        Duration::from_secs(3600),
    );
    // A collection that died between moving a kept blob to the trash and deciding about it
    // is undone by the next one.
    let hex = keep_layer.trim_start_matches("sha256:");
    let blob_dir = reg
        .storage()
        .join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    std::fs::create_dir_all(reg.storage().join("trash")).unwrap();
    let crashed = reg
        .storage()
        .join(format!("trash/0123~blobs~sha256~{}~{hex}", &hex[..2]));
    std::fs::rename(&blob_dir, &crashed).unwrap();
    let r = c
        .head(reg.url(&format!("/v2/gc/app/blobs/{keep_layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    gc::collect(&store, Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert!(!crashed.exists());
    let r = c
        .head(reg.url(&format!("/v2/gc/app/blobs/{keep_layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "blob recovered from the trash");
    // With the default grace period nothing freshly pushed is swept.
    let report = gc::collect(&store, Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert!(report.blobs.is_empty(), "{report}");
    assert!(
        report.manifests.is_empty(),
        "young manifests are kept: {report}"
    );

    let report = gc::collect(&store, Duration::ZERO, true).await.unwrap();
    let swept: Vec<String> = report.blobs.iter().map(|(d, _)| d.to_string()).collect();
    assert!(
        swept.contains(&old_layer) && swept.contains(&orphan) && swept.contains(&sha256(&dropped)),
        "{report}"
    );
    assert!(
        !swept.contains(&keep_layer) && !swept.contains(&cfg) && !swept.contains(&sha256(&kept)),
        "{report}"
    );
    // Dry run deleted nothing.
    let r = c
        .head(reg.url(&format!("/v2/gc/app/blobs/{orphan}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let report = gc::collect(&store, Duration::ZERO, false).await.unwrap();
    assert_eq!(report.blobs.len(), swept.len(), "{report}");
    for d in [&orphan, &old_layer] {
        let r = c
            .head(reg.url(&format!("/v2/gc/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{d} survived");
    }
    let r = c
        .get(reg.url(&format!("/v2/gc/app/manifests/{}", sha256(&dropped))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The tagged image is intact.
    let r = c
        .get(reg.url("/v2/gc/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &kept[..]);
    for d in [&cfg, &keep_layer] {
        let r = c
            .get(reg.url(&format!("/v2/gc/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(sha256(&r.bytes().await.unwrap()), *d);
    }
    let r = c.get(reg.url(&upload)).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "the in-progress upload survived"
    );
    assert_eq!(r.headers()["Range"], "0-6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_expire() {
    let reg = TestRegistry::start().await;
    let c = Client::new();
    let r = c
        .post(reg.url("/v2/exp/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let store = Store::new(
        Arc::new(FsDriver::new(reg.storage()).unwrap()),
        Duration::ZERO,
    );
    let kept_store = Store::new(
        Arc::new(FsDriver::new(reg.storage()).unwrap()),
        Duration::from_secs(3600),
    );
    assert!(kept_store.expire_uploads().await.unwrap().is_empty());
    let removed = store.expire_uploads().await.unwrap();
    assert_eq!(removed.len(), 1);
    let r = c.get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::make_certs(dir.path());
    let config = Config {
        htpasswd: Some(common::write_htpasswd(dir.path(), "dave", "pw")),
        tls_cert: Some(certs.cert.clone()),
        tls_key: Some(certs.key.clone()),
        ..Config::default()
    };
    let reg = TestRegistry::start_with(config).await;
    let c = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", reg.addr.port());
    let r = c.get(url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["WWW-Authenticate"],
        "Basic realm=\"hako-registry\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED");
    let r = c
        .get(url("/v2/"))
        .basic_auth("dave", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(url("/v2/"))
        .basic_auth("dave", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Plain HTTP to the TLS port does not get an API answer.
    let plain = Client::new()
        .get(format!("http://127.0.0.1:{}/v2/", reg.addr.port()))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let config = Config {
        htpasswd: Some(common::write_htpasswd(dir.path(), "erin", "pw")),
        token: Some(TokenSettings {
            secret_file: key,
            ttl_secs: 60,
            service: "svc".into(),
        }),
        ..Config::default()
    };
    let reg = TestRegistry::start_with(config).await;
    let c = Client::new();
    let r = c
        .post(reg.url("/v2/scoped/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["WWW-Authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"http://{}/token\",service=\"svc\",scope=\"repository:scoped:pull,push\"", reg.host())
    );
    let token = |scope: &'static str| {
        let c = c.clone();
        let url = reg.url(&format!("/token?service=svc&scope={scope}"));
        async move {
            let v: Value = c
                .get(url)
                .basic_auth("erin", Some("pw"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["token"].as_str().unwrap().to_string()
        }
    };
    let pull_only = token("repository%3Ascoped%3Apull").await;
    let r = c
        .post(reg.url("/v2/scoped/blobs/uploads/"))
        .bearer_auth(&pull_only)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a pull token cannot push"
    );
    let push = token("repository%3Ascoped%3Apull%2Cpush").await;
    let r = c
        .post(reg.url("/v2/scoped/blobs/uploads/"))
        .bearer_auth(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .post(reg.url("/v2/elsewhere/blobs/uploads/"))
        .bearer_auth(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "scopes are per repository"
    );
    // Wrong password: no token.
    let r = c
        .get(reg.url("/token?service=svc&scope=repository%3Ascoped%3Apull"))
        .basic_auth("erin", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Anonymous token requests get no access when anonymous pull is off.
    let v: Value = c
        .get(reg.url("/token?service=svc&scope=repository%3Ascoped%3Apull"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let anon = v["token"].as_str().unwrap();
    let r = c
        .get(reg.url("/v2/scoped/tags/list"))
        .bearer_auth(anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let reg = TestRegistry::start().await;
    let c = Client::new();
    let r = c
        .post(reg.url("/v2/shut/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let data: Vec<u8> = (0..400_000u32).map(|i| (i % 233) as u8).collect();
    // A body that arrives in pieces, with the shutdown requested while it is in flight.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let url = reg.url(&loc);
    let request = tokio::spawn({
        let c = c.clone();
        async move { c.patch(url).body(body).send().await }
    });
    tx.send(Ok(bytes::Bytes::copy_from_slice(&data[..200_000])))
        .await
        .unwrap();
    // Let the request reach the handler before asking the server to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(reg.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(Ok(bytes::Bytes::copy_from_slice(&data[200_000..])))
        .await
        .unwrap();
    drop(tx);
    let resp = request.await.unwrap().expect("in-flight request completed");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["Range"], "0-399999");
    let root = stopping.await.unwrap();
    // Everything the request delivered is on disk.
    let id = loc.rsplit('/').next().unwrap();
    let on_disk = std::fs::read(root.path().join("storage/uploads").join(id).join("data")).unwrap();
    assert_eq!(on_disk, data);
}

/// A stream over an mpsc receiver (what tokio-stream's ReceiverStream does).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_repository_access_rules() {
    use hako_distribution::auth::AccessRule;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap());
    std::fs::write(&htpasswd, line("alice", "a") + &line("bob", "b")).unwrap();
    let rule = |account: &str, repositories: &str, actions: &[&str]| AccessRule {
        account: account.into(),
        repositories: repositories.into(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
    };
    let access = vec![
        rule("alice", "team/*", &["*"]),
        rule("*", "team/*", &["pull"]),
        rule("anonymous", "team/public", &["pull"]),
    ];
    let key = dir.path().join("key");
    std::fs::write(&key, [3u8; 32]).unwrap();
    for tokens in [false, true] {
        let config = Config {
            htpasswd: Some(htpasswd.clone()),
            access: access.clone(),
            token: tokens.then(|| TokenSettings {
                secret_file: key.clone(),
                ttl_secs: 60,
                service: "svc".into(),
            }),
            ..Config::default()
        };
        let reg = TestRegistry::start_with(config).await;
        let c = Client::new();
        // Credentials for one request: basic directly, or a token for the scope.
        let auth = |user: Option<(&'static str, &'static str)>, scope: String| {
            let c = c.clone();
            let token_url = reg.url(&format!("/token?service=svc&scope={scope}"));
            async move {
                match (tokens, user) {
                    (false, Some((u, p))) => Some(format!(
                        "Basic {}",
                        base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            format!("{u}:{p}")
                        )
                    )),
                    (false, None) => None,
                    (true, user) => {
                        let mut req = c.get(token_url);
                        if let Some((u, p)) = user {
                            req = req.basic_auth(u, Some(p));
                        }
                        let v: Value = req.send().await.unwrap().json().await.unwrap();
                        Some(format!("Bearer {}", v["token"].as_str().unwrap()))
                    }
                }
            }
        };
        let try_push = |user, repo: &'static str| {
            let c = c.clone();
            let url = reg.url(&format!("/v2/{repo}/blobs/uploads/"));
            let scope = format!("repository:{repo}:pull,push");
            let auth = auth(user, scope);
            async move {
                let mut req = c.post(url);
                if let Some(a) = auth.await {
                    req = req.header("Authorization", a);
                }
                req.send().await.unwrap().status()
            }
        };
        let try_pull = |user, repo: &'static str| {
            let c = c.clone();
            let url = reg.url(&format!("/v2/{repo}/tags/list"));
            let scope = format!("repository:{repo}:pull");
            let auth = auth(user, scope);
            async move {
                let mut req = c.get(url);
                if let Some(a) = auth.await {
                    req = req.header("Authorization", a);
                }
                req.send().await.unwrap().status()
            }
        };
        let alice = Some(("alice", "a"));
        let bob = Some(("bob", "b"));
        assert_eq!(
            try_push(alice, "team/app").await,
            StatusCode::ACCEPTED,
            "tokens={tokens}"
        );
        assert_eq!(
            try_push(alice, "other").await,
            if tokens {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            }
        );
        assert_eq!(
            try_push(bob, "team/app").await,
            if tokens {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            }
        );
        // Pulls of a repository that does not exist yet pass authorisation and then 404.
        assert_eq!(
            try_pull(bob, "team/app").await,
            StatusCode::NOT_FOUND,
            "tokens={tokens}"
        );
        assert_eq!(
            try_pull(None, "team/public").await,
            StatusCode::NOT_FOUND,
            "tokens={tokens}"
        );
        assert_eq!(
            try_pull(None, "team/app").await,
            StatusCode::UNAUTHORIZED,
            "tokens={tokens}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_beside_concurrent_pushes_never_leaves_a_manifest_without_blobs() {
    const GRACE: Duration = Duration::from_millis(300);
    let reg = Arc::new(TestRegistry::start().await);
    let c = Client::new();
    let shared_bytes = b"shared layer bytes".to_vec();
    let store = Store::new(
        Arc::new(FsDriver::new(reg.storage()).unwrap()),
        Duration::from_secs(3600),
    );
    // Each round untags the previous image, lets its layers age past the grace period
    // (so the collections below want them), then pushes a new image reusing the shared
    // layer while collections run back to back.
    let pusher = {
        let (reg, c) = (reg.clone(), c.clone());
        tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..8 {
                if i > 0 {
                    let r = c
                        .delete(reg.url(&format!("/v2/race/app/manifests/t{}", i - 1)))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                }
                tokio::time::sleep(GRACE + Duration::from_millis(50)).await;
                let config = format!("{{\"os\":\"linux\",\"n\":{i}}}");
                let own = format!("own layer {i}");
                let manifest = serde_json::to_vec(&json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config.as_bytes()), "size": config.len()},
                    "layers": [
                        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&shared_bytes), "size": shared_bytes.len()},
                        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(own.as_bytes()), "size": own.len()},
                    ],
                }))
                .unwrap();
                // Like a real client: skip blobs the registry has, and re-push a blob that
                // went missing when the manifest is refused for it.
                let mut accepted = false;
                for _ in 0..50 {
                    for data in [config.as_bytes(), own.as_bytes(), &shared_bytes[..]] {
                        let head = c
                            .head(reg.url(&format!("/v2/race/app/blobs/{}", sha256(data))))
                            .send()
                            .await
                            .unwrap();
                        if head.status() != StatusCode::OK {
                            push_blob(&c, &reg, "race/app", data).await;
                        }
                    }
                    let r = c
                        .put(reg.url(&format!("/v2/race/app/manifests/t{i}")))
                        .header("Content-Type", OCI_MANIFEST)
                        .body(manifest.clone())
                        .send()
                        .await
                        .unwrap();
                    if r.status() == StatusCode::CREATED {
                        accepted = true;
                        break;
                    }
                    let v: Value = r.json().await.unwrap();
                    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN", "{v}");
                    refused += 1;
                }
                assert!(accepted, "manifest t{i} never accepted");
                // While tagged, an accepted manifest has every blob, byte for byte.
                assert_complete(&c, &reg, &format!("t{i}")).await;
            }
            refused
        })
    };
    let mut collections = 0;
    while !pusher.is_finished() {
        gc::collect(&store, GRACE, false).await.unwrap();
        collections += 1;
        // Pace the collections so requests get CPU between them (not a timing check).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let refused = pusher.await.unwrap();
    assert!(collections > 0);
    // After a last collection with no grace, the tagged image is still complete and the
    // untagged ones are gone.
    gc::collect(&store, Duration::ZERO, false).await.unwrap();
    assert_complete(&c, &reg, "t7").await;
    let r = c
        .get(reg.url(&format!("/v2/race/app/blobs/{}", sha256(b"own layer 0"))))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "garbage survived ({collections} collections, {refused} refusals)"
    );
}

async fn assert_complete(c: &Client, reg: &TestRegistry, tag: &str) {
    let r = c
        .get(reg.url(&format!("/v2/race/app/manifests/{tag}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "manifest {tag} lost");
    let m: Value = r.json().await.unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    digests.extend(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    for d in digests {
        let r = c
            .get(reg.url(&format!("/v2/race/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{tag} lost blob {d}");
        assert_eq!(sha256(&r.bytes().await.unwrap()), d);
    }
}

/// Read from a raw connection until the server closes it; returns what it sent. The
/// client-side timeout only keeps a broken server from hanging the test.
fn read_until_closed(mut s: std::net::TcpStream, what: &str) -> Vec<u8> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("{what}: the server kept the connection open ({e})"),
        }
    }
}

fn connect(reg: &TestRegistry) -> std::net::TcpStream {
    std::net::TcpStream::connect(reg.addr).unwrap()
}

fn send(s: &mut std::net::TcpStream, data: &[u8]) {
    std::io::Write::write_all(s, data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_half_open_and_stalled_connections_are_closed() {
    let reg = TestRegistry::start_with(Config {
        read_timeout_secs: 1,
        idle_timeout_secs: 1,
        ..Config::default()
    })
    .await;
    let addr = reg.addr;
    let loc = Client::new()
        .post(reg.url("/v2/idle/blobs/uploads/"))
        .send()
        .await
        .unwrap()
        .headers()["Location"]
        .to_str()
        .unwrap()
        .to_string();
    let reg = Arc::new(reg);
    let r = reg.clone();
    tokio::task::spawn_blocking(move || {
        // Connected, never a byte sent.
        let got = read_until_closed(connect(&r), "silent connection");
        assert!(got.is_empty(), "{got:?}");
        // Half a request header.
        let mut s = connect(&r);
        send(&mut s, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n");
        read_until_closed(s, "partial header");
        // A keep-alive connection after one answered request.
        let mut s = connect(&r);
        send(&mut s, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
        let got = String::from_utf8_lossy(&read_until_closed(s, "idle keep-alive")).into_owned();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        // An h2c connection (prior knowledge) that opens and then says nothing.
        let mut s = connect(&r);
        send(
            &mut s,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        );
        read_until_closed(s, "idle h2c");
        // An upload whose body stops half-way.
        let mut s = connect(&r);
        send(
            &mut s,
            format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").as_bytes(),
        );
        send(&mut s, &[7u8; 100]);
        read_until_closed(s, "stalled body");
    })
    .await
    .unwrap();
    // The server still serves.
    let r = reqwest::get(format!("http://{addr}/v2/")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_holds() {
    let reg = TestRegistry::start_with(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let reg = Arc::new(reg);
    let r = reg.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        // Two keep-alive connections, each known to be served (a request answered).
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = connect(&r);
            send(&mut s, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(s);
        }
        // A third is closed without an answer, however many try.
        for _ in 0..3 {
            let mut s = connect(&r);
            let _ = std::io::Write::write_all(&mut s, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
            let got = read_until_closed(s, "connection over the limit");
            assert!(
                got.is_empty(),
                "served over the limit: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
        // Once one of the two goes, a new connection is served (the server notices the
        // close asynchronously: a few tries).
        drop(held.pop());
        let served = (0..100).any(|_| {
            let mut s = connect(&r);
            send(
                &mut s,
                b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let got = read_until_closed(s, "connection under the limit");
            if got.starts_with(b"HTTP/1.1 200") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
            false
        });
        assert!(served, "no connection served after one closed");
    })
    .await
    .unwrap();
    let metrics = reqwest::get(reg.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hako_registry_connections_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 3, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_that_never_finish_a_handshake_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::make_certs(dir.path());
    let reg = TestRegistry::start_with(Config {
        tls_cert: Some(certs.cert.clone()),
        tls_key: Some(certs.key.clone()),
        read_timeout_secs: 1,
        idle_timeout_secs: 1,
        ..Config::default()
    })
    .await;
    let reg = Arc::new(reg);
    let r = reg.clone();
    tokio::task::spawn_blocking(move || {
        // Connected, no ClientHello.
        read_until_closed(connect(&r), "TLS connection without a handshake");
        // The first bytes of a ClientHello, then nothing.
        let mut s = connect(&r);
        send(&mut s, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
        read_until_closed(s, "TLS handshake cut short");
    })
    .await
    .unwrap();
    // A real client still gets in.
    let c = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = c
        .get(format!("https://{}/v2/", reg.host()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
