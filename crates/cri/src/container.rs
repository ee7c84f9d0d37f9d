//! CRI containers as engine containers joined to their sandbox: its
//! network (and with it hostname and /etc files), IPC and, with
//! `namespace_options.pid = POD`, PID namespaces. Output goes to kubelet's
//! log path in the CRI log format (the monitor's `cri` log driver). The
//! ContainerConfig is kept in the record's labels, so status survives
//! server restarts.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hako_engine::record::{LogConfig, CRI_LOG_DRIVER};
use hako_engine::{Bind, Container, CreateOptions, Engine, Status};
use k8s_cri::v1 as cri;

use crate::error::{Error, Result};
use crate::sandbox::{self, KIND_LABEL, SANDBOX_LABEL};
use crate::server::State;

/// Label holding the ContainerConfig (JSON).
pub const CONFIG_LABEL: &str = "io.hako.cri.container-config";

fn stored_config(c: &Container) -> cri::ContainerConfig {
    c.config
        .labels
        .get(CONFIG_LABEL)
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

fn is_cri_container(c: &Container) -> bool {
    c.config.labels.get(KIND_LABEL).map(String::as_str) == Some("container")
}

/// The CRI container an id names (full or a unique prefix).
fn find(engine: &Engine, id: &str) -> Result<Option<Container>> {
    if id.is_empty() {
        return Err(Error::Invalid("the container id is empty".into()));
    }
    if let Some(found) = crate::sandbox::by_full_id(engine, id) {
        return Ok(found?.filter(is_cri_container));
    }
    let mut found = engine
        .list()
        .map_err(|e| Error::engine("listing containers", e))?
        .into_iter()
        .filter(|c| is_cri_container(c) && c.id.starts_with(id));
    let first = found.next();
    if found.next().is_some() {
        return Err(Error::Invalid(format!(
            "container id prefix {id} is ambiguous"
        )));
    }
    Ok(first)
}

fn require(engine: &Engine, id: &str) -> Result<Container> {
    find(engine, id)?.ok_or_else(|| Error::NotFound(format!("container {id}")))
}

fn propagation(p: i32) -> String {
    match cri::MountPropagation::try_from(p) {
        Ok(cri::MountPropagation::PropagationHostToContainer) => "rslave".into(),
        Ok(cri::MountPropagation::PropagationBidirectional) => "rshared".into(),
        _ => String::new(),
    }
}

/// CreateContainer.
pub(crate) fn create(state: &State, req: cri::CreateContainerRequest) -> Result<String> {
    let config = req
        .config
        .ok_or_else(|| Error::Invalid("create container: the config is missing".into()))?;
    let meta = config
        .metadata
        .clone()
        .filter(|m| !m.name.is_empty())
        .ok_or_else(|| Error::Invalid("create container: the metadata name is missing".into()))?;
    let mut handles = state.open()?;
    let (engine, images) = handles.parts();
    let sb = sandbox::find(engine, &req.pod_sandbox_id)?
        .ok_or_else(|| Error::NotFound(format!("pod sandbox {}", req.pod_sandbox_id)))?;
    if sb.state.status != Status::Running {
        return Err(Error::Conflict(format!(
            "create container {}: pod sandbox {} is not ready",
            meta.name, sb.id
        )));
    }
    let pod = sandbox::stored_config(&sb);
    let pod_meta = pod.metadata.clone().unwrap_or_default();
    let image = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "create container {}: the image is missing",
                meta.name
            ))
        })?;
    let rec = crate::image_service::find(images, &image)?
        .ok_or_else(|| Error::NotFound(format!("image {image}")))?;
    let (entrypoint, cmd) = match config.command.split_first() {
        Some((first, rest)) => (
            Some(first.clone()),
            rest.iter().chain(config.args.iter()).cloned().collect(),
        ),
        None => (None, config.args.clone()),
    };
    let mut labels = BTreeMap::new();
    labels.insert(KIND_LABEL.to_string(), "container".to_string());
    labels.insert(SANDBOX_LABEL.to_string(), sb.id.clone());
    labels.insert(
        CONFIG_LABEL.to_string(),
        serde_json::to_string(&config).expect("a CRI config serialises"),
    );
    // A mount with an image is an image volume (its rootfs, read-only).
    let mut image_mounts = Vec::new();
    for m in config.mounts.iter() {
        let Some(spec) = m.image.as_ref().filter(|i| !i.image.is_empty()) else {
            continue;
        };
        let r = crate::image_service::find(images, &spec.image)?.ok_or_else(|| {
            Error::NotFound(format!(
                "image {} of the image volume at {}",
                spec.image, m.container_path
            ))
        })?;
        image_mounts.push((r.id.to_string(), m.container_path.clone()));
    }
    let binds = config
        .mounts
        .iter()
        .filter(|m| m.image.as_ref().is_none_or(|i| i.image.is_empty()))
        .map(|m| Bind {
            source: m.host_path.clone(),
            destination: m.container_path.clone(),
            read_only: m.readonly,
            propagation: propagation(m.propagation),
        })
        .collect();
    let sec = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let pid_mode = match sec
        .namespace_options
        .as_ref()
        .map(|n| n.pid)
        // Unset is the enum's zero value, POD, as containerd reads the proto.
        .unwrap_or(cri::NamespaceMode::Pod as i32)
    {
        p if p == cri::NamespaceMode::Pod as i32 => Some(format!("container:{}", sb.id)),
        p if p == cri::NamespaceMode::Node as i32 => Some("host".into()),
        _ => None,
    };
    let user = match (&sec.run_as_user, &sec.run_as_username, &sec.run_as_group) {
        (Some(u), _, Some(g)) => Some(format!("{}:{}", u.value, g.value)),
        (Some(u), _, None) => Some(u.value.to_string()),
        (None, n, Some(g)) if !n.is_empty() => Some(format!("{n}:{}", g.value)),
        (None, n, None) if !n.is_empty() => Some(n.clone()),
        // A group alone would be applied to the image's user: refused, as
        // containerd and kubelet's validation do.
        (None, _, Some(_)) => {
            return Err(Error::Invalid(format!(
                "creating container {}: run_as_group is set without run_as_user or run_as_username",
                meta.name
            )))
        }
        _ => None,
    };
    let log_config = if !pod.log_directory.is_empty() && !config.log_path.is_empty() {
        let path = Path::new(&pod.log_directory).join(&config.log_path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating log directory {}", dir.display()), e))?;
        }
        LogConfig {
            typ: CRI_LOG_DRIVER.into(),
            config: [("path".to_string(), path.to_string_lossy().into_owned())].into(),
        }
    } else {
        LogConfig::default()
    };
    let res = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let sb_host = |c: &Container| c.host.network_mode == "host";
    let o = CreateOptions {
        image: rec.id.to_string(),
        name: Some(format!(
            "k8s_{}_{}_{}_{}_{}",
            meta.name, pod_meta.name, pod_meta.namespace, pod_meta.uid, meta.attempt
        )),
        entrypoint,
        cmd,
        env: config
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect(),
        workdir: (!config.working_dir.is_empty()).then(|| config.working_dir.clone()),
        user,
        labels,
        binds,
        read_only: sec.readonly_rootfs,
        // kubelet never starts a container again after the host went down
        // (it makes a new attempt): its writable layer need not be synced.
        volatile_rootfs: true,
        privileged: sec.privileged,
        cap_add: sec
            .capabilities
            .as_ref()
            .map(|c| c.add_capabilities.clone())
            .unwrap_or_default(),
        cap_drop: sec
            .capabilities
            .as_ref()
            .map(|c| c.drop_capabilities.clone())
            .unwrap_or_default(),
        security_opt: security_opts(&sec)?,
        // The request's lists replace the engine's defaults, an empty one
        // meaning none (as containerd); none at all when privileged.
        masked_paths: Some(if sec.privileged {
            Vec::new()
        } else {
            sec.masked_paths.clone()
        }),
        readonly_paths: Some(if sec.privileged {
            Vec::new()
        } else {
            sec.readonly_paths.clone()
        }),
        image_mounts,
        group_add: sec
            .supplemental_groups
            .iter()
            .map(|g| g.to_string())
            .collect(),
        network: Some(if sb_host(&sb) {
            "host".into()
        } else {
            format!("container:{}", sb.id)
        }),
        ipc_mode: Some(if sb.host.ipc_mode == "host" {
            "host".into()
        } else {
            format!("container:{}", sb.id)
        }),
        pid_mode,
        runtime: sandbox::runtime_for(
            state,
            sb.config
                .labels
                .get(sandbox::HANDLER_LABEL)
                .map(String::as_str)
                .unwrap_or(""),
        )?,
        log_config,
        tty: config.tty,
        open_stdin: config.stdin,
        memory: res.memory_limit_in_bytes.max(0),
        memory_swap: res.memory_swap_limit_in_bytes.max(0),
        nano_cpus: nano_cpus(&res),
        cpu_shares: res.cpu_shares.max(0) as u64,
        cpuset_cpus: res.cpuset_cpus.clone(),
        cpuset_mems: res.cpuset_mems.clone(),
        oom_score_adj: (res.oom_score_adj != 0).then_some(res.oom_score_adj as i32),
        ..Default::default()
    };
    let c = engine
        .create(images, &o)
        .map_err(|e| Error::engine(format!("creating container {}", meta.name), e))?;
    Ok(c.id)
}

