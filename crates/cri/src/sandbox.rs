//! Pod sandboxes as engine containers: an infra process (hako's built-in
//! pause, or the configured `sandbox_image`) that holds the pod's network,
//! IPC and UTS namespaces. The pod network is the first configuration of
//! the CNI directory, run by the CRI against the sandbox's namespace (as
//! containerd's CRI plugin does) through the engine, which records it with
//! the container's network state: Stop (or any engine teardown: `hako rm
//! -f`, `system reset`, the cleanup after an exit) undoes it. Everything CRI reports about a
//! pod lives in the engine record (labels), so pods survive restarts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use hako_engine::{Bind, Container, CreateOptions, Engine, Status};
use hako_image::{ImageStore, Reference};
use k8s_cri::v1 as cri;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::server::State;

/// Label marking an engine container as a CRI object, and its kind.
pub const KIND_LABEL: &str = "io.hako.cri.kind";
/// Label holding the sandbox's PodSandboxConfig (JSON).
pub const CONFIG_LABEL: &str = "io.hako.cri.sandbox-config";
/// Label holding the RuntimeClass handler.
pub const HANDLER_LABEL: &str = "io.hako.cri.runtime-handler";
/// The image of the built-in pause: an empty root, hako bound in.
pub const BUILTIN_PAUSE_IMAGE: &str = "hako.local/cri/pause:builtin";
/// The pod's interface.
const IFNAME: &str = "eth0";

pub(crate) use crate::pool::open;

/// The empty-root image of the built-in pause, imported on first use.
fn builtin_pause_image(images: &mut ImageStore) -> Result<String> {
    if images.find(BUILTIN_PAUSE_IMAGE).is_ok() {
        return Ok(BUILTIN_PAUSE_IMAGE.into());
    }
    let mut tar = tar::Builder::new(Vec::new());
    for d in ["dev", "proc", "sys", "etc", "tmp", ".hako"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty())
            .map_err(|e| Error::io("building the pause image", e))?;
    }
    let bytes = tar
        .into_inner()
        .map_err(|e| Error::io("building the pause image", e))?;
    let name = Reference::parse(BUILTIN_PAUSE_IMAGE).expect("a valid reference");
    hako_image::import::import(
        images,
        &bytes[..],
        &[name],
        &hako_image::import::ImportOptions {
            source: "hako cri (built-in pause)".into(),
            cmd: vec![
                crate::pause::PAUSE_PATH.into(),
                "cri".into(),
                "pause".into(),
            ],
            ..Default::default()
        },
        &hako_image::NoProgress,
    )
    .map_err(|e| Error::image("importing the built-in pause image", e))?;
    Ok(BUILTIN_PAUSE_IMAGE.into())
}

/// Read-only binds that let the host's hako binary run in an empty root:
/// the binary and the directories its dynamic libraries come from.
fn pause_binds(hako: &Path) -> Vec<Bind> {
    let mut binds = vec![Bind {
        source: hako.to_string_lossy().into_owned(),
        destination: crate::pause::PAUSE_PATH.into(),
        read_only: true,
        propagation: String::new(),
    }];
    for d in ["/lib", "/lib64", "/usr/lib", "/usr/lib64"] {
        let p = Path::new(d);
        // Merged-/usr hosts have /lib as a symlink: bind the real directory once.
        if p.is_dir() && !p.is_symlink() {
            binds.push(Bind {
                source: d.into(),
                destination: d.into(),
                read_only: true,
                propagation: String::new(),
            });
        }
    }
    for (link, target) in [("/lib", "usr/lib"), ("/lib64", "usr/lib64")] {
        if Path::new(link).is_symlink() && Path::new("/").join(target).is_dir() {
            binds.push(Bind {
                source: format!("/{target}"),
                destination: link.into(),
                read_only: true,
                propagation: String::new(),
            });
        }
    }
    binds
}

