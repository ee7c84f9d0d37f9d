//! Images: create (pull, or import with `fromSrc`), push, list, inspect,
//! history, tag, remove, prune, search (refused), get (docker-archive) and
//! load. Everything is [`hako_image`]'s: the pull and push of
//! [`hako_image::on_demand`] and [`hako_image::push`], the views of
//! [`hako_image::view`], the archives of [`hako_image::archive`].
//!
//! Image names hold slashes (`127.0.0.1:5000/team/app:1`), so the routes
//! under `/images/NAME/...` are one catch-all split on its last segment,
//! as docker's router matches them.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use hako_distribution::client::{ClientOptions, Credentials};
use hako_engine::events::{Event, EventLog};
use hako_image::archive::{self, Format, SaveItem};
use hako_image::images::parse_rfc3339;
use hako_image::import::{self, ImportOptions};
use hako_image::view::{self, ListFilter};
use hako_image::{ImageStore, Reference, Removal};
use serde_json::{json, Value};

use crate::error::{printable, ApiError, ApiResult};
use crate::jsonmsg::{self, LayerProgress};
use crate::params::Params;
use crate::server::State;
use crate::stream::{self, BodyReader, BodyWriter};

pub fn routes() -> Router<State> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create))
        .route("/images/load", post(load))
        .route("/images/prune", post(prune))
        .route("/images/search", get(search))
        .route("/images/get", get(get_many))
        .route("/auth", post(auth))
        .route(
            "/images/{*rest}",
            get(by_name).post(by_name).delete(by_name),
        )
}

/// Every value of a repeated query parameter (`t=a&t=b`, `names=...`).
pub fn multi(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Record an image event in the root's event log (docker's Actor: a
/// reference for pull/push, the image id otherwise).
pub fn event(s: &State, action: &str, id: &str, name: &str) {
    EventLog::for_root(&s.root).emit(&Event::new("image", action, id).attr("name", name));
}

/// docker's 404 for an image that is not there, other errors as they are.
pub fn image_error(what: &str, e: hako_image::Error) -> ApiError {
    match e {
        hako_image::Error::NotFound { .. } => {
            ApiError::not_found(format!("No such image: {}", printable(what)))
        }
        e => e.into(),
    }
}

/// A reference from a client, docker's 400 when it is not one.
fn parse_reference(s: &str) -> ApiResult<Reference> {
    Reference::parse(s).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid reference format: {:?} is not a valid image reference",
            printable(s)
        ))
    })
}

/// Registry options with the credentials of `X-Registry-Auth` (base64url
/// JSON `{"username","password",...}` or `{"identitytoken"}`); without
/// one, or an empty one, the auth files are used.
pub fn registry_options(headers: &HeaderMap) -> ApiResult<ClientOptions> {
    let mut opts = ClientOptions::default();
    let Some(raw) = headers.get("X-Registry-Auth") else {
        return Ok(opts);
    };
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Registry-Auth: not base64"))?
        .trim();
    if raw.is_empty() {
        return Ok(opts);
    }
    let trimmed = raw.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| ApiError::bad_request("X-Registry-Auth: not base64"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("X-Registry-Auth: not a JSON object"))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (user, password, token) = (field("username"), field("password"), field("identitytoken"));
    if !user.is_empty() || !password.is_empty() {
        opts.credentials = Some(Credentials {
            username: user,
            password,
        });
    } else if !token.is_empty() {
        // docker's identity tokens go as the password of `<token>`.
        opts.credentials = Some(Credentials {
            username: "<token>".into(),
            password: token,
        });
    }
    Ok(opts)
}

/// The status of a failed registry operation: docker's 404 for an image or
/// repository the registry does not have and for refused credentials (as
/// docker's "pull access denied"; a 401 makes the docker CLI prompt for a login).
fn registry_error(what: &str, e: hako_image::Error) -> ApiError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let status = if matches!(e, hako_image::Error::InvalidReference { .. }) {
        StatusCode::BAD_REQUEST
    } else if [
        "unauthorized",
        "authentication required",
        "401",
        "not found",
        "unknown",
        "404",
    ]
    .iter()
    .any(|w| lower.contains(w))
        || matches!(e, hako_image::Error::NotFound { .. })
    {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError::new(status, format!("{what}: {text}"))
}