/// seccomp and no_new_privs as the engine's security options. No profile
/// is Unconfined (kubelet's default without SeccompDefault, as containerd
/// reads it); RuntimeDefault is the engine's default profile; Localhost a
/// profile file on the node.
fn security_opts(sec: &cri::LinuxContainerSecurityContext) -> Result<Vec<String>> {
    use cri::security_profile::ProfileType;
    let mut out = Vec::new();
    match &sec.seccomp {
        None => out.push("seccomp=unconfined".to_string()),
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => {}
            Ok(ProfileType::Unconfined) => out.push("seccomp=unconfined".into()),
            Ok(ProfileType::Localhost) if Path::new(&p.localhost_ref).is_absolute() => {
                out.push(format!("seccomp={}", p.localhost_ref))
            }
            Ok(ProfileType::Localhost) => {
                return Err(Error::Invalid(format!(
                    "seccomp profile {:?}: a Localhost profile needs an absolute path",
                    p.localhost_ref
                )))
            }
            Err(_) => {
                return Err(Error::Invalid(format!(
                    "unknown seccomp profile type {}",
                    p.profile_type
                )))
            }
        },
    }
    if sec.no_new_privs {
        out.push("no-new-privileges".into());
    }
    Ok(out)
}

/// CPU quota over period as docker's nano CPUs (0: unlimited).
fn nano_cpus(r: &cri::LinuxContainerResources) -> i64 {
    if r.cpu_quota > 0 && r.cpu_period > 0 {
        r.cpu_quota.saturating_mul(1_000_000_000) / r.cpu_period
    } else {
        0
    }
}

