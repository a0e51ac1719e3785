//! Content-addressed blobs: written to a temp file, fsynced, renamed into place; verified when
//! read.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use crate::digest::{Digest, HashingReader, HashingWriter};

use super::error::{Error, IoContext};
use super::{Result, Store};

/// A blob being written. Nothing is visible in the store until [`BlobWriter::commit`].
pub struct BlobWriter {
    store: Store,
    inner: HashingWriter<BufWriter<tempfile::NamedTempFile>>,
}

impl Store {
    /// The path a blob lives at (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the store holds `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match fs_err::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::MissingBlob { digest: *digest })
            }
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Starts writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.scratch()?;
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .at(&dir)?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp)),
        })
    }

    /// Stores `bytes`, giving their digest and size.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let digest = Digest::of(bytes);
        if self.has_blob(&digest) {
            return Ok((digest, bytes.len() as u64));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).at(self.blob_path(&digest))?;
        w.commit(Some(digest))
    }

    /// Opens a blob for reading; the reader fails at the end if the bytes do not match.
    pub fn open_blob(&self, digest: &Digest) -> Result<VerifyingReader> {
        let path = self.blob_path(digest);
        let file = match fs_err::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingBlob { digest: *digest });
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        Ok(VerifyingReader {
            inner: HashingReader::new(std::io::BufReader::with_capacity(1 << 20, file)),
            expected: *digest,
            done: false,
        })
    }

    /// Reads a whole (small) blob, verified.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut r = self.open_blob(digest)?;
        match r.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(r.error_from(e, self.blob_path(digest))),
        }
    }

    /// Every stored blob that does not hash to its name.
    pub fn verify_blobs(&self) -> Result<Vec<(Digest, Option<Digest>)>> {
        let dir = self.root.join("blobs/sha256");
        let mut bad = Vec::new();
        for entry in fs_err::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name();
            let Ok(expected) = format!("sha256:{}", name.to_string_lossy()).parse::<Digest>()
            else {
                bad.push((Digest::of(name.as_encoded_bytes()), None));
                continue;
            };
            let path = entry.path();
            let file = fs_err::File::open(&path).at(&path)?;
            let mut r = HashingReader::new(file);
            std::io::copy(&mut r, &mut std::io::sink()).at(&path)?;
            let (actual, _) = r.finish();
            if actual != expected {
                bad.push((expected, Some(actual)));
            }
        }
        Ok(bad)
    }
}

impl BlobWriter {
    /// Makes the blob visible under its digest. With `expected`, refuses bytes that hash to
    /// anything else (and stores nothing).
    pub fn commit(self, expected: Option<Digest>) -> Result<(Digest, u64)> {
        let (buf, digest, size) = self.inner.finish();
        let tmp = buf.into_inner().map_err(|e| Error::Io {
            path: self.store.blob_path(&digest),
            source: e.into_error(),
        })?;
        if let Some(expected) = expected {
            if expected != digest {
                return Err(Error::Mismatch {
                    expected,
                    actual: digest,
                });
            }
        }
        let path = self.store.blob_path(&digest);
        if path.is_file() {
            // Already there (another build wrote the same bytes): drop ours.
            return Ok((digest, size));
        }
        tmp.as_file().sync_all().at(tmp.path())?;
        let tmp = tmp.into_temp_path().keep().map_err(|e| e.error).at(&path)?;
        super::rename_durably(&tmp, &path).at(&path)?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a blob and fails at the end of it if its bytes do not match its digest.
pub struct VerifyingReader {
    inner: HashingReader<std::io::BufReader<fs_err::File>>,
    expected: Digest,
    done: bool,
}

/// The marker inside the I/O error a [`VerifyingReader`] returns on a mismatch.
#[derive(Debug, thiserror::Error)]
#[error("blob content does not match its digest")]
struct Mismatch {
    actual: Digest,
}

impl VerifyingReader {
    fn error_from(&self, e: std::io::Error, path: PathBuf) -> Error {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Mismatch>())
        {
            Some(m) => Error::Corrupt {
                expected: self.expected,
                actual: m.actual,
            },
            None => Error::Io { path, source: e },
        }
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            let (actual, _) = self.inner.current();
            if actual != self.expected {
                return Err(std::io::Error::other(Mismatch { actual }));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        (dir, store)
    }

    #[test]
    fn put_then_read_verified() {
        let (_d, s) = store();
        let (digest, size) = s.put_bytes(b"hello").unwrap();
        assert_eq!((digest, size), (Digest::of(b"hello"), 5));
        assert_eq!(s.read_blob(&digest).unwrap(), b"hello");
        assert_eq!(s.blob_size(&digest).unwrap(), 5);
        assert!(s.verify_blobs().unwrap().is_empty());
        assert_eq!(
            fs_err::read_dir(s.scratch().unwrap()).unwrap().count(),
            0,
            "temp file left behind"
        );
    }

    #[test]
    fn corrupt_blob_is_refused_on_read_and_found_by_verify() {
        let (_d, s) = store();
        let (digest, _) = s.put_bytes(b"hello").unwrap();
        fs_err::write(s.blob_path(&digest), b"jello").unwrap();
        match s.read_blob(&digest) {
            Err(Error::Corrupt { expected, actual }) => {
                assert_eq!(expected, digest);
                assert_eq!(actual, Digest::of(b"jello"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.verify_blobs().unwrap(),
            [(digest, Some(Digest::of(b"jello")))]
        );
    }

    #[test]
    fn wrong_bytes_for_an_expected_digest_store_nothing() {
        let (_d, s) = store();
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"not what you asked for").unwrap();
        let want = Digest::of(b"what you asked for");
        assert!(matches!(w.commit(Some(want)), Err(Error::Mismatch { .. })));
        assert!(!s.has_blob(&want));
        assert!(!s.has_blob(&Digest::of(b"not what you asked for")));
        assert_eq!(fs_err::read_dir(s.scratch().unwrap()).unwrap().count(), 0);
    }

    #[test]
    fn a_writer_dropped_midway_leaves_no_blob() {
        let (_d, s) = store();
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        assert!(
            fs_err::read_dir(s.root().join("blobs/sha256"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn missing_blob_is_named() {
        let (_d, s) = store();
        let d = Digest::of(b"nope");
        assert!(matches!(s.open_blob(&d), Err(Error::MissingBlob { digest }) if digest == d));
    }
}
