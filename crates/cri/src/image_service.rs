//! runtime.v1 ImageService over the root's image store: the same store and
//! the same pull (`hako_image::pull`) as `hako pull`, with containerd's
//! registry mirrors in front.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hako_distribution::client::{Client, ClientError, ClientOptions, Credentials};
use hako_image::{ImageRecord, ImageStore, Reference};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::config::{Config, Endpoint};
use crate::error::{Error, Result};
use crate::server::{blocking, blocking_long, State};

pub(crate) struct Images {
    state: Arc<State>,
}

impl Images {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Images { state }
    }
}

type Reply<T> = std::result::Result<Response<T>, Status>;

fn open_store(root: &Path) -> Result<ImageStore> {
    ImageStore::open(root)
        .map_err(|e| Error::image(format!("opening the image store of {}", root.display()), e))
}

/// The image a spec names, None when it names none here. A spec that is
/// no valid name or id is no image either (kubelet asks before pulling).
pub(crate) fn find(store: &ImageStore, spec: &str) -> Result<Option<ImageRecord>> {
    match store.find(spec) {
        Ok(r) => Ok(Some(r)),
        Err(hako_image::Error::NotFound { .. })
        | Err(hako_image::Error::InvalidReference { .. })
        | Err(hako_image::Error::InvalidDigest { .. }) => Ok(None),
        Err(e) => Err(Error::image(format!("looking up image {spec:?}"), e)),
    }
}

/// A stored image as CRI shows it: full names (as containerd), digests by
/// repository, the user it runs as.
fn to_cri(store: &ImageStore, rec: &ImageRecord) -> cri::Image {
    let repo_tags = rec
        .names
        .iter()
        .filter(|n| n.digest().is_none())
        .map(|n| n.to_string())
        .collect();
    let mut repo_digests: Vec<String> = rec
        .names
        .iter()
        .map(|n| format!("{}@{}", n.repository(), rec.target_digest))
        .collect();
    repo_digests.sort();
    repo_digests.dedup();
    let user = store
        .load_image(rec)
        .ok()
        .and_then(|i| i.config.config().as_ref().and_then(|c| c.user().clone()))
        .unwrap_or_default();
    // "uid[:gid]" numeric goes to uid, a name to username (kubelet's rule).
    let user_part = user.split(':').next().unwrap_or_default().to_string();
    let (uid, username) = match user_part.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) if user_part.is_empty() => (Some(cri::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user_part),
    };
    cri::Image {
        id: rec.id.to_string(),
        repo_tags,
        repo_digests,
        size: rec.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: rec.id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    }
}

fn spec_image(spec: Option<cri::ImageSpec>, rpc: &str) -> Result<String> {
    match spec {
        Some(s) if !s.image.is_empty() => Ok(s.image),
        _ => Err(Error::Invalid(format!("{rpc}: the image spec is empty"))),
    }
}

/// Where an image name is pulled from: its registry's mirrors in order,
/// then the registry itself when it has no mirrors or they allow fallback.
fn sources(config: &Config, domain: &str) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mirror = config.registry.mirrors.get(domain);
    if let Some(m) = mirror {
        out.extend(m.endpoints.iter().filter_map(|e| Endpoint::parse(e).ok()));
    }
    if mirror.is_none_or(|m| m.fallback) {
        out.push(Endpoint {
            host: domain.to_string(),
            plain_http: false,
        });
    }
    out
}

fn credentials(auth: Option<cri::AuthConfig>) -> Result<Option<Credentials>> {
    let Some(a) = auth else { return Ok(None) };
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(Some(Credentials {
            username: a.username,
            password: a.password,
        }));
    }
    if !a.auth.is_empty() {
        // docker's "auth": base64 of user:password.
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|_| Error::Invalid("pull: the auth config's auth is not base64".into()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Invalid("pull: the auth config's auth is not UTF-8".into()))?;
        let (u, p) = text.split_once(':').ok_or_else(|| {
            Error::Invalid("pull: the auth config's auth is not user:password".into())
        })?;
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    Ok(None)
}

/// Pull `name` into the store of `root`, trying each source in turn; an
/// unreachable source is skipped, any other failure is the answer.
pub(crate) fn pull(
    root: &Path,
    config: &Config,
    name: &str,
    creds: Option<Credentials>,
) -> Result<ImageRecord> {
    let reference = Reference::parse(name).map_err(|e| Error::image("pulling an image", e))?;
    let what = format!("pulling image {}", reference);
    let mut unreachable = Vec::new();
    for source in sources(config, reference.domain()) {
        let opts = ClientOptions {
            insecure_registries: if source.plain_http {
                vec![source.host.clone()]
            } else {
                Vec::new()
            },
            credentials: creds.clone(),
            ..ClientOptions::default()
        };
        let client = Client::new(&source.host, opts)
            .map_err(|e| Error::Unavailable(format!("{what}: {e}")))?;
        match client.ping() {
            Ok(()) => {}
            Err(e @ (ClientError::Http { .. } | ClientError::Io { .. })) => {
                unreachable.push(e.to_string());
                continue;
            }
            Err(e) => return Err(Error::Unavailable(format!("{what}: {e}"))),
        }
        let mut store = open_store(root)?;
        let pulled = hako_image::pull::pull(
            &mut store,
            &client,
            &reference,
            &hako_image::pull::PullOptions::default(),
            &hako_image::NoProgress,
        )
        .map_err(|e| Error::image(format!("{what} from {}", source.host), e))?;
        image_event(root, "pull", &reference.familiar(), &reference.familiar());
        return Ok(pulled.image);
    }
    Err(Error::Unavailable(if unreachable.is_empty() {
        format!("{what}: no registry to pull from")
    } else {
        format!("{what}: {}", unreachable.join("; "))
    }))
}

