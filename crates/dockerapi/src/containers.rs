//! Containers: create, the lifecycle verbs, list, inspect, logs, stats,
//! top, archive (docker cp), export, prune. Attach is in [`crate::attach`].

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as St};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use hako_engine::ps::{self, PsFilter};
use hako_engine::{Container, Engine, Status};
use serde_json::{json, Value};

use crate::error::{printable, ApiError, ApiResult};
use crate::params::Params;
use crate::server::State;
use crate::stream::{self, BodyReader, BodyWriter};

pub fn routes() -> Router<State> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/stats", get(stats))
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put),
        )
        .route("/containers/{id}/export", get(export))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/attach", post(crate::attach::attach))
        .route("/containers/{id}/changes", get(changes))
        .route("/commit", post(commit))
}

/// A JSON body, with docker's 400 for what does not parse.
pub fn json_body<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> ApiResult<T> {
    if body.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{what}: the request body is empty"
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "{what}: the request body is not valid JSON: line {} column {}: {}",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Data => "unexpected value or type",
                serde_json::error::Category::Eof => "unexpected end",
                _ => "syntax error",
            }
        ))
    })
}

/// The container `what` (id, name or id prefix), docker's 404 if none.
pub fn find(engine: &Engine, what: &str) -> ApiResult<Container> {
    engine.get(what).map_err(|e| match e {
        hako_engine::Error::NotFound { .. } => ApiError::no_such_container(what),
        e => e.into(),
    })
}

async fn create(St(s): St<State>, q: Params, body: Bytes) -> ApiResult<Response> {
    let b: crate::create::CreateBody = json_body("creating a container", &body)?;
    let name = q.str("name").filter(|n| !n.is_empty()).map(str::to_string);
    let opts = crate::create::options(b, name)?;
    s.blocking(move |s, engine| {
        let mut images = s.images()?;
        let c = engine.create(&mut images, &opts).map_err(|e| match e {
            hako_engine::Error::Image { ref source, .. }
                if matches!(source, hako_image::Error::NotFound { .. }) =>
            {
                ApiError::not_found(format!("No such image: {}", printable(&opts.image)))
            }
            e => e.into(),
        })?;
        Ok((
            StatusCode::CREATED,
            Json(json!({"Id": c.id, "Warnings": []})),
        )
            .into_response())
    })
    .await
}

/// docker's Ports list of a container.
fn ports(engine: &Engine, c: &Container) -> Vec<Value> {
    let mut out: Vec<Value> = engine
        .ports(c)
        .iter()
        .map(|p| {
            json!({
                "IP": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip },
                "PrivatePort": p.container_port,
                "PublicPort": p.host_port,
                "Type": p.protocol,
            })
        })
        .collect();
    if out.is_empty() {
        for e in &c.config.exposed_ports {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            out.push(json!({"PrivatePort": port.parse::<u16>().unwrap_or(0), "Type": proto}));
        }
    }
    out
}

fn list_entry(engine: &Engine, c: &Container, size: bool) -> Value {
    let paused = engine.is_paused(c);
    let inspect = engine.inspect(c);
    let mut v = json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": c.argv().join(" "),
        "Created": hako_engine::clock::unix(&c.created).unwrap_or(0),
        "Ports": ports(engine, c),
        "Labels": c.config.labels,
        "State": if paused { "paused" } else { c.state.status_text() },
        "Status": ps::status_text(engine, c) + if paused { " (Paused)" } else { "" },
        "HostConfig": {"NetworkMode": c.host.network_mode},
        "NetworkSettings": {"Networks": inspect["NetworkSettings"]["Networks"].clone()},
        "Mounts": inspect["Mounts"].clone(),
    });
    if size {
        let rw = hako_engine::volume::disk_usage(&engine.container_dir(&c.id).join("upper"));
        v["SizeRw"] = rw.into();
        v["SizeRootFs"] = rw.into();
    }
    v
}

async fn list(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    let all = q.bool("all");
    let limit = q.int("limit")?.filter(|&n| n > 0);
    let size = q.bool("size");
    s.blocking(move |_, engine| {
        let filters = filters
            .iter()
            .map(|f| PsFilter::parse(f).and_then(|f| f.resolve(engine)))
            .collect::<hako_engine::Result<Vec<_>>>()?;
        let all = all || limit.is_some() || filters.iter().any(PsFilter::shows_stopped);
        let mut list: Vec<Container> = engine
            .list()?
            .into_iter()
            .filter(|c| all || c.state.status == Status::Running)
            .filter(|c| filters.iter().all(|f| f.matches(engine, c)))
            .collect();
        if let Some(n) = limit {
            list.truncate(n as usize);
        }
        Ok(Json(Value::Array(
            list.iter().map(|c| list_entry(engine, c, size)).collect(),
        )))
    })
    .await
}