// ---- auth (docker login) ----

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    serveraddress: String,
}

/// `docker login`: check the credentials against the registry (the client
/// stores them and sends them with each pull and push).
async fn auth(St(s): St<State>, b: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let b: AuthBody = serde_json::from_slice(&b)
        .map_err(|_| ApiError::bad_request("login: the request body is not a JSON object"))?;
    let registry = b
        .serveraddress
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    let registry = if registry.is_empty() || registry == "index.docker.io" {
        "docker.io".to_string()
    } else {
        registry
    };
    s.blocking(move |_, _| {
        let opts = ClientOptions {
            credentials: Some(Credentials {
                username: b.username,
                password: b.password,
            }),
            ..ClientOptions::default()
        };
        let client = hako_distribution::client::Client::new(&registry, opts)
            .map_err(|e| ApiError::internal(format!("login to {}: {e}", printable(&registry))))?;
        client.ping().map_err(|e| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("login to {} failed: {e}", printable(&registry)),
            )
        })?;
        Ok(Json(
            json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        ))
    })
    .await
}

// ---- create: pull and import ----

async fn create(
    St(s): St<State>,
    q: Params,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if let Some(src) = q.str("fromSrc") {
        return import(s, &q, raw.as_deref(), src, body).await;
    }
    let Some(from) = q.str("fromImage").filter(|f| !f.is_empty()) else {
        return Err(ApiError::bad_request(
            "creating an image: give fromImage (pull) or fromSrc (import)",
        ));
    };
    let tag = q.str("tag").unwrap_or("");
    // The tag parameter is a tag or a digest; a fromImage naming one already is kept.
    let full = if tag.is_empty() {
        from.to_string()
    } else if tag.contains(':') {
        format!("{from}@{tag}")
    } else {
        format!("{from}:{tag}")
    };
    let reference = parse_reference(&full)?;
    if q.str("platform").is_some_and(|p| !p.is_empty()) {
        hako_image::manifest::PlatformSpec::parse(q.str("platform").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("pulling {}: {e}", printable(&full))))?;
    }
    let platform = q
        .str("platform")
        .filter(|p| !p.is_empty())
        .map(hako_image::manifest::PlatformSpec::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let registry = registry_options(&headers)?;
    jsonmsg::respond(move |lines| {
        let mut store = s.images()?;
        let tag_or_digest = reference
            .digest()
            .map(|d| d.to_string())
            .or_else(|| reference.tag().map(str::to_string))
            .unwrap_or_else(|| "latest".into());
        let progress = LayerProgress::new(
            lines,
            Some(format!(
                "Pulling from {}",
                reference.familiar_repository()
            )),
            "Pull complete",
        );
        let opts = hako_image::pull::PullOptions {
            platform,
            ..Default::default()
        };
        let shown = reference.familiar();
        let had = store.find(&reference.to_string()).ok().map(|r| r.id);
        let result = hako_image::on_demand::pull_reference(
            &mut store,
            &reference.to_string(),
            &registry,
            &opts,
            &progress,
        );
        let (_, pulled) = match result {
            Ok(p) => p,
            Err(_) if lines.closed() => return Ok(()),
            Err(e) => return Err(registry_error(&format!("pulling {shown}"), e)),
        };
        if !progress.started() {
            // Nothing was downloaded: docker's header still comes first.
            lines.send(&json!({"status": format!("Pulling from {}", reference.familiar_repository()), "id": tag_or_digest}));
        }
        event(&s, "pull", &shown, &shown);
        lines.status(&format!("Digest: {}", pulled.digest));
        if had.as_ref() == Some(&pulled.image.id) {
            lines.status(&format!("Status: Image is up to date for {shown}"));
        } else {
            lines.status(&format!("Status: Downloaded newer image for {shown}"));
        }
        Ok(())
    })
    .await
}

