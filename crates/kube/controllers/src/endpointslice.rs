//! The EndpointSlice and Endpoints controllers (upstream's
//! pkg/controller/endpointslice and pkg/controller/endpoint, in one): for
//! every Service with a selector, the pods it selects that have an IP become
//! endpoints with `ready` / `serving` / `terminating` conditions, named
//! target ports resolved against each pod's container ports. Slices carry
//! the `kubernetes.io/service-name` and managed-by labels and are controlled
//! by their Service (so the garbage collector removes them with it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::informer::{key, key_of, split_key, Ev, Informer};
use crate::queue::{Outcome, Queue};
use crate::util;
use crate::Shared;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

struct Esc {
    sh: Arc<Shared>,
    services: Arc<Informer<Service>>,
    slices: Arc<Informer<EndpointSlice>>,
    queue: Arc<Queue>,
}

pub fn start(sh: Arc<Shared>) {
    let c = Arc::new(Esc {
        services: Informer::start(Api::all(sh.client.clone())),
        slices: Informer::start(Api::all(sh.client.clone())),
        queue: Queue::new(),
        sh,
    });
    let q = c.queue.clone();
    c.services.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => q.add(key_of(&*new)),
        Ev::Delete(o) => q.add(key_of(&*o)),
        Ev::Resync => {}
    });
    // A slice changed by someone else is put back.
    let q = c.queue.clone();
    c.slices.on_event(move |ev| {
        let s = match &ev {
            Ev::Apply { new, .. } => new.clone(),
            Ev::Delete(o) => o.clone(),
            Ev::Resync => return,
        };
        if let Some(svc) = managed_service(&s) {
            q.add(key(s.namespace().as_deref(), &svc));
        }
    });
    let c2 = c.clone();
    c.sh.pods.on_event(move |ev| c2.pod_event(ev));
    let c3 = c.clone();
    tokio::spawn(async move {
        c3.sh.pods.wait_synced().await;
        c3.services.wait_synced().await;
        c3.slices.wait_synced().await;
        for s in c3.services.list(None) {
            c3.queue.add(key_of(&*s));
        }
        let c4 = c3.clone();
        c3.queue.run("endpointslice", 2, move |k| {
            let c = c4.clone();
            async move { c.sync(&k).await }
        });
    });
}

/// The Service a slice belongs to, if this controller manages it.
fn managed_service(s: &EndpointSlice) -> Option<String> {
    let l = s.metadata.labels.as_ref()?;
    (l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
        .then(|| l.get(SERVICE_NAME_LABEL).cloned())
        .flatten()
}

fn selects(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One endpoint's port for one Service port, or `None` when a named target
/// port is not among the pod's container ports.
fn resolve_port(pod: &Pod, target: Option<&IntOrString>, port: i32, proto: &str) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                })
                .map(|p| p.container_port)
        }
    }
}

/// One pod as an endpoint.
struct Ep {
    ip: String,
    ready: bool,
    serving: bool,
    terminating: bool,
    pod: Arc<Pod>,
}

impl Esc {
    fn pod_event(&self, ev: Ev<Pod>) {
        let pods: Vec<Arc<Pod>> = match ev {
            Ev::Apply { new, old } => {
                if old
                    .as_ref()
                    .is_some_and(|o| o.resource_version() == new.resource_version())
                {
                    return;
                }
                std::iter::once(new).chain(old).collect()
            }
            Ev::Delete(p) => vec![p],
            Ev::Resync => {
                for s in self.services.list(None) {
                    self.queue.add(key_of(&*s));
                }
                return;
            }
        };
        for p in pods {
            let labels = util::labels_of(&p.metadata);
            for s in self.services.list(p.namespace().as_deref()) {
                let sel = s.spec.as_ref().and_then(|s| s.selector.as_ref());
                if sel.is_some_and(|sel| selects(sel, &labels)) {
                    self.queue.add(key_of(&*s));
                }
            }
        }
    }