/// The OCI runtime of a RuntimeClass handler ("" is the default).
pub(crate) fn runtime_for(state: &State, handler: &str) -> Result<Option<String>> {
    if handler.is_empty() {
        return Ok(None);
    }
    match state.config.runtimes.get(handler) {
        Some(r) => Ok(Some(r.path.to_string_lossy().into_owned())),
        None => Err(Error::Invalid(format!(
            "runtime handler {handler:?} is not configured (add [runtimes.{handler}])"
        ))),
    }
}

/// The engine name of a sandbox (docker's dockershim convention).
fn engine_name(m: &cri::PodSandboxMetadata) -> String {
    format!("k8s_POD_{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// The CNI configuration list kubelet's way: the first file of the
/// directory; a single-plugin `.conf` becomes a one-entry list.
fn pod_network(dir: &Path) -> Result<Value> {
    let files = crate::cni::conf_files(dir)?;
    let file = files
        .first()
        .ok_or_else(|| Error::Unavailable(format!("no CNI configuration in {}", dir.display())))?;
    let text = std::fs::read(file)
        .map_err(|e| Error::io(format!("reading CNI configuration {}", file.display()), e))?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Invalid(format!("CNI configuration {}: {e}", file.display())))?;
    if v.get("plugins").is_some() {
        return Ok(v);
    }
    Ok(json!({
        "cniVersion": v["cniVersion"],
        "name": v["name"],
        "plugins": [v],
    }))
}

/// hostPort mappings as the portmap plugin's runtime config.
fn port_mappings(config: &cri::PodSandboxConfig) -> Value {
    let maps: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let proto = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": proto,
                "hostIP": p.host_ip,
            })
        })
        .collect();
    json!({ "portMappings": maps })
}

fn network_mode(config: &cri::PodSandboxConfig, which: fn(&cri::NamespaceOption) -> i32) -> i32 {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map(which)
        .unwrap_or(cri::NamespaceMode::Pod as i32)
}

fn host_network(config: &cri::PodSandboxConfig) -> bool {
    network_mode(config, |n| n.network) == cri::NamespaceMode::Node as i32
}

/// RunPodSandbox: create and start the infra container, then its network.
pub(crate) fn run(state: &State, req: cri::RunPodSandboxRequest) -> Result<String> {
    let config = req
        .config
        .ok_or_else(|| Error::Invalid("run pod sandbox: the config is missing".into()))?;
    let meta = config
        .metadata
        .clone()
        .ok_or_else(|| Error::Invalid("run pod sandbox: the metadata is missing".into()))?;
    if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
        return Err(Error::Invalid(
            "run pod sandbox: metadata name, namespace and uid are required".into(),
        ));
    }
    let runtime = runtime_for(state, &req.runtime_handler)?;
    let mut handles = state.open()?;
    let (engine, images) = handles.parts();
    let what = format!("pod sandbox {}/{}", meta.namespace, meta.name);
    let (image, binds) = match &state.config.sandbox_image {
        Some(img) => {
            if crate::image_service::find(images, img)?.is_none() {
                crate::image_service::pull(&state.root, &state.config, img, None)?;
            }
            (img.clone(), Vec::new())
        }
        None => (builtin_pause_image(images)?, pause_binds(&state.hako)),
    };
    let hostnet = host_network(&config);
    let mut labels = BTreeMap::new();
    labels.insert(KIND_LABEL.to_string(), "sandbox".to_string());
    labels.insert(
        CONFIG_LABEL.to_string(),
        serde_json::to_string(&config).expect("a CRI config serialises"),
    );
    labels.insert(HANDLER_LABEL.to_string(), req.runtime_handler.clone());
    let dns = config.dns_config.clone().unwrap_or_default();
    let ipc_host = network_mode(&config, |n| n.ipc) == cri::NamespaceMode::Node as i32;
    let pid_host = network_mode(&config, |n| n.pid) == cri::NamespaceMode::Node as i32;
    let sysctls = config
        .linux
        .as_ref()
        .map(|l| l.sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    let o = CreateOptions {
        image,
        name: Some(engine_name(&meta)),
        hostname: (!hostnet && !config.hostname.is_empty()).then(|| config.hostname.clone()),
        labels,
        binds,
        network: Some(if hostnet { "host" } else { "none" }.into()),
        // Shareable: the containers joining its IPC namespace bind its
        // /dev/shm too (one tmpfs for the pod, as containerd's).
        ipc_mode: Some(if ipc_host { "host" } else { "shareable" }.into()),
        pid_mode: pid_host.then(|| "host".into()),
        dns: dns.servers,
        dns_search: dns.searches,
        dns_options: dns.options,
        sysctls,
        runtime,
        // Nothing in a sandbox's root is needed after a crash: no sync.
        volatile_rootfs: true,
        // StopPodSandbox takes the network down itself (CNI DEL, then the
        // namespace once the pause has gone): no `hako container-cleanup`
        // process after the pause's exit.
        network_released_by_caller: true,
        ..Default::default()
    };
    let c = engine
        .create(images, &o)
        .map_err(|e| Error::engine(format!("creating {what}"), e))?;
    let started = (|| -> Result<()> {
        engine
            .start(images, &c.id, &state.programs)
            .map_err(|e| Error::engine(format!("starting {what}"), e))?;
        if !hostnet {
            network_up(state, engine, &c.id, &config).map_err(|e| {
                Error::Unavailable(format!("{what}: setting up the pod network: {e}"))
            })?;
        }
        Ok(())
    })();
    if let Err(e) = started {
        // Nothing of a sandbox that did not come up stays behind.
        let _ = network_down(engine, &c.id);
        let _ = engine.remove(images, &c.id, true);
        return Err(e);
    }
    Ok(c.id)
}