/// `fromSrc=-`: the body is a root filesystem tarball (docker import).
async fn import(
    s: State,
    q: &Params,
    raw: Option<&str>,
    src: &str,
    body: Body,
) -> ApiResult<Response> {
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "importing {}: only fromSrc=- (the request body) is supported",
            printable(src)
        )));
    }
    let name = match (q.str("repo").filter(|r| !r.is_empty()), q.str("tag")) {
        (None, _) => None,
        (Some(r), Some(t)) if !t.is_empty() => Some(parse_reference(&format!("{r}:{t}"))?),
        (Some(r), _) => Some(parse_reference(r)?),
    };
    let changes = parse_changes(&multi(raw, "changes"))?;
    let opts = ImportOptions {
        source: "-".into(),
        message: q
            .str("message")
            .filter(|m| !m.is_empty())
            .map(str::to_string),
        env: changes.env,
        cmd: changes.cmd,
        labels: changes.labels,
        volumes: changes.volumes,
    };
    let reader = BodyReader::new(body);
    jsonmsg::respond(move |lines| {
        let mut store = s.images()?;
        let names: Vec<Reference> = name.into_iter().collect();
        let rec = import::import(&mut store, reader, &names, &opts, &hako_image::NoProgress)
            .map_err(|e| image_error("import", e))?;
        let id = rec.id.to_string();
        event(
            &s,
            "import",
            &id,
            &names.first().map_or(id.clone(), |n| n.familiar()),
        );
        lines.status(&id);
        Ok(())
    })
    .await
}

/// docker import's `changes`: ENV, LABEL, CMD and VOLUME lines.
#[derive(Default)]
struct Changes {
    env: Vec<String>,
    cmd: Vec<String>,
    labels: Vec<(String, String)>,
    volumes: Vec<String>,
}

fn parse_changes(changes: &[String]) -> ApiResult<Changes> {
    let mut out = Changes::default();
    for c in changes {
        let bad =
            |why: &str| ApiError::bad_request(format!("invalid change {:?}: {why}", printable(c)));
        let (verb, rest) = c
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((c.trim(), ""));
        let rest = rest.trim();
        match verb.to_ascii_uppercase().as_str() {
            "ENV" => match rest.split_once('=') {
                Some(_) => out.env.push(rest.to_string()),
                None => match rest.split_once(char::is_whitespace) {
                    Some((k, v)) => out.env.push(format!("{k}={}", v.trim())),
                    None => return Err(bad("ENV needs KEY=VALUE")),
                },
            },
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| bad("LABEL needs KEY=VALUE"))?;
                out.labels
                    .push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
            }
            "CMD" => {
                out.cmd = if rest.starts_with('[') {
                    serde_json::from_str(rest)
                        .map_err(|_| bad("CMD is not a JSON array of strings"))?
                } else {
                    vec!["/bin/sh".into(), "-c".into(), rest.to_string()]
                }
            }
            "VOLUME" => {
                let paths: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest)
                        .map_err(|_| bad("VOLUME is not a JSON array of strings"))?
                } else {
                    rest.split_whitespace().map(str::to_string).collect()
                };
                if paths.is_empty() {
                    return Err(bad("VOLUME needs a path"));
                }
                out.volumes.extend(paths);
            }
            _ => return Err(bad("ENV, LABEL, CMD and VOLUME are supported")),
        }
    }
    Ok(out)
}

// ---- list, inspect, history ----

