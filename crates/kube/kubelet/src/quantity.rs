//! Kubernetes resource quantities: the API server's parser (one for the whole cluster).

pub use hako_kube_apiserver::quantity::{parse_milli, parse_units};
