//! The client side of the OCI distribution-spec: what `hako pull` and `hako push`
//! speak to any registry (Debian's docker-registry, Docker Hub, `hako registry serve`).
//!
//! - [`Client`]: one registry; manifests, blobs (streamed, resumed with `Range`),
//!   uploads (monolithic or chunked), cross-repository mounts, retries with backoff.
//! - [`challenge`]: `WWW-Authenticate` parsing; [`token`] docker token auth.
//! - [`credentials`]: the docker-compatible auth file `hako login` writes.
//!
//! The client is blocking (reqwest's blocking client runs its own I/O thread):
//! the image store's layer code is synchronous `Read`, and layers are pulled in
//! parallel on threads, each streamed in one pass.

pub mod blob;
pub mod challenge;
pub mod credentials;
pub mod error;
mod token;
pub mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;

pub use blob::BlobReader;
pub use credentials::Credentials;
pub use error::{ClientError, Result};
pub use upload::Pushed;

use crate::digest::Digest;
use crate::media_types;
use challenge::Challenge;

/// Largest manifest or config document accepted (the spec suggests registries accept 4 MiB).
pub const MAX_DOCUMENT: usize = 16 << 20;

/// Every manifest media type hako understands, for `Accept`.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts spoken to over plain HTTP (`--insecure-registry`); localhost and
    /// loopback addresses always are.
    pub insecure_registries: Vec<String>,
    /// Credentials to use; `None` looks them up in the auth files.
    pub credentials: Option<Credentials>,
    /// Uploads larger than this go in PATCH chunks of this size.
    pub chunk_size: u64,
    /// Attempts after the first on connect errors, 5xx and 429.
    pub retries: u32,
    /// First backoff delay; doubled per attempt.
    pub backoff: Duration,
    /// Directories holding `HOST[:PORT]/*.crt` CA certificates trusted for
    /// that registry besides the system roots (docker's and podman's
    /// `certs.d` convention). A registry with certificates here is spoken to
    /// over TLS even on loopback.
    pub certs_dirs: Vec<PathBuf>,
    /// For blob downloads: the longest wait for the response, and then for
    /// each read of its body; longer counts as a broken connection, and the
    /// download resumes where it stopped.
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            credentials: None,
            chunk_size: 32 << 20,
            retries: 4,
            backoff: Duration::from_millis(250),
            certs_dirs: default_certs_dirs(),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// `$HAKO_CERTS_DIR`, or hako's, podman's and docker's `certs.d` directories.
pub fn default_certs_dirs() -> Vec<PathBuf> {
    match std::env::var_os("HAKO_CERTS_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => [
            "/etc/hako/certs.d",
            "/etc/containers/certs.d",
            "/etc/docker/certs.d",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
    }
}

/// The `*.crt` files for `registry` in the certs directories, with their contents.
fn ca_certificates(registry: &str, dirs: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for dir in dirs {
        let host_dir = dir.join(registry);
        let entries = match std::fs::read_dir(&host_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ClientError::io(
                    format!("reading certificates in {}", host_dir.display()),
                    e,
                ))
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for f in files {
            let pem = std::fs::read(&f)
                .map_err(|e| ClientError::io(format!("reading certificate {}", f.display()), e))?;
            out.push((f, pem));
        }
    }
    Ok(out)
}

/// What a request needs access to; decides the token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// The registry itself (`/v2/`): no scope.
    Registry,
    Pull(&'a str),
    Push(&'a str),
    /// Push to `repo` mounting blobs from `from`: needs pull on `from` too.
    PushMount {
        repo: &'a str,
        from: &'a str,
    },
}

impl Access<'_> {
    fn scopes(&self) -> Vec<String> {
        match self {
            Access::Registry => Vec::new(),
            Access::Pull(r) => vec![format!("repository:{r}:pull")],
            Access::Push(r) => vec![format!("repository:{r}:pull,push")],
            Access::PushMount { repo, from } => vec![
                format!("repository:{repo}:pull,push"),
                format!("repository:{from}:pull"),
            ],
        }
    }
}

#[derive(Default)]
struct AuthState {
    /// The registry asked for Basic auth: send credentials with every request.
    basic: bool,
    /// The registry's token service, once a challenge named it.
    bearer: Option<(String, Option<String>)>,
    /// `Authorization` values by scope set.
    tokens: HashMap<String, String>,
}

/// A manifest (or index) as fetched.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// A client for one registry.
pub struct Client {
    registry: String,
    base: String,
    http: reqwest::blocking::Client,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
    opts: ClientOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

/// Whether `registry` (host[:port]) is spoken to over plain HTTP.
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.starts_with("127.")
        || host == "::1"
        || insecure.iter().any(|i| i == registry || i == host)
}

