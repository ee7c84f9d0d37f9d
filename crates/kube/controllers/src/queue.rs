//! A work queue as upstream's client-go workqueue: a key is queued at most
//! once, is never processed by two workers at once (a key added while it is
//! being processed is queued again when the worker is done), and failed keys
//! come back with per-key exponential back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    order: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    again: HashSet<String>,
    failures: HashMap<String, u32>,
}

#[derive(Default)]
pub struct Queue {
    st: Mutex<State>,
    notify: Notify,
}

/// What a reconcile asks for next.
pub type Outcome = anyhow::Result<Option<Duration>>;

impl Queue {
    pub fn new() -> Arc<Queue> {
        Arc::new(Queue::default())
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut st = self.st.lock().unwrap();
        if st.queued.contains(&key) {
            return;
        }
        if st.active.contains(&key) {
            st.again.insert(key);
            return;
        }
        st.queued.insert(key.clone());
        st.order.push_back(key);
        drop(st);
        self.notify.notify_one();
    }

    pub fn add_after(self: &Arc<Self>, key: String, after: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            q.add(key);
        });
    }

    /// Back-off per key: 5 ms doubling up to 5 minutes (client-go's default
    /// item limiter goes to 1000 s).
    fn retry(self: &Arc<Self>, key: String) {
        let n = {
            let mut st = self.st.lock().unwrap();
            let n = st.failures.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        let ms = 5u64.saturating_mul(1u64 << n.min(20)).min(300_000);
        self.add_after(key, Duration::from_millis(ms));
    }

    async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.st.lock().unwrap();
                if let Some(k) = st.order.pop_front() {
                    st.queued.remove(&k);
                    st.active.insert(k.clone());
                    if !st.order.is_empty() {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    fn done(&self, key: &str, ok: bool) {
        let again = {
            let mut st = self.st.lock().unwrap();
            st.active.remove(key);
            if ok {
                st.failures.remove(key);
            }
            st.again.remove(key)
        };
        if again {
            self.add(key.to_string());
        }
    }

    /// Run `workers` tasks taking keys off the queue and reconciling them.
    pub fn run<F, Fut>(self: &Arc<Self>, name: &'static str, workers: usize, f: F)
    where
        F: Fn(String) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Outcome> + Send,
    {
        for _ in 0..workers {
            let q = self.clone();
            let f = f.clone();
            tokio::spawn(async move {
                loop {
                    let key = q.next().await;
                    let res = f(key.clone()).await;
                    match res {
                        Ok(after) => {
                            q.done(&key, true);
                            if let Some(d) = after {
                                q.add_after(key, d);
                            }
                        }
                        Err(e) => {
                            tracing::warn!("{name} {key}: {e:#}");
                            q.done(&key, false);
                            q.retry(key);
                        }
                    }
                }
            });
        }
    }
}
