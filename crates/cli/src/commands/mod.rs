//! One module per command group.

pub mod build;
pub mod compose;
pub mod container;
pub mod container_ops;
pub mod cp;
pub mod cri;
pub mod distribution;
pub mod events;
pub mod image;
pub mod interactive;
pub mod kube;
pub mod kube_node;
pub mod network;
pub mod registry;
pub mod shell;
pub mod system;
pub mod volume;
