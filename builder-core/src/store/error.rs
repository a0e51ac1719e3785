//! Store errors.

use std::path::PathBuf;

use crate::digest::Digest;

/// What can go wrong in the store.
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
    /// A blob whose bytes do not match its name.
    #[error("blob `{expected}` is corrupt: its content hashes to `{actual}`")]
    Corrupt {
        /// The digest it is stored under.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
    /// Content written for an expected digest that came out different.
    #[error("digest mismatch: expected `{expected}`, got `{actual}`")]
    Mismatch {
        /// What the caller expected.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A blob that is not in the store.
    #[error("blob `{digest}` is not in the store")]
    MissingBlob {
        /// The digest looked for.
        digest: Digest,
    },
    /// A tag name that cannot be stored.
    #[error("invalid image name `{name}`")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The store's lock could not be had in time.
    #[error(
        "the store `{}` is busy: waited {waited_secs} s for its {mode} lock; in use by: {}; try again, or wait longer with --lock-timeout",
        .root.display(),
        if .users.is_empty() { "no live process found (the holder may be starting or ending)".to_owned() } else { .users.join("; ") }
    )]
    Busy {
        /// The store.
        root: PathBuf,
        /// `shared` or `exclusive`.
        mode: &'static str,
        /// How long it waited.
        waited_secs: u64,
        /// What each live user's owner file says (pid, command, start).
        users: Vec<String>,
    },
    /// A step-cache record that cannot be read (damaged, or of another rbuild's format).
    #[error("step-cache record {key} is unreadable: {why}")]
    BadStepRecord {
        /// The step key.
        key: Digest,
        /// Why.
        why: String,
    },
    /// A tag file that does not hold a digest.
    #[error("tag file `{path}` does not hold a digest")]
    BadTag {
        /// The file.
        path: PathBuf,
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
