//! The namespace controller (upstream's pkg/controller/namespace): a
//! namespace being deleted (phase Terminating, the `kubernetes` finalizer in
//! spec.finalizers) has everything in it deleted; once nothing is left, the
//! finalizer is removed through the `finalize` subresource and the API
//! server deletes the namespace.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};

use crate::gc::{self, Kind};
use crate::informer::{key_of, Ev, Informer};
use crate::queue::{Outcome, Queue};

const FINALIZER: &str = "kubernetes";

struct Nc {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    queue: Arc<Queue>,
}

pub fn start(sh: Arc<crate::Shared>) {
    let c = Arc::new(Nc {
        namespaces: sh.namespaces.clone(),
        queue: Queue::new(),
        client: sh.client.clone(),
    });
    let q = c.queue.clone();
    c.namespaces.on_event(move |ev| {
        if let Ev::Apply { new, .. } = ev {
            if new.metadata.deletion_timestamp.is_some() {
                q.add(key_of(&*new));
            }
        }
    });
    let c2 = c.clone();
    tokio::spawn(async move {
        c2.namespaces.wait_synced().await;
        let c3 = c2.clone();
        c2.queue.run("namespace", 1, move |k| {
            let c = c3.clone();
            async move { c.sync(&k).await }
        });
    });
}

impl Nc {
    async fn sync(&self, name: &str) -> Outcome {
        let Some(ns) = self.namespaces.get(name) else {
            return Ok(None);
        };
        let holds = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        if !holds {
            // Already finalized (a delete after it may have failed): delete again.
            return match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                Err(e) => Err(e).with_context(|| format!("deleting finalized namespace {name}")),
            };
        }
        // Discovery each time: kinds may have been added since the last one.
        let kinds = gc::discover(&self.client).await?;
        let left = self.delete_contents(name, &kinds).await?;
        if left > 0 {
            // Objects with finalizers of their own (or foreground deletions)
            // take a while: look again.
            return Ok(Some(Duration::from_secs(1)));
        }
        let mut fin = (*ns).clone();
        if let Some(spec) = fin.spec.as_mut() {
            spec.finalizers = Some(
                spec.finalizers
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != FINALIZER)
                    .collect(),
            );
        }
        let body = serde_json::to_vec(&fin)?;
        match api
            .replace_subresource("finalize", name, &PostParams::default(), body)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("finalizing namespace {name}")),
        }
        // Finalized: deleting again removes it (as upstream's deleter does
        // once a namespace has no finalizers left).
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e).with_context(|| format!("deleting finalized namespace {name}")),
        }
    }

    /// Delete every object in the namespace; how many are still there.
    async fn delete_contents(&self, ns: &str, kinds: &[Kind]) -> Result<usize> {
        let mut left = 0;
        for k in kinds.iter().filter(|k| k.namespaced) {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &k.ar);
            let list = api
                .list(&ListParams::default())
                .await
                .with_context(|| format!("listing {} in namespace {ns}", k.ar.plural))?;
            for o in list.items {
                left += 1;
                if o.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match api.delete(&o.name_any(), &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("deleting {} {} in namespace {ns}", k.ar.kind, o.name_any())
                        })
                    }
                }
            }
        }
        Ok(left)
    }
}
