//! A dynamic local provisioner, as rancher's local-path-provisioner (k3s's default
//! storage): a claim of a class whose provisioner is `rancher.io/local-path` (or
//! `hako.io/local-path`) gets a directory `pvc-UID_NAMESPACE_NAME` under the base
//! directory and a PersistentVolume with that `hostPath` and a node affinity to the node
//! it was provisioned for; deleting such a PV (reclaim policy Delete) removes the
//! directory. The controllers run on the node's host (one-host clusters), so the
//! directory is made here rather than by a helper pod as upstream's provisioner does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

/// The class `hako kube up` installs as the default, as k3s does.
pub const CLASS: &str = "local-path";
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The provisioner names this one answers to.
pub const PROVISIONERS: [&str; 2] = [PROVISIONER, "hako.io/local-path"];
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const SELECTED_NODE: &str = "local.path.provisioner/selected-node";

#[derive(Debug, Clone)]
pub struct LocalPath {
    pub base: PathBuf,
}

impl LocalPath {
    pub fn handles(provisioner: &str) -> bool {
        PROVISIONERS.contains(&provisioner)
    }

    /// The PV name for a claim, as upstream's provisioners name them.
    pub fn volume_name(pvc: &PersistentVolumeClaim) -> String {
        format!("pvc-{}", pvc.metadata.uid.as_deref().unwrap_or(""))
    }

    fn dir_for(&self, pvc: &PersistentVolumeClaim) -> PathBuf {
        self.base.join(format!(
            "{}_{}_{}",
            Self::volume_name(pvc),
            pvc.namespace().unwrap_or_default(),
            pvc.name_any()
        ))
    }

    /// Create the claim's directory and its PV (pre-bound to the claim) on `node`.
    pub async fn provision(
        &self,
        client: &Client,
        pvc: &PersistentVolumeClaim,
        class: &StorageClass,
        node: &str,
    ) -> Result<String> {
        let name = Self::volume_name(pvc);
        let dir = self.dir_for(pvc);
        std::fs::create_dir_all(&dir).with_context(|| {
            format!("creating the directory {} of volume {name}", dir.display())
        })?;
        // World-writable, as local-path-provisioner makes them: pods run as any user.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
        let spec = pvc.spec.clone().unwrap_or_default();
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage").cloned())
            .context("the claim requests no storage")?;
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                annotations: Some(BTreeMap::from([
                    (PROVISIONED_BY.to_string(), class.provisioner.clone()),
                    (SELECTED_NODE.to_string(), node.to_string()),
                ])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(BTreeMap::from([("storage".to_string(), size)])),
                access_modes: spec.access_modes.clone(),
                persistent_volume_reclaim_policy: Some(
                    class
                        .reclaim_policy
                        .clone()
                        .unwrap_or_else(|| "Delete".into()),
                ),
                storage_class_name: Some(class.name_any()),
                volume_mode: spec.volume_mode.clone(),
                host_path: Some(HostPathVolumeSource {
                    path: dir.display().to_string(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec![node.to_string()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                }),
                claim_ref: Some(ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: pvc.namespace(),
                    name: Some(pvc.name_any()),
                    uid: pvc.metadata.uid.clone(),
                    resource_version: pvc.metadata.resource_version.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        };
        let api: Api<PersistentVolume> = Api::all(client.clone());
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => Ok(name),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(name),
            Err(e) => {
                Err(e).with_context(|| format!("creating PersistentVolume {name} for the claim"))
            }
        }
    }

    /// Remove the directory of a volume this provisioner made (only under the base).
    pub fn delete(&self, pv: &PersistentVolume) -> Result<()> {
        let Some(path) = pv
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| PathBuf::from(&h.path))
        else {
            return Ok(());
        };
        if !within(&self.base, &path) {
            anyhow::bail!(
                "volume {}: {} is not under the provisioner's directory {}",
                pv.name_any(),
                path.display(),
                self.base.display()
            );
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "removing the directory {} of volume {}",
                    path.display(),
                    pv.name_any()
                )
            }),
        }
    }
}

/// `path` is a direct child of `base` (no `..` games).
fn within(base: &Path, path: &Path) -> bool {
    path.parent() == Some(base)
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("pvc-") && n != "." && n != "..")
}

/// Install the `local-path` StorageClass as the default unless a class of that name
/// exists (an edited or non-default one is left alone); retried until the API answers.
pub async fn install_default_class(client: Client) {
    let api: Api<StorageClass> = Api::all(client);
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            annotations: Some(BTreeMap::from([(
                DEFAULT_CLASS.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    };
    loop {
        let r = match api.get_opt(CLASS).await {
            Ok(Some(_)) => return,
            Ok(None) => api.create(&PostParams::default(), &class).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) => tracing::warn!("installing the {CLASS} StorageClass: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
