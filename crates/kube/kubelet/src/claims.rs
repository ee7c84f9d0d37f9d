//! `persistentVolumeClaim` volumes: each claim is resolved to the PersistentVolume it is
//! bound to and the PV's source (hostPath or local: a directory on this node) stands in
//! for the claim, as upstream's kubelet mounts the PV's volume spec. A claim that is not
//! bound yet keeps the pod waiting (the caller records a FailedMount event).

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod,
};
use kube::{Api, Client};

/// The pod with its claims replaced by their volumes' host paths (claims asking for
/// `readOnly` make every mount of them read-only), or why it must wait.
pub async fn resolve(client: &Client, pod: &Pod) -> Result<Pod, String> {
    let uses_claims = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.persistent_volume_claim.is_some()));
    if !uses_claims {
        return Ok(pod.clone());
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut out = pod.clone();
    let spec = out.spec.as_mut().expect("checked above");
    let mut read_only = Vec::new();
    for v in spec.volumes.iter_mut().flatten() {
        let Some(src) = v.persistent_volume_claim.take() else {
            continue;
        };
        let name = &src.claim_name;
        let pvc = match claims.get_opt(name).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(format!("persistentvolumeclaim {name:?} not found")),
            Err(e) => return Err(format!("getting persistentvolumeclaim {name:?}: {e}")),
        };
        let phase = pvc.status.as_ref().and_then(|s| s.phase.clone());
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if phase.as_deref() != Some("Bound") || pv_name.is_empty() {
            return Err(format!(
                "PVC {ns}/{name} has non-bound phase ({:?}) or empty pvc.Spec.VolumeName ({pv_name:?})",
                phase.unwrap_or_default()
            ));
        }
        let pv = match volumes.get_opt(&pv_name).await {
            Ok(Some(pv)) => pv,
            Ok(None) => return Err(format!("persistentvolume {pv_name:?} not found")),
            Err(e) => return Err(format!("getting persistentvolume {pv_name:?}: {e}")),
        };
        let pv_spec = pv.spec.unwrap_or_default();
        let bound_to = pv_spec.claim_ref.as_ref().and_then(|r| r.uid.clone());
        if bound_to.is_none() || bound_to != pvc.metadata.uid {
            return Err(format!(
                "persistentvolume {pv_name:?} is not bound to claim {ns}/{name}"
            ));
        }
        v.host_path = if let Some(h) = pv_spec.host_path {
            Some(h)
        } else if let Some(l) = pv_spec.local {
            Some(HostPathVolumeSource {
                path: l.path,
                type_: Some("Directory".into()),
            })
        } else {
            return Err(format!(
                "persistentvolume {pv_name:?}: only hostPath and local volumes can be mounted"
            ));
        };
        if src.read_only == Some(true) {
            read_only.push(v.name.clone());
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        for m in c.volume_mounts.iter_mut().flatten() {
            if read_only.contains(&m.name) {
                m.read_only = Some(true);
            }
        }
    }
    Ok(out)
}
