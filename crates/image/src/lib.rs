//! hako-image: images the way containerd and podman hold them.
//!
//! - [`digest`]: sha256/sha512 digests and hashing readers/writers.
//! - [`reference`]: docker-style image references.
//! - [`store`]: the content-addressed blob store.
//! - [`metadata`]: image records, names and mounts in SQLite.
//! - [`manifest`]: OCI/Docker manifests, indexes, configs, platforms.
//! - [`layer`]: applying layer tarballs safely.
//! - [`snapshot`]: unpacked layers and overlay root filesystems.
//! - [`ingest`]: a layer stream to a verified blob and snapshot in one pass.
//! - [`images`]: the image store tying these together.
//! - [`import`], [`archive`]: rootfs tarballs, docker-archive and OCI layouts.
//! - [`pull`], [`push`], [`blob_sources`]: images to and from registries.
//! - [`view`]: docker's views of images (list filters, inspect, history).
//! - [`on_demand`]: pull policies and pulling before a create (one path for every caller).

pub mod archive;
pub mod blob_sources;
pub mod digest;
pub mod error;
pub mod images;
pub mod import;
pub mod ingest;
pub mod layer;
pub mod lease;
pub mod lock;
pub mod manifest;
pub mod metadata;
pub mod on_demand;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod view;

pub use digest::Digest;
pub use error::{Error, Result};
pub use images::{Image, ImageStore, Removal};
pub use metadata::{ImageRecord, MountRecord};
pub use progress::{NoProgress, Progress};
pub use reference::Reference;
pub use snapshot::Rootfs;
