//! `/metrics` in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// Of the bytes sent, those sent with sendfile (counted by the connections).
    sendfile_bytes: Arc<AtomicU64>,
    /// Connections closed on arrival because `max_connections` were open.
    refused_connections: Arc<AtomicU64>,
}

impl Metrics {
    pub fn observe(&self, method: &Method, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method.to_string(), status))
            .or_default() += 1;
    }

    pub fn add_bytes_sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes_received(&self, n: u64) {
        self.bytes_received.fetch_add(n, Ordering::Relaxed);
    }

    /// The counter plain-HTTP connections add their sendfile bytes to.
    pub fn sendfile_counter(&self) -> Arc<AtomicU64> {
        self.sendfile_bytes.clone()
    }

    /// The counter the accept loop adds connections refused at the limit to.
    pub fn refused_counter(&self) -> Arc<AtomicU64> {
        self.refused_connections.clone()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP hako_registry_http_requests_total HTTP requests by method and status.\n",
        );
        out.push_str("# TYPE hako_registry_http_requests_total counter\n");
        for ((method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "hako_registry_http_requests_total{{method=\"{method}\",code=\"{status}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP hako_registry_blob_bytes_sent_total Blob bytes served.\n");
        out.push_str("# TYPE hako_registry_blob_bytes_sent_total counter\n");
        out.push_str(&format!(
            "hako_registry_blob_bytes_sent_total {}\n",
            self.bytes_sent.load(Ordering::Relaxed)
        ));
        out.push_str(
            "# HELP hako_registry_blob_bytes_sendfile_total Blob bytes sent with sendfile(2).\n",
        );
        out.push_str("# TYPE hako_registry_blob_bytes_sendfile_total counter\n");
        out.push_str(&format!(
            "hako_registry_blob_bytes_sendfile_total {}\n",
            self.sendfile_bytes.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP hako_registry_upload_bytes_received_total Upload bytes received.\n");
        out.push_str("# TYPE hako_registry_upload_bytes_received_total counter\n");
        out.push_str(&format!(
            "hako_registry_upload_bytes_received_total {}\n",
            self.bytes_received.load(Ordering::Relaxed)
        ));
        out.push_str(
            "# HELP hako_registry_connections_refused_total Connections closed at once: max_connections were open.\n",
        );
        out.push_str("# TYPE hako_registry_connections_refused_total counter\n");
        out.push_str(&format!(
            "hako_registry_connections_refused_total {}\n",
            self.refused_connections.load(Ordering::Relaxed)
        ));
        out
    }
}

pub async fn render(State(app): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [("Content-Type", "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
