//! `rbuild load`: images from an OCI-layout tarball or a `docker save` tarball. Layers are stored
//! uncompressed, each checked against the config's diff IDs; nothing is tagged unless the whole
//! image is in the store.

use std::io::Read;
use std::path::Path;

use oci_spec::image::{ImageIndex, ImageManifest};

use crate::digest::{Digest, HashingReader};
use crate::oci::{Image, ImageConfig, host_platform};
use crate::store::Store;

use super::error::io_at;
use super::{Error, Result};

fn invalid(detail: impl Into<String>) -> Error {
    Error::Image(crate::oci::Error::Unsupported {
        what: "archive",
        detail: detail.into(),
    })
}

/// Stores one layer file (plain, gzip or zstd) uncompressed, giving its diff ID.
fn store_layer(store: &Store, path: &Path) -> Result<Digest> {
    let file = fs_err::File::open(path).map_err(io_at(path))?;
    let mut reader =
        crate::oci::decompressed(std::io::BufReader::new(file)).map_err(io_at(path))?;
    let mut w = store.blob_writer()?;
    std::io::copy(&mut reader, &mut w).map_err(io_at(path))?;
    Ok(w.commit(None)?.0)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs_err::read(path).map_err(io_at(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("`{}` is not valid: {e}", path.display())))
}

/// The regular file `rel` of the unpacked archive at `dir`, resolved inside it: a symlink in
/// the archive (`manifest.json -> /etc/shadow`, `blobs -> /`) never makes the load read a host
/// file. `None` if there is no such regular file.
fn in_archive(dir: &Path, rel: &str) -> Result<Option<std::path::PathBuf>> {
    let found = crate::fs::entry(dir, rel, crate::fs::Last::Follow)
        .map_err(|e| invalid(format!("`{rel}`: {e}")))?;
    Ok(found.filter(|(_, m)| m.is_file()).map(|(path, _)| path))
}

/// [`in_archive`], for a file the archive must have.
fn archive_file(dir: &Path, rel: &str) -> Result<std::path::PathBuf> {
    in_archive(dir, rel)?.ok_or_else(|| invalid(format!("`{rel}` is not a file of the archive")))
}

/// A blob of an OCI layout, its digest checked as it is read.
fn layout_blob(dir: &Path, digest: &str) -> Result<std::path::PathBuf> {
    let d: Digest = digest
        .parse()
        .map_err(|_| invalid(format!("unsupported digest `{digest}`")))?;
    let path = archive_file(dir, &format!("blobs/sha256/{}", d.hex()))?;
    let mut r = HashingReader::new(fs_err::File::open(&path).map_err(io_at(&path))?);
    std::io::copy(&mut r, &mut std::io::sink()).map_err(io_at(&path))?;
    if r.finish().0 != d {
        return Err(invalid(format!(
            "blob `{digest}` does not match its digest"
        )));
    }
    Ok(path)
}

fn finish(store: &Store, config: &ImageConfig, diff_ids: &[Digest]) -> Result<Image> {
    if config.rootfs.diff_ids != diff_ids {
        return Err(invalid("the layers do not match the config's diff IDs"));
    }
    Ok(Image::store(store, config)?)
}

/// Loads every image of the tarball, giving each with the names it carries.
pub fn load_archive(store: &Store, input: impl Read) -> Result<Vec<(Image, Vec<String>)>> {
    let scratch = store.work_dir("load-")?;
    let dir = scratch.path();
    crate::snapshot::apply_tar(input, dir)?;
    let mut out = Vec::new();
    if let Some(index) = in_archive(dir, "index.json")? {
        let index: ImageIndex = read_json(&index)?;
        let (os, arch) = host_platform();
        for desc in index.manifests() {
            let names: Vec<String> = desc
                .annotations()
                .as_ref()
                .and_then(|a| {
                    a.get("io.containerd.image.name")
                        .or_else(|| a.get("org.opencontainers.image.ref.name"))
                })
                .cloned()
                .into_iter()
                .collect();
            let mut manifest_path = layout_blob(dir, desc.digest().as_ref())?;
            // A nested index: take the host platform's manifest.
            if desc.media_type().to_string().contains("index") {
                let nested: ImageIndex = read_json(&manifest_path)?;
                let pick = nested
                    .manifests()
                    .iter()
                    .find(|m| {
                        m.platform().as_ref().is_none_or(|p| {
                            p.os().to_string() == os && p.architecture().to_string() == arch
                        })
                    })
                    .ok_or_else(|| invalid(format!("no {os}/{arch} image in the index")))?;
                manifest_path = layout_blob(dir, pick.digest().as_ref())?;
            }
            let manifest: ImageManifest = read_json(&manifest_path)?;
            let config_path = layout_blob(dir, manifest.config().digest().as_ref())?;
            let config: ImageConfig = read_json(&config_path)?;
            let mut diff_ids = Vec::new();
            for layer in manifest.layers() {
                diff_ids.push(store_layer(
                    store,
                    &layout_blob(dir, layer.digest().as_ref())?,
                )?);
            }
            out.push((finish(store, &config, &diff_ids)?, names));
        }
    } else if let Some(manifest) = in_archive(dir, "manifest.json")? {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = read_json(&manifest)?;
        for e in entries {
            let inside = |rel: &str| {
                let cleaned = crate::context::clean_path(rel);
                if cleaned.starts_with("..") || cleaned.starts_with('/') {
                    Err(invalid(format!("path `{rel}` leaves the archive")))
                } else {
                    archive_file(dir, &cleaned)
                }
            };
            let config: ImageConfig = read_json(&inside(&e.config)?)?;
            let mut diff_ids = Vec::new();
            for l in &e.layers {
                diff_ids.push(store_layer(store, &inside(l)?)?);
            }
            out.push((
                finish(store, &config, &diff_ids)?,
                e.repo_tags.unwrap_or_default(),
            ));
        }
    } else {
        return Err(invalid(
            "neither an OCI layout (index.json) nor a docker archive (manifest.json)",
        ));
    }
    Ok(out)
}
