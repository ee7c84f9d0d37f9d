//! docker's JSON message streams (pull, push, import, load, build): one JSON
//! object per line, produced by blocking work on the blocking pool.
//!
//! docker answers with an HTTP error while nothing has been sent yet (an
//! unknown image, a bad credential: the client sees a 404 or 401), and
//! once the stream has started with an `{"errorDetail":..,"error":..}`
//! line. [`respond`] does the same: the first item decides the status.
//! When the client hangs up, [`Lines::closed`] turns true so the work can
//! stop (image progress reports it as cancellation).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};

enum Item {
    Line(Bytes),
    Fail(ApiError),
}

/// The producing side of a message stream.
pub struct Lines {
    tx: mpsc::Sender<Item>,
}

impl Lines {
    /// Send one message; false once the client is gone.
    pub fn send(&self, v: &Value) -> bool {
        let mut b = serde_json::to_vec(v).unwrap_or_default();
        b.extend_from_slice(b"\r\n");
        self.tx.blocking_send(Item::Line(Bytes::from(b))).is_ok()
    }

    /// `{"status": ...}`.
    pub fn status(&self, s: &str) -> bool {
        self.send(&json!({ "status": s }))
    }

    /// `{"stream": ...}` (build and load output).
    pub fn stream(&self, s: &str) -> bool {
        self.send(&json!({ "stream": s }))
    }

    /// Whether the client has gone away.
    pub fn closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// docker's error line inside a stream.
pub fn error_line(message: &str) -> Value {
    json!({"errorDetail": {"message": message}, "error": message})
}

/// Run `work` on the blocking pool and answer with what it sends: an HTTP
/// error when it fails before sending anything, else a 200 stream of its
/// lines ending with an error line if it fails later.
pub async fn respond<F>(work: F) -> ApiResult<Response>
where
    F: FnOnce(&Lines) -> ApiResult<()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Item>(64);
    tokio::task::spawn_blocking(move || {
        let lines = Lines { tx };
        if let Err(e) = work(&lines) {
            let _ = lines.tx.blocking_send(Item::Fail(e));
        }
    });
    let first = match rx.recv().await {
        None => None,
        Some(Item::Fail(e)) => return Err(e),
        Some(Item::Line(b)) => Some(b),
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let bytes = match item {
            Item::Line(b) => b,
            Item::Fail(e) => {
                let mut b = serde_json::to_vec(&error_line(&e.message)).unwrap_or_default();
                b.extend_from_slice(b"\r\n");
                Bytes::from(b)
            }
        };
        Some((Ok::<_, std::io::Error>(bytes), rx))
    });
    let head = futures_util::stream::iter(first.map(Ok::<_, std::io::Error>));
    use futures_util::StreamExt;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(head.chain(rest)),
    )
        .into_response())
}

/// docker's 12-digit short form of a digest (`sha256:abc…` → `abc…`).
pub fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// A layer in progress: what is being done, bytes so far, total, last sent.
type LayerState = (String, u64, Option<u64>, Instant);

/// Image progress (pull, push) as docker's per-layer messages:
/// `{"status":"Downloading","progressDetail":{"current":..,"total":..},"id":..}`.
/// Byte counts are sent at most every 100ms per layer.
pub struct LayerProgress<'a> {
    lines: &'a Lines,
    /// Sent once before the first layer event (docker's "Pulling from ...").
    header: Mutex<Option<String>>,
    /// Per item: what is being done, bytes so far, total, last sent.
    items: Mutex<HashMap<String, LayerState>>,
    /// docker's words for a finished item ("Pull complete", "Pushed").
    done_word: &'static str,
}

impl<'a> LayerProgress<'a> {
    pub fn new(lines: &'a Lines, header: Option<String>, done_word: &'static str) -> Self {
        LayerProgress {
            lines,
            header: Mutex::new(header),
            items: Mutex::new(HashMap::new()),
            done_word,
        }
    }

    fn header(&self) {
        if let Some(h) = self.header.lock().expect("progress lock").take() {
            self.lines.status(&h);
        }
    }

    /// Whether anything was sent yet (the header goes with the first event).
    pub fn started(&self) -> bool {
        self.header.lock().expect("progress lock").is_none()
    }
}

impl hako_image::Progress for LayerProgress<'_> {
    fn start(&self, id: &str, what: &str, total: Option<u64>) {
        self.header();
        self.items
            .lock()
            .expect("progress lock")
            .insert(id.to_string(), (what.to_string(), 0, total, Instant::now()));
        self.lines.send(&json!({
            "status": what, "progressDetail": {}, "id": short_id(id),
        }));
    }

    fn advance(&self, id: &str, n: u64) {
        let mut items = self.items.lock().expect("progress lock");
        let Some((what, current, total, last)) = items.get_mut(id) else {
            return;
        };
        *current += n;
        if last.elapsed() < Duration::from_millis(100) {
            return;
        }
        *last = Instant::now();
        let mut detail = json!({ "current": *current });
        if let Some(t) = total {
            detail["total"] = json!(*t);
        }
        let msg = json!({"status": what, "progressDetail": detail, "id": short_id(id)});
        drop(items);
        self.lines.send(&msg);
    }

    fn finish(&self, id: &str, note: &str) {
        self.header();
        self.items.lock().expect("progress lock").remove(id);
        let status = match note {
            "done" => self.done_word.to_string(),
            "already exists" | "already present" | "already unpacked" => {
                "Already exists".to_string()
            }
            "pushed" => "Pushed".to_string(),
            "mounted" => "Mounted from another repository".to_string(),
            other => {
                let mut c = other.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
        };
        self.lines.send(&json!({
            "status": status, "progressDetail": {}, "id": short_id(id),
        }));
    }

    fn cancelled(&self) -> bool {
        self.lines.closed()
    }
}
