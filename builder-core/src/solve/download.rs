//! `ADD <url>`: a remote file fetched over HTTP(S), streamed to disk and hashed as it comes,
//! checked against `--checksum` when one is given. Never extracted, as BuildKit does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};

use super::error::io_at;
use super::{Error, Result};

/// A fetched file.
#[derive(Debug, Clone)]
pub(crate) struct Download {
    pub(crate) path: PathBuf,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

/// The file name a URL gives its download: the last segment of its path.
pub(crate) fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.split_once("://").map_or(path, |(_, rest)| rest);
    match after_host.split_once('/') {
        Some((_, p)) => p
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("__unnamed__")
            .to_owned(),
        None => "__unnamed__".to_owned(),
    }
}

/// The most an `ADD <url>` downloads unless the build says otherwise
/// ([`super::BuildRequest::max_download`]).
pub const DEFAULT_MAX_DOWNLOAD: u64 = 8 << 30;

/// Fetches `url` into `dir`, refusing bytes that do not match `checksum` (`sha256:<hex>`) and a
/// body of more than `limit` bytes (the download stops there, so the disk never fills).
/// Stops at the next read once `cancel` is set.
pub(crate) fn fetch(
    url: &str,
    dir: &Path,
    checksum: Option<&str>,
    limit: u64,
    cancel: &crate::cancel::Cancel,
) -> Result<Download> {
    let expected = match checksum {
        None => None,
        Some(c) => Some(c.parse::<Digest>().map_err(|_| Error::InvalidFlag {
            flag: "--checksum",
            value: c.to_owned(),
            reason: "expected `sha256:` and 64 hex digits".into(),
        })?),
    };
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Download {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let mut response = client.get(url).send().map_err(|e| Error::Download {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if !response.status().is_success() {
        return Err(Error::Download {
            url: url.to_owned(),
            reason: format!("the server answered {}", response.status()),
        });
    }
    fs_err::create_dir_all(dir).map_err(io_at(dir))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
    let mut w = HashingWriter::new(std::io::BufWriter::new(tmp));
    let mut body = cancel.reader(&mut response).take(limit.saturating_add(1));
    let copied = std::io::copy(&mut body, &mut w).map_err(|e| {
        if crate::cancel::Cancelled::is(&e) {
            Error::Cancelled
        } else {
            Error::Download {
                url: url.to_owned(),
                reason: e.to_string(),
            }
        }
    })?;
    if copied > limit {
        return Err(Error::Download {
            url: url.to_owned(),
            reason: format!(
                "it is larger than {limit} bytes, the most this build downloads (--max-download)"
            ),
        });
    }
    w.flush().map_err(io_at(dir))?;
    let (buf, digest, size) = w.finish();
    if let Some(expected) = expected {
        if expected != digest {
            return Err(Error::ChecksumMismatch {
                url: url.to_owned(),
                expected,
                actual: digest,
            });
        }
    }
    let tmp = buf.into_inner().map_err(|e| Error::Io {
        path: dir.to_owned(),
        source: e.into_error(),
    })?;
    let path = dir.join(format!("download-{}", digest.hex()));
    tmp.persist(&path).map_err(|e| Error::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(Download { path, digest, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz?x=1#frag"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("https://example.com/dir/"), "dir");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
    }
}
