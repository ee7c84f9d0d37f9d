//! `POST /build`: a tar context (plain or compressed) built by
//! [`hako_build`], answered as the classic builder's JSON stream
//! (`{"stream":"Step 1/3 : FROM busybox\n"}`, `{"aux":{"ID":..}}`,
//! `Successfully built`/`Successfully tagged`, errors as
//! `{"errorDetail":..,"error":..}`), which `DOCKER_BUILDKIT=0 docker build`,
//! docker-compose and docker-py read. BuildKit sessions (`version=2`,
//! `/session`) are refused with a message saying so. `POST /build/prune`
//! prunes hako's build cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use hako_build::{Options, Output};
use hako_image::{ImageStore, Reference};
use serde_json::{json, Value};

use crate::error::{printable, ApiError, ApiResult};
use crate::images::{event, multi, registry_options};
use crate::jsonmsg::{self, short_id, Lines};
use crate::params::Params;
use crate::server::State;
use crate::stream::BodyReader;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/build", post(build))
        .route("/build/prune", post(prune))
        .route("/session", post(session))
}

/// BuildKit's session endpoint: not served.
async fn session() -> ApiError {
    buildkit_refused()
}

fn buildkit_refused() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "BuildKit builds (version=2) are not supported by hako's API service: use the classic builder (DOCKER_BUILDKIT=0) or hako build",
    )
}

/// A JSON map parameter (`buildargs`, `labels`): `{"KEY": "VALUE"}`; null
/// values (docker-py's unset build args) are left out.
fn json_map(q: &Params, key: &str) -> ApiResult<BTreeMap<String, String>> {
    let Some(raw) = q.str(key).filter(|s| !s.trim().is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw).map_err(|_| {
        ApiError::bad_request(format!("building: {key} is not a JSON object of strings"))
    })?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError::bad_request(format!("building: {key} is not a JSON object of strings"))
    })?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        match v {
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            Value::Null => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "building: {key} {}: the value is not a string",
                    printable(k)
                )))
            }
        }
    }
    Ok(out)
}

/// The build's steps as docker's classic builder prints them.
struct Steps<'a> {
    lines: &'a Lines,
    quiet: bool,
}

/// `[stage 2/3] RUN x` → `Step 2/3 : RUN x` (counted per stage, as hako
/// builds stages apart).
fn step_line(name: &str) -> String {
    if let Some(rest) = name.strip_prefix('[') {
        if let Some((head, ins)) = rest.split_once("] ") {
            if let Some(n) = head.rsplit(' ').next().filter(|n| n.contains('/')) {
                return format!("Step {n} : {ins}\n");
            }
        }
    }
    format!("{name}\n")
}

impl hako_build::Progress for Steps<'_> {
    fn start(&self, _id: usize, name: &str) {
        if !self.quiet {
            self.lines.stream(&step_line(name));
        }
    }

    fn log(&self, _id: usize, _elapsed: Duration, line: &str) {
        if !self.quiet {
            self.lines.stream(&format!("{line}\n"));
        }
    }

    fn done(&self, _id: usize, cached: bool, _elapsed: Duration) {
        if !self.quiet && cached {
            self.lines.stream(" ---> Using cache\n");
        }
    }

    fn failed(&self, _id: usize, _message: &str, _elapsed: Duration) {}

    fn warn(&self, message: &str) {
        if !self.quiet {
            self.lines.stream(&format!("[Warning] {message}\n"));
        }
    }
}

/// Base images the build pulls, with the request's registry options.
struct Pull {
    registry: hako_distribution::client::ClientOptions,
}

