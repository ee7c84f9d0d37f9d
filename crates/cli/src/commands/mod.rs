//! One module per command group.

pub mod container;
pub mod distribution;
pub mod image;
pub mod registry;
pub mod volume;
