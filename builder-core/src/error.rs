//! The crate's error: one variant per module error, nothing else.

use std::path::PathBuf;

/// Anything `builder-core` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Dockerfile that cannot be read or is wrong.
    #[error("invalid Dockerfile `{path}`")]
    Dockerfile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        #[source]
        source: crate::dockerfile::ParseError,
    },
    /// A build failed.
    #[error(transparent)]
    Build(#[from] crate::solve::Error),
}