/// UpdateContainerResources: the engine's `update` (record, bundle and,
/// when running, the runtime's cgroup).
pub(crate) fn update(state: &State, req: cri::UpdateContainerResourcesRequest) -> Result<()> {
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, &req.container_id)?;
    let Some(r) = req.linux else {
        return Ok(());
    };
    let positive = |v: i64| (v > 0).then_some(v);
    let o = hako_engine::UpdateOptions {
        memory: positive(r.memory_limit_in_bytes),
        memory_swap: positive(r.memory_swap_limit_in_bytes),
        nano_cpus: positive(nano_cpus(&r)),
        cpu_shares: positive(r.cpu_shares).map(|v| v as u64),
        cpuset_cpus: (!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()),
        cpuset_mems: (!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone()),
        ..Default::default()
    };
    if o.is_empty() {
        return Ok(());
    }
    engine
        .update(&c.id, &o)
        .map_err(|e| Error::engine(format!("updating the resources of container {}", c.id), e))
}

pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// One container's usage, from the runtime's stats (runc's JSON): CPU time
/// so far, memory in use and its working set (without inactive file pages,
/// as cAdvisor and containerd count).
pub(crate) fn stats_of(engine: &Engine, c: &Container) -> cri::ContainerStats {
    let config = stored_config(c);
    let now = now_nanos();
    let u = |v: u64| Some(cri::UInt64Value { value: v });
    let raw = if c.state.status == Status::Running {
        engine.runtime_of(c).stats(&c.id).unwrap_or_default()
    } else {
        serde_json::Value::Null
    };
    let data = &raw["data"];
    let cpu = data["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
    let usage = data["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    let stats = &data["memory"]["stats"];
    let inactive = stats["total_inactive_file"]
        .as_u64()
        .or_else(|| stats["inactive_file"].as_u64())
        .unwrap_or(0);
    let rss = stats["total_rss"]
        .as_u64()
        .or_else(|| stats["anon"].as_u64())
        .unwrap_or(0);
    let upper = engine.container_dir(&c.id).join("upper");
    let (bytes, inodes) = crate::image_service::usage(&upper);
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: config.metadata,
            labels: config.labels,
            annotations: config.annotations,
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: u(cpu),
            usage_nano_cores: None,
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: now,
            working_set_bytes: u(usage.saturating_sub(inactive)),
            usage_bytes: u(usage),
            rss_bytes: u(rss),
            ..Default::default()
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: upper.to_string_lossy().into_owned(),
            }),
            used_bytes: u(bytes),
            inodes_used: u(inodes),
        }),
        swap: None,
    }
}

