//! Containers: create, lifecycle verbs, list, inspect, logs, stats, top,
//! attach, archive (docker cp), export, changes, prune and commit.

use axum::Router;

use crate::server::State;

pub fn routes() -> Router<State> {
    Router::new()
}
