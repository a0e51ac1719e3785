//! Multi-platform images in the store: an OCI image index whose manifests are stored images,
//! each with its platform. A tag names either an image manifest or an index.

use crate::digest::Digest;
use crate::store::Store;

use super::error::Error;
use super::image::Image;

/// The media type of an OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The media type of a Docker manifest list.
pub const MANIFEST_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// One platform's image of an index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// `os`, `architecture`, `variant` as the index records them.
    pub os: String,
    /// `amd64`, `arm64`…
    pub architecture: String,
    /// `v8`, `v7`…
    pub variant: Option<String>,
    /// The image.
    pub image: Image,
}

/// An index in the store.
#[derive(Debug, Clone)]
pub struct Index {
    /// Its digest (what a tag names).
    pub digest: Digest,
    /// Its manifests, in order.
    pub entries: Vec<IndexEntry>,
}

impl IndexEntry {
    /// The entry's `platform` object, as an index records it.
    pub fn platform_json(&self) -> serde_json::Value {
        let mut platform = serde_json::json!({"architecture": self.architecture, "os": self.os});
        if let Some(v) = &self.variant {
            platform["variant"] = v.clone().into();
        }
        platform
    }
}

/// Whether an image for `have` (`os`, `architecture`, `variant`) serves a request for `want`:
/// the same OS and architecture, and the same variant when one is asked for (arm64's `v8` is
/// the same as none).
pub fn platform_matches(
    want: (&str, &str, Option<&str>),
    have: (&str, &str, Option<&str>),
) -> bool {
    let norm = |arch: &str, v: Option<&str>| match (arch, v) {
        ("arm64", None | Some("v8")) => None,
        (_, v) => v.map(str::to_owned),
    };
    want.0 == have.0
        && want.1 == have.1
        && (want.2.is_none() || norm(want.1, want.2) == norm(have.1, have.2))
}

#[derive(serde::Deserialize)]
struct RawIndex {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawEntry>>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    digest: String,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(serde::Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Index {
    /// Stores an index of `entries` (each image already stored), as an OCI index or, with
    /// `docker`, a Docker manifest list.
    ///
    /// # Errors
    /// The store cannot write it.
    pub fn store(store: &Store, entries: Vec<IndexEntry>, docker: bool) -> Result<Self, Error> {
        let manifest_type = if docker {
            "application/vnd.docker.distribution.manifest.v2+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        };
        let mut manifests = Vec::new();
        for e in &entries {
            manifests.push(serde_json::json!({
                "mediaType": manifest_type,
                "digest": e.image.manifest_digest.to_string(),
                "size": store.blob_size(&e.image.manifest_digest)?,
                "platform": e.platform_json(),
            }));
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": if docker { MANIFEST_LIST_MEDIA_TYPE } else { INDEX_MEDIA_TYPE },
            "manifests": manifests,
        });
        let bytes = super::to_canonical_json(&index).map_err(|source| Error::Invalid {
            digest: Digest::of(b""),
            what: "image index",
            source,
        })?;
        let (digest, _) = store.put_bytes(&bytes)?;
        Ok(Self { digest, entries })
    }

    /// The index `digest` names, or `None` when it names an image manifest.
    ///
    /// # Errors
    /// The blob is missing or is neither, or a manifest of the index is missing.
    pub fn load(store: &Store, digest: Digest) -> Result<Option<Self>, Error> {
        let bytes = store.read_blob(&digest)?;
        let raw: RawIndex = serde_json::from_slice(&bytes).map_err(|source| Error::Invalid {
            digest,
            what: "manifest or index",
            source,
        })?;
        let is_index = raw.config.is_none()
            && (raw.manifests.is_some()
                || matches!(
                    raw.media_type.as_deref(),
                    Some(INDEX_MEDIA_TYPE | MANIFEST_LIST_MEDIA_TYPE)
                ));
        if !is_index {
            return Ok(None);
        }
        let mut entries = Vec::new();
        for m in raw.manifests.unwrap_or_default() {
            let d: Digest = m.digest.parse().map_err(|_| Error::Unsupported {
                what: "digest",
                detail: m.digest.clone(),
            })?;
            let p = m.platform.unwrap_or(RawPlatform {
                os: String::new(),
                architecture: String::new(),
                variant: None,
            });
            entries.push(IndexEntry {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant,
                image: Image::load(store, d)?,
            });
        }
        Ok(Some(Self { digest, entries }))
    }

    /// The entry for `os`/`architecture` (and `variant`, when given; arm64's `v8` is the same as
    /// none).
    pub fn find(&self, os: &str, architecture: &str, variant: Option<&str>) -> Option<&IndexEntry> {
        self.entries.iter().find(|e| {
            platform_matches(
                (os, architecture, variant),
                (&e.os, &e.architecture, e.variant.as_deref()),
            )
        })
    }
}

/// The images a tag's digest names: the image, or every image of the index (and the index's
/// digest, kept with them).
///
/// # Errors
/// As [`Index::load`] and [`Image::load`].
pub fn tagged_images(store: &Store, digest: Digest) -> Result<(Vec<Image>, Option<Digest>), Error> {
    match Index::load(store, digest)? {
        Some(index) => Ok((
            index.entries.into_iter().map(|e| e.image).collect(),
            Some(index.digest),
        )),
        None => Ok((vec![Image::load(store, digest)?], None)),
    }
}

impl Image {
    /// The image a tag's `digest` names: the image, or the host platform's image of an index
    /// (its first when it has none for the host).
    ///
    /// # Errors
    /// As [`Index::load`] and [`Image::load`].
    pub fn load_tagged(store: &Store, digest: Digest) -> Result<Self, Error> {
        match Index::load(store, digest)? {
            None => Self::load(store, digest),
            Some(index) => {
                let (os, arch) = super::host_platform();
                let entry = index
                    .find(os, arch, None)
                    .or_else(|| index.entries.first())
                    .ok_or_else(|| Error::Unsupported {
                        what: "image index",
                        detail: format!("{digest} has no manifests"),
                    })?;
                Ok(entry.image.clone())
            }
        }
    }
}