impl Client {
    /// A client for `registry` as references name it (`docker.io`, `127.0.0.1:5000`).
    pub fn new(registry: &str, opts: ClientOptions) -> Result<Self> {
        let endpoint = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let cas = ca_certificates(registry, &opts.certs_dirs)?;
        let listed = opts.insecure_registries.iter().any(|i| {
            i == registry || Some(i.as_str()) == registry.rsplit_once(':').map(|(h, _)| h)
        });
        // Certificates configured for a loopback registry mean it speaks TLS.
        let scheme = if listed || (is_insecure(registry, &[]) && cas.is_empty()) {
            "http"
        } else {
            "https"
        };
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => credentials::lookup(registry)?,
        };
        let mut builder = reqwest::blocking::Client::builder();
        for (path, pem) in &cas {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| ClientError::Http {
                what: format!("loading certificate {} for {registry}", path.display()),
                err: e,
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .user_agent(concat!("hako/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // Blob transfers take as long as they take; stalls end in TCP errors.
            .timeout(None::<Duration>)
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Http {
                what: format!("setting up a client for {registry}"),
                err: e,
            })?;
        Ok(Client {
            registry: registry.to_string(),
            base: format!("{scheme}://{endpoint}"),
            http,
            creds,
            auth: Mutex::new(AuthState::default()),
            opts,
        })
    }

    /// The registry as references name it.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `Location` header value made absolute.
    fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            self.url(location)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    fn auth_header(&self, access: &Access<'_>) -> Result<Option<String>> {
        let key = access.scopes().join(" ");
        let service = {
            let state = self.auth.lock().expect("auth lock");
            if state.basic {
                return Ok(self.basic_header());
            }
            if let Some(h) = state.tokens.get(&key) {
                return Ok(Some(h.clone()));
            }
            state.bearer.clone()
        };
        // The token service is known from an earlier challenge: ask it for
        // this scope up front instead of taking a 401 round trip per scope.
        match service {
            Some((realm, service)) => {
                let h = self.fetch_token(&realm, service.as_deref(), access)?;
                Ok(Some(h))
            }
            None => Ok(None),
        }
    }

    fn basic_header(&self) -> Option<String> {
        self.creds.as_ref().map(|c| {
            format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", c.username, c.password))
            )
        })
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        access: &Access<'_>,
    ) -> Result<String> {
        let token = token::fetch(
            &self.http,
            realm,
            service,
            &access.scopes(),
            self.creds.as_ref(),
            &self.registry,
        )?;
        let header = format!("Bearer {token}");
        self.auth
            .lock()
            .expect("auth lock")
            .tokens
            .insert(access.scopes().join(" "), header.clone());
        Ok(header)
    }

    /// React to a 401: follow its challenge. Returns an error when there is
    /// nothing more to try.
    fn authenticate(&self, what: &str, access: &Access<'_>, headers: &HeaderMap) -> Result<()> {
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::parse)
            .collect();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service, .. } => Some((realm.clone(), service.clone())),
            Challenge::Basic => None,
        });
        if let Some((realm, service)) = bearer {
            self.auth.lock().expect("auth lock").bearer = Some((realm.clone(), service.clone()));
            self.fetch_token(&realm, service.as_deref(), access)?;
            return Ok(());
        }
        if challenges.contains(&Challenge::Basic) {
            if self.creds.is_none() {
                return Err(self.login_needed(what));
            }
            // Another request may have switched to Basic meanwhile; either
            // way this one retries once with the credentials.
            self.auth.lock().expect("auth lock").basic = true;
            return Ok(());
        }
        Err(ClientError::Unauthorized {
            what: what.to_string(),
            reason: "the registry requires authentication but sent no challenge hako understands"
                .into(),
        })
    }

    fn login_needed(&self, what: &str) -> ClientError {
        ClientError::Unauthorized {
            what: what.to_string(),
            reason: format!(
                "authentication required (run `hako login {}`)",
                self.registry
            ),
        }
    }

    fn refused(&self, what: &str) -> ClientError {
        ClientError::Unauthorized {
            what: what.to_string(),
            reason: format!(
                "access denied with the credentials for {}{}",
                self.registry,
                self.creds
                    .as_ref()
                    .map(|c| format!(" (user {})", c.username))
                    .unwrap_or_default()
            ),
        }
    }

    fn backoff(&self, attempt: u32, headers: Option<&HeaderMap>) -> Duration {
        let retry_after = headers
            .and_then(|h| h.get(reqwest::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(30)));
        retry_after.unwrap_or_else(|| {
            (self.opts.backoff * 2u32.saturating_pow(attempt)).min(Duration::from_secs(8))
        })
    }

    /// Send a request built by `build` (called again for each attempt), with
    /// authentication and retries. `replayable` requests are retried on 5xx
    /// and 429 too; others (a PATCH whose bytes may have landed) only when
    /// the connection could not be made at all.
    pub(crate) fn send(
        &self,
        what: &str,
        access: &Access<'_>,
        replayable: bool,
        build: &dyn Fn(&reqwest::blocking::Client) -> RequestBuilder,
    ) -> Result<Response> {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            let mut req = build(&self.http);
            if let Some(h) = self.auth_header(access)? {
                req = req.header(AUTHORIZATION, h);
            }
            match req.send() {
                Err(e) => {
                    let transient =
                        e.is_connect() || (replayable && (e.is_timeout() || e.is_request()));
                    if transient && attempt < self.opts.retries {
                        tracing::debug!("{what}: {e}; retrying");
                        std::thread::sleep(self.backoff(attempt, None));
                        attempt += 1;
                        continue;
                    }
                    return Err(ClientError::Http {
                        what: what.to_string(),
                        err: e,
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED {
                        if reauthenticated {
                            return Err(if self.creds.is_some() {
                                self.refused(what)
                            } else {
                                self.login_needed(what)
                            });
                        }
                        reauthenticated = true;
                        // A cached token may have expired: forget it and follow the challenge.
                        self.auth
                            .lock()
                            .expect("auth lock")
                            .tokens
                            .remove(&access.scopes().join(" "));
                        self.authenticate(what, access, resp.headers())?;
                        continue;
                    }
                    let transient = status == StatusCode::TOO_MANY_REQUESTS
                        || (replayable && status.is_server_error());
                    if transient && attempt < self.opts.retries {
                        tracing::debug!("{what}: registry answered {status}; retrying");
                        std::thread::sleep(self.backoff(attempt, Some(resp.headers())));
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    /// `GET /v2/`: is this a registry, and do the credentials work.
    pub fn ping(&self) -> Result<()> {
        let what = format!("checking registry {}", self.registry);
        let url = self.url("/v2/");
        let resp = self.send(&what, &Access::Registry, true, &|c| c.get(&url))?;
        expect(resp, &what, &[StatusCode::OK]).map(drop)
    }

    /// Fetch a manifest or index by tag or digest, verifying its digest.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let what = format!(
            "fetching manifest {}/{repo}{}",
            self.registry,
            sep(reference)
        );
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.send(&what, &Access::Pull(repo), true, &|c| {
            c.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
        })?;
        let resp = expect(resp, &what, &[StatusCode::OK])?;
        let media_type = header(resp.headers(), CONTENT_TYPE.as_str())
            .map(|m| m.split(';').next().unwrap_or("").trim().to_string());
        let announced = header(resp.headers(), "docker-content-digest");
        let bytes = read_limited(resp, &what, MAX_DOCUMENT)?;
        let expected: Option<Digest> = match reference.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => announced.and_then(|a| a.parse().ok()),
        };
        let digest = match expected {
            Some(exp) => {
                let actual = Digest::of(exp.algorithm(), &bytes);
                if actual != exp {
                    return Err(ClientError::DigestMismatch {
                        what,
                        expected: exp.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        // The body's own mediaType wins over a generic Content-Type.
        let media_type = body_media_type(&bytes)
            .or(media_type)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string());
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `GET /v2/<repo>/tags/list`, following the `Link: <…>; rel="next"`
    /// pages: every tag of the repository, in the registry's order.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        // Bounds against a registry that never stops paging.
        const MAX_PAGES: usize = 1000;
        const MAX_TAGS: usize = 100_000;
        let what = format!("listing the tags of {}/{repo}", self.registry);
        let mut url = self.url(&format!("/v2/{repo}/tags/list"));
        let mut out: Vec<String> = Vec::new();
        for _ in 0..MAX_PAGES {
            let u = url.clone();
            let resp = self.send(&what, &Access::Pull(repo), true, &|c| c.get(&u))?;
            let resp = expect(resp, &what, &[StatusCode::OK])?;
            let next = header(resp.headers(), "link").and_then(|l| next_link(&l));
            let bytes = read_limited(resp, &what, MAX_DOCUMENT)?;
            let page: Page = serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::protocol(&what, format!("not a tag list: {e}")))?;
            out.extend(page.tags.unwrap_or_default());
            if out.len() > MAX_TAGS {
                return Err(ClientError::protocol(
                    &what,
                    format!("more than {MAX_TAGS} tags"),
                ));
            }
            match next {
                Some(n) => url = self.resolve(&n),
                None => return Ok(out),
            }
        }
        Err(ClientError::protocol(
            &what,
            format!("more than {MAX_PAGES} pages"),
        ))
    }

    /// `HEAD` a manifest: its digest if it exists.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let what = format!(
            "checking manifest {}/{repo}{}",
            self.registry,
            sep(reference)
        );
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.send(&what, &Access::Pull(repo), true, &|c| {
            c.head(&url).header(ACCEPT, MANIFEST_ACCEPT)
        })?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = expect(resp, &what, &[StatusCode::OK])?;
        Ok(header(resp.headers(), "docker-content-digest").and_then(|d| d.parse().ok()))
    }

    /// Upload a manifest under a tag or its digest; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let what = format!(
            "uploading manifest {}/{repo}{}",
            self.registry,
            sep(reference)
        );
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let body = bytes::Bytes::copy_from_slice(bytes);
        let resp = self.send(&what, &Access::Push(repo), true, &|c| {
            c.put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(body.clone())
        })?;
        let resp = expect(resp, &what, &[StatusCode::CREATED, StatusCode::OK])?;
        let ours = Digest::sha256_of(bytes);
        if let Some(theirs) =
            header(resp.headers(), "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
        {
            if theirs.algorithm() == ours.algorithm() && theirs != ours {
                return Err(ClientError::DigestMismatch {
                    what,
                    expected: ours.to_string(),
                    actual: theirs.to_string(),
                });
            }
        }
        Ok(ours)
    }

    /// `HEAD` a blob: its size if the repository has it.
    pub fn head_blob(
        &self,
        repo: &str,
        digest: &Digest,
        access: &Access<'_>,
    ) -> Result<Option<u64>> {
        let what = format!("checking blob {digest} in {}/{repo}", self.registry);
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(&what, access, true, &|c| c.head(&url))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = expect(resp, &what, &[StatusCode::OK])?;
        Ok(resp
            .content_length()
            .or_else(|| header(resp.headers(), "content-length").and_then(|l| l.parse().ok())))
    }

    /// A small blob (an image config) read whole and verified.
    pub fn get_blob_bytes(&self, repo: &str, digest: &Digest) -> Result<Vec<u8>> {
        let what = format!("fetching blob {digest} from {}/{repo}", self.registry);
        let reader = self.get_blob(repo, digest, None)?;
        let resp_bytes = {
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(reader, MAX_DOCUMENT as u64 + 1),
                &mut out,
            )
            .map_err(|e| ClientError::io(&what, e))?;
            out
        };
        if resp_bytes.len() > MAX_DOCUMENT {
            return Err(ClientError::protocol(
                what,
                format!("larger than {MAX_DOCUMENT} bytes"),
            ));
        }
        let actual = Digest::of(digest.algorithm(), &resp_bytes);
        if &actual != digest {
            return Err(ClientError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(resp_bytes)
    }
}

/// `:tag` or `@digest` for messages.
fn sep(reference: &str) -> String {
    if reference.contains(':') {
        format!("@{reference}")
    } else {
        format!(":{reference}")
    }
}

/// The target of a `Link` header's `rel="next"` entry.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let t = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| t.to_string())
    })
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn body_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

/// Read a response body of at most `max` bytes.
fn read_limited(resp: Response, what: &str, max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(resp, max as u64 + 1), &mut out)
        .map_err(|e| ClientError::io(what, e))?;
    if out.len() > max {
        return Err(ClientError::protocol(
            what,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(out)
}

/// The response if its status is one of `ok`; otherwise the registry's error.
pub(crate) fn expect(resp: Response, what: &str, ok: &[StatusCode]) -> Result<Response> {
    if ok.contains(&resp.status()) {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = read_limited(resp, what, 64 << 10).unwrap_or_default();
    let (code, message) = error::parse_error_body(&body);
    Err(ClientError::Status {
        what: what.to_string(),
        status,
        code,
        message,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_link_of_a_link_header() {
        assert_eq!(
            super::next_link("</v2/r/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/r/tags/list?n=2&last=b")
        );
        assert_eq!(
            super::next_link("<http://x/a>; rel=\"prev\", <http://x/b>; rel=next").as_deref(),
            Some("http://x/b")
        );
        assert_eq!(super::next_link("</v2/r>; rel=\"prev\""), None);
        assert_eq!(super::next_link("garbage"), None);
    }

    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        assert!(is_insecure("127.0.0.1:5000", &[]));
        assert!(is_insecure("localhost", &[]));
        assert!(is_insecure("[::1]:5000", &[]));
        assert!(!is_insecure("registry.example:5000", &[]));
        assert!(is_insecure(
            "registry.example:5000",
            &["registry.example".into()]
        ));
        assert!(!is_insecure("quay.io", &["registry.example".into()]));
    }

    #[test]
    fn scopes() {
        assert_eq!(Access::Pull("a/b").scopes(), ["repository:a/b:pull"]);
        assert_eq!(
            Access::PushMount {
                repo: "x",
                from: "y"
            }
            .scopes(),
            ["repository:x:pull,push", "repository:y:pull"]
        );
        assert!(Access::Registry.scopes().is_empty());
    }
}
