//! Kubernetes' protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! which kubectl's generator commands (`kubectl create namespace|configmap|
//! secret|serviceaccount|deployment|service|job|cronjob|ingress|role...`) send. The envelope is the
//! magic `k8s\0` and a runtime.Unknown; the object inside is decoded with
//! the field numbers of upstream's generated.proto for the kinds below, into
//! the same JSON the rest of the server handles. A field this table does not
//! know is refused (415), never silently dropped.

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// A field's value type.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    /// bytes, as base64 in JSON (Secret data).
    Bytes,
    Int,
    Bool,
    Msg(&'static Msg),
    /// metav1.Time: seconds, nanos → RFC 3339.
    Time,
    /// intstr.IntOrString: type, intVal, strVal.
    IntOrString,
    /// resource.Quantity: its string.
    Quantity,
}

#[derive(Clone, Copy)]
enum Rep {
    One,
    Many,
    /// map<string, T>: repeated entries {key = 1, value = 2}.
    Map,
    /// A Go struct embedded with `json:",inline"`: a message of its own in
    /// protobuf, its fields beside the parent's in JSON (IngressRuleValue).
    Inline,
}

struct Field {
    num: u64,
    name: &'static str,
    ty: Ty,
    rep: Rep,
}

struct Msg {
    name: &'static str,
    fields: &'static [Field],
}

const fn f(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        rep: Rep::One,
    }
}
const fn many(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        rep: Rep::Many,
    }
}
const fn map(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        rep: Rep::Map,
    }
}

const fn inline(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        rep: Rep::Inline,
    }
}

use Ty::*;

