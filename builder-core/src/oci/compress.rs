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

/// Bytes of input per independently compressed gzip block.
const GZIP_BLOCK: usize = 1 << 20;

/// The gzip level: fixed, so the bytes are too.
const GZIP_LEVEL: u32 = 1;

/// gzip as pigz makes it: the input cut into fixed 1 MiB blocks, each deflated on its own (a
/// sync flush ends every block but the last on a byte boundary) on all cores, the pieces joined
/// in order under one gzip header (no name, mtime 0) and one CRC — a single-member stream that
/// every gzip reader takes. The bytes depend on the block size and level only, never on the
/// number of threads. Reading (and verifying) the next batch and writing (and hashing) the last
/// one overlap with compressing this one; at most three batches of two blocks per core are in
/// memory.
fn parallel_gzip<R: io::Read + Send, W: Write + Send>(
    src: &mut R,
    mut out: W,
    level: u32,
) -> io::Result<W> {
    use rayon::prelude::*;
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
    let batch = 2 * rayon::current_num_threads().max(1);
    let read_block = |src: &mut R| -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; GZIP_BLOCK];
        let mut n = 0;
        while n < GZIP_BLOCK {
            let k = src.read(&mut buf[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        buf.truncate(n);
        Ok(buf)
    };
    // Reads up to `batch` blocks; the flag says the input ended within them.
    let read_batch =
        |src: &mut R, carry: &mut Option<Vec<u8>>| -> io::Result<(Vec<Vec<u8>>, bool)> {
            let mut blocks = Vec::with_capacity(batch);
            let mut next = match carry.take() {
                Some(b) => b,
                None => read_block(src)?,
            };
            loop {
                let following = if next.len() < GZIP_BLOCK {
                    Vec::new()
                } else {
                    read_block(src)?
                };
                let last = following.is_empty();
                blocks.push(next);
                if last {
                    return Ok((blocks, true));
                }
                if blocks.len() == batch {
                    *carry = Some(following);
                    return Ok((blocks, false));
                }
                next = following;
            }
        };
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    let mut carry = None;
    let (mut blocks, mut last) = read_batch(src, &mut carry)?;
    let mut written: Vec<(crc32fast::Hasher, usize, Vec<u8>)> = Vec::new();
    loop {
        let count = blocks.len();
        let (compressed, io_side) = rayon::join(
            || {
                blocks
                    .par_iter()
                    .enumerate()
                    .map(|(i, block)| {
                        let mut h = crc32fast::Hasher::new();
                        h.update(block);
                        deflate_block(block, level, last && i + 1 == count)
                            .map(|d| (h, block.len(), d))
                    })
                    .collect::<io::Result<Vec<_>>>()
            },
            || -> io::Result<Option<(Vec<Vec<u8>>, bool)>> {
                for (_, _, d) in &written {
                    out.write_all(d)?;
                }
                if last {
                    Ok(None)
                } else {
                    read_batch(src, &mut carry).map(Some)
                }
            },
        );
        for (h, len, _) in &written {
            crc.combine(h);
            total += *len as u64;
        }
        written = compressed?;
        match io_side? {
            Some((b, l)) => {
                blocks = b;
                last = l;
            }
            None => break,
        }
    }
    for (h, len, d) in &written {
        out.write_all(d)?;
        crc.combine(h);
        total += *len as u64;
    }
    out.write_all(&crc.finalize().to_le_bytes())?;
    // ISIZE is the length modulo 2^32 (RFC 1952).
    #[allow(clippy::cast_possible_truncation)]
    out.write_all(&(total as u32).to_le_bytes())?;
    Ok(out)
}

/// Raw deflate of one block: finished if `last`, else ended by a sync flush.
fn deflate_block(input: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    use flate2::{Compress, FlushCompress, Status};
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(input.len() / 4 + 1024);
        }
        let consumed = usize::try_from(c.total_in())
            .unwrap_or(usize::MAX)
            .min(input.len());
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(c.total_in()).unwrap_or(usize::MAX) >= input.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and the output did not fill up.
            Status::Ok | Status::BufError if !last && all_in && out.len() < out.capacity() => break,
            Status::Ok | Status::BufError => {}
        }
    }
    Ok(out)
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
        Compression::Gzip => parallel_gzip(&mut src, out, GZIP_LEVEL).map_err(io_err)?,
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
    fn parallel_gzip_is_one_member_and_independent_of_threads() {
        #[allow(clippy::cast_possible_truncation)]
        let data: Vec<u8> = (0..(3 * GZIP_BLOCK + 12_345) as u32)
            .map(|i| (i % 7 + i / 1000) as u8)
            .collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a = one.install(|| parallel_gzip(&mut &data[..], Vec::new(), 6).unwrap());
        let b = four.install(|| parallel_gzip(&mut &data[..], Vec::new(), 6).unwrap());
        assert!(a == b, "output depends on the thread count");
        // A single-member reader (flate2's GzDecoder stops after the first member) reads it all.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "round trip lost data");
        for len in [0, 1, GZIP_BLOCK, 2 * GZIP_BLOCK] {
            let d = vec![7u8; len];
            let z = parallel_gzip(&mut &d[..], Vec::new(), 6).unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back.len(), len);
        }
        if let Ok(mut child) = std::process::Command::new("gzip")
            .arg("-t")
            .stdin(std::process::Stdio::piped())
            .spawn()
        {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &a).unwrap();
            drop(child.stdin.take());
            assert!(
                child.wait().unwrap().success(),
                "gzip -t refuses our stream"
            );
        }
    }

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
