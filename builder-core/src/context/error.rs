//! Context errors.

use std::path::PathBuf;

/// What can go wrong reading a build context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("I/O error on `{path}`")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `.dockerignore` that cannot be read.
    #[error("invalid ignore file `{path}`")]
    Ignore {
        /// The file.
        path: PathBuf,
        /// The bad pattern.
        #[source]
        source: super::PatternError,
    },
    /// A path that leaves the context (`../x`, or a symlink pointing outside).
    #[error("`{path}` is outside the build context")]
    OutsideContext {
        /// The path as given.
        path: String,
    },
    /// A path that cannot be resolved inside the context (a link loop, an I/O error).
    #[error("cannot resolve a path inside `{root}`")]
    Resolve {
        /// The context (or tree) the path was resolved in.
        root: PathBuf,
        /// The cause.
        #[source]
        source: crate::fs::Error,
    },
    /// A path that does not exist in the context.
    #[error("`{path}` not found in the build context")]
    NotFound {
        /// The path as given.
        path: String,
    },
}

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
