//! Reading a stream whatever its compression: gzip, zstd, bzip2 or xz, told by its first
//! bytes (as containerd's `DecompressStream` does), else as it is. The one sniffer of the
//! crate: layers pulled, loaded and imported, contexts posted, archives ADD unpacks.

use std::io::{self, BufRead, Read};

/// How a stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Not compressed.
    Plain,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
}

impl Format {
    /// The format whose magic number `head` starts with.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if head.starts_with(b"BZh") {
            Self::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Self::Xz
        } else {
            Self::Plain
        }
    }
}

/// `input` decompressed as its first bytes say. The decoders read `input` as a buffered
/// stream and no further than their data, so what follows (padding) is still there after.
///
/// # Errors
/// Reading the first bytes failed, or zstd could not start.
pub fn decompressed<'a, R: BufRead + 'a>(mut input: R) -> io::Result<Box<dyn Read + 'a>> {
    let format = Format::sniff(input.fill_buf()?);
    Ok(match format {
        Format::Gzip => Box::new(flate2::bufread::GzDecoder::new(input)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Format::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(input)),
        Format::Plain => Box::new(input),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_told_by_its_head_and_read_back() {
        let data = b"hello, layer".repeat(100);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        let bz = {
            let mut out = Vec::new();
            bzip2::read::BzEncoder::new(&data[..], bzip2::Compression::fast())
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let xz = {
            let mut out = Vec::new();
            xz2::read::XzEncoder::new(&data[..], 1)
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        for (bytes, format) in [
            (gz, Format::Gzip),
            (zst, Format::Zstd),
            (bz, Format::Bzip2),
            (xz, Format::Xz),
            (data.clone(), Format::Plain),
        ] {
            assert_eq!(Format::sniff(&bytes), format);
            let mut back = Vec::new();
            decompressed(&bytes[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{format:?}");
        }
    }
}
