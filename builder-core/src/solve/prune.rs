//! `rbuild prune`: drop step-cache records by age or storage limit, then every blob that no tag
//! and no remaining cache record reaches. Runs under the store's exclusive lock, so no build is
//! writing meanwhile.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::oci::Image;
use crate::store::Store;

use super::Result;
use super::error::io_at;

/// What to drop besides unreferenced blobs.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Drop the whole step cache.
    pub all: bool,
    /// Drop cache records older than this.
    pub until: Option<Duration>,
    /// Drop the oldest cache records until the blobs take at most this many bytes.
    pub keep_storage: Option<u64>,
}

/// What prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Cache records dropped.
    pub cache_records: usize,
    /// Blobs removed.
    pub blobs: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Snapshots removed.
    pub snapshots: usize,
    /// Work directories of processes that are gone, removed.
    pub work_dirs: usize,
    /// Stale records removed: stat caches of contexts that are gone, old explanations,
    /// compressed-form and source records of blobs that are gone.
    pub records: usize,
}

/// How long an explanation record is kept without being rewritten (by default; `--until` and
/// `--all` shorten it).
pub(crate) const EXPLAIN_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

/// Removes stale records (see [`PruneReport::records`]).
fn prune_records(store: &Store, opts: &PruneOptions, now: SystemTime) -> Result<usize> {
    let mut removed = 0;
    // Stat caches: of contexts that no longer exist, unreadable ones, and temp files of a
    // killed save.
    let dir = store.root().join("statcache");
    if let Ok(entries) = fs_err::read_dir(&dir) {
        for e in entries {
            let path = e.map_err(io_at(&dir))?.path();
            let stale = opts.all
                || path.extension().is_none_or(|x| x != "stat")
                || crate::context::stat_cache_context(&path).is_none_or(|c| !c.is_dir());
            if stale {
                fs_err::remove_file(&path).map_err(io_at(&path))?;
                removed += 1;
            }
        }
    }
    let max_age = match opts.until {
        Some(u) => u.min(EXPLAIN_MAX_AGE),
        None => EXPLAIN_MAX_AGE,
    };
    for (modified, key) in store.meta_keys("explain")? {
        if opts.all || now.duration_since(modified).unwrap_or_default() > max_age {
            removed += usize::from(store.remove_meta("explain", &key)?);
        }
    }
    // Compressed forms (diff ID → compressed blob) and sources (blob → where it came from)
    // whose blobs are gone.
    for kind in ["gzip", "zstd", "source"] {
        for (_, key) in store.meta_keys(kind)? {
            let Ok(blob) = format!("sha256:{key}").parse::<Digest>() else {
                removed += usize::from(store.remove_meta(kind, &key)?);
                continue;
            };
            let target_gone = kind != "source"
                && store
                    .meta(kind, &key)?
                    .and_then(|v| v.trim().parse::<Digest>().ok())
                    .is_none_or(|c| !store.has_blob(&c));
            if !store.has_blob(&blob) || target_gone {
                removed += usize::from(store.remove_meta(kind, &key)?);
            }
        }
    }
    Ok(removed)
}

/// What keeps blobs alive: the tagged images, and the layer list of each step-cache record.
struct Live {
    images: Vec<Image>,
    /// The indexes tags name (their images are in `images`).
    indexes: Vec<Digest>,
    cache: Vec<Vec<Digest>>,
}

fn live(store: &Store) -> Result<Live> {
    let mut images = Vec::new();
    let mut indexes = Vec::new();
    for (_, digest) in store.tags()? {
        let (tagged, index) = crate::oci::tagged_images(store, digest)?;
        images.extend(tagged);
        indexes.extend(index);
    }
    let mut cache = Vec::new();
    for (_, key) in store.step_record_keys()? {
        // An unreadable record keeps nothing alive (and is a miss for every build).
        if let Ok(Some(record)) = store.step_record(&key) {
            cache.push(record.layers);
        }
    }
    Ok(Live {
        images,
        indexes,
        cache,
    })
}

/// The blobs of `images`: manifests, configs, layers.
fn image_blobs(images: &[Image]) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    for image in images {
        out.insert(image.manifest_digest);
        out.insert(image.config_digest);
        out.extend(image.diff_ids().iter().copied());
    }
    out
}

/// Adds to `set` the compressed forms of the layers in it: they stay with them.
fn with_compressed(store: &Store, set: &mut BTreeSet<Digest>) -> Result<()> {
    for alg in ["gzip", "zstd"] {
        for d in set.clone() {
            if let Some(c) = store.meta(alg, &d.hex())? {
                if let Ok(c) = c.trim().parse::<Digest>() {
                    set.insert(c);
                }
            }
        }
    }
    Ok(())
}

/// Every blob `live` keeps: image blobs, cached layers, and their compressed forms.
fn reachable(store: &Store, live: &Live) -> Result<BTreeSet<Digest>> {
    let mut out = image_blobs(&live.images);
    out.extend(live.indexes.iter().copied());
    out.extend(live.cache.iter().flatten().copied());
    with_compressed(store, &mut out)?;
    Ok(out)
}

/// The layer lists of every tagged image and cache record.
fn live_diff_id_lists(store: &Store) -> Result<Vec<Vec<Digest>>> {
    let live = live(store)?;
    let mut out: Vec<Vec<Digest>> = live.images.iter().map(|i| i.diff_ids().to_vec()).collect();
    out.extend(live.cache);
    Ok(out)
}

