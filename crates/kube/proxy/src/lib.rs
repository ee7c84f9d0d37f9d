//! hako's kube-proxy (issue 18): watches Services and EndpointSlices and
//! programs the node's nat table as upstream kube-proxy's iptables mode does
//! ([`rules`] builds the rule set, [`iptables`] applies it atomically with
//! `iptables-restore`). ClusterIPs and node ports (on every local address,
//! 127.0.0.1 included) are DNATed to ready endpoints.

pub mod dns;
pub mod ingress;
pub mod iptables;
pub mod rules;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use hako_kube_controllers::informer::{Ev, Informer};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use rules::{Chains, SvcPort};

/// The chain tag of the control plane of a hako root: chains of different
/// roots on one host never collide.
pub fn tag_for(root: &Path) -> String {
    let h = Sha256::digest(root.as_os_str().as_encoded_bytes());
    h[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// A running proxy; [`Proxy::stop`] removes its rules.
pub struct Proxy {
    chains: Chains,
    /// `true` once stopped: no rule is written after that.
    stopped: Mutex<bool>,
}

impl Proxy {
    pub fn new(tag: &str) -> Arc<Proxy> {
        Arc::new(Proxy {
            chains: Chains::new(tag),
            stopped: Mutex::new(false),
        })
    }

    fn apply(&self, ports: &[SvcPort]) -> Result<()> {
        let stopped = self.stopped.lock().unwrap();
        if *stopped {
            return Ok(());
        }
        if ports.is_empty() {
            // Nothing to program: no chain, no jump (a killed control plane
            // without Services leaves nothing behind).
            return iptables::cleanup(&self.chains);
        }
        iptables::apply(&self.chains, ports)
    }

    /// Stop programming and remove every rule of this proxy.
    pub fn stop(&self) -> Result<()> {
        let mut stopped = self.stopped.lock().unwrap();
        *stopped = true;
        iptables::cleanup(&self.chains)
    }

    /// Watch the cluster and keep the rules current (runs until the runtime stops).
    pub async fn run(self: Arc<Self>, client: Client) {
        // kube-proxy sets this so node ports answer on 127.0.0.1 (DNAT of
        // loopback traffic to another interface).
        if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1") {
            tracing::warn!("enabling route_localnet for node ports on 127.0.0.1: {e}");
        }
        match iptables::orphaned_tags() {
            Ok(tags) => {
                for t in tags {
                    tracing::info!("kube-proxy: removing the rules of a killed proxy ({t})");
                    if let Err(e) = cleanup(&t) {
                        tracing::warn!("kube-proxy: {e:#}");
                    }
                }
            }
            Err(e) => tracing::warn!("kube-proxy: looking for a killed proxy's rules: {e:#}"),
        }
        let services: Arc<Informer<Service>> = Informer::start(Api::all(client.clone()));
        let slices: Arc<Informer<EndpointSlice>> = Informer::start(Api::all(client));
        let dirty = Arc::new(Notify::new());
        let d = dirty.clone();
        services.on_event(move |_: Ev<Service>| d.notify_one());
        let d = dirty.clone();
        slices.on_event(move |_: Ev<EndpointSlice>| d.notify_one());
        services.wait_synced().await;
        slices.wait_synced().await;
        let mut last: Option<Vec<SvcPort>> = None;
        loop {
            let ports = model(&services, &slices);
            if last.as_ref() != Some(&ports) {
                match self.apply(&ports) {
                    Ok(()) => last = Some(ports),
                    Err(e) => {
                        tracing::error!("kube-proxy: {e:#}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            dirty.notified().await;
        }
    }
}

/// What the rules should say, from the caches.
fn model(services: &Informer<Service>, slices: &Informer<EndpointSlice>) -> Vec<SvcPort> {
    let mut out = Vec::new();
    let all_slices = slices.list(None);
    for svc in services.list(None) {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        if spec.type_.as_deref() == Some("ExternalName") || ip.is_empty() || ip == "None" {
            continue;
        }
        let ns = svc.namespace().unwrap_or_default();
        let name = svc.name_any();
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .map(|t| t.max(1) as u32)
                .unwrap_or(10800)
        });
        let mine: Vec<&Arc<EndpointSlice>> = all_slices
            .iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(ns.as_str())
                    && s.labels().get("kubernetes.io/service-name") == Some(&name)
                    && s.address_type == "IPv4"
            })
            .collect();
        // Endpoints of a Service without a selector are its user's to
        // write; until they exist it is left alone (the `kubernetes` Service).
        let user_managed = spec.selector.as_ref().is_none_or(|s| s.is_empty());
        for p in spec.ports.iter().flatten() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let pname = p.name.clone().unwrap_or_default();
            let mut eps = BTreeSet::new();
            for s in &mine {
                let Some(sp) = s.ports.iter().flatten().find(|sp| {
                    sp.name.clone().unwrap_or_default() == pname
                        && sp.protocol.as_deref().unwrap_or("TCP") == proto
                }) else {
                    continue;
                };
                let Some(port) = sp.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for e in &s.endpoints {
                    // An unset `ready` means ready (the API's convention).
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    if let (true, Some(a)) = (ready, e.addresses.first()) {
                        eps.insert((a.clone(), port));
                    }
                }
            }
            if user_managed && eps.is_empty() {
                continue;
            }
            out.push(SvcPort {
                id: format!("{ns}/{name}:{pname}"),
                cluster_ip: ip.to_string(),
                port: u16::try_from(p.port).unwrap_or(0),
                protocol: proto.to_ascii_lowercase(),
                host_ports: p
                    .node_port
                    .into_iter()
                    .chain((spec.type_.as_deref() == Some("LoadBalancer")).then_some(p.port))
                    .filter_map(|n| u16::try_from(n).ok())
                    .collect(),
                affinity,
                endpoints: eps.into_iter().collect(),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id).then(a.protocol.cmp(&b.protocol)));
    out
}

/// Remove the rules of the proxy of `tag` (one that was killed, say).
pub fn cleanup(tag: &str) -> Result<()> {
    iptables::cleanup(&Chains::new(tag)).context("removing kube-proxy's rules")
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("creating kube-proxy's runtime")
}

/// `hako kube proxy`: run in the foreground until SIGINT/SIGTERM, then remove the rules.
pub fn run_foreground(kubeconfig: PathBuf, tag: &str) -> Result<()> {
    let proxy = Proxy::new(tag);
    let rt = runtime()?;
    let p = proxy.clone();
    let res: Result<()> = rt.block_on(async move {
        let client = hako_kube_controllers::client_from(&kubeconfig).await?;
        let task = tokio::spawn(p.run(client));
        shutdown_signal().await;
        task.abort();
        Ok(())
    });
    drop(rt);
    let cleaned = proxy.stop();
    res.and(cleaned)
}

/// Run on a thread of its own (as `hako kube up` does); call
/// [`Proxy::stop`] on the result when shutting down.
pub fn spawn_thread(kubeconfig: PathBuf, tag: &str) -> Arc<Proxy> {
    let proxy = Proxy::new(tag);
    let p = proxy.clone();
    std::thread::Builder::new()
        .name("kube-proxy".into())
        .spawn(move || {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("starting kube-proxy: {e:#}"),
            };
            rt.block_on(async move {
                match hako_kube_controllers::client_from(&kubeconfig).await {
                    Ok(c) => p.run(c).await,
                    Err(e) => tracing::error!("starting kube-proxy: {e:#}"),
                }
            })
        })
        .expect("spawning the kube-proxy thread");
    proxy
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
