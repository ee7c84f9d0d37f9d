//! Watch fan-out shared by both stores: one write becomes one [`Change`]
//! (its object behind an `Arc`, its JSON encoded once), translated through
//! each subscriber's selectors and offered to the subscriber's bounded queue.
//! A subscriber whose queue is full is dropped and marked expired, so a slow
//! client costs at most its queue, never unbounded memory, and the others
//! keep being served.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{matches, EventType, FieldSelector, LabelSelector, Stored, WatchEvent, Watcher};

/// How many events may wait for one watcher before the store ends its watch
/// (`HAKO_KUBE_WATCH_QUEUE`, default 1024): a watcher that far behind is
/// told to start again rather than held in memory.
pub fn watch_queue_len() -> usize {
    static LEN: OnceLock<usize> = OnceLock::new();
    *LEN.get_or_init(|| {
        std::env::var("HAKO_KUBE_WATCH_QUEUE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1024)
    })
}

/// One write, as every watcher of its key may see it.
pub(crate) struct Change {
    pub rev: u64,
    /// The new state (`None` for a deletion).
    pub new: Option<Arc<Stored>>,
    /// The previous value of an update (for selector transitions).
    pub old: Option<Value>,
    /// The last state of a deleted object, stamped with the deletion's revision.
    pub deleted: Option<Arc<Stored>>,
    /// About how many bytes it holds (the stored values' encoded length).
    pub size: usize,
    json: Arc<OnceLock<Vec<u8>>>,
}

impl Change {
    pub fn new(new: Option<Stored>, old: Option<Value>, deleted: Option<Stored>) -> Change {
        let rev = new.as_ref().or(deleted.as_ref()).map_or(0, |s| s.revision);
        Change {
            rev,
            new: new.map(Arc::new),
            old,
            deleted: deleted.map(Arc::new),
            size: 0,
            json: Arc::default(),
        }
    }

    pub fn key(&self) -> &str {
        self.new
            .as_ref()
            .or(self.deleted.as_ref())
            .map_or("", |s| s.key.as_str())
    }

    fn event(&self, kind: EventType, object: &Arc<Stored>) -> WatchEvent {
        WatchEvent {
            kind,
            object: object.clone(),
            json: self.json.clone(),
        }
    }
}

/// One watcher as the store sees it.
pub(crate) struct Sub {
    prefix: String,
    labels: LabelSelector,
    fields: FieldSelector,
    /// Only changes after this revision are delivered.
    from: u64,
    tx: mpsc::Sender<WatchEvent>,
    expired: Arc<AtomicBool>,
}

impl Sub {
    /// A subscriber and the watcher reading it, with no backlog yet.
    pub fn new(
        prefix: &str,
        from: u64,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> (Sub, Watcher) {
        let (tx, rx) = mpsc::channel(watch_queue_len());
        let expired = Arc::new(AtomicBool::new(false));
        let sub = Sub {
            prefix: prefix.to_string(),
            labels,
            fields,
            from,
            tx,
            expired: expired.clone(),
        };
        let watcher = Watcher {
            backlog: VecDeque::new(),
            events: rx,
            expired,
        };
        (sub, watcher)
    }

    /// The event this subscriber sees for `ch`, if any.
    fn translate(&self, ch: &Change) -> Option<WatchEvent> {
        if ch.rev <= self.from || !ch.key().starts_with(&self.prefix) {
            return None;
        }
        let m = |v: &Value| matches(v, &self.labels, &self.fields);
        if let Some(gone) = &ch.deleted {
            return m(&gone.value).then(|| ch.event(EventType::Deleted, gone));
        }
        let new = ch.new.as_ref()?;
        let kind = match (ch.old.as_ref().map(m), m(&new.value)) {
            (None, true) | (Some(false), true) => EventType::Added,
            (Some(true), true) => EventType::Modified,
            // Leaving the selection: upstream shows the new state as DELETED.
            (Some(true), false) => EventType::Deleted,
            (_, false) => return None,
        };
        Some(ch.event(kind, new))
    }

    /// Queue `ch` in the watcher's backlog (history replayed at watch start,
    /// not bounded by the queue: it is what the watcher asked for).
    pub fn replay(&self, ch: &Change, watcher: &mut Watcher) {
        if let Some(ev) = self.translate(ch) {
            watcher.backlog.push_back(ev);
        }
    }

    /// Offer a live change; false when this subscriber is to be dropped
    /// (its watcher went away, or fell a whole queue behind: expired).
    pub fn offer(&self, ch: &Change) -> bool {
        let Some(ev) = self.translate(ch) else {
            return !self.tx.is_closed();
        };
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.expired.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

impl Sub {
    /// Deliver `ch`, waiting while the queue is full (a watcher with a
    /// reader thread of its own: the wait holds back only its etcd stream);
    /// false once the watcher went away.
    pub fn send_blocking(&self, ch: &Change) -> bool {
        match self.translate(ch) {
            Some(ev) => self.tx.blocking_send(ev).is_ok(),
            None => !self.tx.is_closed(),
        }
    }
}

/// Offer `ch` to every subscriber, dropping those that are done.
pub(crate) fn offer_all(subs: &mut Vec<Sub>, ch: &Change) {
    subs.retain(|sub| sub.offer(ch));
}
