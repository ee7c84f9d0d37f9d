//! Static pods: Pod manifests in a directory (`--pod-manifest-path`), run by the kubelet
//! without the API server, with a mirror pod in the API that shows them (and their status).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams};
use sha2::Digest as _;

use crate::kubelet::Kubelet;
use crate::spec;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

/// Read one manifest as the pod the kubelet runs: named NAME-NODE, with a uid derived
/// from the node, the file and its content (a changed file is a new pod).
fn load(path: &Path, node: &str) -> Result<Pod, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading: {e}"))?;
    let mut pod: Pod = serde_saphyr::from_str(&text).map_err(|e| {
        let e = e.to_string();
        format!(
            "not a Pod: {}",
            e.lines().next().unwrap_or("").escape_debug()
        )
    })?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("the pod has no metadata.name")?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err("the pod has no containers".into());
    }
    let mut h = sha2::Sha256::new();
    h.update(node.as_bytes());
    h.update(path.to_string_lossy().as_bytes());
    h.update(text.as_bytes());
    let d = h.finalize();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod.metadata.namespace.is_none() {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(hex.clone());
    let ann = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(HASH_ANNOTATION.into(), hex);
    ann.insert(SOURCE_ANNOTATION.into(), "file".into());
    if let Some(s) = pod.spec.as_mut() {
        s.node_name = Some(node.to_string());
    }
    pod.status = None;
    Ok(pod)
}

fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            !n.starts_with('.')
                && (n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json"))
        })
        .collect();
    out.sort();
    out
}

impl Kubelet {
    /// Rescan the manifest directory every few seconds (as upstream's file source).
    pub async fn static_pods_loop(self: Arc<Self>, dir: PathBuf) {
        let mut errors: HashMap<PathBuf, String> = HashMap::new();
        loop {
            let mut now: HashMap<String, Pod> = HashMap::new();
            for path in manifests(&dir) {
                match load(&path, &self.node_name) {
                    Ok(p) => {
                        errors.remove(&path);
                        now.insert(spec::uid(&p).to_string(), p);
                    }
                    Err(e) => {
                        if errors.get(&path) != Some(&e) {
                            tracing::warn!("static pod {}: {e}", path.display());
                            errors.insert(path, e);
                        }
                    }
                }
            }
            let before: HashMap<String, Pod> = self
                .static_pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for (uid, p) in &before {
                if !now.contains_key(uid) {
                    self.remove_pod(uid);
                    // The mirror goes unless a new version of the same pod replaces it.
                    if !now.values().any(|n| n.metadata.name == p.metadata.name) {
                        self.delete_mirror(p).await;
                    }
                }
            }
            for (uid, p) in &now {
                if !before.contains_key(uid) {
                    self.update_pod(p.clone(), true);
                }
                self.ensure_mirror(p).await;
            }
            *self.static_pods.lock().unwrap_or_else(|e| e.into_inner()) = now;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    async fn delete_mirror(&self, p: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), spec::namespace(p));
        let _ = api
            .delete(
                spec::name(p),
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await;
    }

    /// Create the mirror pod of static pod `p` (again, if it was deleted or is stale).
    async fn ensure_mirror(&self, p: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), spec::namespace(p));
        let hash = spec::uid(p).to_string();
        match api.get_opt(spec::name(p)).await {
            Ok(Some(m)) => {
                let mh = m
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MIRROR_ANNOTATION));
                if mh == Some(&hash) && m.metadata.deletion_timestamp.is_none() {
                    return;
                }
                self.delete_mirror(p).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("reading mirror pod {}: {e}", spec::name(p));
                return;
            }
        }
        let mut m = p.clone();
        m.metadata.uid = None;
        m.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(MIRROR_ANNOTATION.into(), hash);
        if let Ok(Some(node)) = Api::<Node>::all(self.client.clone())
            .get_opt(&self.node_name)
            .await
        {
            m.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: self.node_name.clone(),
                uid: node.metadata.uid.unwrap_or_default(),
                controller: Some(true),
                ..Default::default()
            }]);
        }
        if let Err(e) = api.create(&PostParams::default(), &m).await {
            tracing::warn!("creating mirror pod {}: {e}", spec::name(p));
        }
    }
}