static OWNER_REF: Msg = Msg {
    name: "OwnerReference",
    fields: &[
        f(1, "kind", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        f(6, "controller", Bool),
        f(7, "blockOwnerDeletion", Bool),
    ],
};
static OBJECT_META: Msg = Msg {
    name: "ObjectMeta",
    fields: &[
        f(1, "name", Str),
        f(2, "generateName", Str),
        f(3, "namespace", Str),
        f(4, "selfLink", Str),
        f(5, "uid", Str),
        f(6, "resourceVersion", Str),
        f(7, "generation", Int),
        f(8, "creationTimestamp", Time),
        f(9, "deletionTimestamp", Time),
        f(10, "deletionGracePeriodSeconds", Int),
        map(11, "labels", Str),
        map(12, "annotations", Str),
        many(13, "ownerReferences", Msg(&OWNER_REF)),
        many(14, "finalizers", Str),
    ],
};
static LOCAL_REF: Msg = Msg {
    name: "LocalObjectReference",
    fields: &[f(1, "name", Str)],
};
static OBJECT_REF: Msg = Msg {
    name: "ObjectReference",
    fields: &[
        f(1, "kind", Str),
        f(2, "namespace", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        f(6, "resourceVersion", Str),
        f(7, "fieldPath", Str),
    ],
};
static CONFIG_MAP: Msg = Msg {
    name: "ConfigMap",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        map(2, "data", Str),
        map(3, "binaryData", Bytes),
        f(4, "immutable", Bool),
    ],
};
static SECRET: Msg = Msg {
    name: "Secret",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        map(2, "data", Bytes),
        f(3, "type", Str),
        map(4, "stringData", Str),
        f(5, "immutable", Bool),
    ],
};
static NAMESPACE_SPEC: Msg = Msg {
    name: "NamespaceSpec",
    fields: &[many(1, "finalizers", Str)],
};
static NAMESPACE_STATUS: Msg = Msg {
    name: "NamespaceStatus",
    fields: &[f(1, "phase", Str)],
};
static NAMESPACE: Msg = Msg {
    name: "Namespace",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&NAMESPACE_SPEC)),
        f(3, "status", Msg(&NAMESPACE_STATUS)),
    ],
};
static SERVICE_ACCOUNT: Msg = Msg {
    name: "ServiceAccount",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        many(2, "secrets", Msg(&OBJECT_REF)),
        many(3, "imagePullSecrets", Msg(&LOCAL_REF)),
        f(4, "automountServiceAccountToken", Bool),
    ],
};
static BOUND_OBJECT_REF: Msg = Msg {
    name: "BoundObjectReference",
    fields: &[
        f(1, "kind", Str),
        f(2, "apiVersion", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
    ],
};
static TOKEN_REQUEST_SPEC: Msg = Msg {
    name: "TokenRequestSpec",
    fields: &[
        many(1, "audiences", Str),
        f(3, "boundObjectRef", Msg(&BOUND_OBJECT_REF)),
        f(4, "expirationSeconds", Int),
    ],
};
static TOKEN_REQUEST_STATUS: Msg = Msg {
    name: "TokenRequestStatus",
    fields: &[f(1, "token", Str), f(2, "expirationTimestamp", Time)],
};
/// What `kubectl create token` sends (serviceaccounts/NAME/token).
static TOKEN_REQUEST: Msg = Msg {
    name: "TokenRequest",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&TOKEN_REQUEST_SPEC)),
        f(3, "status", Msg(&TOKEN_REQUEST_STATUS)),
    ],
};
static CONTAINER_PORT: Msg = Msg {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Str),
        f(2, "hostPort", Int),
        f(3, "containerPort", Int),
        f(4, "protocol", Str),
        f(5, "hostIP", Str),
    ],
};
static ENV_VAR: Msg = Msg {
    name: "EnvVar",
    fields: &[f(1, "name", Str), f(2, "value", Str)],
};
static RESOURCES: Msg = Msg {
    name: "ResourceRequirements",
    fields: &[map(1, "limits", Quantity), map(2, "requests", Quantity)],
};
static CONTAINER: Msg = Msg {
    name: "Container",
    fields: &[
        f(1, "name", Str),
        f(2, "image", Str),
        many(3, "command", Str),
        many(4, "args", Str),
        f(5, "workingDir", Str),
        many(6, "ports", Msg(&CONTAINER_PORT)),
        many(7, "env", Msg(&ENV_VAR)),
        f(8, "resources", Msg(&RESOURCES)),
        f(13, "terminationMessagePath", Str),
        f(14, "imagePullPolicy", Str),
        f(15, "securityContext", Msg(&SECURITY_CONTEXT)),
        f(16, "stdin", Bool),
        f(17, "stdinOnce", Bool),
        f(18, "tty", Bool),
        f(20, "terminationMessagePolicy", Str),
    ],
};
static SE_LINUX: Msg = Msg {
    name: "SELinuxOptions",
    fields: &[
        f(1, "user", Str),
        f(2, "role", Str),
        f(3, "type", Str),
        f(4, "level", Str),
    ],
};
/// SeccompProfile and AppArmorProfile: the same two fields.
static PROFILE: Msg = Msg {
    name: "SeccompProfile",
    fields: &[f(1, "type", Str), f(2, "localhostProfile", Str)],
};
static SYSCTL: Msg = Msg {
    name: "Sysctl",
    fields: &[f(1, "name", Str), f(2, "value", Str)],
};
static POD_SECURITY_CONTEXT: Msg = Msg {
    name: "PodSecurityContext",
    fields: &[
        f(1, "seLinuxOptions", Msg(&SE_LINUX)),
        f(2, "runAsUser", Int),
        f(3, "runAsNonRoot", Bool),
        many(4, "supplementalGroups", Int),
        f(5, "fsGroup", Int),
        f(6, "runAsGroup", Int),
        many(7, "sysctls", Msg(&SYSCTL)),
        f(9, "fsGroupChangePolicy", Str),
        f(10, "seccompProfile", Msg(&PROFILE)),
        f(11, "appArmorProfile", Msg(&PROFILE)),
        f(12, "supplementalGroupsPolicy", Str),
        f(13, "seLinuxChangePolicy", Str),
    ],
};
static CAPABILITIES: Msg = Msg {
    name: "Capabilities",
    fields: &[many(1, "add", Str), many(2, "drop", Str)],
};
static SECURITY_CONTEXT: Msg = Msg {
    name: "SecurityContext",
    fields: &[
        f(1, "capabilities", Msg(&CAPABILITIES)),
        f(2, "privileged", Bool),
        f(3, "seLinuxOptions", Msg(&SE_LINUX)),
        f(4, "runAsUser", Int),
        f(5, "runAsNonRoot", Bool),
        f(6, "readOnlyRootFilesystem", Bool),
        f(7, "allowPrivilegeEscalation", Bool),
        f(8, "runAsGroup", Int),
        f(9, "procMount", Str),
        f(11, "seccompProfile", Msg(&PROFILE)),
        f(12, "appArmorProfile", Msg(&PROFILE)),
    ],
};
static TOLERATION: Msg = Msg {
    name: "Toleration",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        f(3, "value", Str),
        f(4, "effect", Str),
        f(5, "tolerationSeconds", Int),
    ],
};
static POD_SPEC: Msg = Msg {
    name: "PodSpec",
    fields: &[
        many(2, "containers", Msg(&CONTAINER)),
        f(3, "restartPolicy", Str),
        f(4, "terminationGracePeriodSeconds", Int),
        f(5, "activeDeadlineSeconds", Int),
        f(6, "dnsPolicy", Str),
        map(7, "nodeSelector", Str),
        f(8, "serviceAccountName", Str),
        f(9, "serviceAccount", Str),
        f(10, "nodeName", Str),
        f(11, "hostNetwork", Bool),
        f(12, "hostPID", Bool),
        f(13, "hostIPC", Bool),
        f(14, "securityContext", Msg(&POD_SECURITY_CONTEXT)),
        f(16, "hostname", Str),
        f(17, "subdomain", Str),
        many(15, "imagePullSecrets", Msg(&LOCAL_REF)),
        f(19, "schedulerName", Str),
        many(20, "initContainers", Msg(&CONTAINER)),
        f(21, "automountServiceAccountToken", Bool),
        many(22, "tolerations", Msg(&TOLERATION)),
        f(24, "priorityClassName", Str),
        f(25, "priority", Int),
        f(27, "shareProcessNamespace", Bool),
        f(29, "runtimeClassName", Str),
        f(30, "enableServiceLinks", Bool),
        f(31, "preemptionPolicy", Str),
        f(35, "setHostnameAsFQDN", Bool),
        f(37, "hostUsers", Bool),
    ],
};
static POD_TEMPLATE: Msg = Msg {
    name: "PodTemplateSpec",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&POD_SPEC)),
    ],
};
static SELECTOR_REQ: Msg = Msg {
    name: "LabelSelectorRequirement",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        many(3, "values", Str),
    ],
};
static LABEL_SELECTOR: Msg = Msg {
    name: "LabelSelector",
    fields: &[
        map(1, "matchLabels", Str),
        many(2, "matchExpressions", Msg(&SELECTOR_REQ)),
    ],
};
static ROLLING_UPDATE: Msg = Msg {
    name: "RollingUpdateDeployment",
    fields: &[
        f(1, "maxUnavailable", IntOrString),
        f(2, "maxSurge", IntOrString),
    ],
};
static STRATEGY: Msg = Msg {
    name: "DeploymentStrategy",
    fields: &[
        f(1, "type", Str),
        f(2, "rollingUpdate", Msg(&ROLLING_UPDATE)),
    ],
};
static DEPLOYMENT_SPEC: Msg = Msg {
    name: "DeploymentSpec",
    fields: &[
        f(1, "replicas", Int),
        f(2, "selector", Msg(&LABEL_SELECTOR)),
        f(3, "template", Msg(&POD_TEMPLATE)),
        f(4, "strategy", Msg(&STRATEGY)),
        f(5, "minReadySeconds", Int),
        f(6, "revisionHistoryLimit", Int),
        f(7, "paused", Bool),
        f(9, "progressDeadlineSeconds", Int),
    ],
};
static EMPTY_STATUS: Msg = Msg {
    name: "status",
    fields: &[],
};
static DEPLOYMENT: Msg = Msg {
    name: "Deployment",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&DEPLOYMENT_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
static SERVICE_PORT: Msg = Msg {
    name: "ServicePort",
    fields: &[
        f(1, "name", Str),
        f(2, "protocol", Str),
        f(3, "port", Int),
        f(4, "targetPort", IntOrString),
        f(5, "nodePort", Int),
        f(6, "appProtocol", Str),
    ],
};
static SERVICE_SPEC: Msg = Msg {
    name: "ServiceSpec",
    fields: &[
        many(1, "ports", Msg(&SERVICE_PORT)),
        map(2, "selector", Str),
        f(3, "clusterIP", Str),
        f(4, "type", Str),
        many(5, "externalIPs", Str),
        f(7, "sessionAffinity", Str),
        f(8, "loadBalancerIP", Str),
        f(10, "externalName", Str),
        f(11, "externalTrafficPolicy", Str),
        f(12, "healthCheckNodePort", Int),
        f(13, "publishNotReadyAddresses", Bool),
        many(18, "clusterIPs", Str),
    ],
};
static SERVICE: Msg = Msg {
    name: "Service",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&SERVICE_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
// authorization.k8s.io/v1 and authentication.k8s.io/v1 reviews
// (`kubectl auth can-i`, `kubectl auth whoami`).
static RESOURCE_ATTRIBUTES: Msg = Msg {
    name: "ResourceAttributes",
    fields: &[
        f(1, "namespace", Str),
        f(2, "verb", Str),
        f(3, "group", Str),
        f(4, "version", Str),
        f(5, "resource", Str),
        f(6, "subresource", Str),
        f(7, "name", Str),
    ],
};
static NON_RESOURCE_ATTRIBUTES: Msg = Msg {
    name: "NonResourceAttributes",
    fields: &[f(1, "path", Str), f(2, "verb", Str)],
};
static SSAR_SPEC: Msg = Msg {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        f(1, "resourceAttributes", Msg(&RESOURCE_ATTRIBUTES)),
        f(2, "nonResourceAttributes", Msg(&NON_RESOURCE_ATTRIBUTES)),
    ],
};
static SAR_SPEC: Msg = Msg {
    name: "SubjectAccessReviewSpec",
    fields: &[
        f(1, "resourceAttributes", Msg(&RESOURCE_ATTRIBUTES)),
        f(2, "nonResourceAttributes", Msg(&NON_RESOURCE_ATTRIBUTES)),
        f(3, "user", Str),
        many(4, "groups", Str),
        f(6, "uid", Str),
    ],
};
static SSRR_SPEC: Msg = Msg {
    name: "SelfSubjectRulesReviewSpec",
    fields: &[f(1, "namespace", Str)],
};
static SSAR: Msg = Msg {
    name: "SelfSubjectAccessReview",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&SSAR_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
static SAR: Msg = Msg {
    name: "SubjectAccessReview",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&SAR_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
static SSRR: Msg = Msg {
    name: "SelfSubjectRulesReview",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&SSRR_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
static SELF_SUBJECT_REVIEW: Msg = Msg {
    name: "SelfSubjectReview",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "status", Msg(&EMPTY_STATUS)),
    ],
};
static POLICY_RULE: Msg = Msg {
    name: "PolicyRule",
    fields: &[
        many(1, "verbs", Str),
        many(2, "apiGroups", Str),
        many(3, "resources", Str),
        many(4, "resourceNames", Str),
        many(5, "nonResourceURLs", Str),
    ],
};
static AGGREGATION_RULE: Msg = Msg {
    name: "AggregationRule",
    fields: &[many(1, "clusterRoleSelectors", Msg(&LABEL_SELECTOR))],
};
/// Role and ClusterRole (`kubectl create role|clusterrole`).
static ROLE: Msg = Msg {
    name: "Role",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        many(2, "rules", Msg(&POLICY_RULE)),
        f(3, "aggregationRule", Msg(&AGGREGATION_RULE)),
    ],
};
static SUBJECT: Msg = Msg {
    name: "Subject",
    fields: &[
        f(1, "kind", Str),
        f(2, "apiGroup", Str),
        f(3, "name", Str),
        f(4, "namespace", Str),
    ],
};
static ROLE_REF: Msg = Msg {
    name: "RoleRef",
    fields: &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)],
};
/// RoleBinding and ClusterRoleBinding (`kubectl create rolebinding|clusterrolebinding`).
static ROLE_BINDING: Msg = Msg {
    name: "RoleBinding",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        many(2, "subjects", Msg(&SUBJECT)),
        f(3, "roleRef", Msg(&ROLE_REF)),
    ],
};
// batch/v1 (`kubectl create job|cronjob`).
static JOB_SPEC: Msg = Msg {
    name: "JobSpec",
    fields: &[
        f(1, "parallelism", Int),
        f(2, "completions", Int),
        f(3, "activeDeadlineSeconds", Int),
        f(4, "selector", Msg(&LABEL_SELECTOR)),
        f(5, "manualSelector", Bool),
        f(6, "template", Msg(&POD_TEMPLATE)),
        f(7, "backoffLimit", Int),
        f(8, "ttlSecondsAfterFinished", Int),
        f(9, "completionMode", Str),
        f(10, "suspend", Bool),
        f(12, "backoffLimitPerIndex", Int),
        f(13, "maxFailedIndexes", Int),
        f(14, "podReplacementPolicy", Str),
        f(15, "managedBy", Str),
    ],
};
static JOB: Msg = Msg {
    name: "Job",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&JOB_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
static JOB_TEMPLATE: Msg = Msg {
    name: "JobTemplateSpec",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&JOB_SPEC)),
    ],
};
static CRON_JOB_SPEC: Msg = Msg {
    name: "CronJobSpec",
    fields: &[
        f(1, "schedule", Str),
        f(2, "startingDeadlineSeconds", Int),
        f(3, "concurrencyPolicy", Str),
        f(4, "suspend", Bool),
        f(5, "jobTemplate", Msg(&JOB_TEMPLATE)),
        f(6, "successfulJobsHistoryLimit", Int),
        f(7, "failedJobsHistoryLimit", Int),
        f(8, "timeZone", Str),
    ],
};
static CRON_JOB: Msg = Msg {
    name: "CronJob",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&CRON_JOB_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
// networking.k8s.io/v1 (`kubectl create ingress`).
static SERVICE_BACKEND_PORT: Msg = Msg {
    name: "ServiceBackendPort",
    fields: &[f(1, "name", Str), f(2, "number", Int)],
};
static INGRESS_SERVICE_BACKEND: Msg = Msg {
    name: "IngressServiceBackend",
    fields: &[f(1, "name", Str), f(2, "port", Msg(&SERVICE_BACKEND_PORT))],
};
static TYPED_LOCAL_REF: Msg = Msg {
    name: "TypedLocalObjectReference",
    fields: &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)],
};
static INGRESS_BACKEND: Msg = Msg {
    name: "IngressBackend",
    fields: &[
        f(3, "resource", Msg(&TYPED_LOCAL_REF)),
        f(4, "service", Msg(&INGRESS_SERVICE_BACKEND)),
    ],
};
static HTTP_INGRESS_PATH: Msg = Msg {
    name: "HTTPIngressPath",
    fields: &[
        f(1, "path", Str),
        f(2, "backend", Msg(&INGRESS_BACKEND)),
        f(3, "pathType", Str),
    ],
};
static HTTP_INGRESS_RULE_VALUE: Msg = Msg {
    name: "HTTPIngressRuleValue",
    fields: &[many(1, "paths", Msg(&HTTP_INGRESS_PATH))],
};
static INGRESS_RULE_VALUE: Msg = Msg {
    name: "IngressRuleValue",
    fields: &[f(1, "http", Msg(&HTTP_INGRESS_RULE_VALUE))],
};
static INGRESS_RULE: Msg = Msg {
    name: "IngressRule",
    fields: &[
        f(1, "host", Str),
        inline(2, "ingressRuleValue", Msg(&INGRESS_RULE_VALUE)),
    ],
};
static INGRESS_TLS: Msg = Msg {
    name: "IngressTLS",
    fields: &[many(1, "hosts", Str), f(2, "secretName", Str)],
};
static INGRESS_SPEC: Msg = Msg {
    name: "IngressSpec",
    fields: &[
        f(1, "defaultBackend", Msg(&INGRESS_BACKEND)),
        many(2, "tls", Msg(&INGRESS_TLS)),
        many(3, "rules", Msg(&INGRESS_RULE)),
        f(4, "ingressClassName", Str),
    ],
};
static INGRESS: Msg = Msg {
    name: "Ingress",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&INGRESS_SPEC)),
        f(3, "status", Msg(&EMPTY_STATUS)),
    ],
};
static TYPE_META: Msg = Msg {
    name: "TypeMeta",
    fields: &[f(1, "apiVersion", Str), f(2, "kind", Str)],
};
static UNKNOWN: Msg = Msg {
    name: "Unknown",
    fields: &[
        f(1, "typeMeta", Msg(&TYPE_META)),
        f(2, "raw", Bytes),
        f(3, "contentEncoding", Str),
        f(4, "contentType", Str),
    ],
};

