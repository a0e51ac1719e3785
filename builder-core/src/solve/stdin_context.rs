//! Build contexts not on this machine's disk: `rbuild build -` (a tar stream, plain, gzip or
//! zstd, on standard input), `rbuild build https://…/ctx.tar.gz` (the same, downloaded) and
//! `rbuild build GIT_URL#ref:subdir` (a checkout). Each is unpacked into a scratch directory of
//! the store (nothing written outside it) and built from there.

use std::io::{BufReader, Read};

use crate::store::Store;

use super::Result;
use super::error::io_at;

/// Unpacks a context tar stream into a work directory of the store, which lives (and is safe
/// from prune and clean-up) as long as the returned guard.
pub fn unpack_context(store: &Store, input: impl Read) -> Result<crate::store::WorkDir> {
    let dir = store.work_dir("context-")?;
    unpack_into(input, dir.path())?;
    Ok(dir)
}

/// A build context fetched from a URL ([`remote_context`]).
#[derive(Debug)]
pub struct RemoteContext {
    /// Where it was unpacked or checked out; removed when this is dropped.
    pub dir: crate::store::WorkDir,
    /// The context's root: `dir`, or the subdirectory a git URL names.
    pub root: std::path::PathBuf,
    /// The commit of a git context.
    pub commit: Option<String>,
}

/// Fetches the context `url` names: a git repository (see [`super::is_git_url`]) checked out
/// at its ref, else an `http(s)://` tar archive (plain, gzip or zstd) of at most `max_bytes`.
///
/// # Errors
/// The fetch fails or passes the limits, the archive is not one, or an entry would land
/// outside the directory.
pub fn remote_context(
    store: &Store,
    url: &str,
    max_bytes: u64,
    cancel: &crate::cancel::Cancel,
) -> Result<RemoteContext> {
    let dir = store.work_dir("context-")?;
    if super::git::is_git_url(url) {
        let parsed = super::git::GitUrl::parse(url)?;
        let limits = super::git::Limits::new(cancel, max_bytes);
        let commit = super::git::resolve(&parsed, limits)?;
        let root = super::git::checkout(&parsed, &commit, &dir.path().join("tree"), false, limits)?;
        return Ok(RemoteContext {
            dir,
            root,
            commit: Some(commit),
        });
    }
    let failed = |reason: String| super::Error::Download {
        url: url.to_owned(),
        reason,
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(failed(
            "a remote context is a git URL or an http(s):// tar archive".into(),
        ));
    }
    let response = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(None)
        .build()
        .and_then(|c| c.get(url).send())
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("the server answered {}", response.status())));
    }
    let body = cancel.reader(response).take(max_bytes);
    unpack_into(body, dir.path())?;
    let root = dir.path().to_owned();
    Ok(RemoteContext {
        dir,
        root,
        commit: None,
    })
}

fn unpack_into(input: impl Read, dir: &std::path::Path) -> Result<()> {
    let input = BufReader::with_capacity(1 << 20, input);
    let reader = crate::oci::decompressed(input).map_err(io_at("<context>"))?;
    crate::snapshot::apply_context_tar(CompletesPadding::new(reader), dir)?;
    Ok(())
}

/// A context tar stream that may stop in the padding after its last entry's data, with no
/// end-of-archive blocks: docker's CLI sends that when it adds a Dockerfile from outside the
/// context (its tar wrapper closes the pipe before the writer), and docker's daemon, reading
/// with Go's tar, takes it. Such an end is completed here; a stream cut in a header or in an
/// entry's data still ends short, and the unpacker refuses it.
struct CompletesPadding<R> {
    inner: R,
    /// Bytes read so far.
    pos: u64,
    /// Where the current (or next) header starts, and its bytes seen so far.
    header_at: u64,
    header: Vec<u8>,
    /// Where the current entry's data ends.
    data_end: u64,
    /// The end-of-archive blocks were seen: nothing more is tracked.
    ended: bool,
    /// Zero bytes still to give after the inner stream's end.
    tail: Option<u64>,
}

impl<R> CompletesPadding<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            pos: 0,
            header_at: 0,
            header: Vec::with_capacity(512),
            data_end: 0,
            ended: false,
            tail: None,
        }
    }

    /// Follows `bytes` (read at `self.pos`) through headers and data.
    fn track(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.ended {
            if self.pos < self.header_at {
                let skip = usize::try_from((self.header_at - self.pos).min(bytes.len() as u64))
                    .unwrap_or(bytes.len());
                self.pos += skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (512 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            self.pos += take as u64;
            bytes = &bytes[take..];
            if self.header.len() == 512 {
                if self.header.iter().all(|b| *b == 0) {
                    self.ended = true;
                    return;
                }
                let size = header_size(&self.header);
                self.data_end = self.header_at + 512 + size;
                self.header_at += 512 + size.div_ceil(512) * 512;
                self.header.clear();
            }
        }
        self.pos += bytes.len() as u64;
    }
}

/// An entry's size from its header: octal, or GNU's base-256 when the high bit is set.
fn header_size(h: &[u8]) -> u64 {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..].iter().fold(0u64, |n, b| {
            n.saturating_mul(256).saturating_add(u64::from(*b))
        });
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or(0)
}

impl<R: Read> Read for CompletesPadding<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(left) = self.tail.as_mut() {
            let n = usize::try_from((*left).min(buf.len() as u64)).unwrap_or(buf.len());
            buf[..n].fill(0);
            *left -= n as u64;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.track(&buf[..n]);
            return Ok(n);
        }
        // The end: in an entry's padding (or right after it), the rest of the padding and the
        // two end blocks are given; anywhere else the stream ends where it ended.
        let in_padding = !self.ended
            && self.header.is_empty()
            && self.pos >= self.data_end
            && self.pos <= self.header_at;
        if in_padding && self.pos > 0 {
            self.tail = Some(self.header_at - self.pos + 1024);
            return self.read(buf);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Issue 15: docker's CLI cuts its tar after the last entry's data when it injects a
    /// Dockerfile; that end is completed. A cut in a header or in data is not.
    #[test]
    fn a_tar_that_stops_in_its_padding_is_ended_and_one_cut_elsewhere_is_not() {
        let whole = tar_of(&[("Dockerfile", b"FROM scratch\n"), ("a", b"0123456789")]);
        // Header 1, data 1 (13 bytes) padded, header 2, data 2 (10 bytes): cut after it.
        let cut_in_padding = &whole[..512 + 512 + 512 + 10];
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let dir = unpack_context(&store, cut_in_padding).unwrap();
        assert_eq!(fs_err::read(dir.path().join("a")).unwrap(), b"0123456789");
        // Cut right at the padding's end (no end blocks at all).
        let dir = unpack_context(&store, &whole[..2048]).unwrap();
        assert!(dir.path().join("a").is_file());
        // Cut in the second entry's data, and in its header.
        assert!(unpack_context(&store, &whole[..512 + 512 + 512 + 5]).is_err());
        assert!(unpack_context(&store, &whole[..512 + 512 + 100]).is_err());
    }
}
