//! Images in the store: a config blob and a manifest blob whose layers are the uncompressed tars
//! (so a layer's blob digest is its diff ID). Exports compress.

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};

use crate::digest::Digest;
use crate::store::Store;

use super::canonical::to_canonical_json;
use super::config::ImageConfig;
use super::error::Error;

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The stored manifest's digest (what tags point at).
    pub manifest_digest: Digest,
    /// The stored manifest.
    pub manifest: ImageManifest,
    /// The config's digest: the image ID, as docker shows it.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfig,
}

pub(crate) fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    // invariant: our Digest always prints as a valid `sha256:<64 hex>`
    d.to_string().parse().expect("valid sha256 digest")
}

/// An OCI image manifest (schema 2) of a config and layers.
pub(crate) fn image_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
) -> Result<ImageManifest, Error> {
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| Error::Unsupported {
            what: "image manifest",
            detail: e.to_string(),
        })
}

pub(crate) fn our_digest(d: &oci_spec::image::Digest) -> Result<Digest, Error> {
    d.to_string().parse().map_err(|_| Error::Unsupported {
        what: "digest",
        detail: d.to_string(),
    })
}

impl Image {
    /// Stores `config` (its `rootfs.diff_ids` must name blobs already in the store) and a
    /// manifest for it.
    pub fn store(store: &Store, config: &ImageConfig) -> Result<Self, Error> {
        let config_bytes = to_canonical_json(config).map_err(|source| Error::Invalid {
            digest: Digest::of(b""),
            what: "image config",
            source,
        })?;
        Self::store_raw(store, &config_bytes)
    }

    /// Stores an image whose config is `config_bytes` as given (so an image pulled or loaded
    /// keeps its ID); its `rootfs.diff_ids` must name blobs already in the store.
    pub fn store_raw(store: &Store, config_bytes: &[u8]) -> Result<Self, Error> {
        let config: ImageConfig =
            serde_json::from_slice(config_bytes).map_err(|source| Error::Invalid {
                digest: Digest::of(config_bytes),
                what: "image config",
                source,
            })?;
        let (config_digest, config_size) = store.put_bytes(config_bytes)?;
        let mut layers = Vec::with_capacity(config.rootfs.diff_ids.len());
        for diff_id in &config.rootfs.diff_ids {
            let size = store.blob_size(diff_id)?;
            layers.push(Descriptor::new(
                MediaType::ImageLayer,
                size,
                oci_digest(diff_id),
            ));
        }
        let manifest = image_manifest(
            Descriptor::new(
                MediaType::ImageConfig,
                config_size,
                oci_digest(&config_digest),
            ),
            layers,
        )?;
        let manifest_bytes = to_canonical_json(&manifest).map_err(|source| Error::Invalid {
            digest: config_digest,
            what: "image manifest",
            source,
        })?;
        let (manifest_digest, _) = store.put_bytes(&manifest_bytes)?;
        Ok(Self {
            manifest_digest,
            manifest,
            config_digest,
            config,
        })
    }

    /// Loads the image whose manifest is `manifest_digest`.
    pub fn load(store: &Store, manifest_digest: Digest) -> Result<Self, Error> {
        let bytes = store.read_blob(&manifest_digest)?;
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|source| Error::Invalid {
                digest: manifest_digest,
                what: "image manifest",
                source,
            })?;
        let config_digest = our_digest(manifest.config().digest())?;
        let config_bytes = store.read_blob(&config_digest)?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|source| Error::Invalid {
                digest: config_digest,
                what: "image config",
                source,
            })?;
        Ok(Self {
            manifest_digest,
            manifest,
            config_digest,
            config,
        })
    }

    /// The layers' diff IDs, bottom first.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.config.rootfs.diff_ids
    }

    /// Total size of the uncompressed layers.
    pub fn size(&self, store: &Store) -> Result<u64, Error> {
        self.diff_ids()
            .iter()
            .map(|d| store.blob_size(d).map_err(Error::from))
            .sum()
    }
}
