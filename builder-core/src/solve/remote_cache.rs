//! Sharing the step cache between machines, as BuildKit's `--cache-to`/`--cache-from` do:
//! `type=registry,ref=REF` (an OCI artifact in a registry) or `type=local,dest=DIR`/`src=DIR`
//! (an OCI image layout directory).
//!
//! The artifact's config (media type [`CONFIG_MEDIA_TYPE`]) lists the step-cache records — step
//! key → resulting image config — and, for each layer they name, its diff ID and the compressed
//! blob that holds it; the manifest's layers are those blobs. `mode=min` exports the steps of the
//! target stage, `mode=max` those of every stage built.
//!
//! Importing writes the records into the store and remembers where each layer is, without
//! downloading it: a step whose record names absent layers is still a hit, and a layer is
//! fetched only when something reads it (a later step's root filesystem, `COPY --from`, the
//! final image). So a build that is all cached downloads only the layers of its result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::oci::{Compression, compressed_layer};
use crate::registry::{self, ArtifactBlob, Reference};
use crate::store::Store;

use super::{Error, Result};

/// The media type of the artifact config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where a cache is exported to or imported from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// `type=registry,ref=REF[,mode=min|max]`.
    Registry {
        /// The artifact's reference.
        reference: Reference,
        /// `mode=max`: every stage's steps.
        max: bool,
    },
    /// `type=local,dest=DIR` (export) or `src=DIR` (import) `[,mode=min|max]`.
    Local {
        /// The OCI layout directory.
        dir: PathBuf,
        /// `mode=max`.
        max: bool,
    },
}