fn schema(api_version: &str, kind: &str) -> Option<&'static Msg> {
    Some(match (api_version, kind) {
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("authentication.k8s.io/v1", "TokenRequest") => &TOKEN_REQUEST,
        ("v1", "Service") => &SERVICE,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        ("batch/v1", "Job") => &JOB,
        ("batch/v1", "CronJob") => &CRON_JOB,
        ("networking.k8s.io/v1", "Ingress") => &INGRESS,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => &SSAR,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => &SAR,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => &SSRR,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => &SELF_SUBJECT_REVIEW,
        // One table for both: kubectl sends no aggregationRule for a Role.
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => &ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => &ROLE_BINDING,
        _ => return None,
    })
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn wire_fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (num, wt) = (tag >> 3, tag & 7);
        match wt {
            0 => out.push((num, Wire::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or("truncated field")?;
                out.push((num, Wire::Bytes(&buf[pos..end])));
                pos = end;
            }
            other => return Err(format!("unsupported wire type {other} in field {num}")),
        }
    }
    Ok(out)
}

fn scalar(ty: Ty, w: &Wire, ctx: &str) -> Result<Value, String> {
    let bad = || format!("field {ctx} has the wrong wire type");
    Ok(match (ty, w) {
        (Str, Wire::Bytes(b)) => {
            json!(String::from_utf8(b.to_vec()).map_err(|_| format!("field {ctx} is not UTF-8"))?)
        }
        (Bytes, Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Int, Wire::Varint(v)) => json!(*v as i64),
        (Bool, Wire::Varint(v)) => json!(*v != 0),
        (Msg(m), Wire::Bytes(b)) => message(m, b)?,
        (Time, Wire::Bytes(b)) => {
            let t = message(&TIME, b)?;
            let secs = t.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            if secs == 0 {
                Value::Null
            } else {
                let dt = time::OffsetDateTime::from_unix_timestamp(secs)
                    .map_err(|_| format!("field {ctx} is not a valid time"))?;
                json!(dt
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default())
            }
        }
        (IntOrString, Wire::Bytes(b)) => {
            let v = message(&INT_OR_STRING, b)?;
            if v.get("type").and_then(Value::as_i64) == Some(1) {
                v.get("strVal").cloned().unwrap_or(json!(""))
            } else {
                v.get("intVal").cloned().unwrap_or(json!(0))
            }
        }
        (Quantity, Wire::Bytes(b)) => message(&QUANTITY, b)?
            .get("string")
            .cloned()
            .unwrap_or(json!("")),
        _ => return Err(bad()),
    })
}

