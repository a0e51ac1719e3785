//! The local store: content-addressed blobs, image tags and a store-wide lock, under one root
//! directory.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>   blobs: layers, configs, manifests (written to tmp/, fsynced, renamed)
//! ROOT/tags/<name>          one file per tag (`name:tag` percent-encoded) holding a digest
//! ROOT/meta/<kind>/<key>    small records: step cache, explanations, compressed forms
//! ROOT/tmp/<name>/          work directories, each owned by a live process (`work.rs`)
//! ROOT/lock, ROOT/lock.gate flock: builds hold it shared, prune exclusive (`lock.rs`)
//! ```
//!
//! A blob appears under its digest only once its bytes are on disk and verified, so a process
//! killed at any moment leaves a store whose every blob verifies. Readers verify again. Every
//! file is written in a work directory, fsynced, renamed into place, and the directory it lands
//! in fsynced, so a record never names what a crash could lose.
//!
//! Imports: `digest` (see `tests/architecture.rs`).

mod blob;
mod error;
mod lock;
mod meta;
mod step;
mod tag;
mod work;

use std::path::{Path, PathBuf};

pub use blob::{BlobWriter, VerifyingReader};
pub use error::Error;
pub use lock::{DEFAULT_LOCK_TIMEOUT, Lock};
pub use step::{STEP_RECORD_VERSION, StepRecord};
pub use tag::tag_name;
pub use work::{Cleaned, WorkDir};
pub(crate) use work::{entry_count, remove_tree, tree_bytes};

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    lock_timeout: std::time::Duration,
    scratch: std::sync::Arc<std::sync::Mutex<Option<WorkDir>>>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for dir in ["blobs/sha256", "tags", "tmp"] {
            let path = root.join(dir);
            fs_err::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
        }
        let store = Self {
            root,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            scratch: std::sync::Arc::default(),
        };
        // What killed processes left: safe while other builds run, and cheap (one directory
        // read). Failing to clean is not failing to open; prune and fsck say what is left.
        let _ = store.clean_tmp();
        Ok(store)
    }

    /// How long taking the store's lock may wait before failing with [`Error::Busy`].
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

/// Renames `from` to `to` and fsyncs the directory `to` lands in, so the rename survives a
/// crash.
pub(crate) fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    fs_err::rename(from, to)?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory (its entries: what was created, renamed or removed in it).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

/// Makes a temp file in this process's scratch directory, writes `bytes`, fsyncs it and renames
/// it to `path`, fsyncing `path`'s directory.
pub(crate) fn write_durably(store: &Store, path: &Path, bytes: &[u8]) -> Result<()> {
    use error::IoContext;
    use std::io::Write;
    let dir = store.scratch()?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).at(&dir)?;
    tmp.write_all(bytes).at(tmp.path())?;
    tmp.as_file().sync_all().at(tmp.path())?;
    let tmp = tmp.into_temp_path().keep().map_err(|e| e.error).at(&dir)?;
    rename_durably(&tmp, path).at(path)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC, for messages.
pub(crate) fn fmt_unix(secs: u64) -> String {
    let s = rfc3339(i64::try_from(secs).unwrap_or(i64::MAX));
    s.replace('T', " ").trim_end_matches('Z').to_owned() + " UTC"
}

/// Seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
#[allow(clippy::many_single_char_names)] // the algorithm's own names
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
