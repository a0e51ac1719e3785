//! `rbuild build -`: a build context arriving as a tar stream (plain, gzip or zstd), unpacked
//! into a scratch directory of the store (nothing written outside it) and built from there.

use std::io::{BufRead, BufReader, Read};

use crate::store::Store;

use super::Result;
use super::error::io_at;

/// Unpacks a context tar stream into a work directory of the store, which lives (and is safe
/// from prune and clean-up) as long as the returned guard.
pub fn unpack_context(store: &Store, input: impl Read) -> Result<crate::store::WorkDir> {
    let dir = store.work_dir("context-")?;
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input.fill_buf().map_err(io_at("<stdin>"))?.to_vec();
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(input))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::Decoder::with_buffer(input).map_err(io_at("<stdin>"))?)
    } else {
        Box::new(input)
    };
    crate::snapshot::apply_tar(reader, dir.path())?;
    Ok(dir)
}
