//! One module per command group.

pub mod container;
pub mod container_ops;
pub mod distribution;
pub mod image;
pub mod interactive;
pub mod network;
pub mod registry;
pub mod volume;