async fn list(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    let digests = q.bool("digests");
    s.blocking(move |s, _| {
        let store = s.images()?;
        let filters = filters
            .iter()
            .map(|f| ListFilter::parse(f).map_err(|e| ApiError::bad_request(e.to_string())))
            .collect::<ApiResult<Vec<_>>>()?;
        let selected = view::select(&store, &filters).map_err(|e| match e {
            hako_image::Error::NotFound { what } => {
                ApiError::bad_request(format!("invalid filter: {what} not found"))
            }
            e => e.into(),
        })?;
        let out: Vec<Value> = selected
            .into_iter()
            .map(|(rec, names)| summary(&store, &rec, &names, digests))
            .collect();
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// docker's ImageSummary.
/// `names`: those passing the reference filters (docker lists only them).
fn summary(
    store: &ImageStore,
    rec: &hako_image::ImageRecord,
    names: &[Reference],
    _digests: bool,
) -> Value {
    let labels = view::labels(store, rec);
    json!({
        "Id": rec.id.to_string(),
        "ParentId": "",
        "RepoTags": names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
        "RepoDigests": view::repo_digests(&hako_image::ImageRecord {
            names: names.to_vec(),
            ..rec.clone()
        }),
        "Created": rec.created,
        "Size": rec.size,
        "SharedSize": -1,
        "VirtualSize": rec.size,
        "Labels": if labels.is_empty() { Value::Null } else { json!(labels) },
        "Containers": -1,
    })
}

/// `GET|POST|DELETE /images/NAME[/verb]`.
async fn by_name(
    St(s): St<State>,
    method: Method,
    Path(rest): Path<String>,
    q: Params,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let rest = rest.trim_start_matches('/').to_string();
    let split = rest.rsplit_once('/');
    match (&method, split) {
        (&Method::GET, Some((name, "json"))) => inspect(s, name.to_string()).await,
        (&Method::GET, Some((name, "history"))) => history(s, name.to_string()).await,
        (&Method::GET, Some((name, "get"))) => save(s, vec![name.to_string()]).await,
        (&Method::POST, Some((name, "push"))) => push(s, name.to_string(), &q, &headers).await,
        (&Method::POST, Some((name, "tag"))) => tag(s, name.to_string(), &q).await,
        (&Method::DELETE, _) => remove(s, rest, &q).await,
        _ => {
            let _ = raw;
            Err(ApiError::not_found(format!(
                "page not found: /images/{}",
                printable(&rest)
            )))
        }
    }
}

async fn inspect(s: State, name: String) -> ApiResult<Response> {
    s.blocking(move |s, _| {
        let store = s.images()?;
        let mut v = view::inspect(&store, &name).map_err(|e| image_error(&name, e))?;
        // Fields docker clients expect that hako does not track.
        v["Parent"] = json!("");
        v["DockerVersion"] = json!("");
        v["VirtualSize"] = v["Size"].clone();
        v["Metadata"] = json!({"LastTagTime": "0001-01-01T00:00:00Z"});
        Ok(Json(v).into_response())
    })
    .await
}

async fn history(s: State, name: String) -> ApiResult<Response> {
    s.blocking(move |s, _| {
        let store = s.images()?;
        let rec = store.find(&name).map_err(|e| image_error(&name, e))?;
        let entries = view::history(&store, &rec).map_err(|e| image_error(&name, e))?;
        let out: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, h)| {
                json!({
                    "Id": if i == 0 { rec.id.to_string() } else { "<missing>".into() },
                    "Created": parse_rfc3339(&h.created).unwrap_or(0),
                    "CreatedBy": h.created_by,
                    "Tags": if i == 0 {
                        json!(rec.names.iter().map(|n| n.familiar()).collect::<Vec<_>>())
                    } else {
                        Value::Null
                    },
                    "Size": h.size,
                    "Comment": h.comment,
                })
            })
            .collect();
        Ok(Json(Value::Array(out)).into_response())
    })
    .await
}

// ---- tag, remove, prune, search ----

async fn tag(s: State, name: String, q: &Params) -> ApiResult<Response> {
    let repo = q
        .str("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("tagging an image: repo is required"))?;
    let target = match q.str("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let target = parse_reference(&target)?;
    s.blocking(move |s, _| {
        let mut store = s.images()?;
        let rec = store
            .tag(&name, &target)
            .map_err(|e| image_error(&name, e))?;
        event(s, "tag", &rec.id.to_string(), &target.familiar());
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

async fn remove(s: State, name: String, q: &Params) -> ApiResult<Response> {
    let force = q.bool("force");
    s.blocking(move |s, _| {
        let mut store = s.images()?;
        let id = store
            .find(&name)
            .map(|r| r.id.to_string())
            .map_err(|e| image_error(&name, e))?;
        let removed = store.remove(&name, force).map_err(|e| match e {
            hako_image::Error::InUse { .. } => ApiError::conflict(format!(
                "conflict: unable to remove image {}: {e}",
                printable(&name)
            )),
            e => image_error(&name, e),
        })?;
        let mut out = Vec::new();
        for r in removed {
            match r {
                Removal::Untagged(n) => {
                    event(s, "untag", &id, &n.familiar());
                    out.push(json!({"Untagged": n.familiar()}));
                }
                Removal::Deleted(d) => {
                    let d = d.to_string();
                    event(s, "delete", &d, &d);
                    out.push(json!({"Deleted": d}));
                }
            }
        }
        Ok(Json(Value::Array(out)).into_response())
    })
    .await
}

async fn prune(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    s.blocking(move |s, _| {
        // dangling=false prunes every unused image (docker's `prune -a`).
        let mut all = false;
        let mut rest = Vec::new();
        for f in filters {
            match f.split_once('=') {
                Some(("dangling", v)) => all = matches!(v, "false" | "0"),
                _ => rest.push(f),
            }
        }
        let filter = hako_engine::prune_filter::PruneFilter::parse(&rest)?;
        let mut store = s.images()?;
        let (removed, space) = hako_engine::prune_filter::prune_images(&mut store, all, &filter)?;
        for d in &removed {
            let d = d.to_string();
            event(s, "delete", &d, &d);
        }
        let deleted: Vec<Value> = removed
            .iter()
            .map(|d| json!({"Deleted": d.to_string()}))
            .collect();
        Ok(Json(json!({
            "ImagesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
            "SpaceReclaimed": space,
        })))
    })
    .await
}

async fn search() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "image search is not supported by hako: browse the registry instead",
    )
}

// ---- push ----

async fn push(s: State, name: String, q: &Params, headers: &HeaderMap) -> ApiResult<Response> {
    let registry = registry_options(headers)?;
    let tag = q.str("tag").filter(|t| !t.is_empty()).map(str::to_string);
    let repo = parse_reference(&name)?;
    jsonmsg::respond(move |lines| {
        let store = s.images()?;
        // A tag pushes that tag; none pushes every tag of the repository (docker's).
        let targets: Vec<Reference> = match (&tag, repo.tag()) {
            (Some(t), _) => vec![parse_reference(&format!("{}:{t}", repo.repository()))?],
            (None, Some(_)) => vec![repo.clone()],
            (None, None) => {
                let mut v: Vec<Reference> = store
                    .list()?
                    .into_iter()
                    .flat_map(|r| r.names)
                    .filter(|n| n.repository() == repo.repository() && n.tag().is_some())
                    .collect();
                v.sort_by_key(|n| n.to_string());
                v.dedup();
                v
            }
        };
        if targets.is_empty() {
            return Err(ApiError::not_found(format!(
                "An image does not exist locally with the tag: {}",
                printable(&repo.familiar())
            )));
        }
        for t in &targets {
            store.find(&t.to_string()).map_err(|_| {
                ApiError::not_found(format!(
                    "An image does not exist locally with the tag: {}",
                    t.familiar()
                ))
            })?;
        }
        let client = hako_distribution::client::Client::new(repo.domain(), registry.clone())
            .map_err(|e| ApiError::internal(format!("pushing {}: {e}", repo.familiar())))?;
        for t in &targets {
            // Sent first, as docker: a refused push is then an error line
            // in the stream (a 401 would make the docker CLI ask for a login).
            lines.status(&format!(
                "The push refers to repository [{}]",
                t.repository()
            ));
            let progress = LayerProgress::new(lines, None, "Pushed");
            let report = match hako_image::push::push(&store, &client, &t.to_string(), t, &progress)
            {
                Ok(r) => r,
                Err(_) if lines.closed() => return Ok(()),
                Err(e) => return Err(registry_error(&format!("pushing {}", t.familiar()), e)),
            };
            if !progress.started() {
                lines.status(&format!(
                    "The push refers to repository [{}]",
                    t.repository()
                ));
            }
            let tag = t.tag().unwrap_or("latest");
            lines.status(&format!(
                "{tag}: digest: {} size: {}",
                report.digest, report.size
            ));
            lines.send(&json!({
                "progressDetail": {},
                "aux": {"Tag": tag, "Digest": report.digest.to_string(), "Size": report.size},
            }));
            event(&s, "push", &t.familiar(), &t.familiar());
        }
        Ok(())
    })
    .await
}

// ---- get (save) and load ----

async fn get_many(St(s): St<State>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let names = multi(raw.as_deref(), "names");
    if names.is_empty() {
        return Err(ApiError::bad_request("exporting images: no names given"));
    }
    save(s, names).await
}

/// A docker-archive of `names`, streamed as it is written.
async fn save(s: State, names: Vec<String>) -> ApiResult<Response> {
    // Resolved first, so an unknown image is a 404 rather than a broken tar.
    let items = s
        .blocking({
            let names = names.clone();
            move |s, _| {
                let store = s.images()?;
                let mut items = Vec::new();
                for what in &names {
                    let rec = store.find(what).map_err(|e| image_error(what, e))?;
                    // A name given is recorded in the archive; an id saves the image unnamed.
                    let name = Reference::parse(what)
                        .ok()
                        .filter(|r| r.digest().is_none() && rec.names.contains(r));
                    items.push(SaveItem { image: rec, name });
                }
                Ok(items)
            }
        })
        .await?;
    let (tx, body) = stream::channel();
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(store) = st.images() else { return };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, BodyWriter(tx));
        let r = archive::save_to_writer(
            &store,
            &items,
            Format::DockerArchive,
            &mut out,
            &hako_image::NoProgress,
        )
        .and_then(|()| {
            std::io::Write::flush(&mut out)
                .map_err(|e| hako_image::Error::Invalid(format!("writing the archive: {e}")))
        });
        match r {
            Ok(()) => {
                for (item, what) in items.iter().zip(&names) {
                    event(&st, "save", &item.image.id.to_string(), what);
                }
            }
            Err(e) => tracing::warn!("saving {}: {e}", names.join(", ")),
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

async fn load(St(s): St<State>, q: Params, body: Body) -> ApiResult<Response> {
    let quiet = q.bool("quiet");
    let reader = BodyReader::new(body);
    jsonmsg::respond(move |lines| {
        let mut store = s.images()?;
        // Loading seeks inside the archive: the body is spooled to a file
        // on the store's filesystem first (removed when dropped).
        let mut spool = tempfile::Builder::new()
            .prefix("load-")
            .tempfile_in(store.content().ingest_dir())
            .map_err(|e| {
                ApiError::internal(format!("loading images: creating a spool file: {e}"))
            })?;
        let mut reader = reader;
        std::io::copy(&mut reader, spool.as_file_mut()).map_err(|e| {
            ApiError::bad_request(format!("loading images: reading the request body: {e}"))
        })?;
        let loaded = archive::load(&mut store, spool.path(), &hako_image::NoProgress)
            .map_err(|e| ApiError::bad_request(format!("loading images: {e}")))?;
        for rec in loaded {
            let id = rec.id.to_string();
            let name = rec.names.first().map_or(id.clone(), |n| n.familiar());
            event(&s, "load", &id, &name);
            let _ = quiet;
            if rec.names.is_empty() {
                lines.stream(&format!("Loaded image ID: {id}\n"));
            } else {
                for n in &rec.names {
                    lines.stream(&format!("Loaded image: {}\n", n.familiar()));
                }
            }
        }
        Ok(())
    })
    .await
}

/// Sizes of the images, by id (for `/system/df`-like summaries).
pub fn sizes(store: &ImageStore) -> ApiResult<BTreeMap<String, u64>> {
    Ok(store
        .list()?
        .into_iter()
        .map(|r| (r.id.to_string(), r.size))
        .collect())
}