fn blobs(store: &Store) -> Result<Vec<(Digest, u64)>> {
    let dir = store.root().join("blobs/sha256");
    let mut out = Vec::new();
    for e in fs_err::read_dir(&dir).map_err(io_at(&dir))? {
        let e = e.map_err(io_at(&dir))?;
        if let Ok(d) = format!("sha256:{}", e.file_name().to_string_lossy()).parse::<Digest>() {
            out.push((d, e.metadata().map_err(io_at(e.path()))?.len()));
        }
    }
    Ok(out)
}

/// Prunes the store.
pub fn prune(store: &Store, opts: &PruneOptions) -> Result<PruneReport> {
    let _lock = store.lock_exclusive()?;
    let mut report = PruneReport::default();
    let now = SystemTime::now();
    for (modified, key) in store.step_record_keys()? {
        let old = opts
            .until
            .is_some_and(|age| now.duration_since(modified).unwrap_or_default() > age);
        // A record this rbuild cannot read (an older format, damage) can never be hit.
        let unreadable = store.step_record(&key).is_err();
        if opts.all || old || unreadable {
            store.remove_step_record(&key)?;
            report.cache_records += 1;
        }
    }
    let sweep = |report: &mut PruneReport| -> Result<u64> {
        let kept = reachable(store, &live(store)?)?;
        let mut total = 0;
        for (d, size) in blobs(store)? {
            if kept.contains(&d) {
                total += size;
            } else {
                let path = store.blob_path(&d);
                fs_err::remove_file(&path).map_err(io_at(&path))?;
                report.blobs += 1;
                report.bytes += size;
            }
        }
        Ok(total)
    };
    let mut total = sweep(&mut report)?;
    if let Some(limit) = opts.keep_storage {
        // Oldest cache records first, until what remains fits.
        for (_, key) in store.step_record_keys()? {
            if total <= limit {
                break;
            }
            store.remove_step_record(&key)?;
            report.cache_records += 1;
            total = sweep(&mut report)?;
        }
    }
    // Snapshots no remaining image or cache record builds on, and half-made ones.
    let live_chains: BTreeSet<String> = live_diff_id_lists(store)?
        .iter()
        .flat_map(|ids| super::snapshots::chain_ids(ids))
        .map(|c| c.hex())
        .collect();
    for snaps in super::snapshots::all_dirs(store) {
        let Ok(entries) = fs_err::read_dir(&snaps) else {
            continue;
        };
        for e in entries {
            let e = e.map_err(io_at(&snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "empty" && !live_chains.contains(&name) {
                super::snapshots::discard(store, &e.path())?;
                report.snapshots += 1;
            }
        }
    }
    report.records += prune_records(store, opts, now)?;
    // Leftovers of killed processes (nothing else runs while we hold the exclusive lock, but
    // the owner files are the rule anyway).
    let cleaned = store.clean_tmp()?;
    report.work_dirs += cleaned.entries;
    report.bytes += cleaned.bytes;
    Ok(report)
}

/// What the store holds, as `rbuild df` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Image names.
    pub images: usize,
    /// Bytes of the blobs tagged images use (layers, their compressed forms, configs, manifests).
    pub image_bytes: u64,
    /// Step-cache records.
    pub cache_records: usize,
    /// Bytes of blobs only the step cache uses.
    pub cache_bytes: u64,
    /// Bytes of blobs nothing uses (what `rbuild prune` frees).
    pub unused_bytes: u64,
    /// Bytes of unpacked root filesystems (`snapshots/`, hard links counted once).
    pub snapshot_bytes: u64,
    /// Bytes of `RUN --mount=type=cache` directories.
    pub cache_mount_bytes: u64,
    /// Bytes of work directories (`tmp/`: live builds' and, until cleaned, dead ones').
    pub work_bytes: u64,
    /// Records besides the step cache: stat caches, explanations, compressed-form and source
    /// records.
    pub records: usize,
    /// Their bytes.
    pub record_bytes: u64,
}

use crate::store::tree_bytes;

/// Files and bytes of the records under `dirs`.
fn record_usage(store: &Store) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let dirs = [
        "statcache",
        "meta/explain",
        "meta/gzip",
        "meta/zstd",
        "meta/source",
    ];
    for d in dirs {
        if let Ok(entries) = fs_err::read_dir(store.root().join(d)) {
            for e in entries.flatten() {
                files += 1;
                bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    (files, bytes)
}

/// Measures the store (under its shared lock).
pub fn disk_usage(store: &Store) -> Result<DiskUsage> {
    let _lock = store.lock_shared()?;
    let live = live(store)?;
    let mut images_live = image_blobs(&live.images);
    with_compressed(store, &mut images_live)?;
    let all_live = reachable(store, &live)?;
    let mut usage = DiskUsage {
        images: live.images.len(),
        cache_records: store.step_record_keys()?.len(),
        snapshot_bytes: super::snapshots::all_dirs(store)
            .iter()
            .map(|d| tree_bytes(d))
            .sum(),
        cache_mount_bytes: tree_bytes(&store.root().join("cache-mounts")),
        work_bytes: tree_bytes(&store.root().join("tmp")),
        ..DiskUsage::default()
    };
    (usage.records, usage.record_bytes) = record_usage(store);
    for (d, size) in blobs(store)? {
        if images_live.contains(&d) {
            usage.image_bytes += size;
        } else if all_live.contains(&d) {
            usage.cache_bytes += size;
        } else {
            usage.unused_bytes += size;
        }
    }
    Ok(usage)
}
