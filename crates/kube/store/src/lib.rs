//! The Kubernetes object store: a revision log (kine's model, which maps one
//! to one onto etcd v3) behind one trait.
//!
//! Every write gets the next global revision; an object's resourceVersion is
//! the revision of its last write. Reads and lists see the newest row per key
//! at or below a revision, watches stream rows above a revision in order, and
//! compaction forgets history below a horizon (then `Gone`).
//!
//! Objects are JSON values. The store stamps `metadata.resourceVersion` into
//! what it returns (and strips it from what it keeps), so callers never keep
//! revisions in two places.

pub mod etcd;
mod fanout;
pub mod selector;
pub mod sqlite;
pub mod testsuite;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tokio::sync::mpsc;

pub use etcd::EtcdStore;
pub use fanout::watch_queue_len;
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use sqlite::SqliteStore;

/// A store failure. Each names the key (or revision) concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key} not found")]
    NotFound { key: String },
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error(
        "{key} was modified: expected resourceVersion {expected}, the current one is {actual}"
    )]
    Conflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("resourceVersion {requested} is too old: history before {compacted} was compacted")]
    Gone { requested: u64, compacted: u64 },
    #[error("the continue token is not valid")]
    InvalidContinue,
    #[error("{0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An object as stored, with the revision of its last write.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub key: String,
    pub revision: u64,
    /// The object, with `metadata.resourceVersion` set to `revision`.
    pub value: Value,
}

/// What a list returns.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Stored>,
    /// The revision the list was read at (the list's resourceVersion).
    pub revision: u64,
    /// Set when more items match: pass it back as `ListOptions::continue_token`.
    pub continue_token: Option<String>,
}

/// List options: selectors, page size and continuation.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// At most this many items (0: no limit).
    pub limit: usize,
    pub continue_token: Option<String>,
}

/// The type of a watch event, as Kubernetes names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change seen by a watcher. For `Deleted`, `object` is the last state
/// with the deletion's revision. The object (and its JSON) is shared by every
/// watcher that sees the write: fan-out to many watchers copies pointers, and
/// the object is encoded once, not once per watcher.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: EventType,
    pub object: Arc<Stored>,
    json: Arc<OnceLock<Vec<u8>>>,
}

impl PartialEq for WatchEvent {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.object == other.object
    }
}

impl WatchEvent {
    /// The object as JSON, encoded by the first watcher that asks.
    pub fn object_json(&self) -> &[u8] {
        self.json
            .get_or_init(|| serde_json::to_vec(&self.object.value).unwrap_or_default())
    }
}

/// A watch: events in revision order, from the revision asked for. It ends
/// (`None`) when the store drops the watcher: the store shut down, or the
/// watcher fell more than its queue's length behind (then `expired()`).
pub struct Watcher {
    /// Events already past when the watch started, delivered first.
    backlog: VecDeque<WatchEvent>,
    events: mpsc::Receiver<WatchEvent>,
    expired: Arc<AtomicBool>,
}

impl Watcher {
    /// The next event; `None` once the watch ended.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(ev) = self.backlog.pop_front() {
            return Some(ev);
        }
        self.events.recv().await
    }

    /// Wait for the next event without an async runtime (tests, sync callers).
    pub fn next_blocking(&mut self) -> Option<WatchEvent> {
        if let Some(ev) = self.backlog.pop_front() {
            return Some(ev);
        }
        self.events.blocking_recv()
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<WatchEvent> {
        if let Some(ev) = self.backlog.pop_front() {
            return Some(ev);
        }
        self.events.try_recv().ok()
    }

    /// Whether the store ended this watch because the watcher did not keep
    /// up (more than [`watch_queue_len`] events waited for it).
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }
}

/// The storage trait both backends implement. Keys are `/`-separated paths;
/// a list or watch prefix should end with `/`.
pub trait Store: Send + Sync {
    /// Create `key`; fails with `AlreadyExists` if it exists.
    fn create(&self, key: &str, value: &Value) -> Result<Stored>;
    /// The current object at `key`.
    fn get(&self, key: &str) -> Result<Stored>;
    /// Replace `key`. With `expected`, fail with `Conflict` unless the current
    /// revision is exactly that (optimistic concurrency).
    fn update(&self, key: &str, value: &Value, expected: Option<u64>) -> Result<Stored>;
    /// Delete `key` (with `expected`, only at that revision); returns the last
    /// state, stamped with the deletion's revision.
    fn delete(&self, key: &str, expected: Option<u64>) -> Result<Stored>;
    /// Objects under `prefix` matching the selectors, in key order, read at
    /// one revision (the continue token keeps the first page's revision).
    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult>;
    /// Changes under `prefix` after revision `from` (matching the selectors:
    /// an object leaving the selection is seen as `Deleted`, one entering it
    /// as `Added`). `Gone` if `from` is below the compaction horizon.
    fn watch(
        &self,
        prefix: &str,
        from: u64,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> Result<Watcher>;
    /// The newest revision.
    fn current_revision(&self) -> Result<u64>;
    /// Forget history below `revision`; reads and watches from older
    /// revisions then fail with `Gone`.
    fn compact(&self, revision: u64) -> Result<()>;
}

/// Stamp `metadata.resourceVersion` (creating `metadata` if missing).
pub fn stamp(value: &mut Value, revision: u64) {
    if let Value::Object(map) = value {
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(meta) = meta {
            meta.insert(
                "resourceVersion".into(),
                Value::String(revision.to_string()),
            );
        }
    }
}

/// Remove `metadata.resourceVersion`: the revision lives in the log, not in the value.
pub fn unstamp(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.remove("resourceVersion");
    }
    v
}

/// Whether an object matches both selectors.
pub fn matches(value: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    labels.matches(value) && fields.matches(value)
}
