//! Image archives: the OCI image layout as a tar (`-o type=oci`) and docker's `docker save`
//! format (`-o type=docker`). Entries are written in path order with fixed owners, modes and
//! times, so the same image always gives the same archive bytes.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType};

use crate::digest::Digest;
use crate::store::Store;

use super::canonical::to_canonical_json;
use super::compress::{Compression, compressed_layer};
use super::error::Error;
use super::image::{Image, image_manifest, oci_digest};

enum Source {
    Bytes(Vec<u8>),
    Blob(Digest),
    Dir,
}

/// Files of an archive, written sorted by path.
struct Archive<'a> {
    store: &'a Store,
    entries: BTreeMap<String, Source>,
    mtime: u64,
}

impl<'a> Archive<'a> {
    fn new(store: &'a Store, mtime: u64) -> Self {
        Self {
            store,
            entries: BTreeMap::new(),
            mtime,
        }
    }

    fn dir(&mut self, path: &str) {
        self.entries.insert(format!("{path}/"), Source::Dir);
    }

    fn bytes(&mut self, path: &str, bytes: Vec<u8>) {
        self.entries.insert(path.to_owned(), Source::Bytes(bytes));
    }

    fn blob(&mut self, path: &str, digest: Digest) {
        self.entries.insert(path.to_owned(), Source::Blob(digest));
    }

    fn write<W: Write>(self, out: W) -> Result<W, Error> {
        let io_err = |source: io::Error| Error::Io {
            path: "<archive>".into(),
            source,
        };
        let mut builder = tar::Builder::new(out);
        for (path, source) in self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(self.mtime);
            header.set_uid(0);
            header.set_gid(0);
            header.set_path(&path).map_err(io_err)?;
            match source {
                Source::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, io::empty()).map_err(io_err)?;
                }
                Source::Bytes(b) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(b.len() as u64);
                    header.set_cksum();
                    builder.append(&header, b.as_slice()).map_err(io_err)?;
                }
                Source::Blob(d) => {
                    let size = self.store.blob_size(&d)?;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(size);
                    header.set_cksum();
                    let reader = self.store.open_blob(&d)?;
                    builder.append(&header, reader.take(size)).map_err(io_err)?;
                }
            }
        }
        builder.into_inner().map_err(io_err)
    }
}

fn json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, Error> {
    to_canonical_json(value).map_err(|source| Error::Invalid {
        digest: Digest::of(b""),
        what,
        source,
    })
}

/// `name:tag` → (`docker.io/library/name:tag`-style full name as given, tag).
fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None => "latest",
    }
}

/// The manifest an export carries: the stored one with its layers compressed.
fn export_manifest(
    store: &Store,
    image: &Image,
    compression: Compression,
) -> Result<(Vec<u8>, Vec<Digest>), Error> {
    let mut layers = Vec::new();
    let mut blobs = Vec::new();
    for diff_id in image.diff_ids() {
        let (digest, size) = compressed_layer(store, diff_id, compression)?;
        layers.push(Descriptor::new(
            compression.media_type(),
            size,
            oci_digest(&digest),
        ));
        blobs.push(digest);
    }
    let manifest = image_manifest(image.manifest.config().clone(), layers)?;
    Ok((json(&manifest, "image manifest")?, blobs))
}

/// Writes `image` as an OCI image layout tar (what `skopeo copy oci-archive:` and
/// `docker load` read). `name`, if given, is recorded as the image's reference.
pub fn write_oci_archive<W: Write>(
    store: &Store,
    image: &Image,
    name: Option<&str>,
    compression: Compression,
    mtime: u64,
    out: W,
) -> Result<(W, Digest), Error> {
    let (manifest_bytes, layer_blobs) = export_manifest(store, image, compression)?;
    let manifest_digest = Digest::of(&manifest_bytes);
    let mut annotations = HashMap::new();
    if let Some(name) = name {
        annotations.insert("io.containerd.image.name".to_owned(), name.to_owned());
        annotations.insert(
            "org.opencontainers.image.ref.name".to_owned(),
            tag_of(name).to_owned(),
        );
    }
    let index = layout_index(&manifest_bytes, annotations)?;
    let mut archive = Archive::new(store, mtime);
    archive.bytes("oci-layout", OCI_LAYOUT.to_vec());
    archive.bytes("index.json", index);
    archive.dir("blobs");
    archive.dir("blobs/sha256");
    archive.bytes(
        &format!("blobs/sha256/{}", manifest_digest.hex()),
        manifest_bytes,
    );
    archive.blob(
        &format!("blobs/sha256/{}", image.config_digest.hex()),
        image.config_digest,
    );
    for d in layer_blobs {
        archive.blob(&format!("blobs/sha256/{}", d.hex()), d);
    }
    Ok((archive.write(out)?, manifest_digest))
}

