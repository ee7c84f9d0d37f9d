//! hako compose: multi-container applications from compose files
//! (the Compose Specification's core) over hako-engine.
//!
//! - [`files`]: reading project files as untrusted input (bounded, regular only);
//! - [`load`]: finding, reading, interpolating and merging files;
//! - [`numbers`]: range checks of numeric fields;
//! - [`model`]: the normalised project, with field-path errors;
//! - [`project`]: up/down/run over the engine, compose's labels and naming.

pub mod error;
pub mod files;
pub mod load;
pub mod model;
pub mod numbers;
pub mod project;

pub use error::{Error, Result};
pub use load::LoadOptions;
pub use model::Project;
pub use project::{Compose, Event, UpOptions};

/// Load a project: files, environment, interpolation, merge, model.
pub fn open(o: &LoadOptions) -> Result<Project> {
    let loaded = load::load(o)?;
    model::project(
        &loaded.doc,
        &loaded.dir,
        o.project_name.as_deref(),
        &loaded.env,
        &o.profiles,
    )
}
