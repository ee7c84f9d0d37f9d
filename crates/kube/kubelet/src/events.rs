//! core/v1 Events, as `kubectl describe` lists them (involvedObject field selectors).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, PostParams};

/// Who reports (component and host) and where to.
#[derive(Clone)]
pub struct Recorder {
    pub client: kube::Client,
    pub component: &'static str,
    pub host: String,
}

impl Recorder {
    /// Record an event about `object` in the background; failures are only logged (an
    /// event is advisory).
    pub fn record(&self, object: ObjectReference, type_: &str, reason: &str, message: String) {
        let ns = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let now = Time(Utc::now());
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", object.name.as_deref().unwrap_or("object"))),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.host.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!("recording event {:?}: {e}", ev.reason);
            }
        });
    }
}

/// A reference to a pod (or one of its containers with `field`).
pub fn pod_ref(pod: &k8s_openapi::api::core::v1::Pod, field: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: field,
    }
}
