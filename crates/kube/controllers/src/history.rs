//! ControllerRevisions (upstream's pkg/controller/history): StatefulSets and
//! DaemonSets snapshot each pod template they have run as a revision named
//! `OWNER-HASH`, numbered in order; rolling back to an old template reuses
//! (and renumbers) its revision.

use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};

use crate::util;

/// The label pods carry with the name of their revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What a revision stores: the template as a patch that replaces the owner's
/// (upstream's form, so `kubectl rollout undo` can apply it).
pub fn data_of(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

pub fn template_of(cr: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = cr.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn same(cr: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    template_of(cr)
        .is_some_and(|t| util::normalized_template(&t) == util::normalized_template(template))
}

/// Find or make the revision of `template` among `owned` (the owner's
/// revisions); returns it and every revision of the owner, oldest first.
pub async fn sync<O>(
    client: &Client,
    owner: &O,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
    mut owned: Vec<ControllerRevision>,
) -> Result<(ControllerRevision, Vec<ControllerRevision>)>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    owned.sort_by_key(|r| r.revision);
    let ns = owner.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let max = owned.last().map(|r| r.revision).unwrap_or(0);
    if let Some(i) = owned.iter().rposition(|r| same(r, template)) {
        if owned[i].revision < max {
            // A rollback: the old revision becomes the newest.
            let name = owned[i].name_any();
            let updated = util::merge_patch(&api, &name, json!({"revision": max + 1})).await?;
            owned.remove(i);
            owned.push(updated);
            return Ok((owned.last().cloned().unwrap(), owned));
        }
        return Ok((owned[i].clone(), owned));
    }
    let hash = util::template_hash(template, collision_count);
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.clone());
    let cr = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.name_any())),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            owner_references: Some(vec![util::controller_ref_to(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data_of(template))),
        revision: max + 1,
    };
    let created = match api.create(&PostParams::default(), &cr).await {
        Ok(c) => c,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&cr.name_any()).await?;
            let ours = util::controller_of(&existing.metadata)
                .is_some_and(|r| Some(&r.uid) == owner.meta().uid.as_ref());
            if !(ours && same(&existing, template)) {
                anyhow::bail!("hash collision for ControllerRevision {}", cr.name_any());
            }
            existing
        }
        Err(e) => {
            return Err(e).with_context(|| format!("creating ControllerRevision {}", cr.name_any()))
        }
    };
    owned.retain(|r| r.name_any() != created.name_any());
    owned.push(created.clone());
    Ok((created, owned))
}

/// Delete the oldest revisions beyond `limit`, except those in `keep`.
pub async fn truncate(
    client: &Client,
    ns: &str,
    revisions: &[ControllerRevision],
    keep: &[String],
    limit: usize,
) -> Result<()> {
    let old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !keep.contains(&r.name_any()))
        .collect();
    if old.len() <= limit {
        return Ok(());
    }
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    for r in &old[..old.len() - limit] {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("deleting ControllerRevision {}", r.name_any()))
            }
        }
    }
    Ok(())
}

/// The revisions `owner` controls, from the cache.
pub fn owned_by<O: Resource>(
    owner: &O,
    all: Vec<Arc<ControllerRevision>>,
) -> Vec<ControllerRevision> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    all.into_iter()
        .filter(|r| util::controller_of(&r.metadata).is_some_and(|c| c.uid == uid))
        .map(|r| (*r).clone())
        .collect()
}
