//! Bringing a project up and down over hako-engine, as docker compose does:
//! containers named `PROJECT-SERVICE-N` carrying compose's labels (project,
//! service, number, config hash), a project network by default on which
//! each container is also reachable by its service name, named volumes
//! `PROJECT_NAME`, dependency order with the depends_on conditions, and
//! recreation only of services whose configuration changed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hako_distribution::client::ClientOptions;
use hako_engine::options::{self, HealthOptions};
use hako_engine::{Container, CreateOptions, Engine, NetworkCreate, Programs, Status};
use hako_image::on_demand::{self, PullPolicy};
use hako_image::pull::PullOptions;
use hako_image::{ImageStore, Progress};
use sha2::{Digest, Sha256};

use crate::error::{EngineContext, Error, Result};
use crate::model::{Project, Service};

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";

/// How long `up` waits for a dependency's condition at most.
const CONDITION_BOUND: Duration = Duration::from_secs(300);

/// What `up` is asked for.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Only these services (and what they depend on unless `no_deps`).
    pub services: Vec<String>,
    pub force_recreate: bool,
    pub no_deps: bool,
    pub scale: BTreeMap<String, u32>,
    pub remove_orphans: bool,
    /// Wait for every service to be running (healthy where it has a check).
    pub wait: bool,
    /// Create the containers only (`compose create`): nothing is started
    /// and no dependency condition is waited for.
    pub no_start: bool,
}

/// One thing `up`/`down` did, for the progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// "Network", "Volume", "Container".
    pub kind: &'static str,
    pub name: String,
    /// "Created", "Started", "Recreated", "Running", "Removed", ...
    pub action: &'static str,
}

pub struct Compose<'a> {
    pub engine: &'a Engine,
    pub project: &'a Project,
}

fn ev(kind: &'static str, name: &str, action: &'static str) -> Event {
    Event {
        kind,
        name: name.to_string(),
        action,
    }
}

impl<'a> Compose<'a> {
    pub fn new(engine: &'a Engine, project: &'a Project) -> Self {
        Compose { engine, project }
    }