impl hako_build::Puller for Pull {
    fn pull(
        &self,
        store: &mut ImageStore,
        reference: &str,
        platform: &hako_image::manifest::PlatformSpec,
    ) -> Result<(), String> {
        hako_image::on_demand::pull_reference(
            store,
            reference,
            &self.registry,
            &hako_image::pull::PullOptions {
                platform: Some(platform.clone()),
                ..Default::default()
            },
            &hako_image::NoProgress,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

async fn build(
    St(s): St<State>,
    q: Params,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if q.str("version").is_some_and(|v| v == "2") {
        return Err(buildkit_refused());
    }
    if q.str("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "building: remote contexts are not supported; send the context as the request body",
        ));
    }
    let tags = multi(raw.as_deref(), "t")
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| {
            Reference::parse(t).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid reference format: tag {:?} is not a valid image reference",
                    printable(t)
                ))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let build_args = json_map(&q, "buildargs")?;
    let labels = json_map(&q, "labels")?;
    // cachefrom: a JSON list of images (docker's classic --cache-from).
    let cache_from: Vec<String> = match q.str("cachefrom").filter(|s| !s.trim().is_empty()) {
        Some(s) => serde_json::from_str(s).map_err(|_| {
            ApiError::bad_request("building: cachefrom is not a JSON list of image names")
        })?,
        None => Vec::new(),
    };
    for c in &cache_from {
        hako_build::executor::check_cache_from(c)
            .map_err(|e| ApiError::bad_request(format!("building: {e}")))?;
    }
    let dockerfile = q
        .str("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    if Path::new(&dockerfile).is_absolute() || dockerfile.split('/').any(|c| c == "..") {
        return Err(ApiError::bad_request(format!(
            "building: the Dockerfile {:?} must be a path inside the context",
            printable(&dockerfile)
        )));
    }
    let target = q
        .str("target")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let platform = q
        .str("platform")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let (no_cache, pull, quiet) = (q.bool("nocache"), q.bool("pull"), q.bool("q"));
    let run = run_defaults(&q)?;
    // X-Registry-Config: {"registry": {"username",..}}; the build pulls
    // from the base image's registry, credentials from the auth files.
    let registry = registry_options(&HeaderMap::new())?;
    let _ = headers;
    let reader = BodyReader::new(body);
    jsonmsg::respond(move |lines| {
        let mut reader = reader;
        let origin =
            hako_build::origin::prepare(Path::new("-"), Some(Path::new(&dockerfile)), &mut reader)
                .map_err(|e| ApiError::bad_request(format!("building: {e}")))?;
        if origin.dockerfile.as_ref().is_some_and(|d| !d.is_file()) {
            return Err(ApiError::bad_request(format!(
                "building: the context has no Dockerfile {:?}",
                printable(&dockerfile)
            )));
        }
        let runtime = hako_engine::runtime::resolve("hako-runtime")?;
        let opts = Options {
            context: origin.context.clone(),
            dockerfile: origin.dockerfile.clone(),
            tags: tags.clone(),
            build_args,
            target,
            no_cache,
            pull,
            labels,
            platform,
            output: Output::Image,
            iidfile: None::<PathBuf>,
            source_date_epoch: None,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            allow: Vec::new(),
            compression: hako_image::manifest::Compression::None,
            runtime,
            run,
            named_contexts: BTreeMap::new(),
            cache_from: cache_from.clone(),
        };
        let mut store = s.images()?;
        let steps = Steps { lines, quiet };
        let puller = Pull { registry };
        let built = match hako_build::build(&mut store, &opts, &steps, Some(&puller)) {
            Ok(b) => b,
            Err(_) if lines.closed() => return Ok(()),
            Err(e) => return Err(ApiError::bad_request(e.to_string())),
        };
        drop(origin);
        let id = built.id.to_string();
        for t in &tags {
            event(&s, "tag", &id, &t.familiar());
        }
        lines.send(&json!({"aux": {"ID": id}}));
        if quiet {
            lines.stream(&format!("{id}\n"));
        } else {
            lines.stream(&format!("Successfully built {}\n", short_id(&id)));
            for t in &tags {
                lines.stream(&format!("Successfully tagged {}\n", t.familiar()));
            }
        }
        Ok(())
    })
    .await
}

async fn prune(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let all = q.bool("all");
    s.blocking(move |s, _| {
        let store = s.images()?;
        let r = hako_build::cache::prune(&store, all)
            .map_err(|e| ApiError::internal(format!("pruning the build cache: {e}")))?;
        let _ = r;
        Ok(Json(json!({"CachesDeleted": [], "SpaceReclaimed": 0})))
    })
    .await
}

/// `networkmode`, `extrahosts`, `shmsize` and `ulimits`: what every RUN step
/// gets (docker CLI's `build --network/--add-host/--shm-size/--ulimit`).
fn run_defaults(q: &Params) -> ApiResult<hako_build::RunDefaults> {
    let network = match q.str("networkmode").unwrap_or("") {
        // The classic builder's default network is the default bridge.
        "" | "default" | "bridge" => String::new(),
        other => other.to_string(),
    };
    let add_hosts = q
        .str("extrahosts")
        .unwrap_or("")
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    let shm_size = match q.str("shmsize").filter(|s| !s.is_empty()) {
        Some(s) => s.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "building: shmsize {:?} is not a number",
                printable(s)
            ))
        })?,
        None => 0,
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Ulimit {
        name: String,
        soft: i64,
        hard: i64,
    }
    let ulimits: Vec<Ulimit> = match q.str("ulimits").filter(|s| !s.is_empty()) {
        Some(s) => serde_json::from_str(s).map_err(|e| {
            ApiError::bad_request(format!(
                "building: ulimits is not a JSON list of limits: {e}"
            ))
        })?,
        None => Vec::new(),
    };
    let run = hako_build::RunDefaults {
        network,
        add_hosts,
        shm_size,
        ulimits: ulimits
            .into_iter()
            .map(|u| hako_engine::record::Ulimit {
                name: u.name,
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
    };
    run.validate()
        .map_err(|e| ApiError::bad_request(format!("building: {e}")))?;
    Ok(run)
}
