//! LoadBalancer Services on a single node, as k3s's ServiceLB: kube-proxy
//! answers a LoadBalancer Service's own port on every node address (host
//! ports), and this controller fills `status.loadBalancer.ingress` with the
//! nodes' addresses (InternalIP, else ExternalIP) so clients (and
//! `kubectl get svc`'s EXTERNAL-IP) see where it is reachable.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use serde_json::{json, Value};

use crate::informer::{key_of, split_key, Ev, Informer};
use crate::queue::{Outcome, Queue};
use crate::util;
use crate::Shared;

pub fn start(sh: Arc<Shared>) {
    let services: Arc<Informer<Service>> = Informer::start(Api::all(sh.client.clone()));
    let queue = Queue::new();
    let q = queue.clone();
    services.on_event(move |ev| {
        if let Ev::Apply { new, .. } = ev {
            q.add(key_of(&*new));
        }
    });
    // A node's addresses changing moves every LoadBalancer.
    let (q, svcs) = (queue.clone(), services.clone());
    sh.nodes.on_event(move |_: Ev<Node>| {
        for s in svcs.list(None) {
            q.add(key_of(&*s));
        }
    });
    tokio::spawn(async move {
        services.wait_synced().await;
        sh.nodes.wait_synced().await;
        for s in services.list(None) {
            queue.add(key_of(&*s));
        }
        queue.clone().run("servicelb", 1, move |k| {
            let (sh, services) = (sh.clone(), services.clone());
            async move { sync(&sh, &services, &k).await }
        });
    });
}

fn node_ips(sh: &Shared) -> Vec<String> {
    let mut ips: Vec<String> = sh
        .nodes
        .list(None)
        .iter()
        .filter_map(|n| {
            let addrs = n.status.as_ref()?.addresses.clone()?;
            addrs
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .or_else(|| addrs.iter().find(|a| a.type_ == "ExternalIP"))
                .map(|a| a.address.clone())
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

async fn sync(sh: &Shared, services: &Informer<Service>, k: &str) -> Outcome {
    let (ns, name) = split_key(k);
    let Some(svc) = services.get(k) else {
        return Ok(None);
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let ingress: Vec<Value> = if spec.type_.as_deref() == Some("LoadBalancer") {
        let ports: Vec<Value> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| json!({"port": p.port, "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())}))
            .collect();
        node_ips(sh)
            .into_iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP", "ports": ports}))
            .collect()
    } else {
        Vec::new()
    };
    let current = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    if serde_json::to_value(&current)? == json!(ingress) {
        return Ok(None);
    }
    let api: Api<Service> = Api::namespaced(sh.client.clone(), ns.unwrap_or("default"));
    // Merge patch: the list is replaced whole, null removes it.
    let lb = if ingress.is_empty() {
        json!({"ingress": null})
    } else {
        json!({"ingress": ingress})
    };
    util::patch_status(&api, name, json!({"loadBalancer": lb})).await?;
    Ok(None)
}
