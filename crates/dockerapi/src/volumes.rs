//! Volumes: create, list (filters), inspect, remove, prune, over the
//! engine's local volumes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State as St};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hako_engine::volume::{self, Filter};
use hako_engine::VolumeCreate;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{printable, ApiError, ApiResult};
use crate::params::Params;
use crate::server::State;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

fn volume_error(name: &str, e: hako_engine::Error) -> ApiError {
    match e {
        hako_engine::Error::NotFound { .. } => {
            ApiError::not_found(format!("get {}: no such volume", printable(name)))
        }
        hako_engine::Error::Conflict(m) => ApiError::conflict(m),
        e => e.into(),
    }
}

async fn list(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    s.blocking(move |_, engine| {
        let filters = filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<hako_engine::Result<Vec<_>>>()?;
        let needs_use = filters.iter().any(|f| matches!(f, Filter::Dangling(_)));
        let mut out = Vec::new();
        for v in engine.volumes()? {
            let in_use = needs_use && engine.volume_in_use(&v.name)?;
            if volume::matches(&filters, &v, in_use) {
                out.push(engine.inspect_volume(&v));
            }
        }
        Ok(Json(json!({"Volumes": out, "Warnings": []})))
    })
    .await
}

async fn inspect(St(s): St<State>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    s.blocking(move |_, engine| {
        let v = engine.volume(&name).map_err(|e| volume_error(&name, e))?;
        Ok(Json(engine.inspect_volume(&v)))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

async fn create(St(s): St<State>, b: Bytes) -> ApiResult<Response> {
    // docker-py and the CLI always send a body; an empty one is an anonymous volume.
    let b: CreateBody = if b.is_empty() {
        CreateBody::default()
    } else {
        serde_json::from_slice(&b).map_err(|e| {
            ApiError::bad_request(format!(
                "creating a volume: the request body is not valid JSON (line {} column {})",
                e.line(),
                e.column()
            ))
        })?
    };
    let name = b.name.filter(|n| !n.is_empty());
    let mut labels = b.labels.unwrap_or_default();
    if name.is_none() {
        // As docker: a volume created without a name is anonymous (a
        // plain `volume prune` takes it).
        labels.insert(volume::ANONYMOUS_LABEL.to_string(), String::new());
    }
    let opts = VolumeCreate {
        name,
        driver: b.driver.filter(|d| !d.is_empty()),
        labels,
        options: b.driver_opts.unwrap_or_default(),
    };
    s.blocking(move |s, engine| {
        // docker answers an existing name with the volume (compose relies on it).
        if let Some(n) = &opts.name {
            if let Ok(v) = engine.volume(n) {
                return Ok((StatusCode::CREATED, Json(engine.inspect_volume(&v))).into_response());
            }
        }
        let v = engine.create_volume(&opts)?;
        hako_engine::events::EventLog::for_root(&s.root).emit(
            &hako_engine::events::Event::new("volume", "create", &v.name).attr("driver", &v.driver),
        );
        Ok((StatusCode::CREATED, Json(engine.inspect_volume(&v))).into_response())
    })
    .await
}

async fn remove(St(s): St<State>, Path(name): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let force = q.bool("force");
    s.blocking(move |_, engine| {
        if !force {
            engine.volume(&name).map_err(|e| volume_error(&name, e))?;
        }
        engine
            .remove_volume(&name, force)
            .map_err(|e| volume_error(&name, e))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn prune(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    s.blocking(move |_, engine| {
        // API >= 1.42: named volumes only with all=true (docker CLI's `-a`).
        let mut all = false;
        let mut rest = Vec::new();
        for f in filters {
            match f.split_once('=') {
                Some(("all", v)) => all = matches!(v, "true" | "1"),
                _ => rest.push(f),
            }
        }
        let filters = rest
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<hako_engine::Result<Vec<_>>>()?;
        let removed = engine.prune_volumes(all, &filters)?;
        let space: u64 = removed.iter().map(|(_, s)| s).sum();
        let names: Vec<&String> = removed.iter().map(|(n, _)| n).collect();
        Ok(Json(json!({
            "VolumesDeleted": names,
            "SpaceReclaimed": space,
        })))
    })
    .await
}