fn network_up(
    state: &State,
    engine: &Engine,
    id: &str,
    config: &cri::PodSandboxConfig,
) -> Result<()> {
    let list = pod_network(&state.config.cni_conf_dir)?;
    let _bridge = crate::cni::bridge_in_use()?;
    engine
        .attach_cni(id, &list, &port_mappings(config), IFNAME)
        .map(drop)
        .map_err(|e| Error::engine("CNI ADD", e))
}

/// Undo the pod network now (CNI DEL), before the infra process stops.
fn network_down(engine: &Engine, id: &str) -> Result<()> {
    engine
        .detach_cni(id, IFNAME)
        .map_err(|e| Error::engine(format!("CNI DEL of pod sandbox {id}"), e))
}

fn pod_ip(engine: &Engine, id: &str) -> Option<String> {
    let st = engine.network_state(id)?;
    let a = st.attached.iter().find(|a| a.ifname == IFNAME)?;
    (!a.endpoint.ip.is_empty()).then(|| a.endpoint.ip.clone())
}

/// The engine container of a full id, looked up alone: kubelet always
/// sends full ids, and listing (and reconciling) every container of the
/// node for each request costs O(pods). None when `id` is not a full id
/// (a prefix, as crictl accepts, needs the list).
pub(crate) fn by_full_id(engine: &Engine, id: &str) -> Option<Result<Option<Container>>> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(match engine.get(id) {
        Ok(c) if c.id == id => Ok(Some(c)),
        Ok(_) | Err(hako_engine::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::engine(format!("looking up {id}"), e)),
    })
}

/// The sandbox a CRI id names (a full id or a unique prefix).
pub(crate) fn find(engine: &Engine, id: &str) -> Result<Option<Container>> {
    if id.is_empty() {
        return Err(Error::Invalid("the pod sandbox id is empty".into()));
    }
    if let Some(found) = by_full_id(engine, id) {
        return Ok(found?
            .filter(|c| c.config.labels.get(KIND_LABEL).map(String::as_str) == Some("sandbox")));
    }
    let all = engine
        .list()
        .map_err(|e| Error::engine("listing containers", e))?;
    let mut found = all
        .into_iter()
        .filter(|c| c.config.labels.get(KIND_LABEL).map(String::as_str) == Some("sandbox"))
        .filter(|c| c.id.starts_with(id));
    let first = found.next();
    if found.next().is_some() {
        return Err(Error::Invalid(format!(
            "pod sandbox id prefix {id} is ambiguous"
        )));
    }
    Ok(first)
}

