//! Pull: manifest (OCI or Docker schema 2; an index or manifest list picks the platform), config,
//! then the layers the store lacks, several at a time. Each layer is hashed as it streams in
//! and decompressed straight into the store, so nothing is held in memory and a blob whose bytes
//! do not match its digest is never stored. The image keeps its config bytes, so its ID is the
//! registry's.

use std::fmt;
use std::io::{self, BufReader, Read};
use std::str::FromStr;
use std::sync::Mutex;

use crate::digest::{Digest, HashingReader};
use crate::oci::Image;
use crate::store::Store;

use super::client::{Client, Options, pull_scope};
use super::error::Error;
use super::reference::Reference;

/// Manifest media types rbuild reads.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest accepted (distribution's own limit is 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

/// How many layers download at once.
const PARALLEL_LAYERS: usize = 4;

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`…
    pub architecture: String,
    /// `v7`, `v8`…
    pub variant: Option<String>,
}

impl Platform {
    /// The machine rbuild runs on.
    pub fn host() -> Self {
        let (os, arch) = crate::oci::host_platform();
        Self {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant: None,
        }
    }

    fn matches(&self, p: &PlatformJson) -> bool {
        crate::oci::platform_matches(
            (&self.os, &self.architecture, self.variant.as_deref()),
            (&p.os, &p.architecture, p.variant.as_deref()),
        )
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::InvalidPlatform {
            platform: s.to_owned(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let arch = |a: &str| match a {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            a => a.to_owned(),
        };
        match parts.as_slice() {
            [os, a] => Ok(Self {
                os: (*os).to_owned(),
                architecture: arch(a),
                variant: None,
            }),
            [os, a, v] => Ok(Self {
                os: (*os).to_owned(),
                architecture: arch(a),
                variant: Some((*v).to_owned()),
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
struct PlatformJson {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// A content descriptor, as manifests and indexes list them.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Desc {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default)]
    platform: Option<PlatformJson>,
}

impl Desc {
    pub(crate) fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: digest.to_string(),
            size,
            platform: None,
        }
    }
}

/// A manifest or an index, read leniently: the kind comes from the media type.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    #[serde(default)]
    pub(crate) media_type: String,
    #[serde(default)]
    pub(crate) config: Option<Desc>,
    #[serde(default)]
    pub(crate) layers: Vec<Desc>,
    #[serde(default)]
    manifests: Vec<Desc>,
}

/// Where a pulled layer came from: its compressed blob in a registry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Source {
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    pub(crate) size: u64,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image, in the store.
    pub image: Image,
    /// The digest of the manifest in the registry (what `name@sha256:…` pins).
    pub remote_digest: Digest,
    /// How many layers were downloaded (the others were in the store).
    pub layers_fetched: usize,
    /// Bytes downloaded.
    pub bytes_fetched: u64,
}

fn parse_digest(client: &Client, d: &str) -> Result<Digest, Error> {
    d.parse().map_err(|_| Error::Unsupported {
        reference: client.reference.clone(),
        what: "digest",
        media_type: d.to_owned(),
    })
}

/// Fetches a manifest (or index) by tag or digest; its digest is checked when pinned.
pub(crate) fn fetch_manifest(
    client: &Client,
    repository: &str,
    reference: &str,
    expected: Option<Digest>,
) -> Result<(Manifest, Digest, String), Error> {
    let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
    let path = format!("/v2/{repository}/manifests/{reference}");
    let resp = client.get(&path, &[pull_scope(repository)], &accept, "manifest")?;
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .unwrap_or_default();
    let (bytes, digest) = read_small(client, resp, MAX_MANIFEST + 1, "the manifest", expected)?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|source| Error::Invalid {
        reference: client.reference.clone(),
        what: "manifest",
        source,
    })?;
    let media_type = if manifest.media_type.is_empty() {
        content_type
    } else {
        manifest.media_type.clone()
    };
    Ok((manifest, digest, media_type))
}

/// Reads a body of at most `limit` bytes into memory, hashing it; with `expected`, a body
/// that hashes to anything else is refused.
fn read_small(
    client: &Client,
    resp: reqwest::blocking::Response,
    limit: u64,
    what: &str,
    expected: Option<Digest>,
) -> Result<(Vec<u8>, Digest), Error> {
    let mut bytes = Vec::new();
    resp.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Interrupted {
            registry: client.registry.clone(),
            reference: client.reference.clone(),
            what: what.to_owned(),
            source,
        })?;
    let actual = Digest::of(&bytes);
    match expected {
        Some(expected) if expected != actual => Err(Error::DigestMismatch {
            reference: client.reference.clone(),
            what: what.to_owned(),
            expected,
            actual,
        }),
        _ => Ok((bytes, actual)),
    }
}

/// Fetches a config-sized blob into memory, checking its digest.
pub(crate) fn fetch_small_blob(
    client: &Client,
    repo: &str,
    digest: &str,
) -> Result<Vec<u8>, Error> {
    let expected = parse_digest(client, digest)?;
    let resp = client.get(
        &format!("/v2/{repo}/blobs/{expected}"),
        &[pull_scope(repo)],
        "",
        &format!("blob `{expected}`"),
    )?;
    let what = format!("blob `{expected}`");
    Ok(read_small(client, resp, MAX_MANIFEST * 4, &what, Some(expected))?.0)
}

/// Pulls `reference` for `platform` into the store and tags it with its full name.
pub fn pull(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    opts: &Options,
) -> Result<Pulled, Error> {
    let client = Client::new(reference, opts)?;
    let repo = &reference.repository;
    let (mut manifest, mut digest, mut media_type) =
        fetch_manifest(&client, repo, &reference.manifest_ref(), reference.digest)?;
    let is_index = |mt: &str, m: &Manifest| {
        mt == OCI_INDEX || mt == DOCKER_LIST || (m.config.is_none() && !m.manifests.is_empty())
    };
    if is_index(&media_type, &manifest) {
        let pick = manifest
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .ok_or_else(|| Error::NoPlatform {
                reference: client.reference.clone(),
                platform: platform.to_string(),
                available: manifest
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
            .clone();
        let pinned = parse_digest(&client, &pick.digest)?;
        (manifest, _, media_type) = fetch_manifest(&client, repo, &pick.digest, Some(pinned))?;
        digest = pinned;
    }
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(Error::Unsupported {
            reference: client.reference.clone(),
            what: "manifest type",
            media_type,
        });
    }
    let config_desc = manifest.config.clone().ok_or_else(|| Error::Unsupported {
        reference: client.reference.clone(),
        what: "manifest without config",
        media_type: media_type.clone(),
    })?;
    let config_digest = parse_digest(&client, &config_desc.digest)?;
    let config_bytes = if store.has_blob(&config_digest) {
        store.read_blob(&config_digest)?
    } else {
        fetch_small_blob(&client, repo, &config_desc.digest)?
    };
    let config: crate::oci::ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|source| Error::Invalid {
            reference: client.reference.clone(),
            what: "image config",
            source,
        })?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::Unsupported {
            reference: client.reference.clone(),
            what: "manifest whose layer count differs from its config's",
            media_type,
        });
    }
    let wanted: Vec<(usize, Desc)> = manifest
        .layers
        .iter()
        .cloned()
        .enumerate()
        .filter(|(i, _)| !store.has_blob(&diff_ids[*i]))
        .collect();
    let fetched = fetch_layers(store, &client, repo, &wanted, diff_ids)?;
    let image = Image::store_raw(store, &config_bytes)?;
    if let Some(tag) = &reference.tag {
        store.set_tag(&reference.with_tag(tag).to_string(), image.manifest_digest)?;
    }
    if reference.digest.is_some() {
        store.set_tag(
            &format!("{}@{digest}", reference.name()),
            image.manifest_digest,
        )?;
    }
    Ok(Pulled {
        image,
        remote_digest: digest,
        layers_fetched: wanted.len(),
        bytes_fetched: fetched,
    })
}

/// Downloads `wanted` layers (index, descriptor), a few at a time; the first error wins.
fn fetch_layers(
    store: &Store,
    client: &Client,
    repo: &str,
    wanted: &[(usize, Desc)],
    diff_ids: &[Digest],
) -> Result<u64, Error> {
    let queue = Mutex::new(wanted.iter());
    let total = Mutex::new(Ok(0u64));
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_LAYERS.min(wanted.len()) {
            s.spawn(|| {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some((i, desc)) = next else { break };
                    let result = fetch_layer(store, client, repo, desc, Some(diff_ids[*i]));
                    let Ok(mut t) = total.lock() else { break };
                    match (&mut *t, result) {
                        (Ok(sum), Ok(n)) => *sum += n,
                        (Ok(_), Err(e)) => {
                            *t = Err(e);
                            // Stop the others picking up more work.
                            if let Ok(mut q) = queue.lock() {
                                q.by_ref().for_each(drop);
                            }
                        }
                        (Err(_), _) => {}
                    }
                }
            });
        }
    });
    total.into_inner().unwrap_or(Ok(0))
}

/// Downloads one layer blob into the store uncompressed, retrying a broken connection;
/// gives the bytes downloaded.
pub(crate) fn fetch_layer(
    store: &Store,
    client: &Client,
    repo: &str,
    desc: &Desc,
    diff_id: Option<Digest>,
) -> Result<u64, Error> {
    let expected = parse_digest(client, &desc.digest)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_layer_once(
            store,
            client,
            repo,
            expected,
            desc.size,
            &desc.media_type,
            diff_id,
        ) {
            Err(Error::Interrupted { .. } | Error::Connect { .. })
                if attempt < client.attempts() =>
            {
                client.wait(attempt)?;
            }
            other => return other,
        }
    }
}

/// The most a layer of `compressed` bytes may decompress to: gzip cannot do better than about
/// 1032:1, so 1100 times its size (and 64 MiB for small layers) never refuses a real gzip
/// layer, and stops a zstd or gzip bomb from filling the disk.
fn decompressed_limit(compressed: u64) -> u64 {
    compressed.saturating_mul(1100).saturating_add(64 << 20)
}

/// A writer that refuses (`FileTooLarge`) to take more than `left` bytes.
struct Bounded<W> {
    inner: W,
    left: u64,
}

impl<W: io::Write> io::Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len() as u64;
        if n > self.left {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "more than the layer's bound",
            ));
        }
        let written = self.inner.write(buf)?;
        self.left -= written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn fetch_layer_once(
    store: &Store,
    client: &Client,
    repo: &str,
    expected: Digest,
    size: u64,
    media_type: &str,
    diff_id: Option<Digest>,
) -> Result<u64, Error> {
    let path = format!("/v2/{repo}/blobs/{expected}");
    let resp = client.get(
        &path,
        &[pull_scope(repo)],
        "",
        &format!("blob `{expected}`"),
    )?;
    let interrupted = |source: io::Error| {
        if crate::cancel::Cancelled::is(&source) {
            return Error::Cancelled;
        }
        Error::Interrupted {
            registry: client.registry.clone(),
            reference: client.reference.clone(),
            what: format!("layer `{expected}`"),
            source,
        }
    };
    let body = client.cancel().reader(resp).take(size + 1);
    let mut src = BufReader::with_capacity(1 << 16, HashingReader::new(body));
    let limit = decompressed_limit(size);
    let mut out = Bounded {
        inner: store.blob_writer()?,
        left: limit,
    };
    let bomb = || Error::Bomb {
        registry: client.registry.clone(),
        reference: client.reference.clone(),
        layer: expected.to_string(),
        compressed: size,
        limit,
    };
    let interrupted = |source: io::Error| {
        if source.kind() == io::ErrorKind::FileTooLarge {
            bomb()
        } else {
            interrupted(source)
        }
    };
    {
        let mut layer = crate::oci::decompressed(&mut src).map_err(interrupted)?;
        io::copy(&mut layer, &mut out).map_err(interrupted)?;
    }
    // What the decompressor left unread (padding) is still part of the blob.
    let mut hashing = src.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(interrupted)?;
    let (actual, read) = hashing.finish();
    if actual != expected || read != size {
        return Err(Error::DigestMismatch {
            reference: client.reference.clone(),
            what: format!("layer `{expected}` ({read} bytes read, {size} expected)"),
            expected,
            actual,
        });
    }
    let (stored, _) = out.inner.commit(diff_id)?;
    // Where the layer came from, so a push to the same registry can mount it instead of
    // uploading it.
    let source = Source {
        registry: client.registry.clone(),
        repository: repo.to_owned(),
        digest: expected,
        media_type: media_type.to_owned(),
        size,
    };
    if let Ok(json) = serde_json::to_string(&source) {
        store.set_meta("source", &stored.hex(), &json)?;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_is_bounded_by_what_its_size_can_hold() {
        use std::io::Write as _;
        // gzip's best is about 1032:1: a real layer always fits.
        assert!(decompressed_limit(1 << 20) > 1032 << 20);
        let mut w = Bounded {
            inner: Vec::new(),
            left: 10,
        };
        w.write_all(b"0123456789").unwrap();
        let err = w.write_all(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(w.inner.len(), 10);
    }

    #[test]
    fn platforms_parse_and_match() {
        let p: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        let j = |os: &str, arch: &str, v: Option<&str>| PlatformJson {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(Into::into),
        };
        assert!(p.matches(&j("linux", "arm64", Some("v8"))));
        assert!(!p.matches(&j("linux", "amd64", None)));
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(v7.matches(&j("linux", "arm", Some("v7"))));
        assert!(!v7.matches(&j("linux", "arm", Some("v6"))));
        assert_eq!(
            "linux/x86_64".parse::<Platform>().unwrap().architecture,
            "amd64"
        );
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
    }
}
