//! hako-distribution: the OCI distribution-spec 1.1 protocol types (digests, media types,
//! error codes, name grammar, pagination) and the registry server built on them.

pub mod auth;
pub mod client;
pub mod config;
pub mod digest;
pub mod error;
pub mod gc;
pub mod media_types;
pub mod names;
pub mod pagination;
pub mod server;
pub mod storage;
pub mod store;
pub mod zerocopy;