/// An image event in the root's event log, as `hako pull` and `hako rmi`
/// record them (so `hako events` shows what the CRI did).
fn image_event(root: &Path, action: &str, id: &str, name: &str) {
    hako_engine::events::EventLog::for_root(root)
        .emit(&hako_engine::events::Event::new("image", action, id).attr("name", name));
}

/// Bytes and inodes used under `dir` (not following symlinks).
pub(crate) fn usage(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                use std::os::unix::fs::MetadataExt;
                bytes += m.blocks() * 512;
            }
        }
    }
    (bytes, inodes)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Reply<cri::ListImagesResponse> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let state = self.state.clone();
        blocking("ListImages", move || {
            let mut handles = state.open()?;
            let store = handles.images();
            let records = match filter {
                Some(f) => find(store, &f)?.into_iter().collect(),
                None => store
                    .list()
                    .map_err(|e| Error::image("listing images", e))?,
            };
            Ok(cri::ListImagesResponse {
                images: records.iter().map(|r| to_cri(store, r)).collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Reply<cri::ImageStatusResponse> {
        let r = request.into_inner();
        let name = spec_image(r.image, "image status")?;
        let state = self.state.clone();
        blocking("ImageStatus", move || {
            let mut handles = state.open()?;
            let store = handles.images();
            // An image that is not here is no error: the answer is "none".
            let Some(rec) = find(store, &name)? else {
                return Ok(cri::ImageStatusResponse::default());
            };
            let mut info = HashMap::new();
            if r.verbose {
                if let Ok(img) = store.load_image(&rec) {
                    info.insert("info".to_string(), img.config_json.to_string());
                }
            }
            Ok(cri::ImageStatusResponse {
                image: Some(to_cri(store, &rec)),
                info,
            })
        })
        .await
        .map(Response::new)
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Reply<cri::PullImageResponse> {
        let r = request.into_inner();
        let name = spec_image(r.image, "pull")?;
        let creds = credentials(r.auth)?;
        let state = self.state.clone();
        blocking_long("PullImage", move || {
            let rec = pull(&state.root, &state.config, &name, creds)?;
            Ok(cri::PullImageResponse {
                image_ref: rec.id.to_string(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Reply<cri::RemoveImageResponse> {
        let name = spec_image(request.into_inner().image, "remove image")?;
        let root = self.state.root.clone();
        blocking("RemoveImage", move || {
            let mut store = open_store(&root)?;
            // Removing what is not there succeeds (kubelet retries removals).
            let Some(rec) = find(&store, &name)? else {
                return Ok(cri::RemoveImageResponse {});
            };
            // The image goes with all its names, as containerd's CRI does.
            let removed = match store.remove(&rec.id.to_string(), true) {
                Ok(r) => r,
                // Another RemoveImage took it between the lookup and here
                // (kubelet's image GC and critest remove concurrently).
                Err(hako_image::Error::NotFound { .. }) => return Ok(cri::RemoveImageResponse {}),
                Err(e) => return Err(Error::image(format!("removing image {name}"), e)),
            };
            let id = rec.id.to_string();
            for r in removed {
                match r {
                    hako_image::Removal::Untagged(n) => {
                        image_event(&root, "untag", &id, &n.familiar())
                    }
                    hako_image::Removal::Deleted(d) => {
                        image_event(&root, "delete", &d.to_string(), &d.to_string())
                    }
                }
            }
            Ok(cri::RemoveImageResponse {})
        })
        .await
        .map(Response::new)
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Reply<cri::ImageFsInfoResponse> {
        let root = self.state.root.clone();
        blocking("ImageFsInfo", move || {
            let store = open_store(&root)?;
            let dir = store.root().to_path_buf();
            let (bytes, inodes) = usage(&dir);
            let fs = |mountpoint: &Path, bytes, inodes| cri::FilesystemUsage {
                timestamp: now_nanos(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: mountpoint.to_string_lossy().into_owned(),
                }),
                used_bytes: Some(cri::UInt64Value { value: bytes }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            };
            let containers = root.join("containers");
            let (cbytes, cinodes) = usage(&containers);
            Ok(cri::ImageFsInfoResponse {
                image_filesystems: vec![fs(&dir, bytes, inodes)],
                container_filesystems: vec![fs(&containers, cbytes, cinodes)],
            })
        })
        .await
        .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_and_upstream_only_with_fallback() {
        let c = Config::parse(
            "[registry.mirrors.\"a.io\"]\nendpoints = [\"http://127.0.0.1:5000\"]\n[registry.mirrors.\"b.io\"]\nendpoints = [\"https://m.b\"]\nfallback = true\n",
            "t",
        )
        .unwrap();
        let hosts = |d| {
            sources(&c, d)
                .into_iter()
                .map(|e| e.host)
                .collect::<Vec<_>>()
        };
        assert_eq!(hosts("a.io"), ["127.0.0.1:5000"]);
        assert_eq!(hosts("b.io"), ["m.b", "b.io"]);
        assert_eq!(hosts("c.io"), ["c.io"]);
    }

    #[test]
    fn docker_auth_decodes() {
        let c = credentials(Some(cri::AuthConfig {
            auth: "dXNlcjpwYXNz".into(),
            ..Default::default()
        }))
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
    }
}