async fn inspect(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<Json<Value>> {
    let size = q.bool("size");
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        let mut v = engine.inspect(&c);
        docker_shape(&mut v, &c);
        if size {
            let rw = hako_engine::volume::disk_usage(&engine.container_dir(&c.id).join("upper"));
            v["SizeRw"] = rw.into();
            v["SizeRootFs"] = rw.into();
        }
        Ok(Json(v))
    })
    .await
}

/// The parts of hako's records that docker shapes differently: binds as
/// "src:dst[:ro]" strings, tmpfs and port bindings and exposed ports as maps.
fn docker_shape(v: &mut Value, c: &Container) {
    let h = &mut v["HostConfig"];
    h["Binds"] = c
        .host
        .binds
        .iter()
        .map(|b| {
            let mut s = format!("{}:{}", b.source, b.destination);
            if b.read_only {
                s.push_str(":ro");
            }
            Value::from(s)
        })
        .collect::<Vec<_>>()
        .into();
    h["Tmpfs"] = c
        .host
        .tmpfs
        .iter()
        .map(|t| (t.destination.clone(), Value::from(t.options.join(","))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let mut ports = serde_json::Map::new();
    for p in &c.host.port_bindings {
        let e = ports.entry(p.key()).or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(a) = e {
            a.push(json!({
                "HostIp": p.host_ip,
                "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
            }));
        }
    }
    h["PortBindings"] = ports.into();
    if let Some(o) = h.as_object_mut() {
        o.remove("Networks");
        o.remove("RuntimePath");
    }
    let cfg = &mut v["Config"];
    cfg["ExposedPorts"] = c
        .config
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect::<serde_json::Map<_, _>>()
        .into();
    if cfg["Volumes"].is_array() {
        let vols: serde_json::Map<String, Value> = cfg["Volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(|s| (s.to_string(), json!({}))))
            .collect();
        cfg["Volumes"] = vols.into();
    }
}

async fn remove(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let (force, volumes) = (q.bool("force"), q.bool("v"));
    s.blocking(move |s, engine| {
        let c = find(engine, &id)?;
        if c.state.status == Status::Running && !force {
            return Err(ApiError::conflict(format!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                c.name
            )));
        }
        let mut images = s.images()?;
        engine.remove_with_volumes(&mut images, &c.id, force, volumes)?;
        crate::exec::forget_container(s, &c.id);
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn start(St(s): St<State>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let st = s.clone();
    s.blocking(move |s, engine| {
        let c = find(engine, &id)?;
        if c.state.status == Status::Running {
            return Err(ApiError::not_modified());
        }
        let mut images = s.images()?;
        // A client attached before the start (docker run without -d) gets
        // the container's output from its first byte.
        if let Some(waiting) = st.take_pending_attach(&c.id) {
            let started = engine.start_attached(&mut images, &c.id, &s.programs, waiting.size)?;
            let _ = waiting.tx.send(started);
            return Ok(StatusCode::NO_CONTENT);
        }
        engine.start(&mut images, &c.id, &s.programs)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

fn timeout(q: &Params) -> ApiResult<Option<u32>> {
    Ok(match q.int("t")?.or(q.int("timeout")?) {
        Some(t) if t < 0 => None,
        Some(t) => Some(t as u32),
        None => None,
    })
}

async fn stop(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let t = timeout(&q)?;
    let signal = q
        .str("signal")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        if c.state.status != Status::Running {
            return Err(ApiError::not_modified());
        }
        engine.stop_with_signal(&c.id, t, signal.as_deref())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn restart(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let t = timeout(&q)?;
    let signal = q
        .str("signal")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    s.blocking(move |s, engine| {
        let c = find(engine, &id)?;
        let mut images = s.images()?;
        engine.restart_with_signal(&mut images, &c.id, &s.programs, t, signal.as_deref())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn kill(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let signal = q
        .str("signal")
        .filter(|v| !v.is_empty())
        .unwrap_or("KILL")
        .to_string();
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        if c.state.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "cannot kill container: {}: container {} is not running",
                printable(&id),
                c.id
            )));
        }
        engine.kill(&c.id, &signal)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn pause(St(s): St<State>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        engine.pause(&c.id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn unpause(St(s): St<State>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        engine.unpause(&c.id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /wait?condition=not-running|next-exit|removed`: the headers at
/// once (as docker), the exit code once the condition holds. A client that
/// leaves ends the wait.
async fn wait(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<Response> {
    let condition = q.str("condition").unwrap_or("not-running").to_string();
    if !["not-running", "next-exit", "removed", ""].contains(&condition.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid condition {:?}: use not-running, next-exit or removed",
            printable(&condition)
        )));
    }
    let first = s
        .blocking({
            let id = id.clone();
            move |_, engine| find(engine, &id)
        })
        .await?;
    let (tx, body) = stream::channel();
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(engine) = st.engine() else { return };
        let mut code = first.state.exit_code;
        let start_finished = first.state.finished_at.clone();
        let mut seen_running = first.state.status == Status::Running;
        loop {
            match engine.get(&first.id) {
                Ok(c) => {
                    code = c.state.exit_code;
                    let running = c.state.status == Status::Running;
                    seen_running |= running;
                    let done = match condition.as_str() {
                        "next-exit" => {
                            !running && (seen_running || c.state.finished_at != start_finished)
                        }
                        "removed" => false,
                        _ => !running,
                    };
                    if done {
                        break;
                    }
                }
                Err(_) => {
                    // Removed (`--rm`) between two looks: its exit status is the
                    // last "die" event the monitor recorded for it.
                    code = last_exit_code(&engine, &first.id).unwrap_or(code);
                    break;
                }
            }
            if tx.closed() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tx.send(format!("{}\n", json!({"StatusCode": code, "Error": null})));
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The exit code of `id`'s last "die" event in the engine's event log.
fn last_exit_code(engine: &hako_engine::Engine, id: &str) -> Option<i32> {
    let filter =
        hako_engine::events::Filter::parse(&[format!("container={id}"), "event=die".into()])
            .ok()?;
    let events = engine.events().past(0, None, &filter).ok()?;
    events.last()?.attributes.get("exitCode")?.parse().ok()
}

async fn rename(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let name = q
        .str("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("renaming a container needs a new name"))?
        .to_string();
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        engine.rename(&c.id, &name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    memory: Option<i64>,
    memory_swap: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_shares: Option<u64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    pids_limit: Option<i64>,
    restart_policy: Option<crate::create::RestartPolicyBody>,
}

async fn update(St(s): St<State>, Path(id): Path<String>, body: Bytes) -> ApiResult<Json<Value>> {
    let b: UpdateBody = json_body("updating a container", &body)?;
    let nz = |v: Option<i64>| v.filter(|&x| x != 0);
    let o = hako_engine::UpdateOptions {
        memory: nz(b.memory),
        memory_swap: nz(b.memory_swap),
        nano_cpus: nz(b.nano_cpus),
        cpu_shares: b.cpu_shares.filter(|&x| x != 0),
        cpuset_cpus: b.cpuset_cpus.filter(|x| !x.is_empty()),
        cpuset_mems: b.cpuset_mems.filter(|x| !x.is_empty()),
        pids_limit: nz(b.pids_limit),
        restart: match b.restart_policy {
            Some(r) if !r.name.is_empty() => Some(hako_engine::options::parse_restart(&if r
                .maximum_retry_count
                > 0
            {
                format!("{}:{}", r.name, r.maximum_retry_count)
            } else {
                r.name
            })?),
            _ => None,
        },
    };
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        engine.update(&c.id, &o)?;
        Ok(Json(json!({"Warnings": []})))
    })
    .await
}

async fn top(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<Json<Value>> {
    let args: Vec<String> = q
        .str("ps_args")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        if c.state.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        let t = engine.top(&c.id, &args)?;
        Ok(Json(json!({"Titles": t.titles, "Processes": t.processes})))
    })
    .await
}

/// `GET /logs`: framed (8-byte headers) without a TTY, raw with one.
async fn logs(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<Response> {
    let (out, err) = (q.bool("stdout"), q.bool("stderr"));
    if !out && !err {
        return Err(ApiError::bad_request(
            "you must choose at least one stream: stdout or stderr",
        ));
    }
    let (follow, timestamps) = (q.bool("follow"), q.bool("timestamps"));
    let now = hako_engine::clock::unix_nanos_now();
    let bound = |k: &str| -> ApiResult<Option<i128>> {
        match q.str(k).filter(|v| !v.is_empty() && *v != "0") {
            None => Ok(None),
            Some(v) => hako_engine::clock::parse_time_arg(v, now)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid value for {k}: {:?} is not a time",
                        printable(v)
                    ))
                }),
        }
    };
    let (since, until) = (bound("since")?, bound("until")?);
    let tail = match q.str("tail").unwrap_or("all") {
        "all" | "" | "-1" => None,
        n => Some(n.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("invalid value for tail: {:?}", printable(n)))
        })?),
    };
    let c = s
        .blocking({
            let id = id.clone();
            move |_, engine| find(engine, &id)
        })
        .await?;
    if !c.host.log_config.readable() {
        // docker: 501 for a driver without reading.
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        ));
    }
    let tty = c.config.tty;
    let (tx, body) = stream::channel();
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(engine) = st.engine() else { return };
        let in_window = |e: &hako_engine::logs::Entry| {
            let t = hako_engine::clock::unix_nanos(&e.time).unwrap_or(0);
            since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
        };
        let send = |e: &hako_engine::logs::Entry| -> bool {
            let which = match e.stream {
                hako_engine::logs::Stream::Stdout if out => stream::STDOUT,
                hako_engine::logs::Stream::Stderr if err => stream::STDERR,
                _ => return true,
            };
            let text = if timestamps {
                format!("{} {}", e.time, e.log)
            } else {
                e.log.clone()
            };
            if tty {
                tx.send(text.into_bytes())
            } else {
                tx.send(stream::frame(which, text.as_bytes()))
            }
        };
        let Ok(mut reader) = engine.log_reader(&c) else {
            return;
        };
        let entries: Vec<_> = match reader.read_new() {
            Ok(e) => e.into_iter().filter(in_window).collect(),
            Err(_) => return,
        };
        for e in hako_engine::logs::tail(entries, tail) {
            if !send(&e) {
                return;
            }
        }
        if !follow || until.is_some_and(|u| u <= now) {
            return;
        }
        // Follow until the container stops or the client leaves.
        loop {
            let running = matches!(engine.get(&c.id), Ok(c) if c.state.status == Status::Running);
            match reader.read_new() {
                Ok(entries) => {
                    for e in entries.iter().filter(|e| in_window(e)) {
                        if !send(e) {
                            return;
                        }
                    }
                }
                Err(_) => return,
            }
            if !running || tx.closed() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(([(header::CONTENT_TYPE, ct)], body).into_response())
}

/// One stats object in docker's shape, built so that docker's formula
/// (cpu delta / system delta × online CPUs) gives the engine's percentage.
fn stats_object(c: &Container, u: &hako_engine::stats::Usage, interval: Duration) -> Value {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let system = interval.as_nanos() as u64 * ncpu;
    let cpu = (u.cpu_percent / 100.0 * interval.as_nanos() as f64) as u64;
    let now = hako_engine::clock::now();
    json!({
        "id": c.id,
        "name": format!("/{}", c.name),
        "read": now,
        "preread": now,
        "pids_stats": {"current": u.pids},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": u.block_read},
            {"major": 0, "minor": 0, "op": "write", "value": u.block_write},
        ]},
        "num_procs": 0,
        "cpu_stats": {
            "cpu_usage": {"total_usage": cpu, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": system,
            "online_cpus": ncpu,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": 0,
            "online_cpus": ncpu,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {"usage": u.mem_usage, "limit": u.mem_limit, "stats": {}},
        "networks": {"eth0": {"rx_bytes": u.net_rx, "tx_bytes": u.net_tx, "rx_packets": 0, "tx_packets": 0, "rx_errors": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0}},
    })
}

/// `GET /stats`: one object (`stream=false`), or one a second.
async fn stats(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<Response> {
    let stream_it = q.str("stream").is_none() || q.bool("stream");
    let one_shot = q.bool("one-shot");
    let c = s
        .blocking({
            let id = id.clone();
            move |_, engine| find(engine, &id)
        })
        .await?;
    let sample = move |engine: &Engine, interval: Duration| -> ApiResult<Value> {
        let u = if c.state.status == Status::Running {
            engine
                .stats(std::slice::from_ref(&c.id), interval)?
                .pop()
                .unwrap_or_default()
        } else {
            Default::default()
        };
        Ok(stats_object(&c, &u, interval))
    };
    if !stream_it {
        let interval = if one_shot {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let v = s
            .blocking(move |_, engine| sample(engine, interval))
            .await?;
        return Ok(Json(v).into_response());
    }
    let (tx, body) = stream::channel();
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(engine) = st.engine() else { return };
        loop {
            let v = match sample(&engine, Duration::from_secs(1)) {
                Ok(v) => v,
                Err(_) => return,
            };
            if !tx.send(format!("{v}\n")) {
                return;
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The X-Docker-Container-Path-Stat header: base64 of
/// `{"name","size","mode","mtime","linkTarget"}` (Go's FileMode bits).
fn path_stat(engine: &Engine, c: &Container, path: &str) -> ApiResult<HeaderValue> {
    use std::os::unix::fs::MetadataExt;
    if let hako_engine::cp::Kind::Missing = engine.stat_in(&c.id, path)? {
        return Err(ApiError::not_found(format!(
            "Could not find the file {} in container {}",
            printable(path),
            c.name
        )));
    }
    let base = if c.state.status == Status::Running {
        std::path::PathBuf::from(format!("/proc/{}/root", c.state.pid))
    } else {
        engine.container_dir(&c.id).join("rootfs")
    };
    let host = base.join(path.trim_start_matches('/'));
    let (size, mode, mtime, link) = match std::fs::symlink_metadata(&host) {
        Ok(m) => {
            let mut mode = m.mode() & 0o777;
            if m.is_dir() {
                mode |= 1 << 31;
            }
            if m.file_type().is_symlink() {
                mode |= 1 << 27;
            }
            let link = std::fs::read_link(&host)
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            (m.len(), mode, m.mtime(), link)
        }
        // Not reachable from here (a stopped container's rootfs is not
        // mounted): the engine's kind is known.
        Err(_) => match engine.stat_in(&c.id, path)? {
            hako_engine::cp::Kind::Dir => (0, (1 << 31) | 0o755, 0, String::new()),
            _ => (0, 0o644, 0, String::new()),
        },
    };
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let stat = json!({
        "name": name,
        "size": size,
        "mode": mode,
        "mtime": hako_image::images::format_rfc3339(mtime),
        "linkTarget": link,
    });
    let encoded = base64_encode(stat.to_string().as_bytes());
    HeaderValue::from_str(&encoded).map_err(|_| ApiError::internal("encoding the path's stat"))
}

/// Standard base64 (docker's header encoding).
fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn archive_path(q: &Params) -> ApiResult<String> {
    q.str("path")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("the archive request needs a path"))
}

async fn archive_head(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<Response> {
    let path = archive_path(&q)?;
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        let stat = path_stat(engine, &c, &path)?;
        let mut r = StatusCode::OK.into_response();
        r.headers_mut().insert("X-Docker-Container-Path-Stat", stat);
        Ok(r)
    })
    .await
}

/// `GET /archive?path=`: a tar of the path, its top entry named after it.
async fn archive_get(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<Response> {
    let path = archive_path(&q)?;
    let (c, stat) = s
        .blocking({
            let (id, path) = (id.clone(), path.clone());
            move |_, engine| {
                let c = find(engine, &id)?;
                let stat = path_stat(engine, &c, &path)?;
                Ok((c, stat))
            }
        })
        .await?;
    let (tx, body) = stream::channel();
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(engine) = st.engine() else { return };
        let trimmed = path.trim_end_matches('/');
        let name = match std::path::Path::new(trimmed).file_name() {
            Some(n) if !path.ends_with("/.") => n.to_string_lossy().into_owned(),
            _ => ".".to_string(),
        };
        if let Err(e) = engine.copy_out(&c.id, &path, false, &name, BodyWriter(tx)) {
            tracing::warn!("copying {path} out of container {}: {e}", c.name);
        }
    });
    let mut r = ([(header::CONTENT_TYPE, "application/x-tar")], body).into_response();
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat);
    Ok(r)
}

/// `PUT /archive?path=DIR`: unpack the tar body into DIR of the container.
async fn archive_put(
    St(s): St<State>,
    Path(id): Path<String>,
    q: Params,
    body: Body,
) -> ApiResult<StatusCode> {
    let path = archive_path(&q)?;
    let reader = BodyReader::new(body);
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        match engine.stat_in(&c.id, &path)? {
            hako_engine::cp::Kind::Dir => {}
            hako_engine::cp::Kind::Missing => {
                return Err(ApiError::not_found(format!(
                    "Could not find the file {} in container {}",
                    printable(&path),
                    c.name
                )))
            }
            hako_engine::cp::Kind::Other => {
                return Err(ApiError::bad_request(format!(
                    "extraction point is not a directory: {}",
                    printable(&path)
                )))
            }
        }
        engine.copy_in(&c.id, &path, reader)?;
        Ok(StatusCode::OK)
    })
    .await
}

async fn export(St(s): St<State>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = s
        .blocking({
            let id = id.clone();
            move |_, engine| find(engine, &id)
        })
        .await?;
    let (tx, body) = stream::channel();
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(engine) = st.engine() else { return };
        if let Err(e) = engine.export(&c.id, BodyWriter(tx)) {
            tracing::warn!("exporting container {}: {e}", c.name);
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

async fn resize(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let (h, w) = (q.int("h")?.unwrap_or(0), q.int("w")?.unwrap_or(0));
    s.blocking(move |_, engine| {
        let c = find(engine, &id)?;
        if c.state.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "cannot resize container {}: it is not running",
                c.name
            )));
        }
        if c.config.tty {
            let (_, mut a) = engine.attach_stream(&c.id, None)?;
            a.resize(h.clamp(0, 65535) as u16, w.clamp(0, 65535) as u16)?;
        }
        Ok(StatusCode::OK)
    })
    .await
}

async fn prune(St(s): St<State>, q: Params) -> ApiResult<Json<Value>> {
    let filters = q.filters()?;
    s.blocking(move |s, engine| {
        let f = hako_engine::prune_filter::PruneFilter::parse(&filters)?;
        let mut images = s.images()?;
        let before: Vec<(String, u64)> = engine
            .list()?
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    hako_engine::volume::disk_usage(&engine.container_dir(&c.id).join("upper")),
                )
            })
            .collect();
        let gone = engine.prune_containers(&mut images, &f)?;
        let space: u64 = before
            .iter()
            .filter(|(id, _)| gone.contains(id))
            .map(|(_, s)| s)
            .sum();
        Ok(Json(
            json!({"ContainersDeleted": gone, "SpaceReclaimed": space}),
        ))
    })
    .await
}

/// The terminal size a client asked for in the query (`h`, `w`).
pub fn query_size(q: &Params) -> Option<(u16, u16)> {
    match (q.int("h").ok().flatten(), q.int("w").ok().flatten()) {
        (Some(h), Some(w)) if h > 0 && w > 0 => Some((h as u16, w as u16)),
        _ => None,
    }
}

/// Whether the client asked for the connection to be upgraded.
pub fn wants_upgrade(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// `GET /containers/{id}/changes`: docker's kinds (0 changed, 1 added, 2 deleted).
async fn changes(St(s): St<State>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    s.blocking(move |s, engine| {
        let c = find(engine, &id)?;
        let images = s.images()?;
        let list = hako_build::commit::diff(engine, &images, &c.id).map_err(|e| {
            ApiError::internal(format!("listing the changes of container {}: {e}", c.name))
        })?;
        Ok(Json(Value::Array(
            list.iter()
                .map(|ch| {
                    let kind = match ch.kind {
                        'A' => 1,
                        'D' => 2,
                        _ => 0,
                    };
                    json!({"Path": ch.path, "Kind": kind})
                })
                .collect(),
        )))
    })
    .await
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`.
async fn commit(St(s): St<State>, q: Params) -> ApiResult<Response> {
    let what = q
        .str("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("committing needs a container"))?
        .to_string();
    let names = match q.str("repo").filter(|r| !r.is_empty()) {
        Some(repo) => {
            let full = match q.str("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_string(),
            };
            vec![hako_image::Reference::parse(&full)?]
        }
        None => Vec::new(),
    };
    let o = hako_build::commit::CommitOptions {
        names,
        author: q
            .str("author")
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        message: q
            .str("comment")
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        changes: q
            .0
            .get("changes")
            .filter(|c| !c.is_empty())
            .map(|c| c.lines().map(str::to_string).collect())
            .unwrap_or_default(),
        // docker pauses by default.
        pause: q.str("pause").is_none() || q.bool("pause"),
    };
    s.blocking(move |s, engine| {
        let c = find(engine, &what)?;
        let mut images = s.images()?;
        let rec =
            hako_build::commit::commit(engine, &mut images, &c.id, &o, &hako_image::NoProgress)
                .map_err(|e| ApiError::internal(format!("committing container {}: {e}", c.name)))?;
        let id = rec.id.to_string();
        for n in &rec.names {
            engine.events().emit(
                &hako_engine::events::Event::new("image", "tag", &id).attr("name", n.familiar()),
            );
        }
        let comment = o.message.clone().unwrap_or_default();
        engine.container_event(&c, "commit", &[("comment", comment)]);
        Ok((StatusCode::CREATED, Json(json!({"Id": id}))).into_response())
    })
    .await
}
