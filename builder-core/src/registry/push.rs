//! Push: each blob is checked for (HEAD), mounted from the repository it was pulled from when
//! that is on the same registry, else uploaded — in one PUT, or in PATCH chunks above a size —
//! and then the manifest is put under each tag, in OCI or Docker media types.

use std::io::{Read, Seek, SeekFrom};

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
};

use crate::digest::Digest;
use crate::oci::{Compression, Image, compressed_layer};
use crate::store::Store;

use super::client::{Client, Options, pull_scope, push_scope};
use super::error::Error;
use super::pull::{DOCKER_MANIFEST, OCI_MANIFEST, Source};
use super::reference::Reference;

/// The manifest media types a push writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// `application/vnd.oci.image.manifest.v1+json`.
    #[default]
    Oci,
    /// `application/vnd.docker.distribution.manifest.v2+json` (gzip or plain layers only).
    Docker,
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Manifest media types.
    pub format: ManifestFormat,
    /// Layer compression.
    pub compression: Compression,
    /// Blobs larger than this go up in PATCH chunks of this size; smaller ones in one PUT.
    pub chunk_size: u64,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            format: ManifestFormat::Oci,
            compression: Compression::Gzip,
            chunk_size: 64 << 20,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest in the registry.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

/// A blob to push: in the store under `digest`, perhaps mountable from `from`.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) media_type: String,
    /// Repository on the same registry that holds it (a cross-repository mount).
    pub(crate) mount_from: Option<String>,
}

impl Blob {
    pub(crate) fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.size,
        })
    }
}

