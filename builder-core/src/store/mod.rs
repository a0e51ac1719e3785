//! The local store: content-addressed blobs, image tags and a store-wide lock, under one root
//! directory.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>   blobs: layers, configs, manifests (written to tmp/, fsynced, renamed)
//! ROOT/tags/<name>          one file per tag (`name:tag` percent-encoded) holding a digest
//! ROOT/tmp/                 files being written; anything here is garbage after a crash
//! ROOT/lock                 flock: builds hold it shared, prune holds it exclusive
//! ```
//!
//! A blob appears under its digest only once its bytes are on disk and verified, so a process
//! killed at any moment leaves a store whose every blob verifies. Readers verify again.
//!
//! Imports: `digest` (see `tests/architecture.rs`).

mod blob;
mod error;
mod lock;
mod meta;
mod tag;

use std::path::{Path, PathBuf};

pub use blob::{BlobWriter, VerifyingReader};
pub use error::Error;
pub use lock::Lock;
pub use tag::tag_name;

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for dir in ["blobs/sha256", "tags", "tmp"] {
            let path = root.join(dir);
            fs_err::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
        }
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}