static TIME: Msg = Msg {
    name: "Time",
    fields: &[f(1, "seconds", Int), f(2, "nanos", Int)],
};
static INT_OR_STRING: Msg = Msg {
    name: "IntOrString",
    fields: &[f(1, "type", Int), f(2, "intVal", Int), f(3, "strVal", Str)],
};
static QUANTITY: Msg = Msg {
    name: "Quantity",
    fields: &[f(1, "string", Str)],
};

/// Integer fields that are pointers upstream, where 0 means something.
const KEEP_ZERO: &[&str] = &[
    "replicas",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "terminationGracePeriodSeconds",
    "parallelism",
    "completions",
    "backoffLimit",
    "ttlSecondsAfterFinished",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
];

fn message(m: &Msg, buf: &[u8]) -> Result<Value, String> {
    let mut out = Map::new();
    // A client's status is dropped on create anyway: not decoded.
    if std::ptr::eq(m, &EMPTY_STATUS) {
        return Ok(Value::Object(out));
    }
    for (num, w) in wire_fields(buf)? {
        let field = m
            .fields
            .iter()
            .find(|f| f.num == num)
            .ok_or_else(|| format!("field number {num} of {} is not supported", m.name))?;
        let ctx = format!("{}.{}", m.name, field.name);
        match field.rep {
            Rep::One => {
                // Go's encoder writes unset strings and bools too: an
                // empty one means "not set", as JSON's omitempty does.
                let v = scalar(field.ty, &w, &ctx)?;
                // Zero ints too, except pointers upstream where 0 is set
                // (Go writes a pointer only when it is set).
                let zero = v == json!(0) && !KEEP_ZERO.contains(&field.name);
                let unset = v.is_null() || v == json!("") || v == json!(false) || zero;
                if !unset && field.name != "selfLink" {
                    out.insert(field.name.into(), v);
                }
            }
            Rep::Many => {
                let v = scalar(field.ty, &w, &ctx)?;
                let list = out.entry(field.name).or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    a.push(v);
                }
            }
            Rep::Inline => {
                if let Value::Object(fields) = scalar(field.ty, &w, &ctx)? {
                    out.extend(fields);
                }
            }
            Rep::Map => {
                let Wire::Bytes(entry) = w else {
                    return Err(format!("field {ctx} has the wrong wire type"));
                };
                let mut key = String::new();
                let mut value = Value::Null;
                for (n, ew) in wire_fields(entry)? {
                    match n {
                        1 => key = scalar(Str, &ew, &ctx)?.as_str().unwrap_or("").to_string(),
                        2 => value = scalar(field.ty, &ew, &ctx)?,
                        _ => return Err(format!("field {ctx} has a malformed map entry")),
                    }
                }
                if value.is_null() {
                    value = match field.ty {
                        Int => json!(0),
                        Bool => json!(false),
                        _ => json!(""),
                    };
                }
                let entries = out.entry(field.name).or_insert_with(|| json!({}));
                if let Value::Object(o) = entries {
                    o.insert(key, value);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Decode a protobuf request body into the JSON object it carries.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let inner = body
        .strip_prefix(b"k8s\0")
        .ok_or("the protobuf body lacks the k8s envelope")?;
    let unknown = message(&UNKNOWN, inner)?;
    let av = unknown
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = unknown
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let m = schema(av, kind).ok_or_else(|| {
        format!(
            "protobuf bodies of {} {} are not supported; send JSON (kubectl create -f / apply)",
            crate::status::quoted(av),
            crate::status::quoted(kind)
        )
    })?;
    let raw = unknown.get("raw").and_then(Value::as_str).unwrap_or("");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| "the protobuf envelope is malformed".to_string())?;
    let mut obj = message(m, &raw)?;
    obj["apiVersion"] = json!(av);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(decode(b"{}").is_err());
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        // typeMeta{apiVersion "v1", kind "ConfigMap"}, raw = ObjectMeta field 99.
        let raw = [0x0a, 0x03, 0xf8, 0x06, 0x01];
        let mut body = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x05".to_vec();
        body.extend_from_slice(&raw);
        let err = decode(&body).unwrap_err();
        assert!(err.contains("field number 111 of ObjectMeta"), "{err}");
    }
}
