//! `rbuild prune`: drop step-cache records by age or storage limit, then every blob that no tag
//! and no remaining cache record reaches. Runs under the store's exclusive lock, so no build is
//! writing meanwhile.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::oci::{Image, ImageConfig};
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
}

fn cache_records(store: &Store) -> Result<Vec<(SystemTime, String)>> {
    let dir = store.root().join("meta/cache");
    let mut out = Vec::new();
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries {
        let e = e.map_err(io_at(&dir))?;
        let modified = e
            .metadata()
            .and_then(|m| m.modified())
            .map_err(io_at(e.path()))?;
        out.push((modified, e.file_name().to_string_lossy().into_owned()));
    }
    out.sort();
    Ok(out)
}

fn reachable(store: &Store) -> Result<BTreeSet<Digest>> {
    let mut live = BTreeSet::new();
    for (_, manifest) in store.tags()? {
        let image = Image::load(store, manifest)?;
        live.insert(manifest);
        live.insert(image.config_digest);
        live.extend(image.diff_ids().iter().copied());
    }
    for (_, key) in cache_records(store)? {
        if let Some(json) = store.meta("cache", &key)? {
            #[derive(serde::Deserialize)]
            struct Cached {
                config: ImageConfig,
            }
            if let Ok(c) = serde_json::from_str::<Cached>(&json) {
                live.extend(c.config.rootfs.diff_ids);
            }
        }
    }
    // Compressed forms of live layers stay with them.
    for alg in ["gzip", "zstd"] {
        for d in live.clone() {
            if let Some(c) = store.meta(alg, &d.hex())? {
                if let Ok(c) = c.trim().parse::<Digest>() {
                    live.insert(c);
                }
            }
        }
    }
    Ok(live)
}

/// The layer lists of every tagged image and cache record.
fn live_diff_id_lists(store: &Store) -> Result<Vec<Vec<Digest>>> {
    let mut out = Vec::new();
    for (_, manifest) in store.tags()? {
        out.push(Image::load(store, manifest)?.diff_ids().to_vec());
    }
    for (_, key) in cache_records(store)? {
        if let Some(json) = store.meta("cache", &key)? {
            #[derive(serde::Deserialize)]
            struct Cached {
                config: ImageConfig,
            }
            if let Ok(c) = serde_json::from_str::<Cached>(&json) {
                out.push(c.config.rootfs.diff_ids);
            }
        }
    }
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
    let cache_dir = store.root().join("meta/cache");
    for (modified, key) in cache_records(store)? {
        let old = opts
            .until
            .is_some_and(|age| now.duration_since(modified).unwrap_or_default() > age);
        if opts.all || old {
            fs_err::remove_file(cache_dir.join(&key)).map_err(io_at(cache_dir.join(&key)))?;
            report.cache_records += 1;
        }
    }
    let sweep = |report: &mut PruneReport| -> Result<u64> {
        let live = reachable(store)?;
        let mut total = 0;
        for (d, size) in blobs(store)? {
            if live.contains(&d) {
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
        for (_, key) in cache_records(store)? {
            if total <= limit {
                break;
            }
            fs_err::remove_file(cache_dir.join(&key)).map_err(io_at(cache_dir.join(&key)))?;
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
    let snaps = store.root().join("snapshots");
    if let Ok(entries) = fs_err::read_dir(&snaps) {
        for e in entries {
            let e = e.map_err(io_at(&snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "empty" && !live_chains.contains(&name) {
                fs_err::remove_dir_all(e.path()).map_err(io_at(e.path()))?;
            }
        }
    }
    // Leftovers of killed processes: nothing writes while we hold the exclusive lock.
    let tmp = store.root().join("tmp");
    for e in fs_err::read_dir(&tmp).map_err(io_at(&tmp))? {
        let path = e.map_err(io_at(&tmp))?.path();
        let _ = if path.is_dir() {
            fs_err::remove_dir_all(&path)
        } else {
            fs_err::remove_file(&path)
        };
    }
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
}

/// Bytes under `dir`, each inode counted once.
fn tree_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

/// Measures the store (under its shared lock).
pub fn disk_usage(store: &Store) -> Result<DiskUsage> {
    let _lock = store.lock_shared()?;
    let mut images_live = BTreeSet::new();
    let tags = store.tags()?;
    for (_, manifest) in &tags {
        let image = Image::load(store, *manifest)?;
        images_live.insert(*manifest);
        images_live.insert(image.config_digest);
        for d in image.diff_ids() {
            images_live.insert(*d);
            for alg in ["gzip", "zstd"] {
                if let Some(c) = store.meta(alg, &d.hex())? {
                    if let Ok(c) = c.trim().parse::<Digest>() {
                        images_live.insert(c);
                    }
                }
            }
        }
    }
    let all_live = reachable(store)?;
    let mut usage = DiskUsage {
        images: tags.len(),
        cache_records: cache_records(store)?.len(),
        snapshot_bytes: tree_bytes(&store.root().join("snapshots")),
        cache_mount_bytes: tree_bytes(&store.root().join("cache-mounts")),
        ..DiskUsage::default()
    };
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
