//! `rbuild import`: an image from a root filesystem tarball (plain, gzip or zstd), one layer.

use std::io::{BufReader, Read, Write};

use crate::digest::Digest;
use crate::oci::{History, Image, ImageConfig, host_platform};
use crate::store::Store;

use super::error::io_at;
use super::{Error, Result};

/// Stores the tarball read from `input` as a one-layer image. The layer is stored uncompressed
/// (its digest is its diff ID) and checked to be a readable tar before the image is made.
pub fn import_rootfs(store: &Store, input: impl Read, created: i64) -> Result<Image> {
    let input = BufReader::with_capacity(1 << 20, input);
    let mut reader = crate::oci::decompressed(input).map_err(io_at("<input>"))?;
    let mut blob = store.blob_writer()?;
    std::io::copy(&mut reader, &mut blob).map_err(io_at("<input>"))?;
    blob.flush().map_err(io_at("<input>"))?;
    let (diff_id, _) = blob.commit(None)?;
    check_tar(store, &diff_id)?;
    let (os, arch) = host_platform();
    let mut config = ImageConfig {
        architecture: arch.to_owned(),
        os: os.to_owned(),
        created: Some(crate::store::rfc3339(created)),
        ..ImageConfig::default()
    };
    config.config.env = Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    ]);
    config.rootfs.diff_ids.push(diff_id);
    config.history.push(History {
        created: config.created.clone(),
        created_by: Some("rbuild import".into()),
        ..History::default()
    });
    Ok(Image::store(store, &config)?)
}

fn check_tar(store: &Store, diff_id: &Digest) -> Result<()> {
    let mut archive = tar::Archive::new(store.open_blob(diff_id)?);
    let entries = archive.entries().map_err(io_at(store.blob_path(diff_id)))?;
    let mut count = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Io {
            path: store.blob_path(diff_id),
            source: std::io::Error::other(format!("not a valid tar archive: {e}")),
        })?;
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(io_at(store.blob_path(diff_id)))?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::Io {
            path: store.blob_path(diff_id),
            source: std::io::Error::other("the tarball holds no files"),
        });
    }
    Ok(())
}
