//! Shared informers: one watch per kind for the whole process (upstream's
//! SharedInformerFactory), a local cache every controller reads, and a
//! broadcast of what changed (with the previous version of the object) that
//! controllers turn into work-queue keys.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};

/// What an informer saw.
#[derive(Debug, Clone)]
pub enum Ev<K> {
    /// Added (`old` is `None`) or modified.
    Apply {
        new: Arc<K>,
        old: Option<Arc<K>>,
    },
    Delete(Arc<K>),
    /// The subscriber fell behind and lost events: reconcile everything.
    Resync,
}

/// The cache key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key_of<K: Resource>(obj: &K) -> String {
    key(obj.meta().namespace.as_deref(), &obj.name_any())
}

pub fn key(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Split a key back into namespace and name.
pub fn split_key(k: &str) -> (Option<&str>, &str) {
    match k.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, k),
    }
}

pub struct Informer<K> {
    items: RwLock<HashMap<String, Arc<K>>>,
    tx: broadcast::Sender<Ev<K>>,
    synced: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// Start watching `api` (all namespaces); the watch restarts with back-off
    /// after errors and re-lists after a 410.
    pub fn start(api: Api<K>) -> Arc<Self> {
        Self::start_named(api, K::plural(&Default::default()).to_string())
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// [`Informer::start`] for kinds known at run time (`what` names them in logs).
    pub fn start_named(api: Api<K>, what: String) -> Arc<Self> {
        let (tx, _) = broadcast::channel(8192);
        let (synced, _) = watch::channel(false);
        let inf = Arc::new(Informer {
            items: RwLock::new(HashMap::new()),
            tx,
            synced,
        });
        let me = inf.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut buffer: HashMap<String, Arc<K>> = HashMap::new();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => me.apply(ev, &mut buffer),
                    Err(e) => tracing::warn!("watching {what}: {e}"),
                }
            }
        });
        inf
    }

    fn apply(&self, ev: Event<K>, buffer: &mut HashMap<String, Arc<K>>) {
        match ev {
            Event::Init => buffer.clear(),
            Event::InitApply(o) => {
                buffer.insert(key_of(&o), Arc::new(o));
            }
            Event::InitDone => {
                let fresh = std::mem::take(buffer);
                let old = {
                    let mut items = self.items.write().unwrap();
                    std::mem::replace(&mut *items, fresh.clone())
                };
                for (k, o) in &old {
                    if !fresh.contains_key(k) {
                        let _ = self.tx.send(Ev::Delete(o.clone()));
                    }
                }
                for (k, o) in fresh {
                    let prev = old.get(&k).cloned();
                    let unchanged = prev
                        .as_ref()
                        .is_some_and(|p| p.resource_version() == o.resource_version());
                    if !unchanged {
                        let _ = self.tx.send(Ev::Apply { new: o, old: prev });
                    }
                }
                self.synced.send_replace(true);
            }
            Event::Apply(o) => {
                let o = Arc::new(o);
                let old = self.items.write().unwrap().insert(key_of(&*o), o.clone());
                let _ = self.tx.send(Ev::Apply { new: o, old });
            }
            Event::Delete(o) => {
                let k = key_of(&o);
                let gone = self
                    .items
                    .write()
                    .unwrap()
                    .remove(&k)
                    .unwrap_or_else(|| Arc::new(o));
                let _ = self.tx.send(Ev::Delete(gone));
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.items.read().unwrap().get(key).cloned()
    }

    pub fn get_in(&self, ns: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.get(&key(ns, name))
    }

    /// All cached objects, or those of one namespace.
    pub fn list(&self, ns: Option<&str>) -> Vec<Arc<K>> {
        self.items
            .read()
            .unwrap()
            .values()
            .filter(|o| ns.is_none() || o.meta().namespace.as_deref() == ns)
            .cloned()
            .collect()
    }

    /// Wait until the first list has been loaded.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Call `f` for each event, on a task of its own; a subscriber that falls
    /// behind gets [`Ev::Resync`].
    pub fn on_event(&self, f: impl Fn(Ev<K>) + Send + 'static) {
        let mut rx = self.tx.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => f(ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => f(Ev::Resync),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}
