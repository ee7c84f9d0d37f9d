//! The garbage collector (upstream's pkg/controller/garbagecollector): a
//! graph of ownerReferences over every listable kind the server serves.
//! - Background: a dependent whose owners are all gone (checked with a live
//!   read, never from a lagging cache alone) is deleted.
//! - Foreground: an owner being deleted with the `foregroundDeletion`
//!   finalizer has its dependents deleted first; once none that blocks its
//!   deletion (blockOwnerDeletion) is left, the finalizer is removed.
//! - Orphan: an owner with the `orphan` finalizer has its reference stripped
//!   from every dependent, then the finalizer removed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use std::fmt::Debug;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::discovery::{verbs, Discovery, Scope};
use kube::Resource;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::informer::{Ev, Informer};
use crate::queue::{Outcome, Queue};
use crate::Shared;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// A served kind the collector watches.
pub struct Kind {
    pub ar: ApiResource,
    pub namespaced: bool,
}

/// The kinds that can be listed, watched and deleted (events excepted: they
/// are many and own nothing).
pub async fn discover(client: &Client) -> Result<Vec<Kind>> {
    let disc = Discovery::new(client.clone())
        .run()
        .await
        .context("discovering the server's resources")?;
    let mut out = Vec::new();
    for g in disc.groups() {
        for (ar, caps) in g.recommended_resources() {
            if ar.kind == "Event" || ar.plural.contains('/') {
                continue;
            }
            if [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v))
            {
                out.push(Kind {
                    namespaced: matches!(caps.scope, Scope::Namespaced),
                    ar,
                });
            }
        }
    }
    Ok(out)
}

struct Node {
    kind: usize,
    ns: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

struct Gc {
    client: Client,
    kinds: Vec<Kind>,
    graph: Mutex<Graph>,
    queue: Arc<Queue>,
}

/// Owner state as the collector sees it.
#[derive(PartialEq)]
enum Owner {
    Solid,
    Dangling,
    /// Being deleted in the foreground: waiting for its dependents.
    Waiting,
}

/// What the graph needs of an informer event: the object's metadata.
pub enum MetaEv {
    Apply(ObjectMeta),
    Delete(ObjectMeta),
    Resync,
}

fn meta_ev<K: Resource>(ev: Ev<K>) -> MetaEv {
    match ev {
        Ev::Apply { new, .. } => MetaEv::Apply(new.meta().clone()),
        Ev::Delete(o) => MetaEv::Delete(o.meta().clone()),
        Ev::Resync => MetaEv::Resync,
    }
}

/// Feed the graph from an informer the controllers already run, instead of
/// watching that kind a second time.
fn hook<K>(
    gc: &Arc<Gc>,
    inf: &Arc<Informer<K>>,
    hooked: &mut Vec<usize>,
    waits: &mut Vec<BoxFuture<'static, ()>>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (g, v, kind) = (K::group(&()), K::version(&()), K::kind(&()));
    let Some(i) = gc
        .kinds
        .iter()
        .position(|k| k.ar.group == g && k.ar.version == v && k.ar.kind == kind)
    else {
        return;
    };
    let g2 = gc.clone();
    inf.on_event(move |ev| g2.observe(i, meta_ev(ev)));
    hooked.push(i);
    let (g3, inf) = (gc.clone(), inf.clone());
    waits.push(
        async move {
            inf.wait_synced().await;
            // Subscribed before reading the cache: later changes arrive as
            // events, so seeding with the cache misses nothing.
            for o in inf.list(None) {
                g3.observe(i, MetaEv::Apply(o.meta().clone()));
            }
        }
        .boxed(),
    );
}

pub async fn start(sh: Arc<Shared>) -> Result<()> {
    let client = sh.client.clone();
    let kinds = discover(&client).await?;
    let gc = Arc::new(Gc {
        client: client.clone(),
        graph: Mutex::new(Graph::default()),
        queue: Queue::new(),
        kinds,
    });
    let (mut hooked, mut waits) = (Vec::new(), Vec::new());
    hook(&gc, &sh.pods, &mut hooked, &mut waits);
    hook(&gc, &sh.replicasets, &mut hooked, &mut waits);
    hook(&gc, &sh.deployments, &mut hooked, &mut waits);
    hook(&gc, &sh.statefulsets, &mut hooked, &mut waits);
    hook(&gc, &sh.revisions, &mut hooked, &mut waits);
    hook(&gc, &sh.daemonsets, &mut hooked, &mut waits);
    hook(&gc, &sh.nodes, &mut hooked, &mut waits);
    hook(&gc, &sh.jobs, &mut hooked, &mut waits);
    hook(&gc, &sh.cronjobs, &mut hooked, &mut waits);
    hook(&gc, &sh.namespaces, &mut hooked, &mut waits);
    for (i, k) in gc.kinds.iter().enumerate() {
        if hooked.contains(&i) {
            continue;
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &k.ar);
        let inf = Informer::start_named(api, k.ar.plural.clone());
        let g = gc.clone();
        inf.on_event(move |ev| g.observe(i, meta_ev(ev)));
        waits.push(async move { inf.wait_synced().await }.boxed());
    }
    let gc2 = gc.clone();
    tokio::spawn(async move {
        // Never judge an owner absent before every kind has been listed.
        futures::future::join_all(waits).await;
        let gc3 = gc2.clone();
        gc2.queue.run("garbage collector", 2, move |uid| {
            let gc = gc3.clone();
            async move { gc.process(&uid).await }
        });
    });
    Ok(())
}

impl Gc {
    fn observe(&self, kind: usize, ev: MetaEv) {
        let mut g = self.graph.lock().unwrap();
        match ev {
            MetaEv::Apply(m) => {
                let Some(uid) = m.uid.clone() else {
                    return;
                };
                let owners = m.owner_references.clone().unwrap_or_default();
                let old_owners: Vec<String> = g
                    .nodes
                    .get(&uid)
                    .map(|n| n.owners.iter().map(|o| o.uid.clone()).collect())
                    .unwrap_or_default();
                for o in &old_owners {
                    if !owners.iter().any(|r| &r.uid == o) {
                        if let Some(s) = g.dependents.get_mut(o) {
                            s.remove(&uid);
                        }
                        // An owner waiting for its dependents may be free now.
                        self.queue.add(o.clone());
                    }
                }
                for o in &owners {
                    g.dependents
                        .entry(o.uid.clone())
                        .or_default()
                        .insert(uid.clone());
                }
                let node = Node {
                    kind,
                    ns: m.namespace.clone(),
                    name: m.name.clone().unwrap_or_default(),
                    deleting: m.deletion_timestamp.is_some(),
                    finalizers: m.finalizers.clone().unwrap_or_default(),
                    owners,
                };
                let interesting = !node.owners.is_empty()
                    || (node.deleting
                        && node
                            .finalizers
                            .iter()
                            .any(|f| f == FOREGROUND || f == ORPHAN));
                g.nodes.insert(uid.clone(), node);
                if interesting {
                    self.queue.add(uid);
                }
            }
            MetaEv::Delete(m) => {
                let Some(uid) = m.uid.clone() else {
                    return;
                };
                if let Some(n) = g.nodes.remove(&uid) {
                    for o in n.owners {
                        if let Some(s) = g.dependents.get_mut(&o.uid) {
                            s.remove(&uid);
                        }
                        self.queue.add(o.uid);
                    }
                }
                for d in g.dependents.remove(&uid).unwrap_or_default() {
                    self.queue.add(d);
                }
            }
            MetaEv::Resync => {
                for uid in g.nodes.keys() {
                    self.queue.add(uid.clone());
                }
            }
        }
    }

