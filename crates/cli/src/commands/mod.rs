//! One module per command group.

pub mod build;
pub mod container;
pub mod distribution;
pub mod image;
pub mod network;
pub mod registry;
pub mod volume;