fn require(engine: &Engine, id: &str) -> Result<Container> {
    find(engine, id)?.ok_or_else(|| Error::NotFound(format!("pod sandbox {id}")))
}

/// The full id of pod sandbox `id`, which must be running (port-forward).
pub(crate) fn running(state: &State, id: &str) -> Result<String> {
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, id)?;
    if c.state.status != Status::Running {
        return Err(Error::Conflict(format!(
            "port-forward to pod sandbox {}: it is not running",
            c.id
        )));
    }
    Ok(c.id)
}

/// StopPodSandbox: the pod network down, the containers and the infra
/// process stopped. A sandbox that is gone is stopped already.
pub(crate) fn stop(state: &State, id: &str) -> Result<()> {
    let handles = state.open()?;
    let engine = handles.engine();
    stop_in(engine, id)
}

/// How long a SIGKILLed process of a stopping pod may take to be reaped
/// before the engine sends SIGKILL again and waits for good.
const KILL_WAIT_S: u32 = 10;

fn stop_in(engine: &Engine, id: &str) -> Result<()> {
    let Some(c) = find(engine, id)? else {
        return Ok(());
    };
    // SIGKILL at once, as containerd stops a pod: kubelet gave the
    // containers their grace period with StopContainer already, and the
    // pause has nothing to save (a TERM first only cost another runtime
    // process).
    for member in crate::sandbox::members(engine, &c.id)? {
        engine
            .stop_with_signal(&member.id, Some(KILL_WAIT_S), Some("KILL"))
            .map_err(|e| Error::engine(format!("stopping container {}", member.id), e))?;
    }
    network_down(engine, &c.id)?;
    engine
        .stop_with_signal(&c.id, Some(KILL_WAIT_S), Some("KILL"))
        .map_err(|e| Error::engine(format!("stopping pod sandbox {}", c.id), e))?;
    // The namespace (and anything of the network left) goes now, not in an
    // exit command (see `network_released_by_caller`).
    engine
        .release_network(&c.id)
        .map_err(|e| Error::engine(format!("releasing the network of pod sandbox {}", c.id), e))
}

/// RemovePodSandbox: stopped, then its containers and itself removed.
pub(crate) fn remove(state: &State, id: &str) -> Result<()> {
    // One engine and image store for the whole call (each open and close
    // of their databases costs a WAL checkpoint).
    let mut handles = state.open()?;
    let (engine, images) = handles.parts();
    stop_in(engine, id)?;
    let Some(c) = find(engine, id)? else {
        return Ok(());
    };
    for member in members(engine, &c.id)? {
        engine
            .remove(images, &member.id, true)
            .map_err(|e| Error::engine(format!("removing container {}", member.id), e))?;
    }
    engine
        .remove(images, &c.id, true)
        .map_err(|e| Error::engine(format!("removing pod sandbox {}", c.id), e))
}

/// Label naming the sandbox of a CRI container.
pub const SANDBOX_LABEL: &str = "io.hako.cri.sandbox-id";

/// The CRI containers of a sandbox.
pub(crate) fn members(engine: &Engine, sandbox: &str) -> Result<Vec<Container>> {
    Ok(engine
        .list()
        .map_err(|e| Error::engine("listing containers", e))?
        .into_iter()
        .filter(|c| c.config.labels.get(SANDBOX_LABEL).map(String::as_str) == Some(sandbox))
        .collect())
}

