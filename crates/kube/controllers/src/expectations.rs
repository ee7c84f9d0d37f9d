//! Upstream's controller expectations: after a controller creates or deletes
//! pods it waits until its informer has seen those changes before it counts
//! pods again, so a lagging cache never makes it create (or delete) twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long, expectations are treated as met (a lost watch event must
/// not block a controller forever), as upstream's ExpectationsTimeout.
const TIMEOUT: Duration = Duration::from_secs(300);

struct Exp {
    adds: i64,
    /// Keys of the objects whose deletion is awaited (counted once each, even
    /// when a graceful deletion is seen as an update and then as a delete).
    dels: HashSet<String>,
    at: Instant,
}

#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Exp>>);

impl Expectations {
    pub fn satisfied(&self, key: &str) -> bool {
        match self.0.lock().unwrap().get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.dels.is_empty()) || e.at.elapsed() > TIMEOUT,
        }
    }

    pub fn expect_creations(&self, key: &str, n: i64) {
        self.0.lock().unwrap().insert(
            key.to_string(),
            Exp {
                adds: n,
                dels: HashSet::new(),
                at: Instant::now(),
            },
        );
    }

    pub fn expect_deletions(&self, key: &str, objs: impl IntoIterator<Item = String>) {
        self.0.lock().unwrap().insert(
            key.to_string(),
            Exp {
                adds: 0,
                dels: objs.into_iter().collect(),
                at: Instant::now(),
            },
        );
    }

    /// A creation was seen (or will never happen: its request failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.0.lock().unwrap().get_mut(key) {
            e.adds -= 1;
        }
    }

    pub fn deletion_observed(&self, key: &str, obj: &str) {
        if let Some(e) = self.0.lock().unwrap().get_mut(key) {
            e.dels.remove(obj);
        }
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }
}
