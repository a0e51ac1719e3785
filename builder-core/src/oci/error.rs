//! Image errors.

use std::path::PathBuf;

use crate::digest::Digest;

/// What can go wrong assembling, reading or exporting images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Writing an archive failed.
    #[error("I/O error on `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest or config that is not valid JSON of its kind.
    #[error("`{digest}` is not a valid {what}")]
    Invalid {
        /// The blob.
        digest: Digest,
        /// `image manifest`, `image config`.
        what: &'static str,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest or index of a kind rbuild does not read.
    #[error("unsupported {what}: {detail}")]
    Unsupported {
        /// What was read.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// An archive that lacks a file it needs.
    #[error("archive has no `{name}`")]
    MissingInArchive {
        /// The file.
        name: String,
    },
}