fn layer_media_type(
    format: ManifestFormat,
    c: Compression,
    reference: &Reference,
) -> Result<&'static str, Error> {
    Ok(match (format, c) {
        (ManifestFormat::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
        (ManifestFormat::Oci, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
        (ManifestFormat::Oci, Compression::Uncompressed) => {
            "application/vnd.oci.image.layer.v1.tar"
        }
        (ManifestFormat::Docker, Compression::Gzip) => {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        (ManifestFormat::Docker, Compression::Uncompressed) => {
            "application/vnd.docker.image.rootfs.diff.tar"
        }
        (ManifestFormat::Docker, Compression::Zstd) => {
            return Err(Error::Unsupported {
                reference: reference.to_string(),
                what: "layer compression for Docker manifests (use the OCI format for zstd)",
                media_type: "zstd".into(),
            });
        }
    })
}

/// A pulled layer's blob, if it can be mounted on `reference`'s registry in `format`.
fn mountable(
    store: &Store,
    diff_id: &Digest,
    reference: &Reference,
    format: ManifestFormat,
) -> Option<Blob> {
    let json = store.meta("source", &diff_id.hex()).ok()??;
    let source: Source = serde_json::from_str(&json).ok()?;
    if source.registry != reference.registry {
        return None;
    }
    let gzip = source.media_type.ends_with("gzip");
    let media_type = match format {
        ManifestFormat::Docker if gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ManifestFormat::Oci if gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        ManifestFormat::Oci if source.media_type.ends_with("zstd") => {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        _ => return None,
    };
    Some(Blob {
        digest: source.digest,
        size: source.size,
        media_type: media_type.to_owned(),
        mount_from: Some(source.repository),
    })
}

/// Pushes `image` (its blobs, then its manifest) to each of `references`.
///
/// # Errors
/// A registry refuses, or a blob is missing from the store.
pub fn push(
    store: &Store,
    image: &Image,
    references: &[Reference],
    opts: &Options,
    push_opts: &PushOptions,
) -> Result<Vec<Pushed>, Error> {
    let mut out = Vec::new();
    for reference in references {
        let client = Client::new(reference, opts)?;
        let (blobs, bytes, manifest_type) = pushed_manifest(store, image, reference, push_opts)?;
        out.push(push_manifest(
            &client,
            store,
            reference,
            &blobs,
            &bytes,
            manifest_type,
            push_opts.chunk_size,
        )?);
    }
    Ok(out)
}

/// Pushes each image of an index (by digest), then the index under each of `references`: an
/// OCI index, or a Docker manifest list with [`ManifestFormat::Docker`].
///
/// # Errors
/// A registry refuses, or a blob is missing from the store.
pub fn push_index(
    store: &Store,
    images: &[crate::oci::IndexEntry],
    references: &[Reference],
    opts: &Options,
    push_opts: &PushOptions,
) -> Result<Vec<Pushed>, Error> {
    let mut out = Vec::new();
    for reference in references {
        let client = Client::new(reference, opts)?;
        let mut manifests = Vec::new();
        for entry in images {
            let (blobs, bytes, manifest_type) =
                pushed_manifest(store, &entry.image, reference, push_opts)?;
            let digest = Digest::of(&bytes);
            let by_digest = Reference {
                tag: None,
                digest: Some(digest),
                ..reference.clone()
            };
            push_manifest(
                &client,
                store,
                &by_digest,
                &blobs,
                &bytes,
                manifest_type,
                push_opts.chunk_size,
            )?;
            manifests.push(serde_json::json!({
                "mediaType": manifest_type,
                "digest": digest.to_string(),
                "size": bytes.len(),
                "platform": entry.platform_json(),
            }));
        }
        let index_type = match push_opts.format {
            ManifestFormat::Oci => super::pull::OCI_INDEX,
            ManifestFormat::Docker => super::pull::DOCKER_LIST,
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).map_err(|source| Error::Invalid {
            reference: reference.to_string(),
            what: "index",
            source,
        })?;
        out.push(push_manifest(
            &client,
            store,
            reference,
            &[],
            &bytes,
            index_type,
            push_opts.chunk_size,
        )?);
    }
    Ok(out)
}

/// The blobs and manifest `image` is pushed as to `reference` (layers compressed, or mounted
/// from a repository that has them), and the manifest's media type.
fn pushed_manifest(
    store: &Store,
    image: &Image,
    reference: &Reference,
    push_opts: &PushOptions,
) -> Result<(Vec<Blob>, Vec<u8>, &'static str), Error> {
    let layer_type = layer_media_type(push_opts.format, push_opts.compression, reference)?;
    let mut layers = Vec::new();
    for diff_id in image.diff_ids() {
        if let Some(blob) = mountable(store, diff_id, reference, push_opts.format) {
            layers.push(blob);
            continue;
        }
        let (digest, size) = compressed_layer(store, diff_id, push_opts.compression)?;
        layers.push(Blob {
            digest,
            size,
            media_type: layer_type.to_owned(),
            mount_from: None,
        });
    }
    let (manifest_type, config_type) = match push_opts.format {
        ManifestFormat::Oci => (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json"),
        ManifestFormat::Docker => (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
        ),
    };
    let config = Blob {
        digest: image.config_digest,
        size: store.blob_size(&image.config_digest)?,
        media_type: config_type.to_owned(),
        mount_from: None,
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Invalid {
        reference: reference.to_string(),
        what: "manifest",
        source,
    })?;
    let mut blobs = layers;
    blobs.push(config);
    Ok((blobs, bytes, manifest_type))
}

/// Pushes `blobs` (mounting the mountable ones the registry lacks, else uploading them from the
/// store) then `manifest` under `reference`'s tag (or digest).
pub(crate) fn push_manifest(
    client: &Client,
    store: &Store,
    reference: &Reference,
    blobs: &[Blob],
    manifest: &[u8],
    media_type: &str,
    chunk_size: u64,
) -> Result<Pushed, Error> {
    let repo = &reference.repository;
    let mut scopes = vec![push_scope(repo)];
    for b in blobs {
        if let Some(from) = &b.mount_from {
            let s = pull_scope(from);
            if from != repo && !scopes.contains(&s) {
                scopes.push(s);
            }
        }
    }
    let mut pushed = Pushed {
        digest: Digest::of(manifest),
        uploaded: 0,
        mounted: 0,
        existing: 0,
    };
    for blob in blobs {
        if blob_exists(client, repo, &scopes, &blob.digest)? {
            pushed.existing += 1;
            continue;
        }
        if let Some(from) = &blob.mount_from {
            if mount(client, repo, &scopes, &blob.digest, from)? {
                pushed.mounted += 1;
                continue;
            }
        }
        upload(
            client,
            store,
            repo,
            &scopes,
            &blob.digest,
            blob.size,
            chunk_size,
        )?;
        pushed.uploaded += 1;
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(media_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    let body = manifest.to_vec();
    let make = || Ok(reqwest::blocking::Body::from(body.clone()));
    let path = format!("/v2/{repo}/manifests/{}", reference.manifest_ref());
    let resp = client.send(&Method::PUT, &path, &scopes, &headers, Some(&make))?;
    client.check(resp, &Method::PUT, "repository")?;
    Ok(pushed)
}

fn blob_exists(
    client: &Client,
    repo: &str,
    scopes: &[String],
    digest: &Digest,
) -> Result<bool, Error> {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let resp = client.send(&Method::HEAD, &path, scopes, &HeaderMap::new(), None)?;
    match resp.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => client.check(resp, &Method::HEAD, "blob").map(|_| false),
    }
}

/// A cross-repository mount; false when the registry opened an upload instead.
fn mount(
    client: &Client,
    repo: &str,
    scopes: &[String],
    digest: &Digest,
    from: &str,
) -> Result<bool, Error> {
    let path = format!(
        "/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
        super::client::urlencode(from)
    );
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let resp = client.send(&Method::POST, &path, scopes, &headers, None)?;
    match resp.status() {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => Ok(false),
        _ => client
            .check(resp, &Method::POST, "repository")
            .map(|_| false),
    }
}

/// `location` with `key=value` added to its query.
fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={}", super::client::urlencode(value))
}

fn location(client: &Client, resp: &reqwest::blocking::Response) -> Result<String, Error> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Status {
            registry: client.registry.clone(),
            reference: client.reference.clone(),
            method: "POST".into(),
            url: resp.url().to_string(),
            status: resp.status().as_u16(),
            message: "no Location header for the upload".into(),
        })?;
    Ok(client.url(loc))
}

/// Uploads one blob from the store: a single PUT, or PATCH chunks and a closing PUT.
fn upload(
    client: &Client,
    store: &Store,
    repo: &str,
    scopes: &[String],
    digest: &Digest,
    size: u64,
    chunk_size: u64,
) -> Result<(), Error> {
    let start_path = format!("/v2/{repo}/blobs/uploads/");
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let resp = client.send(&Method::POST, &start_path, scopes, &headers, None)?;
    let resp = client.check(resp, &Method::POST, "repository")?;
    let mut loc = location(client, &resp)?;
    let path = store.blob_path(digest);
    let open_range = |offset: u64, len: u64| -> Result<reqwest::blocking::Body, Error> {
        let mut f = fs_err::File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        let body = client.cancel().reader(f).take(len);
        Ok(reqwest::blocking::Body::sized(body, len))
    };
    let mut octet = HeaderMap::new();
    octet.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if size > chunk_size {
        let mut offset = 0;
        while offset < size {
            let len = chunk_size.min(size - offset);
            let mut h = octet.clone();
            if let Ok(v) = HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1)) {
                h.insert(CONTENT_RANGE, v);
            }
            h.insert(CONTENT_LENGTH, HeaderValue::from(len));
            let make = || open_range(offset, len);
            let resp = client.send(&Method::PATCH, &loc, scopes, &h, Some(&make))?;
            let resp = client.check(resp, &Method::PATCH, "upload")?;
            loc = location(client, &resp)?;
            offset += len;
        }
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = client.send(
            &Method::PUT,
            &with_query(&loc, "digest", &digest.to_string()),
            scopes,
            &h,
            None,
        )?;
        client.check(resp, &Method::PUT, "upload")?;
    } else {
        let mut h = octet;
        h.insert(CONTENT_LENGTH, HeaderValue::from(size));
        let make = || open_range(0, size);
        let resp = client.send(
            &Method::PUT,
            &with_query(&loc, "digest", &digest.to_string()),
            scopes,
            &h,
            Some(&make),
        )?;
        client.check(resp, &Method::PUT, "upload")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_locations_keep_their_query() {
        assert_eq!(
            with_query(
                "http://r/v2/a/blobs/uploads/u?_state=x",
                "digest",
                "sha256:ab"
            ),
            "http://r/v2/a/blobs/uploads/u?_state=x&digest=sha256%3Aab"
        );
        assert_eq!(with_query("/u", "digest", "d"), "/u?digest=d");
    }
}