    /// The project's containers (one-off `run` containers too), by name.
    pub fn containers(&self) -> Result<Vec<Container>> {
        let mut v: Vec<Container> = self
            .engine
            .list()
            .ctx(|| "listing containers".into())?
            .into_iter()
            .filter(|c| c.config.labels.get(LABEL_PROJECT) == Some(&self.project.name))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn service_containers(&self, service: &str) -> Result<Vec<Container>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.config.labels.get(LABEL_SERVICE).map(String::as_str) == Some(service))
            .filter(|c| c.config.labels.get(LABEL_ONEOFF).map(String::as_str) != Some("True"))
            .collect())
    }

    /// The configuration hash of a service (what `up` compares to decide
    /// whether to recreate).
    pub fn config_hash(&self, name: &str, svc: &Service) -> String {
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update(serde_json::to_vec(svc).expect("service serialises"));
        for (n, _) in self.project.service_networks(svc) {
            h.update(self.project.networks[&n].name.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn ensure_networks(&self, events: &mut Vec<Event>) -> Result<()> {
        let used: std::collections::BTreeSet<String> = self
            .project
            .services
            .values()
            .filter(|s| s.network_mode.is_none())
            .flat_map(|s| self.project.service_networks(s).into_iter().map(|(n, _)| n))
            .collect();
        for key in used {
            let def = &self.project.networks[&key];
            match self.engine.network(&def.name) {
                Ok(_) => {}
                Err(hako_engine::Error::NotFound { .. }) if def.external => {
                    return Err(Error::Project(format!(
                        "network {} declared as external, but could not be found",
                        def.name
                    )))
                }
                Err(hako_engine::Error::NotFound { .. }) => {
                    let mut labels = def.labels.clone();
                    labels.insert(LABEL_PROJECT.into(), self.project.name.clone());
                    labels.insert("com.docker.compose.network".into(), key.clone());
                    self.engine
                        .create_network(&NetworkCreate {
                            name: def.name.clone(),
                            driver: None,
                            subnet: def.subnet.clone(),
                            gateway: None,
                            internal: def.internal,
                            labels,
                            ..Default::default()
                        })
                        .ctx(|| format!("creating network {}", def.name))?;
                    events.push(ev("Network", &def.name, "Created"));
                }
                Err(e) => return Err(e).ctx(|| format!("looking up network {}", def.name)),
            }
        }
        Ok(())
    }

    fn ensure_volumes(&self, events: &mut Vec<Event>) -> Result<()> {
        for (key, def) in &self.project.volumes {
            if self.engine.volume(&def.name).is_ok() {
                continue;
            }
            if def.external {
                return Err(Error::Project(format!(
                    "volume {} declared as external, but could not be found",
                    def.name
                )));
            }
            let mut labels = def.labels.clone();
            labels.insert(LABEL_PROJECT.into(), self.project.name.clone());
            labels.insert("com.docker.compose.volume".into(), key.clone());
            self.engine
                .create_volume(&hako_engine::volume::VolumeCreate {
                    name: Some(def.name.clone()),
                    driver: def.driver.clone(),
                    labels,
                    options: def.driver_opts.clone(),
                })
                .ctx(|| format!("creating volume {}", def.name))?;
            events.push(ev("Volume", &def.name, "Created"));
        }
        Ok(())
    }

    /// The engine's create options for replica `n` of `name`.
    fn create_options(
        &self,
        name: &str,
        svc: &Service,
        n: u32,
        oneoff: bool,
    ) -> Result<CreateOptions> {
        let p = self.project;
        let path = |f: &str| format!("services.{name}.{f}");
        let fe = |f: &str, e: hako_engine::Error| crate::error::field(path(f), e.to_string());
        let mut labels = svc.labels.clone();
        labels.insert(LABEL_PROJECT.into(), p.name.clone());
        labels.insert(LABEL_SERVICE.into(), name.to_string());
        labels.insert(LABEL_NUMBER.into(), n.to_string());
        labels.insert(LABEL_HASH.into(), self.config_hash(name, svc));
        labels.insert(
            LABEL_ONEOFF.into(),
            if oneoff { "True" } else { "False" }.into(),
        );
        let (entrypoint, mut cmd) = match &svc.entrypoint {
            Some(ep) if ep.is_empty() => (Some(String::new()), Vec::new()),
            Some(ep) => (Some(ep[0].clone()), ep[1..].to_vec()),
            None => (None, Vec::new()),
        };
        cmd.extend(svc.command.clone().unwrap_or_default());
        let mut o = CreateOptions {
            image: image_of(&p.name, name, svc),
            name: Some(if oneoff {
                format!(
                    "{}-{name}-run-{}",
                    p.name,
                    &hako_engine::names::new_id()[..12]
                )
            } else {
                p.container_name(name, n)
            }),
            cmd,
            entrypoint,
            env: svc
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            workdir: svc.working_dir.clone(),
            user: svc.user.clone(),
            hostname: svc.hostname.clone(),
            labels,
            expose: svc.expose.clone(),
            extra_hosts: svc.extra_hosts.clone(),
            read_only: svc.read_only,
            privileged: svc.privileged,
            cap_add: svc.cap_add.clone(),
            cap_drop: svc.cap_drop.clone(),
            init: svc.init,
            stop_signal: svc.stop_signal.clone(),
            stop_timeout: svc.stop_grace_period,
            ..Default::default()
        };
        if let Some(l) = &svc.logging {
            let opts: Vec<String> = l.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            o.log_config = options::parse_log_config(l.driver.as_deref(), &opts)
                .map_err(|e| fe("logging", e))?;
        }
        if !oneoff {
            o.restart = match &svc.restart {
                Some(r) => options::parse_restart(r).map_err(|e| fe("restart", e))?,
                None => Default::default(),
            };
        }
        for port in &svc.ports {
            // Replicas cannot share a fixed host port; compose refuses too.
            let spec = port.spec();
            if oneoff {
                continue;
            }
            o.publish.extend(
                hako_engine::network::ports::parse_publish(&spec).map_err(|e| fe("ports", e))?,
            );
        }
        for (i, m) in svc.volumes.iter().enumerate() {
            let field = format!("volumes[{i}]");
            let source = match m.typ.as_str() {
                "volume" if !m.source.is_empty() => p.volumes[&m.source].name.clone(),
                _ => m.source.clone(),
            };
            let mut spec = format!("type={},target={}", m.typ, m.target);
            if !source.is_empty() {
                spec.push_str(&format!(",source={source}"));
            }
            if m.read_only {
                spec.push_str(",readonly");
            }
            o.mounts
                .push(options::parse_mount(&spec).map_err(|e| fe(&field, e))?);
        }
        for (defs, list) in [(&p.configs, &svc.configs), (&p.secrets, &svc.secrets)] {
            for m in list {
                o.binds.push(hako_engine::Bind {
                    source: defs[&m.source].display().to_string(),
                    destination: m.target.clone(),
                    read_only: true,
                    propagation: String::new(),
                });
            }
        }
        if !svc.depends_on.is_empty() {
            // Kept with the container, so a start without the file still knows.
            o.labels.insert(
                LABEL_DEPENDS_ON.into(),
                svc.depends_on
                    .iter()
                    .map(|(d, c)| format!("{d}:{c}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        for t in &svc.tmpfs {
            o.tmpfs
                .push(options::parse_tmpfs(t).map_err(|e| fe("tmpfs", e))?);
        }
        for u in &svc.ulimits {
            o.ulimits
                .push(options::parse_ulimit(u).map_err(|e| fe("ulimits", e))?);
        }
        if let Some(s) = &svc.shm_size {
            o.shm_size = options::parse_bytes(s).map_err(|e| fe("shm_size", e))?;
        }
        o.sysctls = svc
            .sysctls
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(m) = &svc.mem_limit {
            o.memory = options::parse_bytes(m).map_err(|e| fe("mem_limit", e))?;
        }
        if let Some(c) = &svc.cpus {
            o.nano_cpus = options::parse_cpus(c).map_err(|e| fe("cpus", e))?;
        }
        if let Some(h) = &svc.healthcheck {
            o.health = health_options(h, name)?;
        }
        match &svc.network_mode {
            // The other service's first container, as compose does.
            Some(mode) if mode.starts_with("service:") => {
                o.network = Some(format!(
                    "container:{}",
                    p.container_name(&mode["service:".len()..], 1)
                ));
            }
            Some(mode) => o.network = Some(mode.clone()),
            None => {
                let nets = p.service_networks(svc);
                let (first, sn) = &nets[0];
                o.network = Some(p.networks[first].name.clone());
                o.network_aliases = std::iter::once(name.to_string())
                    .chain(sn.aliases.iter().cloned())
                    .collect();
                o.ip = sn.ipv4_address;
                o.mac_address = svc
                    .mac_address
                    .as_deref()
                    .map(options::parse_mac)
                    .transpose()
                    .map_err(|e| fe("mac_address", e))?;
            }
        }
        Ok(o)
    }

    /// Create (not start) replica `n`, joined to all its networks.
    fn create_one(
        &self,
        images: &mut ImageStore,
        name: &str,
        svc: &Service,
        n: u32,
        oneoff: bool,
    ) -> Result<Container> {
        let o = self.create_options(name, svc, n, oneoff)?;
        let cname = o.name.clone().unwrap_or_default();
        let c = self
            .engine
            .create(images, &o)
            .ctx(|| format!("creating container {cname}"))?;
        if svc.network_mode.is_none() {
            for (net, sn) in self.project.service_networks(svc).into_iter().skip(1) {
                let mut all = vec![name.to_string()];
                all.extend(sn.aliases);
                self.engine
                    .connect(
                        &c.id,
                        &self.project.networks[&net].name,
                        &all,
                        sn.ipv4_address,
                    )
                    .ctx(|| format!("connecting {cname} to network {net}"))?;
            }
        }
        Ok(c)
    }

    /// Wait for what `svc` depends on.
    fn wait_dependencies(&self, name: &str, svc: &Service) -> Result<()> {
        for (dep, cond) in &svc.depends_on {
            if !self.project.services.contains_key(dep) {
                continue;
            }
            let deadline = Instant::now() + CONDITION_BOUND;
            loop {
                let cs = self.service_containers(dep)?;
                let met = match cond.as_str() {
                    "service_healthy" => {
                        !cs.is_empty()
                            && cs.iter().all(|c| {
                                self.engine.health(c).is_some_and(|h| h.status == "healthy")
                            })
                    }
                    "service_completed_successfully" => {
                        if let Some(bad) = cs
                            .iter()
                            .find(|c| c.state.status == Status::Exited && c.state.exit_code != 0)
                        {
                            return Err(Error::Project(format!(
                                "service {dep} (needed by {name}) didn't complete successfully: exit {}",
                                bad.state.exit_code
                            )));
                        }
                        !cs.is_empty() && cs.iter().all(|c| c.state.status == Status::Exited)
                    }
                    _ => {
                        !cs.is_empty()
                            && cs.iter().all(|c| {
                                c.state.status == Status::Running
                                    || c.state.status == Status::Exited
                            })
                    }
                };
                if met {
                    break;
                }
                if cond == "service_healthy" {
                    if let Some(c) = cs.iter().find(|c| c.state.status == Status::Exited) {
                        return Err(Error::Project(format!(
                            "service {dep} (needed healthy by {name}) exited with {}",
                            c.state.exit_code
                        )));
                    }
                }
                if Instant::now() > deadline {
                    return Err(Error::Project(format!(
                        "service {dep} did not reach {cond} (needed by {name}) within {} s",
                        CONDITION_BOUND.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The services `up` acts on: those asked for, plus their dependencies.
    fn selected(&self, asked: &[String], no_deps: bool) -> Result<Vec<String>> {
        for s in asked {
            if !self.project.services.contains_key(s) {
                return Err(Error::Project(format!("no such service: {s}")));
            }
        }
        let order = self.project.order()?;
        if asked.is_empty() {
            return Ok(order);
        }
        let mut want: std::collections::BTreeSet<String> = asked.iter().cloned().collect();
        if !no_deps {
            let mut stack: Vec<String> = asked.to_vec();
            while let Some(s) = stack.pop() {
                for d in self.project.services[&s].depends_on.keys() {
                    if want.insert(d.clone()) {
                        stack.push(d.clone());
                    }
                }
            }
        }
        Ok(order.into_iter().filter(|s| want.contains(s)).collect())
    }

    /// Pull what the services need before `up`/`create`/`run`, as docker
    /// compose does: each service's `pull_policy` (default `missing`), or
    /// `policy` for all of them (`up --pull`). Services with a `build:`
    /// section are built, not pulled (unless their policy is `always`), and
    /// each image is pulled once. `on_event` hears "Pulling" before a pull
    /// (the download's progress goes to `progress`) and "Pulled" after.
    pub fn pull_images(
        &self,
        images: &mut ImageStore,
        services: &[String],
        policy: Option<&PullPolicy>,
        registry: &ClientOptions,
        progress: &dyn Progress,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let mut done = std::collections::BTreeSet::new();
        for name in self.selected(services, false)? {
            let svc = &self.project.services[&name];
            let Some(image) = &svc.image else { continue };
            let policy = match (policy, &svc.pull_policy) {
                (Some(p), _) => p.clone(),
                (None, Some(p)) => PullPolicy::parse(p).map_err(|e| {
                    crate::error::field(format!("services.{name}.pull_policy"), e.to_string())
                })?,
                (None, None) => PullPolicy::Missing,
            };
            if svc.build.is_some() && policy != PullPolicy::Always {
                continue;
            }
            if !done.insert(image.clone()) {
                continue;
            }
            let why = on_demand::pull_needed(images, image, &policy)
                .map_err(|e| Error::Project(format!("service {name}: image {image}: {e}")))?;
            if why.is_none() {
                continue;
            }
            let pulling = ev("Image", image, "Pulling");
            on_event(&pulling);
            on_demand::pull_reference(images, image, registry, &PullOptions::default(), progress)
                .map_err(|e| Error::Project(format!("service {name}: {e}")))?;
            let pulled = ev("Image", image, "Pulled");
            on_event(&pulled);
            events.push(pulled);
        }
        Ok(events)
    }

    pub fn up(
        &self,
        images: &mut ImageStore,
        programs: &Programs,
        o: &UpOptions,
    ) -> Result<Vec<Event>> {
        let services = self.selected(&o.services, o.no_deps)?;
        // `--scale` is checked as the file's counts are, before anything changes.
        for (name, want) in &o.scale {
            let Some(svc) = self.project.services.get(name) else {
                return Err(Error::Project(format!(
                    "--scale {name}={want}: no such service: {name}"
                )));
            };
            if u64::from(*want) > crate::numbers::MAX_REPLICAS {
                return Err(Error::Project(format!(
                    "--scale {name}={want}: at most {} replicas",
                    crate::numbers::MAX_REPLICAS
                )));
            }
            if *want > 1 && svc.container_name.is_some() {
                return Err(Error::Project(format!(
                    "--scale {name}={want}: service {name} has a container_name, so it runs one container"
                )));
            }
        }
        let mut events = Vec::new();
        self.ensure_networks(&mut events)?;
        self.ensure_volumes(&mut events)?;
        for name in &services {
            let svc = &self.project.services[name];
            if o.no_start {
                // Nothing runs, so there is no condition to wait for.
            } else if o.no_deps {
                // Dependencies left out on purpose are not waited for.
                let mut only = svc.clone();
                only.depends_on.retain(|d, _| services.contains(d));
                self.wait_dependencies(name, &only)?;
            } else {
                self.wait_dependencies(name, svc)?;
            }
            let want = o.scale.get(name).copied().unwrap_or(svc.replicas);
            let hash = self.config_hash(name, svc);
            let existing = self.service_containers(name)?;
            for n in 1..=want {
                let cname = self.project.container_name(name, n);
                let found = existing.iter().find(|c| c.name == cname);
                let c = match found {
                    Some(c)
                        if !o.force_recreate && c.config.labels.get(LABEL_HASH) == Some(&hash) =>
                    {
                        if c.state.status == Status::Running {
                            events.push(ev("Container", &cname, "Running"));
                            continue;
                        }
                        if o.no_start {
                            events.push(ev("Container", &cname, "Exists"));
                            continue;
                        }
                        c.clone()
                    }
                    Some(c) => {
                        self.engine
                            .remove_with_volumes(images, &c.id, true, false)
                            .ctx(|| format!("removing container {cname} to recreate it"))?;
                        let c = self.create_one(images, name, svc, n, false)?;
                        events.push(ev("Container", &cname, "Recreated"));
                        c
                    }
                    None => {
                        let c = self.create_one(images, name, svc, n, false)?;
                        events.push(ev("Container", &cname, "Created"));
                        c
                    }
                };
                if o.no_start {
                    continue;
                }
                self.engine
                    .start(images, &c.id, programs)
                    .ctx(|| format!("starting container {cname}"))?;
                events.push(ev("Container", &cname, "Started"));
            }
            // Scaled down: the highest numbers go.
            for c in existing.iter().filter(|c| {
                c.config
                    .labels
                    .get(LABEL_NUMBER)
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n > want)
            }) {
                self.engine
                    .remove_with_volumes(images, &c.id, true, false)
                    .ctx(|| format!("removing container {}", c.name))?;
                events.push(ev("Container", &c.name, "Removed"));
            }
        }
        if o.remove_orphans {
            for c in self.orphans()? {
                self.engine
                    .remove_with_volumes(images, &c.id, true, false)
                    .ctx(|| format!("removing orphan container {}", c.name))?;
                events.push(ev("Container", &c.name, "Removed"));
            }
        }
        if o.wait && !o.no_start {
            for name in &services {
                let svc = &self.project.services[name];
                let cond = if svc.healthcheck.as_ref().is_some_and(|h| !h.disable) {
                    "service_healthy"
                } else {
                    "service_started"
                };
                let probe = Service {
                    depends_on: [(name.clone(), cond.to_string())].into_iter().collect(),
                    ..Default::default()
                };
                self.wait_dependencies("--wait", &probe)?;
            }
        }
        Ok(events)
    }

    /// Containers of this project whose service is not in the file any more.
    pub fn orphans(&self) -> Result<Vec<Container>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| {
                c.config
                    .labels
                    .get(LABEL_SERVICE)
                    .is_none_or(|s| !self.project.services.contains_key(s))
            })
            .collect())
    }

    /// Stop and remove the project's containers (dependents first), its
    /// networks and, with `volumes`, its named and anonymous volumes.
    pub fn down(
        &self,
        images: &mut ImageStore,
        volumes: bool,
        remove_orphans: bool,
        timeout: Option<u32>,
    ) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let order = self.project.order()?;
        let all = self.containers()?;
        let rank = |c: &Container| {
            c.config
                .labels
                .get(LABEL_SERVICE)
                .and_then(|s| order.iter().position(|o| o == s))
        };
        let mut doomed: Vec<&Container> = all
            .iter()
            .filter(|c| {
                rank(c).is_some()
                    || remove_orphans
                    || c.config.labels.get(LABEL_ONEOFF).map(String::as_str) == Some("True")
            })
            .collect();
        doomed.sort_by_key(|c| std::cmp::Reverse(rank(c).unwrap_or(usize::MAX)));
        for c in doomed {
            let timeout = timeout.unwrap_or(c.config.stop_timeout);
            self.engine
                .stop(&c.id, Some(timeout))
                .ctx(|| format!("stopping container {}", c.name))?;
            events.push(ev("Container", &c.name, "Stopped"));
            self.engine
                .remove_with_volumes(images, &c.id, true, volumes)
                .ctx(|| format!("removing container {}", c.name))?;
            events.push(ev("Container", &c.name, "Removed"));
        }
        for def in self.project.networks.values().filter(|d| !d.external) {
            match self.engine.remove_network(&def.name) {
                Ok(_) => events.push(ev("Network", &def.name, "Removed")),
                Err(hako_engine::Error::NotFound { .. }) => {}
                Err(e) => return Err(e).ctx(|| format!("removing network {}", def.name)),
            }
        }
        if volumes {
            for def in self.project.volumes.values().filter(|d| !d.external) {
                match self.engine.remove_volume(&def.name, false) {
                    Ok(()) => events.push(ev("Volume", &def.name, "Removed")),
                    Err(hako_engine::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e).ctx(|| format!("removing volume {}", def.name)),
                }
            }
        }
        Ok(events)
    }

    /// A one-off container of `service` running `cmd` (not started).
    pub fn create_run(
        &self,
        images: &mut ImageStore,
        service: &str,
        cmd: Vec<String>,
        env: &[String],
    ) -> Result<Container> {
        let svc = self
            .project
            .services
            .get(service)
            .ok_or_else(|| Error::Project(format!("no such service: {service}")))?;
        let mut svc = svc.clone();
        if !cmd.is_empty() {
            svc.command = Some(cmd);
        }
        // `run -e KEY=VALUE` (or a bare KEY from the caller's environment).
        for e in env {
            match e.split_once('=') {
                Some((k, v)) => {
                    svc.environment.insert(k.to_string(), v.to_string());
                }
                None => {
                    if let Ok(v) = std::env::var(e) {
                        svc.environment.insert(e.clone(), v);
                    }
                }
            }
        }
        let mut events = Vec::new();
        self.ensure_networks(&mut events)?;
        self.ensure_volumes(&mut events)?;
        self.create_one(images, service, &svc, 0, true)
    }

    /// Start the services' existing containers in dependency order, each
    /// after its depends_on conditions hold (as `up` does, so they hold on
    /// every start, after a host restart too).
    pub fn start_services(
        &self,
        images: &mut ImageStore,
        programs: &Programs,
        services: &[String],
    ) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for name in self.selected(services, false)? {
            let svc = &self.project.services[&name];
            self.wait_dependencies(&name, svc)?;
            for c in self.service_containers(&name)? {
                if c.state.status == Status::Running {
                    continue;
                }
                self.engine
                    .start(images, &c.id, programs)
                    .ctx(|| format!("starting container {}", c.name))?;
                events.push(ev("Container", &c.name, "Started"));
            }
        }
        Ok(events)
    }

    /// The first running container of a service (for exec/port).
    pub fn running(&self, service: &str, index: u32) -> Result<Container> {
        let name = self.project.container_name(service, index);
        self.service_containers(service)?
            .into_iter()
            .find(|c| c.name == name && c.state.status == Status::Running)
            .ok_or_else(|| {
                Error::Project(format!("service {service} has no running container {name}"))
            })
    }

    /// The containers of the given services (all when empty), in dependency order.
    pub fn of_services(&self, services: &[String]) -> Result<Vec<Container>> {
        let order = self.project.order()?;
        let mut out = Vec::new();
        for s in &order {
            if services.is_empty() || services.contains(s) {
                out.extend(self.service_containers(s)?);
            }
        }
        for s in services {
            if !self.project.services.contains_key(s) {
                return Err(Error::Project(format!("no such service: {s}")));
            }
        }
        Ok(out)
    }
}

fn health_options(h: &crate::model::Healthcheck, name: &str) -> Result<HealthOptions> {
    let path = |f: &str| format!("services.{name}.healthcheck.{f}");
    let dur = |v: &Option<String>, f: &str| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| {
                options::parse_duration(s).map_err(|e| crate::error::field(path(f), e.to_string()))
            })
            .transpose()
    };
    let disabled = h.disable || h.test.first().map(String::as_str) == Some("NONE");
    let cmd = match h.test.first().map(String::as_str) {
        _ if disabled => None,
        Some("CMD-SHELL") => Some(h.test[1..].join(" ")),
        Some("CMD") => Some(
            h.test[1..]
                .iter()
                .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Some(_) => Some(h.test.join(" ")),
        None => None,
    };
    Ok(HealthOptions {
        cmd,
        interval: dur(&h.interval, "interval")?,
        timeout: dur(&h.timeout, "timeout")?,
        start_period: dur(&h.start_period, "start_period")?,
        start_interval: dur(&h.start_interval, "start_interval")?,
        retries: h.retries,
        disabled,
    })
}

/// The image a service runs: its `image:`, else what `build:` makes,
/// named `PROJECT-SERVICE` as docker compose names it.
pub fn image_of(project: &str, name: &str, svc: &Service) -> String {
    svc.image
        .clone()
        .unwrap_or_else(|| format!("{project}-{name}"))
}

/// A service's `build:` section in long form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// Absolute context directory.
    pub context: std::path::PathBuf,
    /// Relative to the context unless absolute.
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
}

/// Parse `build:` (a context path, or context/dockerfile/args/target).
pub fn build_spec(project: &Project, name: &str, svc: &Service) -> Result<Option<BuildSpec>> {
    let Some(b) = &svc.build else {
        return Ok(None);
    };
    let path = format!("services.{name}.build");
    let field = |f: &str, m: &str| crate::error::field(format!("{path}.{f}"), m.to_string());
    let (context, dockerfile, args, target) = match b {
        serde_json::Value::String(c) => (c.clone(), None, BTreeMap::new(), None),
        serde_json::Value::Object(m) => {
            let s = |k: &str| -> Result<Option<String>> {
                match m.get(k) {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(serde_json::Value::String(v)) => Ok(Some(v.clone())),
                    Some(_) => Err(field(k, "must be a string")),
                }
            };
            let mut args = BTreeMap::new();
            match m.get("args") {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Object(a)) => {
                    for (k, v) in a {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        args.insert(k.clone(), v);
                    }
                }
                Some(serde_json::Value::Array(a)) => {
                    for (i, v) in a.iter().enumerate() {
                        let s = v
                            .as_str()
                            .ok_or_else(|| field(&format!("args[{i}]"), "must be KEY=VALUE"))?;
                        let (k, v) = s.split_once('=').unwrap_or((s, ""));
                        args.insert(k.to_string(), v.to_string());
                    }
                }
                Some(_) => return Err(field("args", "must be a mapping or a list")),
            }
            (
                s("context")?.unwrap_or_else(|| ".".into()),
                s("dockerfile")?,
                args,
                s("target")?,
            )
        }
        _ => return Err(crate::error::field(path, "must be a path or a mapping")),
    };
    let ctx = std::path::Path::new(&context);
    let context = if ctx.is_absolute() {
        ctx.to_path_buf()
    } else {
        project.dir.join(ctx)
    };
    Ok(Some(BuildSpec {
        context,
        dockerfile,
        args,
        target,
    }))
}
