#![recursion_limit = "256"]
//! hako-dockerapi: the Docker Engine API (version 1.47, what docker CLI 28
//! negotiates) served over hako's engine, as `podman system service` does,
//! so the docker CLI, docker-compose and docker-py work unchanged.
//!
//! The layer is thin: every handler translates a request into calls on
//! [`hako_engine`] and [`hako_image`] (never the `hako` command line) and
//! their answers into docker's JSON shapes. One module per API area, each
//! with `routes()`, merged by [`server`]:
//! [`system`] (ping, version, info, events, df), [`containers`], [`exec`].
//! Errors are docker's `{"message": ...}` bodies ([`error`]).

pub mod attach;
pub mod build;
pub mod containers;
pub mod create;
pub mod error;
pub mod exec;
pub mod hijack;
pub mod images;
pub mod jsonmsg;
pub mod listen;
pub mod networks;
pub mod params;
pub mod server;
pub mod service;
pub mod stream;
pub mod system;
pub mod volumes;

pub use error::ApiError;
pub use server::{run, serve, Options, State};
