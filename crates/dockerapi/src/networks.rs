//! Networks: create, list (filters), inspect, remove, prune, connect and
//! disconnect, over the engine's bridge networks. `host` and `none` are
//! modes in hako, shown as docker shows its networks of those names.

use axum::body::Bytes;
use axum::extract::{Path, State as St};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hako_engine::network::ListFilter;
use hako_engine::{Engine, NetworkCreate};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{printable, ApiError, ApiResult};
use crate::params::Params;
use crate::server::State;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// A JSON body, docker's 400 when it does not parse.
fn body<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> ApiResult<T> {
    if b.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{what}: the request body is empty"
        )));
    }
    serde_json::from_slice(b).map_err(|e| {
        ApiError::bad_request(format!(
            "{what}: the request body is not valid JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })
}

/// docker's 404 words for a network that is not there.
fn network_error(what: &str, e: hako_engine::Error) -> ApiError {
    match e {
        hako_engine::Error::NotFound { .. } => {
            ApiError::not_found(format!("network {} not found", printable(what)))
        }
        e => e.into(),
    }
}

/// docker's 404 for a container that is not there.
fn container(engine: &Engine, what: &str) -> ApiResult<()> {
    match engine.get(what) {
        Ok(_) => Ok(()),
        Err(hako_engine::Error::NotFound { .. }) => Err(ApiError::no_such_container(what)),
        Err(e) => Err(e.into()),
    }
}

/// The inspect object of a network mode (host, none).
fn mode_object(name: &str) -> Value {
    json!({
        "Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
        "Driver": if name == "none" { "null" } else { name }, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false,
        "Containers": {}, "Options": {}, "Labels": {},
    })
}

async fn list(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    s.blocking(move |_, engine| {
        let filters = filters
            .iter()
            .map(|f| ListFilter::parse(f))
            .collect::<hako_engine::Result<Vec<_>>>()?;
        let mut out = Vec::new();
        for n in engine.networks()? {
            if filters.iter().all(|f| f.matches_network(&n)) {
                out.push(engine.network_inspect(&n)?);
            }
        }
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if filters.iter().all(|f| f.matches_mode(name, driver)) {
                out.push(mode_object(name));
            }
        }
        Ok(Json(Value::Array(out)))
    })
    .await
}

async fn inspect(St(s): St<State>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    s.blocking(move |_, engine| {
        if hako_engine::network::is_special_mode(&id) && id != "bridge" {
            return Ok(Json(mode_object(&id)));
        }
        let n = engine.network(&id).map_err(|e| network_error(&id, e))?;
        Ok(Json(engine.network_inspect(&n)?))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    options: Option<std::collections::BTreeMap<String, String>>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
}

async fn create(St(s): St<State>, b: Bytes) -> ApiResult<Response> {
    let b: CreateBody = body("creating a network", &b)?;
    if b.name.is_empty() {
        return Err(ApiError::bad_request(
            "creating a network: Name is required",
        ));
    }
    if b.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request(format!(
            "creating network {}: IPv6 networks are not supported",
            printable(&b.name)
        )));
    }
    let ipam = b
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.subnet.as_deref().is_some_and(|s| !s.contains(':')))
        .unwrap_or_default();
    let opts = NetworkCreate {
        name: b.name.clone(),
        // docker-compose sends an empty driver for the default.
        driver: b.driver.filter(|d| !d.is_empty()),
        subnet: ipam.subnet,
        gateway: ipam.gateway.filter(|g| !g.is_empty()),
        internal: b.internal,
        labels: b.labels.unwrap_or_default(),
        ip_range: ipam.ip_range.filter(|r| !r.is_empty()),
        options: b.options.unwrap_or_default(),
    };
    s.blocking(move |s, engine| {
        if engine.network(&opts.name).is_ok() || hako_engine::network::is_special_mode(&opts.name) {
            return Err(ApiError::conflict(format!(
                "network with name {} already exists",
                printable(&opts.name)
            )));
        }
        let n = engine.create_network(&opts)?;
        let event = hako_engine::events::Event::new("network", "create", &n.id)
            .attr("name", &n.name)
            .attr("type", &n.driver);
        hako_engine::events::EventLog::for_root(&s.root).emit(&event);
        Ok((
            StatusCode::CREATED,
            Json(json!({"Id": n.id, "Warning": ""})),
        )
            .into_response())
    })
    .await
}

async fn remove(St(s): St<State>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.blocking(move |_, engine| {
        if hako_engine::network::is_special_mode(&id) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is a pre-defined network and cannot be removed",
                    printable(&id)
                ),
            ));
        }
        let n = engine.network(&id).map_err(|e| network_error(&id, e))?;
        engine.remove_network(&n.name).map_err(|e| match e {
            hako_engine::Error::Invalid(m) | hako_engine::Error::Conflict(m) => {
                ApiError::conflict(m)
            }
            e => network_error(&id, e),
        })?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn prune(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    s.blocking(move |_, engine: &Engine| {
        let f = hako_engine::prune_filter::PruneFilter::parse(&filters)?;
        let gone = engine.prune_networks(&f)?;
        Ok(Json(json!({"NetworksDeleted": gone})))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfig>,
    force: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointConfig {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
    aliases: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

async fn connect(St(s): St<State>, Path(id): Path<String>, b: Bytes) -> ApiResult<StatusCode> {
    let b: ConnectBody = body("connecting a container", &b)?;
    let ep = b.endpoint_config.unwrap_or_default();
    let ip = ep
        .ipam_config
        .and_then(|i| i.ipv4_address)
        .filter(|a| !a.is_empty())
        .map(|a| hako_engine::options::parse_ip(&a))
        .transpose()?;
    let aliases = ep.aliases.unwrap_or_default();
    s.blocking(move |_, engine| {
        let n = engine.network(&id).map_err(|e| network_error(&id, e))?;
        container(engine, &b.container)?;
        engine.connect(&b.container, &n.name, &aliases, ip)?;
        Ok(StatusCode::OK)
    })
    .await
}

async fn disconnect(St(s): St<State>, Path(id): Path<String>, b: Bytes) -> ApiResult<StatusCode> {
    let b: ConnectBody = body("disconnecting a container", &b)?;
    let _ = b.force;
    s.blocking(move |_, engine| {
        let n = engine.network(&id).map_err(|e| network_error(&id, e))?;
        container(engine, &b.container)?;
        engine.disconnect(&b.container, &n.name)?;
        Ok(StatusCode::OK)
    })
    .await
}
