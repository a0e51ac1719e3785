//! Registries (the OCI distribution API): references normalised as docker does, pull (OCI and
//! Docker manifests, indexes with platform selection, layers streamed, verified and
//! decompressed into the store, several at a time), push (existence checks, cross-repository
//! mounts, monolithic and chunked uploads, OCI or Docker manifests), and logins kept in docker's
//! `config.json` (with credential helpers). Bearer-token and basic auth, plain HTTP for loopback
//! and `--insecure-registry` hosts, retries with backoff on 429, 5xx and broken connections.
//!
//! HTTP is `reqwest` (blocking, rustls) rather than `oci-client`: the builder is synchronous
//! and already links reqwest for `ADD <url>`; `oci-client` brings tokio into every pull and
//! holds whole layers in memory in its simple API, while this module streams each layer from
//! the socket through the hasher and decompressor into the store.
//!
//! Imports: `digest`, `store`, `oci` (see `tests/architecture.rs`).

mod auth;
mod client;
mod error;
mod pull;
mod push;
mod reference;

pub use auth::{Credentials, default_config_path};
pub use client::{Options, UPLOAD_TIMEOUT};
pub use error::Error;
pub use pull::{Platform, Pulled, pull};
pub use push::{ManifestFormat, PushOptions, Pushed, push, push_index};
pub use reference::{DOCKER_HUB, Reference};

/// A `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks `username`/`password` against `registry` (answering its challenge as a pull would)
/// and saves them in docker's config, so docker and rbuild share the login.
pub fn login(registry: &str, username: &str, password: &str, opts: &Options) -> Result<()> {
    let reference: Reference = format!("{registry}/login-check").parse()?;
    let client = client::Client::with_credentials(
        &reference,
        opts,
        Some(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }),
    )?;
    let resp = client.send(
        &reqwest::Method::GET,
        "/v2/",
        &[],
        &reqwest::header::HeaderMap::new(),
        None,
    )?;
    client.check(resp, &reqwest::Method::GET, "API")?;
    auth::store(&opts.docker_config, &reference.registry, username, password)
}

/// Forgets the login for `registry`; says whether there was one.
pub fn logout(registry: &str, opts: &Options) -> Result<bool> {
    let reference: Reference = format!("{registry}/logout").parse()?;
    auth::erase(&opts.docker_config, &reference.registry)
}

/// A stored blob to reference from an artifact manifest.
#[derive(Debug, Clone)]
pub struct ArtifactBlob {
    /// Its digest (it must be in the store).
    pub digest: crate::digest::Digest,
    /// Its size.
    pub size: u64,
    /// Its media type in the manifest.
    pub media_type: String,
}

/// Pushes an OCI artifact: `config` (stored first) of type `config_media_type`, and `layers`
/// from the store, under `reference`'s tag. Gives the manifest digest.
pub fn push_artifact(
    store: &crate::store::Store,
    reference: &Reference,
    config: &[u8],
    config_media_type: &str,
    layers: &[ArtifactBlob],
    opts: &Options,
) -> Result<crate::digest::Digest> {
    let (config_digest, config_size) = store.put_bytes(config)?;
    let mut blobs: Vec<push::Blob> = layers
        .iter()
        .map(|l| push::Blob {
            digest: l.digest,
            size: l.size,
            media_type: l.media_type.clone(),
            mount_from: None,
        })
        .collect();
    let config_blob = push::Blob {
        digest: config_digest,
        size: config_size,
        media_type: config_media_type.to_owned(),
        mount_from: None,
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": pull::OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": blobs.iter().map(push::Blob::descriptor).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Invalid {
        reference: reference.to_string(),
        what: "manifest",
        source,
    })?;
    blobs.push(config_blob);
    let client = client::Client::new(reference, opts)?;
    let pushed = push::push_manifest(
        &client,
        store,
        reference,
        &blobs,
        &bytes,
        pull::OCI_MANIFEST,
        PushOptions::default().chunk_size,
    )?;
    Ok(pushed.digest)
}

/// Fetches an artifact's config bytes (checked against the manifest) and its layers'
/// descriptors, without downloading the layers.
pub fn pull_artifact(
    reference: &Reference,
    opts: &Options,
) -> Result<(Vec<u8>, Vec<ArtifactBlob>)> {
    let client = client::Client::new(reference, opts)?;
    let repo = &reference.repository;
    let (manifest, _, _) =
        pull::fetch_manifest(&client, repo, &reference.manifest_ref(), reference.digest)?;
    let config = manifest.config.ok_or_else(|| Error::Unsupported {
        reference: reference.to_string(),
        what: "artifact without config",
        media_type: manifest.media_type.clone(),
    })?;
    let config_bytes = pull::fetch_small_blob(&client, repo, &config.digest)?;
    let mut layers = Vec::new();
    for l in manifest.layers {
        layers.push(ArtifactBlob {
            digest: l.digest.parse().map_err(|_| Error::Unsupported {
                reference: reference.to_string(),
                what: "digest",
                media_type: l.digest.clone(),
            })?,
            size: l.size,
            media_type: l.media_type,
        });
    }
    Ok((config_bytes, layers))
}

/// Downloads one (possibly compressed) layer blob of `reference`'s repository into the store
/// uncompressed; with `diff_id`, the result must hash to it.
pub fn fetch_layer(
    store: &crate::store::Store,
    reference: &Reference,
    blob: &ArtifactBlob,
    diff_id: Option<crate::digest::Digest>,
    opts: &Options,
) -> Result<u64> {
    let client = client::Client::new(reference, opts)?;
    pull::fetch_layer(
        store,
        &client,
        &reference.repository,
        &pull::Desc::new(&blob.media_type, blob.digest, blob.size),
        diff_id,
    )
}
