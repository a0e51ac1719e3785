//! The build context: a directory whose files COPY and ADD read, filtered by `.dockerignore`,
//! and the content digests the step cache keys on.
//!
//! - [`Ignore`]: Docker's `.dockerignore` rules.
//! - [`Context::walk`]: the files under a path, sorted, ignored ones left out.
//! - [`hash_file`]: a file's digest as BuildKit keys it — type, mode, uid, gid, size, link target, the
//!   `security.capability` xattr and the bytes, never the mtime — with a [`StatCache`] so an
//!   unchanged file is not read again.
//!
//! Imports: `digest`, `fs` (see `tests/architecture.rs`).

mod dockerignore;
mod error;
mod hash;
mod walk;

pub use dockerignore::{Ignore, PatternError, clean as clean_path, ignore_file_for};
pub use error::Error;
pub use hash::{FileInfo, Kind, StatCache, hash_file, stat_cache_context};
pub use walk::tree_walker;
pub use walk::{Context, Entry, MAX_CONTROL_FILE, Walker, read_control_file, resolve_scoped};

/// The context's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
