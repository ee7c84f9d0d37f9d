//! The engine and image store the RPCs use, kept open across requests.
//!
//! Opening them costs SQLite opens (schema checks) and closing them a WAL
//! checkpoint each, on every RPC: kubelet sends several per pod and
//! per sync loop. A SQLite connection serves one thread at a time
//! (`Engine` and `ImageStore` are `Send`, not `Sync`), so the server keeps
//! a few idle pairs and lends one to each request; a request finding none
//! idle opens a new pair, which joins the idle ones when returned unless
//! [`MAX_IDLE`] are there already.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hako_engine::Engine;
use hako_image::ImageStore;

use crate::error::{Error, Result};

/// Idle pairs kept: enough for kubelet's concurrent calls on a busy node,
/// few enough that their page caches stay small.
const MAX_IDLE: usize = 4;

/// Open engine/image store pairs of one root.
pub(crate) struct Pool {
    root: PathBuf,
    idle: Mutex<Vec<(Engine, ImageStore)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("root", &self.root).finish()
    }
}

/// Open the engine and the image store of `root` (no pool: for callers
/// that only have the root).
pub(crate) fn open(root: &Path) -> Result<(Engine, ImageStore)> {
    let engine = Engine::open(root)
        .map_err(|e| Error::engine(format!("opening the engine of {}", root.display()), e))?;
    let images = ImageStore::open(root)
        .map_err(|e| Error::image(format!("opening the image store of {}", root.display()), e))?;
    Ok((engine, images))
}

impl Pool {
    pub(crate) fn new(root: PathBuf) -> Pool {
        Pool {
            root,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An open pair for one request, back in the pool when dropped.
    pub(crate) fn get(&self) -> Result<Handles<'_>> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let pair = match idle {
            Some(p) => p,
            None => open(&self.root)?,
        };
        Ok(Handles {
            pool: self,
            pair: Some(pair),
        })
    }

    /// Close the idle pairs beyond `keep` (the server gone idle): each
    /// holds its databases' page caches, which grow with the records (the
    /// pods) and would stay resident.
    pub(crate) fn shrink(&self, keep: usize) {
        let closing: Vec<_> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let n = idle.len().saturating_sub(keep);
            idle.drain(..n).collect()
        };
        // Closed outside the lock: each close checkpoints its WAL.
        drop(closing);
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// An engine and image store lent to one request.
pub(crate) struct Handles<'a> {
    pool: &'a Pool,
    pair: Option<(Engine, ImageStore)>,
}

impl Handles<'_> {
    pub(crate) fn engine(&self) -> &Engine {
        &self.pair.as_ref().expect("held until dropped").0
    }

    pub(crate) fn images(&mut self) -> &mut ImageStore {
        &mut self.pair.as_mut().expect("held until dropped").1
    }

    pub(crate) fn parts(&mut self) -> (&Engine, &mut ImageStore) {
        let (e, i) = self.pair.as_mut().expect("held until dropped");
        (e, i)
    }
}

impl Drop for Handles<'_> {
    fn drop(&mut self) {
        if let Some(pair) = self.pair.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_reused_and_the_idle_ones_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = Pool::new(tmp.path().to_path_buf());
        {
            let held: Vec<_> = (0..MAX_IDLE + 2).map(|_| pool.get().unwrap()).collect();
            assert_eq!(pool.idle(), 0);
            drop(held);
        }
        assert_eq!(pool.idle(), MAX_IDLE);
        let h = pool.get().unwrap();
        assert_eq!(pool.idle(), MAX_IDLE - 1);
        assert!(h.engine().list().unwrap().is_empty());
        pool.shrink(1);
        assert_eq!(pool.idle(), 1);
        drop(h);
        assert_eq!(pool.idle(), 2);
    }
}
