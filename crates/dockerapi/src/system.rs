//! The system endpoints: `/_ping` (GET and HEAD), `/version`, `/info`,
//! `/events` (recorded then followed, with filters) and `/system/df`.

use axum::body::Body;
use axum::extract::State as St;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hako_engine::events::Filter;
use hako_engine::Status;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::server::{State, API_VERSION, MIN_API_VERSION};

pub fn routes() -> Router<State> {
    Router::new()
        .route("/_ping", get(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/events", get(events))
        .route("/system/df", get(df))
}

/// GET and HEAD (axum answers HEAD from the GET route, without the body).
async fn ping() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
        ],
        "OK",
    )
        .into_response()
}

fn uname() -> (String, String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => (
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
            u.nodename().to_string_lossy().into_owned(),
        ),
        Err(_) => Default::default(),
    }
}

/// docker's GOARCH names for the kernel's machine names.
fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" => "arm",
        m => m,
    }
}

async fn version() -> Json<Value> {
    let (kernel, machine, _) = uname();
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": "hako"},
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": go_arch(&machine),
                "KernelVersion": kernel,
                "Experimental": "false",
            }
        }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(&machine),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

fn meminfo_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "linux".into())
}

async fn info(St(s): St<State>) -> ApiResult<Json<Value>> {
    s.blocking(|s, engine| {
        let containers = engine.list()?;
        let paused = containers.iter().filter(|c| engine.is_paused(c)).count();
        let running = containers
            .iter()
            .filter(|c| c.state.status == Status::Running)
            .count()
            - paused;
        let images = s.images()?.list()?.len();
        let runtimes: serde_json::Map<String, Value> = ["hako-runtime", "runc", "crun"]
            .iter()
            .filter_map(|r| {
                hako_engine::runtime::resolve(r)
                    .ok()
                    .map(|p| (r.to_string(), json!({"path": p})))
            })
            .collect();
        let (kernel, machine, node) = uname();
        let cgroup2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        Ok(Json(json!({
            "ID": node,
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running - paused,
            "Images": images,
            "Driver": "overlay",
            "DriverStatus": [],
            "DockerRootDir": s.root,
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["json-file", "local", "none"]},
            "MemoryLimit": true,
            "SwapLimit": true,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": hako_engine::clock::now(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": if cgroup2 { "2" } else { "1" },
            "NEventsListener": 0,
            "KernelVersion": kernel,
            "OperatingSystem": os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": meminfo_total(),
            "Name": node,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": runtimes,
            "DefaultRuntime": hako_engine::runtime::DEFAULT,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "tini",
            "SecurityOptions": ["name=seccomp,profile=builtin", if cgroup2 { "name=cgroupns" } else { "name=no-cgroupns" }],
            "Warnings": [],
        })))
    })
    .await
}

/// docker's time parameters: unix seconds with an optional fraction
/// ("1700000000.5"), or an RFC 3339 time. Unix nanoseconds.
fn event_time(name: &str, v: &str) -> ApiResult<i128> {
    if let Some((sec, frac)) = v.split_once('.') {
        if let (Ok(s), true) = (
            sec.parse::<i128>(),
            frac.chars().all(|c| c.is_ascii_digit()),
        ) {
            let mut f = frac.to_string();
            f.truncate(9);
            while f.len() < 9 {
                f.push('0');
            }
            return Ok(s * 1_000_000_000 + f.parse::<i128>().unwrap_or(0));
        }
    }
    if let Ok(s) = v.parse::<i128>() {
        return Ok(s * 1_000_000_000);
    }
    hako_engine::clock::unix_nanos(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid value for {name}: {:?} is not a unix time or an RFC 3339 time",
            crate::error::printable(v)
        ))
    })
}

/// `GET /events`: JSON messages, one per line, those recorded since `since`
/// and then those happening, until `until` or the client leaves.
async fn events(St(s): St<State>, q: Params) -> ApiResult<Response> {
    let filter = Filter::parse(&q.filters()?)?;
    let since = q.str("since").map(|v| event_time("since", v)).transpose()?;
    let until = q.str("until").map(|v| event_time("until", v)).transpose()?;
    let engine = s.engine()?;
    let log = engine.events();
    let (tx, body) = crate::stream::channel();
    tokio::task::spawn_blocking(move || {
        let gone = tx.clone();
        let r = log.follow_while(
            &filter,
            since,
            until,
            |e| {
                let mut line = e.to_json().to_string();
                line.push('\n');
                tx.send(line)
            },
            || !gone.closed(),
        );
        if let Err(e) = r {
            tracing::warn!("following events: {e}");
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::new(body),
    )
        .into_response())
}

/// `GET /system/df`: layers, images, containers and volumes with their sizes.
async fn df(St(s): St<State>) -> ApiResult<Json<Value>> {
    s.blocking(|s, engine| {
        let containers = engine.list()?;
        let images = s.images()?.list()?;
        let mut layers = 0u64;
        let imgs: Vec<Value> = images
            .iter()
            .map(|i| {
                layers += i.size;
                let id = i.id.to_string();
                json!({
                    "Id": id,
                    "ParentId": "",
                    "RepoTags": i.names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "RepoDigests": [],
                    "Created": i.created,
                    "Size": i.size,
                    "SharedSize": 0,
                    "VirtualSize": i.size,
                    "Labels": {},
                    "Containers": containers.iter().filter(|c| c.image_id == id).count(),
                })
            })
            .collect();
        let ctrs: Vec<Value> = containers
            .iter()
            .map(|c| {
                let rw =
                    hako_engine::volume::disk_usage(&engine.container_dir(&c.id).join("upper"));
                json!({
                    "Id": c.id,
                    "Names": [format!("/{}", c.name)],
                    "Image": c.image,
                    "ImageID": c.image_id,
                    "Command": c.argv().join(" "),
                    "Created": hako_engine::clock::unix(&c.created).unwrap_or(0),
                    "State": c.state.status_text(),
                    "Status": c.state.status_text(),
                    "SizeRw": rw,
                    "SizeRootFs": rw,
                    "Labels": c.config.labels,
                    "Mounts": [],
                })
            })
            .collect();
        let mut vols = Vec::new();
        for v in engine.volumes()? {
            let size = hako_engine::volume::disk_usage(&engine.volumes_dir().join(&v.name));
            let refs = containers
                .iter()
                .filter(|c| c.host.mounts.iter().any(|m| m.source == v.name))
                .count();
            vols.push(json!({
                "Name": v.name,
                "Driver": "local",
                "Mountpoint": engine.volumes_dir().join(&v.name).join("_data"),
                "Labels": v.labels,
                "Scope": "local",
                "UsageData": {"Size": size, "RefCount": refs},
            }));
        }
        Ok(Json(json!({
            "LayersSize": layers,
            "Images": imgs,
            "Containers": ctrs,
            "Volumes": vols,
            "BuildCache": [],
        })))
    })
    .await
}