    fn api(&self, kind: usize, ns: Option<&str>) -> Api<DynamicObject> {
        let k = &self.kinds[kind];
        match (k.namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &k.ar),
            _ => Api::all_with(self.client.clone(), &k.ar),
        }
    }

    async fn process(&self, uid: &str) -> Outcome {
        let (kind, ns, name, owners, deleting, finalizers, deps) = {
            let g = self.graph.lock().unwrap();
            let Some(n) = g.nodes.get(uid) else {
                return Ok(None);
            };
            let deps: Vec<(String, Option<OwnerReference>)> = g
                .dependents
                .get(uid)
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let dn = g.nodes.get(d)?;
                    Some((d.clone(), dn.owners.iter().find(|o| o.uid == uid).cloned()))
                })
                .collect();
            (
                n.kind,
                n.ns.clone(),
                n.name.clone(),
                n.owners.clone(),
                n.deleting,
                n.finalizers.clone(),
                deps,
            )
        };
        let api = self.api(kind, ns.as_deref());
        if deleting && finalizers.iter().any(|f| f == ORPHAN) {
            for (d, _) in &deps {
                self.strip_owner(d, uid).await?;
            }
            self.remove_finalizer(&api, &name, uid, ORPHAN).await?;
            return Ok(None);
        }
        if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
            let blocking: Vec<&String> = deps
                .iter()
                .filter(|(_, r)| r.as_ref().and_then(|r| r.block_owner_deletion) == Some(true))
                .map(|(d, _)| d)
                .collect();
            if blocking.is_empty() {
                self.remove_finalizer(&api, &name, uid, FOREGROUND).await?;
                return Ok(None);
            }
            for (d, _) in &deps {
                self.queue.add(d.clone());
            }
            // Dependents going away wake us; check again now and then anyway.
            return Ok(Some(Duration::from_secs(5)));
        }
        if owners.is_empty() || deleting {
            return Ok(None);
        }
        let mut states = Vec::new();
        for r in &owners {
            states.push((r, self.owner_state(r, ns.as_deref()).await?));
        }
        let solid = states.iter().any(|(_, s)| *s == Owner::Solid);
        let waiting = states.iter().any(|(_, s)| *s == Owner::Waiting);
        if solid {
            if states.iter().all(|(_, s)| *s == Owner::Solid) {
                return Ok(None);
            }
            // Keep the live owners; drop the dangling ones, and stop blocking
            // an owner being deleted in the foreground.
            let refs: Vec<OwnerReference> = states
                .iter()
                .filter(|(_, s)| *s != Owner::Dangling)
                .map(|(r, s)| {
                    let mut r = (*r).clone();
                    if *s == Owner::Waiting {
                        r.block_owner_deletion = Some(false);
                    }
                    r
                })
                .collect();
            self.patch_refs(&api, &name, uid, refs).await?;
            return Ok(None);
        }
        // Every owner is gone or going: delete this dependent, in the
        // foreground if an owner waits for it and it has dependents of its own.
        let policy = if waiting && !deps.is_empty() {
            "Foreground"
        } else if finalizers.iter().any(|f| f == ORPHAN) {
            "Orphan"
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            "Foreground"
        } else {
            "Background"
        };
        let dp = DeleteParams {
            propagation_policy: Some(match policy {
                "Foreground" => kube::api::PropagationPolicy::Foreground,
                "Orphan" => kube::api::PropagationPolicy::Orphan,
                _ => kube::api::PropagationPolicy::Background,
            }),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(
            "garbage collector: deleting {} {name} ({policy})",
            self.kinds[kind].ar.kind
        );
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "deleting {} {name} whose owners are gone",
                    self.kinds[kind].ar.kind
                )
            }),
        }
    }

    /// Is the owner named by `r` there? The graph first, then a live read
    /// (the cache may lag behind a just-created owner).
    async fn owner_state(&self, r: &OwnerReference, ns: Option<&str>) -> Result<Owner> {
        let in_graph = {
            let g = self.graph.lock().unwrap();
            g.nodes.get(&r.uid).map(|n| {
                if n.deleting && n.finalizers.iter().any(|f| f == FOREGROUND) {
                    Owner::Waiting
                } else {
                    Owner::Solid
                }
            })
        };
        if let Some(s) = in_graph {
            return Ok(s);
        }
        let (group, version) = match r.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", r.api_version.as_str()),
        };
        let Some(kind) = self
            .kinds
            .iter()
            .position(|k| k.ar.group == group && k.ar.version == version && k.ar.kind == r.kind)
        else {
            // A kind this server does not serve (or the collector does not
            // know): never delete on a guess.
            return Ok(Owner::Solid);
        };
        let ns = if self.kinds[kind].namespaced {
            ns
        } else {
            None
        };
        match self.api(kind, ns).get_opt(&r.name).await {
            Ok(Some(o)) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let fg = o
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND);
                Ok(if o.metadata.deletion_timestamp.is_some() && fg {
                    Owner::Waiting
                } else {
                    Owner::Solid
                })
            }
            Ok(_) => Ok(Owner::Dangling),
            Err(e) => Err(e).with_context(|| format!("looking up owner {} {}", r.kind, r.name)),
        }
    }

    async fn patch_refs(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        uid: &str,
        refs: Vec<OwnerReference>,
    ) -> Result<()> {
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": uid}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("updating the owner references of {name}")),
        }
    }

    /// Remove the reference to `owner` from dependent `dep`.
    async fn strip_owner(&self, dep: &str, owner: &str) -> Result<()> {
        let (kind, ns, name, refs) = {
            let g = self.graph.lock().unwrap();
            let Some(n) = g.nodes.get(dep) else {
                return Ok(());
            };
            let refs: Vec<OwnerReference> = n
                .owners
                .iter()
                .filter(|r| r.uid != owner)
                .cloned()
                .collect();
            (n.kind, n.ns.clone(), n.name.clone(), refs)
        };
        let api = self.api(kind, ns.as_deref());
        self.patch_refs(&api, &name, dep, refs).await
    }

    async fn remove_finalizer(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        uid: &str,
        finalizer: &str,
    ) -> Result<()> {
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(());
        };
        if fresh.metadata.uid.as_deref() != Some(uid) {
            return Ok(());
        }
        let rest: Vec<String> = fresh
            .metadata
            .finalizers
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        let patch = json!({"metadata": {
            "finalizers": rest,
            "resourceVersion": fresh.metadata.resource_version,
        }});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("removing the {finalizer} finalizer of {name}"))
            }
        }
    }
}