/// Writes the images of a multi-platform build as an OCI image layout tar: `index.json` names
/// one image index (recorded under `name`, if given), whose manifests are the images, each
/// with its platform. Returns the image index's digest.
///
/// # Errors
/// A blob is missing, or the output cannot be written.
pub fn write_oci_index_archive<W: Write>(
    store: &Store,
    images: &[super::IndexEntry],
    name: Option<&str>,
    compression: Compression,
    mtime: u64,
    out: W,
) -> Result<(W, Digest), Error> {
    let mut archive = Archive::new(store, mtime);
    archive.bytes("oci-layout", OCI_LAYOUT.to_vec());
    let mut manifests = Vec::new();
    let mut files = Vec::new();
    for entry in images {
        let (manifest_bytes, layer_blobs) = export_manifest(store, &entry.image, compression)?;
        let digest = Digest::of(&manifest_bytes);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest.to_string(),
            "size": manifest_bytes.len(),
            "platform": entry.platform_json(),
        }));
        files.push((
            digest,
            manifest_bytes,
            entry.image.config_digest,
            layer_blobs,
        ));
    }
    let index = json(
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }),
        "image index",
    )?;
    let index_digest = Digest::of(&index);
    let mut desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_digest.to_string(),
        "size": index.len(),
    });
    if let Some(name) = name {
        desc["annotations"] = serde_json::json!({
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": tag_of(name),
        });
    }
    let top = json(
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [desc],
        }),
        "image index",
    )?;
    archive.bytes("index.json", top);
    archive.dir("blobs");
    archive.dir("blobs/sha256");
    archive.bytes(&format!("blobs/sha256/{}", index_digest.hex()), index);
    let mut seen = std::collections::BTreeSet::new();
    for (digest, bytes, config, layers) in files {
        archive.bytes(&format!("blobs/sha256/{}", digest.hex()), bytes);
        for d in std::iter::once(config).chain(layers) {
            if seen.insert(d) {
                archive.blob(&format!("blobs/sha256/{}", d.hex()), d);
            }
        }
    }
    Ok((archive.write(out)?, index_digest))
}

/// Writes `image` in `docker save` format (`manifest.json`, `repositories`, `<config>.json`,
/// `<layer>/layer.tar`), which `docker load`, `podman load` and `skopeo docker-archive:` read.
pub fn write_docker_archive<W: Write>(
    store: &Store,
    image: &Image,
    tags: &[String],
    mtime: u64,
    out: W,
) -> Result<W, Error> {
    let mut archive = Archive::new(store, mtime);
    let config_name = format!("{}.json", image.config_digest.hex());
    archive.blob(&config_name, image.config_digest);
    let mut layer_names = Vec::new();
    for diff_id in image.diff_ids() {
        let name = format!("{}/layer.tar", diff_id.hex());
        archive.dir(&diff_id.hex());
        archive.blob(&name, *diff_id);
        layer_names.push(name);
    }
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": layer_names,
    }]);
    archive.bytes("manifest.json", json(&manifest, "docker manifest")?);
    if let Some(top) = image.diff_ids().last() {
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for t in tags {
            let (repo, tag) = match t.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
                Some((r, tag)) => (r.to_owned(), tag.to_owned()),
                None => (t.clone(), "latest".to_owned()),
            };
            repos.entry(repo).or_default().insert(tag, top.hex());
        }
        if !repos.is_empty() {
            archive.bytes("repositories", json(&repos, "repositories")?);
        }
    }
    archive.write(out)
}

/// An OCI image layout's `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout's `index.json`: one image manifest (its bytes as stored), with
/// `annotations` on its descriptor (`org.opencontainers.image.ref.name`, …).
///
/// # Errors
/// The index cannot be built or serialized.
pub fn layout_index(
    manifest: &[u8],
    annotations: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<u8>, Error> {
    let annotations: HashMap<String, String> = annotations.into_iter().collect();
    let mut desc = Descriptor::new(
        MediaType::ImageManifest,
        manifest.len() as u64,
        oci_digest(&Digest::of(manifest)),
    );
    if !annotations.is_empty() {
        desc.set_annotations(Some(annotations));
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![desc])
        .build()
        .map_err(|e| Error::Unsupported {
            what: "image index",
            detail: e.to_string(),
        })?;
    json(&index, "image index")
}
