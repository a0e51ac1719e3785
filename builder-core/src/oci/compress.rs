//! Layer compression for export: gzip (fixed level, no name or time in the header) or zstd
//! (multi-threaded; its output does not depend on the thread count). A compressed blob is made
//! once per layer and algorithm and remembered in the store.

use std::io::{self, Write};

use oci_spec::image::MediaType;

use crate::digest::Digest;
use crate::store::Store;

use super::error::Error;

/// How layers are compressed in an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain tar.
    Uncompressed,
    /// gzip, level 6, as docker and BuildKit default to.
    #[default]
    Gzip,
    /// zstd, level 3.
    Zstd,
}

impl Compression {
    /// Reads `gzip`, `zstd` or `uncompressed`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gzip" => Some(Self::Gzip),
            "zstd" => Some(Self::Zstd),
            "uncompressed" | "none" => Some(Self::Uncompressed),
            _ => None,
        }
    }

    /// The OCI media type of a layer so compressed.
    pub fn media_type(self) -> MediaType {
        match self {
            Self::Uncompressed => MediaType::ImageLayer,
            Self::Gzip => MediaType::ImageLayerGzip,
            Self::Zstd => MediaType::ImageLayerZstd,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Uncompressed => "uncompressed",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

fn zstd_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// The blob holding layer `diff_id` compressed with `compression`, made if needed.
pub fn compressed_layer(
    store: &Store,
    diff_id: &Digest,
    compression: Compression,
) -> Result<(Digest, u64), Error> {
    if compression == Compression::Uncompressed {
        return Ok((*diff_id, store.blob_size(diff_id)?));
    }
    let key = diff_id.hex();
    if let Some(known) = store.meta(compression.name(), &key)? {
        if let Ok(d) = known.trim().parse::<Digest>() {
            if let Ok(size) = store.blob_size(&d) {
                return Ok((d, size));
            }
        }
    }
    let mut src = store.open_blob(diff_id)?;
    let out = store.blob_writer()?;
    let io_err = |source: io::Error| Error::Io {
        path: store.blob_path(diff_id),
        source,
    };
    let out = match compression {
        Compression::Gzip => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(out, flate2::Compression::new(6));
            io::copy(&mut src, &mut enc).map_err(io_err)?;
            enc.finish().map_err(io_err)?
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::Encoder::new(out, 3).map_err(io_err)?;
            enc.multithread(zstd_threads()).map_err(io_err)?;
            io::copy(&mut src, &mut enc).map_err(io_err)?;
            enc.finish().map_err(io_err)?
        }
        Compression::Uncompressed => unreachable!("handled above"),
    };
    let mut out = out;
    out.flush().map_err(io_err)?;
    let (digest, size) = out.commit(None)?;
    store.set_meta(compression.name(), &key, &digest.to_string())?;
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn compression_is_reproducible_and_reversible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let (diff_id, _) = store.put_bytes(&data).unwrap();
        for c in [Compression::Gzip, Compression::Zstd] {
            let (d1, _) = compressed_layer(&store, &diff_id, c).unwrap();
            // Forget the record: compressing again must give the same bytes.
            fs_err::remove_dir_all(store.root().join("meta")).unwrap();
            let (d2, _) = compressed_layer(&store, &diff_id, c).unwrap();
            assert_eq!(d1, d2, "{c:?} is not reproducible");
            let blob = store.read_blob(&d1).unwrap();
            let mut back = Vec::new();
            match c {
                Compression::Gzip => flate2::read::GzDecoder::new(&blob[..])
                    .read_to_end(&mut back)
                    .unwrap(),
                _ => zstd::stream::Decoder::new(&blob[..])
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap(),
            };
            assert_eq!(back, data);
        }
        assert_eq!(
            compressed_layer(&store, &diff_id, Compression::Uncompressed)
                .unwrap()
                .0,
            diff_id
        );
    }
}
