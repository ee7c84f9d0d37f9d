//! hako-build: Dockerfile builds.
//!
//! - [`parser`]: the Dockerfile parser (directives, continuations, heredocs, forms, flags).
//! - [`lex`]: variable substitution and word processing with docker's rules.
//! - [`ignore`]: `.dockerignore` matching and source globs.
//! - [`stages`]: the stage graph; [`checks`]: the `# check=` rules.
//! - [`executor`]: the build itself (stages, steps, outputs); the instructions, RUN steps,
//!   COPY/ADD, RUN mounts and the up-front checks live in private modules beside it;
//!   [`cache`], [`context`], [`fsops`], [`run`] and [`state`] are its parts.

pub mod error;
pub mod ignore;
pub mod lex;
pub mod parser;
pub mod stages;

pub use error::{Error, Result};
pub mod cache;
mod chainview;
pub mod checks;
pub mod commit;
pub mod compress;
pub mod context;
mod copy;
pub mod executor;
pub mod fsops;
pub mod git;
mod instructions;
mod mounts;
pub mod origin;
pub mod platform;
pub mod remote;
pub mod run;
mod run_step;
pub mod scratch;
pub mod state;
mod validate;
mod workdir;

pub use executor::{build, Built, Options, Output, Progress, Puller, RunDefaults};
