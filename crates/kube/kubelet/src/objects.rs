//! The ConfigMaps and Secrets a pod uses (env, envFrom, volumes, projected sources),
//! read from the API at each sync so volumes follow their changes; immutable objects
//! are read once and kept, as upstream's kubelet does.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::Api;
use kube::api::PostParams;

use crate::spec::namespace;

/// The objects a pod refers to, by name; None when it does not exist.
#[derive(Default)]
pub struct PodObjects {
    pub config_maps: HashMap<String, Option<Arc<ConfigMap>>>,
    pub secrets: HashMap<String, Option<Arc<Secret>>>,
    /// Service account tokens of projected volumes, by (audience, expirationSeconds).
    pub tokens: HashMap<(String, i64), String>,
}

/// Immutable objects already read, by `kind/namespace/name`.
#[derive(Default)]
pub struct ImmutableCache {
    config_maps: Mutex<HashMap<String, Arc<ConfigMap>>>,
    secrets: Mutex<HashMap<String, Arc<Secret>>>,
    /// Tokens by `pod uid/audience/expiration`, with when to ask for a new one.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// The names of the ConfigMaps and Secrets `pod` refers to.
pub fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (cms, secrets);
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for e in c.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    cms.insert(r.name.clone());
                }
                if let Some(r) = &vf.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cms.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &s.config_map {
                cms.insert(c.name.clone());
            }
            if let Some(c) = &s.secret {
                secrets.insert(c.name.clone());
            }
        }
    }
    (cms, secrets)
}

impl ImmutableCache {
    /// Read the objects `pod` refers to (immutable ones from the cache).
    pub async fn fetch(&self, client: &kube::Client, pod: &Pod) -> Result<PodObjects> {
        let ns = namespace(pod);
        let (cms, secrets) = referenced(pod);
        let mut out = PodObjects::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for name in cms {
            let key = format!("{ns}/{name}");
            let cached = self
                .config_maps
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned());
            let obj = match cached {
                Some(o) => Some(o),
                None => {
                    let o = cm_api
                        .get_opt(&name)
                        .await
                        .with_context(|| format!("reading configmap {ns}/{name}"))?
                        .map(Arc::new);
                    if let Some(o) = o.as_ref().filter(|o| o.immutable == Some(true)) {
                        if let Ok(mut m) = self.config_maps.lock() {
                            m.insert(key, o.clone());
                        }
                    }
                    o
                }
            };
            out.config_maps.insert(name, obj);
        }
        let s_api: Api<Secret> = Api::namespaced(client.clone(), ns);
        for name in secrets {
            let key = format!("{ns}/{name}");
            let cached = self.secrets.lock().ok().and_then(|m| m.get(&key).cloned());
            let obj = match cached {
                Some(o) => Some(o),
                None => {
                    let o = s_api
                        .get_opt(&name)
                        .await
                        .with_context(|| format!("reading secret {ns}/{name}"))?
                        .map(Arc::new);
                    if let Some(o) = o.as_ref().filter(|o| o.immutable == Some(true)) {
                        if let Ok(mut m) = self.secrets.lock() {
                            m.insert(key, o.clone());
                        }
                    }
                    o
                }
            };
            out.secrets.insert(name, obj);
        }
        self.fetch_tokens(client, pod, &mut out).await?;
        Ok(out)
    }

    /// The tokens of the pod's projected serviceAccountToken sources, from the
    /// TokenRequest API, asked again once 80% of their life is over (as upstream).
    async fn fetch_tokens(
        &self,
        client: &kube::Client,
        pod: &Pod,
        out: &mut PodObjects,
    ) -> Result<()> {
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(());
        };
        let sa = spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace(pod));
        for t in spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.projected.as_ref())
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.service_account_token.as_ref())
        {
            let audience = t.audience.clone().unwrap_or_default();
            let exp = t.expiration_seconds.unwrap_or(3607);
            let key = format!("{uid}/{audience}/{exp}");
            let cached = self.tokens.lock().ok().and_then(|m| {
                m.get(&key)
                    .filter(|(_, renew)| Instant::now() < *renew)
                    .map(|(t, _)| t.clone())
            });
            let token = match cached {
                Some(t) => t,
                None => {
                    let req = TokenRequest {
                        spec: TokenRequestSpec {
                            audiences: if audience.is_empty() {
                                vec![]
                            } else {
                                vec![audience.clone()]
                            },
                            expiration_seconds: Some(exp),
                            bound_object_ref: Some(BoundObjectReference {
                                api_version: Some("v1".into()),
                                kind: Some("Pod".into()),
                                name: pod.metadata.name.clone(),
                                uid: pod.metadata.uid.clone(),
                            }),
                        },
                        ..Default::default()
                    };
                    let body = serde_json::to_vec(&req).context("encoding a TokenRequest")?;
                    let r: TokenRequest = api
                        .create_subresource("token", &sa, &PostParams::default(), body)
                        .await
                        .with_context(|| format!("requesting a token of service account {sa:?}"))?;
                    let tok = r.status.map(|s| s.token).unwrap_or_default();
                    let renew = Instant::now() + Duration::from_secs((exp.max(60) as u64) * 8 / 10);
                    if let Ok(mut m) = self.tokens.lock() {
                        m.insert(key, (tok.clone(), renew));
                    }
                    tok
                }
            };
            out.tokens.insert((audience, exp), token);
        }
        Ok(())
    }

    /// Forget the tokens of a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            m.retain(|k, _| !k.starts_with(&format!("{uid}/")));
        }
    }
}

impl PodObjects {
    /// The string value of `key` in ConfigMap `name` (data, then binaryData).
    pub fn config_map_key(&self, name: &str, key: &str) -> Option<Option<String>> {
        let cm = self.config_maps.get(name)?.as_ref()?;
        Some(
            cm.data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
                .or_else(|| {
                    cm.binary_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                }),
        )
    }

    /// The value of `key` in Secret `name`.
    pub fn secret_key(&self, name: &str, key: &str) -> Option<Option<String>> {
        let s = self.secrets.get(name)?.as_ref()?;
        Some(
            s.data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned()),
        )
    }
}
