//! Exec: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (detached,
//! or attached on a hijacked connection), `GET /exec/{id}/json`,
//! `POST /exec/{id}/resize`.

use axum::Router;

use crate::server::State;

pub fn routes() -> Router<State> {
    Router::new()
}
