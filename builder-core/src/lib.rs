//! `builder-core`: rbuild's library. It reads Dockerfiles exactly as BuildKit does; later modules
//! plan, run and store builds.
//!
//! ```no_run
//! use builder_core::dockerfile::{self, CheckOptions};
//!
//! let src = std::fs::read_to_string("Dockerfile")?;
//! let checked = dockerfile::parse_and_check(&src, &CheckOptions::default())?;
//! for stage in &checked.stages {
//!     println!("stage {} from {}", stage.index, stage.base.expanded);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod cancel;
pub mod compose;
pub mod context;
pub mod digest;
pub mod dockerfile;
mod error;
pub mod exec;
pub mod fs;
pub mod oci;
pub mod plan;
pub mod registry;
pub mod snapshot;
pub mod solve;
pub mod store;

pub use error::Error;