impl CacheSpec {
    /// Reads `type=registry,ref=…` / `type=local,dest=…` / `type=local,src=…`; a bare value is a
    /// registry reference, as BuildKit takes it.
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        let mut kind = None;
        let (mut reference, mut dir, mut max) = (None, None, false);
        if spec.contains('=') {
            for field in spec.split(',') {
                match field.split_once('=') {
                    Some(("type", v)) => kind = Some(v),
                    Some(("ref", v)) => reference = Some(v.to_owned()),
                    Some(("dest" | "src", v)) => dir = Some(PathBuf::from(v)),
                    Some(("mode", "max")) => max = true,
                    Some(("mode", "min")) => max = false,
                    Some(("mode", m)) => return Err(format!("unknown mode `{m}` (min or max)")),
                    // Accepted for BuildKit compatibility; rbuild's cache layers are always gzip.
                    Some((
                        "compression" | "oci-mediatypes" | "image-manifest" | "ignore-error",
                        _,
                    )) => {}
                    _ => return Err(format!("unknown field `{field}`")),
                }
            }
        } else {
            kind = Some("registry");
            reference = Some(spec.to_owned());
        }
        match kind {
            Some("registry") => {
                let r = reference.ok_or("type=registry needs ref=REF")?;
                Ok(Self::Registry {
                    reference: r.parse().map_err(|e: registry::Error| e.to_string())?,
                    max,
                })
            }
            Some("local") => Ok(Self::Local {
                dir: dir.ok_or("type=local needs dest=DIR (export) or src=DIR (import)")?,
                max,
            }),
            Some(other) => Err(format!(
                "unsupported cache type `{other}` (registry or local)"
            )),
            None => Err("no type= given".into()),
        }
    }

    /// `mode=max`.
    pub fn max(&self) -> bool {
        match self {
            Self::Registry { max, .. } | Self::Local { max, .. } => *max,
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    key: Digest,
    value: serde_json::Value,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Layer {
    #[serde(rename = "diffID")]
    diff_id: Digest,
    digest: Digest,
    size: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Config {
    version: u32,
    records: Vec<Record>,
    layers: Vec<Layer>,
}

/// Where an imported layer can be fetched from.
#[derive(Debug, Clone)]
pub(crate) enum LayerSource {
    Registry(Reference, ArtifactBlob),
    Local(PathBuf),
}

/// Layers the imported cache knows and the store may lack, by diff ID.
pub(crate) type LazyLayers = Mutex<HashMap<Digest, LayerSource>>;

fn cache_error(what: String) -> Error {
    Error::Cache { what }
}

/// Writes the records of `keys` and their layers to `spec`.
pub(crate) fn export(
    store: &Store,
    spec: &CacheSpec,
    keys: &[Digest],
    opts: &registry::Options,
) -> Result<usize> {
    let mut records = Vec::new();
    let mut layers: Vec<Layer> = Vec::new();
    for key in keys {
        let Some(record) = store.step_record(key)? else {
            continue;
        };
        let diff_ids = record.layers.clone();
        let value = serde_json::to_value(&record)
            .map_err(|e| cache_error(format!("cache record `{key}`: {e}")))?;
        // Only records whose layers are all here can be shared.
        if !diff_ids.iter().all(|d| store.has_blob(d)) {
            continue;
        }
        for d in diff_ids {
            if layers.iter().any(|l| l.diff_id == d) {
                continue;
            }
            let (digest, size) = compressed_layer(store, &d, Compression::Gzip)?;
            layers.push(Layer {
                diff_id: d,
                digest,
                size,
            });
        }
        if !records.iter().any(|r: &Record| r.key == *key) {
            records.push(Record { key: *key, value });
        }
    }
    let count = records.len();
    let config = Config {
        version: 1,
        records,
        layers: layers.clone(),
    };
    let config_bytes = serde_json::to_vec(&config)
        .map_err(|e| cache_error(format!("cannot write the cache config: {e}")))?;
    let blobs: Vec<ArtifactBlob> = layers
        .iter()
        .map(|l| ArtifactBlob {
            digest: l.digest,
            size: l.size,
            media_type: LAYER_MEDIA_TYPE.to_owned(),
        })
        .collect();
    match spec {
        CacheSpec::Registry { reference, .. } => {
            registry::push_artifact(
                store,
                reference,
                &config_bytes,
                CONFIG_MEDIA_TYPE,
                &blobs,
                opts,
            )
            .map_err(|source| Error::CacheRegistry {
                reference: reference.to_string(),
                source: Box::new(source),
            })?;
        }
        CacheSpec::Local { dir, .. } => write_layout(store, dir, &config_bytes, &blobs)?,
    }
    Ok(count)
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io_at(path))?;
    tmp.persist(path).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// An OCI image layout: the blobs, then the manifest, then `index.json` last, so a reader never
/// sees an index naming what is not there.
fn write_layout(store: &Store, dir: &Path, config: &[u8], layers: &[ArtifactBlob]) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs_err::create_dir_all(&blobs).map_err(io_at(&blobs))?;
    for l in layers {
        let target = blobs.join(l.digest.hex());
        if target.is_file() {
            continue;
        }
        let tmp = tempfile::NamedTempFile::new_in(&blobs).map_err(io_at(&blobs))?;
        fs_err::copy(store.blob_path(&l.digest), tmp.path()).map_err(io_at(&target))?;
        tmp.persist(&target).map_err(|e| Error::Io {
            path: target.clone(),
            source: e.error,
        })?;
    }
    let config_digest = Digest::of(config);
    write_atomic(&blobs.join(config_digest.hex()), config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| cache_error(format!("cannot write the cache manifest: {e}")))?;
    let manifest_digest = Digest::of(&manifest_bytes);
    write_atomic(&blobs.join(manifest_digest.hex()), &manifest_bytes)?;
    write_atomic(&dir.join("oci-layout"), crate::oci::OCI_LAYOUT)?;
    let ref_name = (
        "org.opencontainers.image.ref.name".to_owned(),
        "cache".to_owned(),
    );
    let index = crate::oci::layout_index(&manifest_bytes, [ref_name])?;
    write_atomic(&dir.join("index.json"), &index)
}

fn read_verified(path: &Path, digest: &Digest) -> Result<Vec<u8>> {
    let bytes = fs_err::read(path).map_err(io_at(path))?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(cache_error(format!(
            "`{}` does not match its digest `{digest}` (it hashes to `{actual}`)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Reads the cache at `spec`: its records go into the store (where the store has none for a
/// key), and the layers they name are remembered in `lazy`. Gives how many records it read.
pub(crate) fn import(
    store: &Store,
    spec: &CacheSpec,
    opts: &registry::Options,
    lazy: &LazyLayers,
) -> Result<usize> {
    let (config_bytes, sources): (Vec<u8>, HashMap<Digest, LayerSource>) = match spec {
        CacheSpec::Registry { reference, .. } => {
            let (config, blobs) = match registry::pull_artifact(reference, opts) {
                Ok(x) => x,
                // No cache there yet: the first build of a pipeline.
                Err(registry::Error::NotFound { .. }) => return Ok(0),
                Err(source) => {
                    return Err(Error::CacheRegistry {
                        reference: reference.to_string(),
                        source: Box::new(source),
                    });
                }
            };
            let sources = blobs
                .into_iter()
                .map(|b| (b.digest, LayerSource::Registry(reference.clone(), b)))
                .collect();
            (config, sources)
        }
        CacheSpec::Local { dir, .. } => {
            let index_path = dir.join("index.json");
            if !index_path.is_file() {
                return Ok(0);
            }
            let index: serde_json::Value =
                serde_json::from_slice(&fs_err::read(&index_path).map_err(io_at(&index_path))?)
                    .map_err(|e| {
                        cache_error(format!("`{}` is not JSON: {e}", index_path.display()))
                    })?;
            let digest_at = |v: &serde_json::Value, ptr: &str| -> Result<Digest> {
                v.pointer(ptr)
                    .and_then(|d| d.as_str())
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| {
                        cache_error(format!("`{}`: no digest at `{ptr}`", dir.display()))
                    })
            };
            let blobs = dir.join("blobs/sha256");
            let m = digest_at(&index, "/manifests/0/digest")?;
            let manifest: serde_json::Value =
                serde_json::from_slice(&read_verified(&blobs.join(m.hex()), &m)?)
                    .map_err(|e| cache_error(format!("cache manifest is not JSON: {e}")))?;
            let c = digest_at(&manifest, "/config/digest")?;
            let config = read_verified(&blobs.join(c.hex()), &c)?;
            let mut sources = HashMap::new();
            for (i, _) in manifest
                .get("layers")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
                .enumerate()
            {
                let d = digest_at(&manifest, &format!("/layers/{i}/digest"))?;
                sources.insert(d, LayerSource::Local(blobs.join(d.hex())));
            }
            (config, sources)
        }
    };
    let config: Config = serde_json::from_slice(&config_bytes)
        .map_err(|e| cache_error(format!("the cache config is unreadable: {e}")))?;
    let mut lazy = lazy
        .lock()
        .map_err(|_| Error::Internal("cache lock".into()))?;
    for l in &config.layers {
        if let Some(src) = sources.get(&l.digest) {
            lazy.insert(l.diff_id, src.clone());
        }
    }
    // Records are untrusted: each must be one this rbuild reads, or it is left out.
    let mut read = 0;
    for r in &config.records {
        let Ok(record) = crate::store::StepRecord::parse(&r.key, &r.value.to_string()) else {
            continue;
        };
        read += 1;
        if !matches!(store.step_record(&r.key), Ok(Some(_))) {
            store.set_step_record(&r.key, &record)?;
        }
    }
    Ok(read)
}

/// Makes sure every layer of `diff_ids` is in the store, fetching those an imported cache has.
pub(crate) fn ensure_layers(
    store: &Store,
    diff_ids: &[Digest],
    lazy: &LazyLayers,
    opts: &registry::Options,
) -> Result<()> {
    for d in diff_ids {
        if store.has_blob(d) {
            continue;
        }
        let source = lazy.lock().ok().and_then(|l| l.get(d).cloned());
        match source {
            Some(LayerSource::Registry(reference, blob)) => {
                registry::fetch_layer(store, &reference, &blob, Some(*d), opts).map_err(
                    |source| Error::CacheRegistry {
                        reference: reference.to_string(),
                        source: Box::new(source),
                    },
                )?;
            }
            Some(LayerSource::Local(path)) => {
                let file = fs_err::File::open(&path).map_err(io_at(&path))?;
                let mut w = store.blob_writer()?;
                let mut r = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
                std::io::copy(&mut r, &mut w).map_err(io_at(&path))?;
                w.commit(Some(*d))?;
            }
            None => return Err(crate::store::Error::MissingBlob { digest: *d }.into()),
        }
    }
    Ok(())
}

/// Whether every layer of `diff_ids` is in the store or known to an imported cache.
pub(crate) fn available(store: &Store, diff_ids: &[Digest], lazy: &LazyLayers) -> bool {
    let lazy = lazy.lock().ok();
    diff_ids
        .iter()
        .all(|d| store.has_blob(d) || lazy.as_ref().is_some_and(|l| l.contains_key(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_specs_parse_as_buildkit_takes_them() {
        assert_eq!(
            CacheSpec::parse("type=registry,ref=localhost:5000/app:cache,mode=max").unwrap(),
            CacheSpec::Registry {
                reference: "localhost:5000/app:cache".parse().unwrap(),
                max: true
            }
        );
        assert!(matches!(
            CacheSpec::parse("localhost:5000/app:cache").unwrap(),
            CacheSpec::Registry { max: false, .. }
        ));
        assert_eq!(
            CacheSpec::parse("type=local,dest=/tmp/c").unwrap(),
            CacheSpec::Local {
                dir: "/tmp/c".into(),
                max: false
            }
        );
        for (bad, why) in [
            ("type=gha", "unsupported cache type"),
            ("type=registry", "needs ref"),
            ("type=local", "needs dest"),
            ("type=local,dest=x,mode=all", "unknown mode"),
            ("type=local,dest=x,foo=1", "unknown field"),
        ] {
            let e = CacheSpec::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