/// ContainerStats.
pub(crate) fn stats(state: &State, id: &str) -> Result<cri::ContainerStats> {
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, id)?;
    Ok(stats_of(engine, &c))
}

/// ListContainerStats with its filter (id, sandbox, labels).
pub(crate) fn list_stats(
    state: &State,
    filter: Option<cri::ContainerStatsFilter>,
) -> Result<Vec<cri::ContainerStats>> {
    let f = filter.unwrap_or_default();
    let listed = list(
        state,
        Some(cri::ContainerFilter {
            id: f.id,
            pod_sandbox_id: f.pod_sandbox_id,
            label_selector: f.label_selector,
            state: None,
        }),
    )?;
    let handles = state.open()?;
    let engine = handles.engine();
    let mut out = Vec::new();
    for item in listed {
        if let Ok(c) = engine.get(&item.id) {
            out.push(stats_of(engine, &c));
        }
    }
    Ok(out)
}

/// ReopenContainerLog: the monitor goes on in a new file at the log path.
pub(crate) fn reopen_log(state: &State, id: &str) -> Result<()> {
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, id)?;
    engine
        .reopen_log(&c.id)
        .map_err(|e| Error::engine(format!("reopening the log of container {}", c.id), e))
}

/// StartContainer.
pub(crate) fn start(state: &State, id: &str) -> Result<()> {
    let mut handles = state.open()?;
    let (engine, images) = handles.parts();
    let c = require(engine, id)?;
    engine
        .start(images, &c.id, &state.programs)
        .map(drop)
        .map_err(|e| Error::engine(format!("starting container {}", c.id), e))
}

/// StopContainer: the stop signal, then SIGKILL after `timeout` seconds.
pub(crate) fn stop(state: &State, id: &str, timeout: i64) -> Result<()> {
    let handles = state.open()?;
    let engine = handles.engine();
    // A container that is gone is stopped already (kubelet retries; critest's
    // idempotence test asks for success, as containerd answers).
    let Some(c) = find(engine, id)? else {
        return Ok(());
    };
    engine
        .stop(&c.id, Some(timeout.clamp(0, u32::MAX as i64) as u32))
        .map_err(|e| Error::engine(format!("stopping container {}", c.id), e))
}

/// RemoveContainer (a container that is gone is removed already).
pub(crate) fn remove(state: &State, id: &str) -> Result<()> {
    let mut handles = state.open()?;
    let (engine, images) = handles.parts();
    let Some(c) = find(engine, id)? else {
        return Ok(());
    };
    engine
        .remove(images, &c.id, true)
        .map_err(|e| Error::engine(format!("removing container {}", c.id), e))
}

fn cri_state(c: &Container) -> cri::ContainerState {
    match c.state.status {
        Status::Created => cri::ContainerState::ContainerCreated,
        Status::Running => cri::ContainerState::ContainerRunning,
        Status::Exited => cri::ContainerState::ContainerExited,
        Status::Removing => cri::ContainerState::ContainerUnknown,
    }
}