    async fn sync(&self, k: &str) -> Outcome {
        let (ns, name) = split_key(k);
        let ns = ns.unwrap_or("default");
        let slices_api: Api<EndpointSlice> = Api::namespaced(self.sh.client.clone(), ns);
        let eps_api: Api<Endpoints> = Api::namespaced(self.sh.client.clone(), ns);
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .list(Some(ns))
            .into_iter()
            .filter(|s| managed_service(s).as_deref() == Some(name))
            .collect();
        let svc = self.services.get_in(Some(ns), name);
        let selector = svc
            .as_ref()
            .filter(|s| !util::is_deleting(&s.metadata))
            .and_then(|s| s.spec.as_ref())
            .filter(|sp| sp.type_.as_deref() != Some("ExternalName"))
            .and_then(|sp| sp.selector.clone());
        let (Some(svc), Some(selector)) = (svc, selector) else {
            // Gone, or without a selector (its endpoints are the user's):
            // remove what this controller made.
            for s in existing {
                delete_ignoring_missing(&slices_api, &s.name_any()).await?;
            }
            if self.services.get_in(Some(ns), name).is_none() {
                delete_ignoring_missing(&eps_api, name).await?;
            }
            return Ok(None);
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        let headless = spec.cluster_ip.as_deref() == Some("None");

        // Endpoints per distinct port set (upstream groups the same way).
        let mut groups: BTreeMap<Vec<(String, i32, String)>, Vec<Ep>> = BTreeMap::new();
        for pod in self.sh.pods.list(Some(ns)) {
            if !selects(&selector, &util::labels_of(&pod.metadata))
                || matches!(util::pod_phase(&pod), "Succeeded" | "Failed")
            {
                continue;
            }
            let Some(ip) = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .filter(|ip| !ip.is_empty())
            else {
                continue;
            };
            let mut ports = Vec::new();
            for p in spec.ports.iter().flatten() {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                if let Some(n) = resolve_port(&pod, p.target_port.as_ref(), p.port, &proto) {
                    ports.push((p.name.clone().unwrap_or_default(), n, proto));
                }
            }
            let terminating = util::is_deleting(&pod.metadata);
            let serving = util::pod_ready(&pod) || publish_not_ready;
            groups.entry(ports).or_default().push(Ep {
                ip,
                ready: serving && (!terminating || publish_not_ready),
                serving,
                terminating,
                pod,
            });
        }
        if groups.is_empty() && spec.ports.as_ref().is_some_and(|p| !p.is_empty()) {
            // No endpoints: one empty slice, so clients see the Service has none.
            groups.insert(Vec::new(), Vec::new());
        }

        let mut labels: BTreeMap<String, String> = svc.labels().clone();
        labels.insert(SERVICE_NAME_LABEL.into(), name.into());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        if headless {
            labels.insert(HEADLESS_LABEL.into(), String::new());
        }
        let owner = util::controller_ref_to(&*svc);

        // Reuse a slice whose ports already match, then any other one.
        let mut unused: Vec<Arc<EndpointSlice>> = existing;
        unused.sort_by_key(|s| s.name_any());
        for (ports, eps) in &groups {
            let ports_json: Vec<Value> = ports
                .iter()
                .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
                .collect();
            let endpoints: Vec<Value> = eps
                .iter()
                .map(|e| {
                    let mut v = json!({
                        "addresses": [e.ip],
                        "conditions": {"ready": e.ready, "serving": e.serving,
                                       "terminating": e.terminating},
                        "targetRef": {"kind": "Pod", "namespace": ns,
                                      "name": e.pod.name_any(),
                                      "uid": e.pod.metadata.uid},
                    });
                    let ps = e.pod.spec.as_ref();
                    if let Some(n) = ps.and_then(|s| s.node_name.as_ref()) {
                        v["nodeName"] = json!(n);
                    }
                    // Per-pod DNS names of headless services (StatefulSets).
                    if let (Some(h), Some(sub)) = (
                        ps.and_then(|s| s.hostname.as_ref()),
                        ps.and_then(|s| s.subdomain.as_ref()),
                    ) {
                        if sub == name {
                            v["hostname"] = json!(h);
                        }
                    }
                    v
                })
                .collect();
            let pos = unused
                .iter()
                .position(|s| same_ports(s, &ports_json))
                .or(if unused.is_empty() { None } else { Some(0) });
            let mut desired = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"namespace": ns, "labels": labels,
                             "ownerReferences": [owner]},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports_json,
            });
            match pos {
                Some(i) => {
                    let cur = unused.remove(i);
                    if slice_matches(&cur, &desired) {
                        continue;
                    }
                    desired["metadata"]["name"] = json!(cur.name_any());
                    desired["metadata"]["resourceVersion"] = json!(cur.resource_version());
                    let s: EndpointSlice = serde_json::from_value(desired)?;
                    slices_api
                        .replace(&cur.name_any(), &PostParams::default(), &s)
                        .await
                        .with_context(|| format!("updating EndpointSlice {}", cur.name_any()))?;
                }
                None => {
                    desired["metadata"]["generateName"] = json!(format!("{name}-"));
                    let s: EndpointSlice = serde_json::from_value(desired)?;
                    slices_api
                        .create(&PostParams::default(), &s)
                        .await
                        .with_context(|| format!("creating an EndpointSlice for Service {name}"))?;
                }
            }
        }
        for s in unused {
            delete_ignoring_missing(&slices_api, &s.name_any()).await?;
        }

        self.sync_endpoints(&eps_api, &svc, &groups, publish_not_ready, headless)
            .await?;
        Ok(None)
    }

    /// The legacy Endpoints object (same name as the Service): ready
    /// addresses, not-ready ones, terminating pods left out unless the
    /// Service publishes not-ready addresses.
    async fn sync_endpoints(
        &self,
        api: &Api<Endpoints>,
        svc: &Service,
        groups: &BTreeMap<Vec<(String, i32, String)>, Vec<Ep>>,
        publish_not_ready: bool,
        headless: bool,
    ) -> Result<()> {
        let name = svc.name_any();
        let mut subsets = Vec::new();
        for (ports, eps) in groups {
            let addr = |e: &Ep| {
                json!({"ip": e.ip, "nodeName": e.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                       "targetRef": {"kind": "Pod", "namespace": e.pod.namespace(),
                                     "name": e.pod.name_any(), "uid": e.pod.metadata.uid}})
            };
            let ready: Vec<Value> = eps.iter().filter(|e| e.ready).map(addr).collect();
            let not_ready: Vec<Value> = eps
                .iter()
                .filter(|e| !e.ready && (!e.terminating || publish_not_ready))
                .map(addr)
                .collect();
            if ready.is_empty() && not_ready.is_empty() {
                continue;
            }
            let mut s = json!({
                "ports": ports.iter().map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto})).collect::<Vec<_>>(),
            });
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            subsets.push(s);
        }
        let mut labels: BTreeMap<String, String> = svc.labels().clone();
        if headless {
            labels.insert(HEADLESS_LABEL.into(), String::new());
        }
        let mut desired = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": svc.namespace(), "labels": labels},
            "subsets": subsets,
        });
        match api.get_opt(&name).await? {
            Some(cur) => {
                let cur_v = serde_json::to_value(&cur)?;
                let same_subsets = cur_v.get("subsets").cloned().unwrap_or(json!([]))
                    == desired["subsets"]
                    && cur.metadata.labels.clone().unwrap_or_default() == labels;
                if same_subsets {
                    return Ok(());
                }
                desired["metadata"]["resourceVersion"] = json!(cur.resource_version());
                let e: Endpoints = serde_json::from_value(desired)?;
                api.replace(&name, &PostParams::default(), &e)
                    .await
                    .with_context(|| format!("updating Endpoints {name}"))?;
            }
            None => {
                let e: Endpoints = serde_json::from_value(desired)?;
                api.create(&PostParams::default(), &e)
                    .await
                    .with_context(|| format!("creating Endpoints {name}"))?;
            }
        }
        Ok(())
    }
}

fn same_ports(s: &EndpointSlice, ports: &[Value]) -> bool {
    let cur = serde_json::to_value(&s.ports).unwrap_or(Value::Null);
    cur.as_array().map(Vec::as_slice).unwrap_or_default() == ports
}

/// Does the cached slice already hold what `desired` describes?
fn slice_matches(cur: &EndpointSlice, desired: &Value) -> bool {
    let Ok(d) = serde_json::from_value::<EndpointSlice>(desired.clone()) else {
        return false;
    };
    let set = |s: &EndpointSlice| -> BTreeSet<String> {
        s.endpoints
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect()
    };
    cur.metadata.labels == d.metadata.labels
        && cur.metadata.owner_references == d.metadata.owner_references
        && cur.ports == d.ports
        && set(cur) == set(&d)
}

async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting {} {name}", K::kind(&()))),
    }
}
