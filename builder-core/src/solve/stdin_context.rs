//! `rbuild build -`: a build context arriving as a tar stream (plain, gzip or zstd), unpacked
//! into a scratch directory of the store (nothing written outside it) and built from there.

use std::io::{BufReader, Read};

use crate::store::Store;

use super::Result;
use super::error::io_at;

/// Unpacks a context tar stream into a work directory of the store, which lives (and is safe
/// from prune and clean-up) as long as the returned guard.
pub fn unpack_context(store: &Store, input: impl Read) -> Result<crate::store::WorkDir> {
    let dir = store.work_dir("context-")?;
    let input = BufReader::with_capacity(1 << 20, input);
    let reader = crate::oci::decompressed(input).map_err(io_at("<stdin>"))?;
    crate::snapshot::apply_context_tar(reader, dir.path())?;
    Ok(dir)
}