pub(crate) fn stored_config(c: &Container) -> cri::PodSandboxConfig {
    c.config
        .labels
        .get(CONFIG_LABEL)
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

pub(crate) fn nanos(rfc3339: &str) -> i64 {
    let secs = hako_image::images::parse_rfc3339(rfc3339).unwrap_or_default();
    // The fraction, if any, to nanoseconds.
    let frac = rfc3339
        .split_once('.')
        .map(|(_, f)| {
            f.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .unwrap_or_default();
    let frac_ns = format!("{frac:0<9}")[..9].parse::<i64>().unwrap_or(0);
    secs * 1_000_000_000 + frac_ns
}

fn sandbox_state(c: &Container) -> cri::PodSandboxState {
    if c.state.status == Status::Running {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

/// PodSandboxStatus.
pub(crate) fn status(
    state: &State,
    id: &str,
    verbose: bool,
) -> Result<cri::PodSandboxStatusResponse> {
    let handles = state.open()?;
    let engine = handles.engine();
    let c = require(engine, id)?;
    let config = stored_config(&c);
    let ip = pod_ip(engine, &c.id);
    let ns = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    let mut info = HashMap::new();
    if verbose {
        let v = json!({
            "pid": c.state.pid,
            "image": c.image,
            "runtimeHandler": c.config.labels.get(HANDLER_LABEL),
            "netnsPath": if host_network(&config) { Value::Null } else { json!(engine.netns_path(&c.id)) },
            "config": config,
        });
        info.insert("info".to_string(), v.to_string());
    }
    Ok(cri::PodSandboxStatusResponse {
        status: Some(cri::PodSandboxStatus {
            id: c.id.clone(),
            metadata: config.metadata.clone(),
            state: sandbox_state(&c) as i32,
            created_at: nanos(&c.created),
            network: Some(cri::PodSandboxNetworkStatus {
                ip: ip.unwrap_or_default(),
                additional_ips: Vec::new(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace { options: ns }),
            }),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            runtime_handler: c
                .config
                .labels
                .get(HANDLER_LABEL)
                .cloned()
                .unwrap_or_default(),
        }),
        info,
        ..Default::default()
    })
}

/// ListPodSandbox with its filter (id prefix, state, label selector).
pub(crate) fn list(
    state: &State,
    filter: Option<cri::PodSandboxFilter>,
) -> Result<Vec<cri::PodSandbox>> {
    let handles = state.open()?;
    let engine = handles.engine();
    let f = filter.unwrap_or_default();
    let mut out = Vec::new();
    for c in engine
        .list()
        .map_err(|e| Error::engine("listing containers", e))?
    {
        if c.config.labels.get(KIND_LABEL).map(String::as_str) != Some("sandbox") {
            continue;
        }
        if !f.id.is_empty() && !c.id.starts_with(&f.id) {
            continue;
        }
        let st = sandbox_state(&c);
        if let Some(want) = &f.state {
            if want.state != st as i32 {
                continue;
            }
        }
        let config = stored_config(&c);
        if !f
            .label_selector
            .iter()
            .all(|(k, v)| config.labels.get(k) == Some(v))
        {
            continue;
        }
        out.push(cri::PodSandbox {
            id: c.id.clone(),
            metadata: config.metadata,
            state: st as i32,
            created_at: nanos(&c.created),
            labels: config.labels,
            annotations: config.annotations,
            runtime_handler: c
                .config
                .labels
                .get(HANDLER_LABEL)
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_to_nanos() {
        assert_eq!(nanos("1970-01-01T00:00:01.5Z"), 1_500_000_000);
        assert_eq!(nanos("1970-01-01T00:00:02Z"), 2_000_000_000);
    }

    #[test]
    fn a_single_plugin_conf_becomes_a_list() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("10-x.conf"),
            r#"{"cniVersion":"1.0.0","name":"x","type":"bridge"}"#,
        )
        .unwrap();
        let l = pod_network(tmp.path()).unwrap();
        assert_eq!(l["name"], "x");
        assert_eq!(l["plugins"][0]["type"], "bridge");
    }
}