fn log_path(c: &Container) -> String {
    if c.host.log_config.typ == CRI_LOG_DRIVER {
        c.host
            .log_config
            .config
            .get("path")
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// ContainerStatus.
pub(crate) fn status(
    state: &State,
    id: &str,
    verbose: bool,
) -> Result<cri::ContainerStatusResponse> {
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, id)?;
    let config = stored_config(&c);
    let st = cri_state(&c);
    let (reason, message) = match c.state.status {
        Status::Exited if c.state.oom_killed => ("OOMKilled", String::new()),
        Status::Exited if c.state.exit_code == 0 => ("Completed", String::new()),
        Status::Exited => ("Error", c.state.error.clone()),
        _ => ("", String::new()),
    };
    let started = !c.state.started_at.is_empty() && !c.state.started_at.starts_with("0001");
    let finished = c.state.status == Status::Exited && !c.state.finished_at.starts_with("0001");
    let mut info = HashMap::new();
    if verbose {
        let v = serde_json::json!({
            "pid": c.state.pid,
            "sandboxID": c.config.labels.get(SANDBOX_LABEL),
            "config": config,
        });
        info.insert("info".to_string(), v.to_string());
    }
    Ok(cri::ContainerStatusResponse {
        status: Some(cri::ContainerStatus {
            id: c.id.clone(),
            metadata: config.metadata.clone(),
            state: st as i32,
            created_at: sandbox::nanos(&c.created),
            started_at: if started {
                sandbox::nanos(&c.state.started_at)
            } else {
                0
            },
            finished_at: if finished {
                sandbox::nanos(&c.state.finished_at)
            } else {
                0
            },
            exit_code: c.state.exit_code,
            image: config.image.clone(),
            image_ref: c.image_id.clone(),
            reason: reason.into(),
            message,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path: log_path(&c),
            image_id: c.image_id.clone(),
            ..Default::default()
        }),
        info,
    })
}

/// ListContainers with its filter.
pub(crate) fn list(
    state: &State,
    filter: Option<cri::ContainerFilter>,
) -> Result<Vec<cri::Container>> {
    let handles = state.open()?;
    let engine = handles.engine();
    let f = filter.unwrap_or_default();
    let mut out = Vec::new();
    for c in engine
        .list()
        .map_err(|e| Error::engine("listing containers", e))?
    {
        if !is_cri_container(&c) || (!f.id.is_empty() && !c.id.starts_with(&f.id)) {
            continue;
        }
        let sandbox_id = c
            .config
            .labels
            .get(SANDBOX_LABEL)
            .cloned()
            .unwrap_or_default();
        if !f.pod_sandbox_id.is_empty() && !sandbox_id.starts_with(&f.pod_sandbox_id) {
            continue;
        }
        let st = cri_state(&c);
        if f.state.as_ref().is_some_and(|s| s.state != st as i32) {
            continue;
        }
        let config = stored_config(&c);
        if !f
            .label_selector
            .iter()
            .all(|(k, v)| config.labels.get(k) == Some(v))
        {
            continue;
        }
        out.push(cri::Container {
            id: c.id.clone(),
            pod_sandbox_id: sandbox_id,
            metadata: config.metadata,
            image: config.image,
            image_ref: c.image_id.clone(),
            state: st as i32,
            created_at: sandbox::nanos(&c.created),
            labels: config.labels,
            annotations: config.annotations,
            image_id: c.image_id.clone(),
        });
    }
    Ok(out)
}

/// ExecSync: `hako exec` with the output captured, killed (with its
/// process group) past `timeout` seconds (0: no limit).
/// The full id of container `id`, which must be running (for `rpc`).
pub(crate) fn running(state: &State, id: &str, rpc: &str) -> Result<String> {
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, id)?;
    if c.state.status != Status::Running {
        return Err(Error::Conflict(format!(
            "{rpc} in container {}: it is not running",
            c.id
        )));
    }
    Ok(c.id)
}

pub(crate) fn exec_sync(state: &State, req: cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse> {
    if req.cmd.is_empty() {
        return Err(Error::Invalid("exec: the command is empty".into()));
    }
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, &req.container_id)?;
    if c.state.status != Status::Running {
        return Err(Error::Conflict(format!(
            "exec in container {}: it is not running",
            c.id
        )));
    }
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(&state.hako)
        .arg("--root")
        .arg(&state.root)
        .arg("exec")
        .arg(&c.id)
        .args(&req.cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(format!("exec in container {}", c.id), e))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline =
        (req.timeout > 0).then(|| Instant::now() + Duration::from_secs(req.timeout as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(Error::io(format!("exec in container {}", c.id), e)),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // SAFETY: kill(2) on the process group of a child we spawned.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            return Err(Error::Timeout(format!(
                "exec in container {}: command timed out after {}s",
                c.id, req.timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(cri::ExecSyncResponse {
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        exit_code: status.code().unwrap_or(128 + 9),
    })
}
