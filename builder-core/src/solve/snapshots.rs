//! Root filesystems, made once and shared by every later build. Two snapshotters, chosen once
//! per process ([`mode`]):
//!
//! - **Layers** (where this process can mount overlayfs, containerd's overlay snapshotter's
//!   model): each layer is unpacked once into a directory of its own, `layerfs/<chain id>`,
//!   through a writable overlay of the layers below it, so the directory holds only that
//!   layer's changes (whiteouts as overlayfs's, parent directories copied up with their
//!   attributes) and nothing of the parent is copied. A RUN's root is an overlay of the
//!   chain's layer directories; a step that reads a tree (COPY --from, a bind's source, the
//!   user database) reads a read-only overlay of the same directories ([`Views`]).
//! - **Merged** (no overlayfs here, or `RBUILD_SNAPSHOTTER=copy`): a layer's snapshot
//!   `snapshots/<chain id>` is a hard-link copy of its parent's with the layer applied
//!   (applying never writes a file in place, so the parent is untouched).
//!
//! ```text
//! ROOT/{layerfs,snapshots}/<chain id>/rootfs     the tree
//! ROOT/{layerfs,snapshots}/<chain id>/complete   {chain, listing, entries}: written last, inside
//! ```
//!
//! Either is made in a work directory, fsynced (`syncfs`), and renamed into place whole, its
//! completion record with it, so a directory without a record, or whose tree no longer
//! matches the record's listing digest, is one a crash or a stray write damaged. Such a
//! snapshot is moved out and rebuilt from its layers, never used. Each one's listing is
//! checked the first time a process uses it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::store::Store;

use super::error::io_at;
use super::{Error, Result};

/// OCI chain IDs of each prefix of `diff_ids`.
pub(crate) fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => *d,
            Some(prev) => {
                let mut h = Hasher::default();
                h.update(format!("{prev} {d}").as_bytes());
                h.finish().0
            }
        };
        out.push(next);
    }
    out
}

/// Copies the tree `src` to `dst` (which must not exist), keeping owners, modes, times, xattrs
/// and hardlinks; with `hardlinks`, files are linked rather than copied. In-process (see
/// [`super::tree_copy`]): no `cp` on the hot path.
pub(crate) fn copy_tree(src: &Path, dst: &Path, hardlinks: bool) -> Result<()> {
    super::tree_copy::copy_tree(src, dst, hardlinks)
}

/// What `snapshots/<chain>/complete` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Complete {
    chain: Digest,
    listing: Digest,
    entries: u64,
}

/// Snapshots this process has checked (or made), by path.
static CHECKED: std::sync::Mutex<BTreeSet<PathBuf>> = std::sync::Mutex::new(BTreeSet::new());

fn checked() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The snapshots directory.
pub(crate) fn snapshots_dir(store: &Store) -> PathBuf {
    store.root().join("snapshots")
}

/// What is wrong with the snapshot at `dir` (named by chain `hex`), in words; `None` if it is
/// complete and its tree matches its record.
pub(crate) fn check(dir: &Path, hex: &str) -> Option<String> {
    let Ok(record) = fs_err::read_to_string(dir.join("complete")) else {
        return Some("it has no completion record (a build was killed making it)".into());
    };
    let Ok(record) = serde_json::from_str::<Complete>(&record) else {
        return Some("its completion record is unreadable".into());
    };
    if record.chain.hex() != hex {
        return Some(format!(
            "its completion record is for chain {}",
            record.chain
        ));
    }
    match crate::snapshot::listing_digest(&dir.join("rootfs")) {
        Ok((listing, _)) if listing == record.listing => None,
        Ok(_) => Some(
            "its files differ from its completion record (changed or damaged since it was made)"
                .into(),
        ),
        Err(e) => Some(format!("its tree cannot be read: {e}")),
    }
}

/// Moves a snapshot out of `snapshots/` (at once: no build can pick it up afterwards) and
/// removes it.
pub(crate) fn discard(store: &Store, dir: &Path) -> Result<()> {
    let work = store.work_dir("discard-")?;
    let to = work.path().join("snapshot");
    match fs_err::rename(dir, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source: e,
            });
        }
    }
    if let Some(parent) = dir.parent() {
        crate::store::sync_dir(parent).map_err(io_at(parent))?;
    }
    checked().remove(dir);
    drop(work); // removes the tree
    Ok(())
}

/// Whether the snapshot directory `dir` of `chain` is there and sound (checked once per
/// process); a damaged one is discarded.
fn usable(store: &Store, dir: &Path, chain: &Digest) -> Result<bool> {
    if !dir.is_dir() {
        return Ok(false);
    }
    if checked().contains(dir) {
        return Ok(true);
    }
    match check(dir, &chain.hex()) {
        None => {
            checked().insert(dir.to_owned());
            Ok(true)
        }
        Some(_why) => {
            discard(store, dir)?;
            Ok(false)
        }
    }
}

/// Records `dir/rootfs` as the snapshot of `chain`, puts it on disk and renames it to
/// `target`; a snapshot another build put there first wins.
fn seal(dir: &Path, chain: &Digest, target: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    let (listing, entries) = crate::snapshot::listing_digest(&rootfs).map_err(io_at(&rootfs))?;
    let record = Complete {
        chain: *chain,
        listing,
        entries,
    };
    let json = serde_json::to_vec(&record).map_err(|e| Error::Internal(e.to_string()))?;
    fs_err::write(dir.join("complete"), json).map_err(io_at(dir))?;
    // One syncfs for the whole tree: cheaper than an fsync per file, and nothing is renamed
    // into place before it is on disk.
    let fd = fs_err::File::open(dir).map_err(io_at(dir))?;
    rustix::fs::syncfs(fd.file()).map_err(|e| Error::Io {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    match crate::store::rename_durably(dir, target) {
        Ok(()) => {}
        // Another build made the same snapshot first: ours goes with the work directory.
        Err(_) if target.join("complete").is_file() => {}
        Err(e) => {
            return Err(Error::Io {
                path: target.to_owned(),
                source: e,
            });
        }
    }
    checked().insert(target.to_owned());
    Ok(())
}

/// The empty root filesystem (`FROM scratch` before any layer).
fn empty(store: &Store) -> Result<PathBuf> {
    let empty = snapshots_dir(store).join("empty");
    fs_err::create_dir_all(&empty).map_err(io_at(&empty))?;
    Ok(empty)
}

/// The merged root filesystem of `diff_ids`, made from the longest valid ancestor if needed.
pub(crate) fn snapshot_for(store: &Store, diff_ids: &[Digest]) -> Result<PathBuf> {
    let root = snapshots_dir(store);
    fs_err::create_dir_all(&root).map_err(io_at(&root))?;
    if diff_ids.is_empty() {
        return empty(store);
    }
    let chains = chain_ids(diff_ids);
    let mut parent = None;
    let mut start = 0;
    for (i, chain) in chains.iter().enumerate().rev() {
        let dir = root.join(chain.hex());
        if usable(store, &dir, chain)? {
            parent = Some(dir);
            start = i + 1;
            break;
        }
    }
    for (i, chain) in chains.iter().enumerate().skip(start) {
        let work = store.work_dir("snapshot-")?;
        let dir = work.path().join("snapshot");
        let rootfs = dir.join("rootfs");
        fs_err::create_dir(&dir).map_err(io_at(&dir))?;
        match &parent {
            Some(p) => copy_tree(&p.join("rootfs"), &rootfs, true)?,
            None => fs_err::create_dir(&rootfs).map_err(io_at(&rootfs))?,
        }
        crate::snapshot::apply_layer(store, &diff_ids[i], &rootfs)?;
        let target = root.join(chain.hex());
        seal(&dir, chain, &target)?;
        parent = Some(target);
    }
    parent
        .map(|p| p.join("rootfs"))
        .ok_or_else(|| Error::Internal("no snapshot made".into()))
}

/// The layer directories directory.
pub(crate) fn layers_dir(store: &Store) -> PathBuf {
    store.root().join("layerfs")
}

/// Both snapshotters' directories (merged snapshots, then layer directories): what fsck
/// checks, prune sweeps and df counts.
pub(crate) fn all_dirs(store: &Store) -> [PathBuf; 2] {
    [snapshots_dir(store), layers_dir(store)]
}

/// How this process makes root filesystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One directory per layer, stacked by overlayfs.
    Layers,
    /// One merged tree per chain, hard-link copies of each other.
    Merged,
}

/// The snapshotter: `RBUILD_SNAPSHOTTER=copy` (or `merged`) asks for merged trees; otherwise
/// layers, if a read-only overlay of two directories mounts here (it does not without
/// privileges, or without overlayfs). Probed once per process, in `store`.
pub(crate) fn mode(store: &Store) -> Mode {
    static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        let asked = std::env::var("RBUILD_SNAPSHOTTER").unwrap_or_default();
        if asked == "copy" || asked == "merged" {
            return Mode::Merged;
        }
        // In a user namespace of its own (rootless) overlayfs keeps whiteouts and opaque
        // directories in user.* xattrs, which a layer directory must not depend on.
        let initial_userns = fs_err::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
        if !initial_userns {
            return Mode::Merged;
        }
        let probe = || -> std::io::Result<()> {
            let work = store
                .work_dir("probe-")
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let (a, b, m) = (
                work.path().join("a"),
                work.path().join("b"),
                work.path().join("m"),
            );
            for d in [&a, &b, &m] {
                fs_err::create_dir(d)?;
            }
            crate::fs::mount_overlay(&[a, b], None, &m)?;
            crate::fs::detach_mount(&m)
        };
        if probe().is_ok() {
            Mode::Layers
        } else {
            Mode::Merged
        }
    })
}

/// A root filesystem as a RUN mounts it and as a step reads it.
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    /// The overlay's lower directories, topmost first.
    pub(crate) lowers: Vec<PathBuf>,
    /// The tree read-only, merged: a mounted view of `lowers`, or the one directory.
    pub(crate) view: PathBuf,
}

/// One build's read-only overlay views, one per chain, detached when the build ends (and by
/// the clean-up of `tmp/` if the process dies first).
#[derive(Default)]
pub(crate) struct Views {
    work: std::sync::Mutex<Option<crate::store::WorkDir>>,
    mounted: std::sync::Mutex<std::collections::HashMap<Digest, PathBuf>>,
}

impl Views {
    /// The view of `lowers`, the layers of `chain`: mounted now if it is not yet.
    fn view(&self, store: &Store, chain: &Digest, lowers: &[PathBuf]) -> Result<PathBuf> {
        let mut mounted = lock(&self.mounted);
        if let Some(v) = mounted.get(chain) {
            return Ok(v.clone());
        }
        let mut work = lock(&self.work);
        if work.is_none() {
            *work = Some(store.work_dir("views-")?);
        }
        let base = work
            .as_ref()
            .map(|w| w.path().to_owned())
            .unwrap_or_default();
        let target = base.join(mounted.len().to_string());
        fs_err::create_dir(&target).map_err(io_at(&target))?;
        crate::fs::mount_overlay(lowers, None, &target).map_err(io_at(&target))?;
        mounted.insert(*chain, target.clone());
        Ok(target)
    }
}

impl Drop for Views {
    fn drop(&mut self) {
        for v in lock(&self.mounted).values() {
            let _ = crate::fs::detach_mount(v);
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The root filesystem of `diff_ids`, made if needed: its layers and a merged view of them.
pub(crate) fn stack_for(store: &Store, diff_ids: &[Digest], views: &Views) -> Result<Stack> {
    if diff_ids.is_empty() {
        let e = empty(store)?;
        return Ok(Stack {
            lowers: vec![e.clone()],
            view: e,
        });
    }
    if mode(store) == Mode::Merged {
        let d = snapshot_for(store, diff_ids)?;
        return Ok(Stack {
            lowers: vec![d.clone()],
            view: d,
        });
    }
    let lowers = layer_dirs(store, diff_ids)?;
    let view = match (lowers.as_slice(), chain_ids(diff_ids).last()) {
        ([one], _) => one.clone(),
        (_, Some(chain)) => views.view(store, chain, &lowers)?,
        (_, None) => return Err(Error::Internal("a chain of no layers".into())),
    };
    Ok(Stack { lowers, view })
}

/// The layer directories of `diff_ids`, topmost first, each made if missing. Past the
/// kernel's limit on mount options the oldest layers are one merged snapshot instead.
fn layer_dirs(store: &Store, diff_ids: &[Digest]) -> Result<Vec<PathBuf>> {
    let root = layers_dir(store);
    fs_err::create_dir_all(&root).map_err(io_at(&root))?;
    let chains = chain_ids(diff_ids);
    // Bottom first while building.
    let mut lowers: Vec<PathBuf> = Vec::with_capacity(diff_ids.len());
    for (i, chain) in chains.iter().enumerate() {
        let mut candidate = lowers.clone();
        candidate.push(root.join(chain.hex()).join("rootfs"));
        let topmost: Vec<PathBuf> = candidate.iter().rev().cloned().collect();
        if crate::fs::overlay_options(&topmost, None).len() > crate::fs::MAX_OVERLAY_OPTIONS {
            lowers = vec![snapshot_for(store, &diff_ids[..=i])?];
            continue;
        }
        let below: Vec<PathBuf> = lowers.iter().rev().cloned().collect();
        lowers.push(layer_dir(store, chain, &diff_ids[i], &below)?);
    }
    lowers.reverse();
    Ok(lowers)
}

/// Unpacks layer `diff_id` straight into `upper`, reading what is below through a read-only
/// view of `below` (see [`crate::snapshot::apply_layer_over`]); `false` if it needs an overlay.
fn unpacked_over(
    store: &Store,
    diff_id: &Digest,
    upper: &Path,
    below: &[PathBuf],
    work: &Path,
) -> Result<bool> {
    if let [one] = below {
        // One layer below is its own view (a read-only overlay needs two).
        return Ok(crate::snapshot::apply_layer_over(
            store, diff_id, upper, one,
        )?);
    }
    let view = work.join("below");
    fs_err::create_dir(&view).map_err(io_at(&view))?;
    crate::fs::mount_overlay(below, None, &view).map_err(io_at(&view))?;
    let done = crate::snapshot::apply_layer_over(store, diff_id, upper, &view);
    crate::fs::detach_mount(&view).map_err(io_at(&view))?;
    Ok(done?)
}

/// The directory of layer `diff_id` on `below` (topmost first), the layers of its chain's
/// parent, so that it holds only the layer's changes: unpacked straight into it where the
/// layer only adds (a COPY's), else through a writable overlay of the layers below.
fn layer_dir(
    store: &Store,
    chain: &Digest,
    diff_id: &Digest,
    below: &[PathBuf],
) -> Result<PathBuf> {
    let target = layers_dir(store).join(chain.hex());
    if usable(store, &target, chain)? {
        return Ok(target.join("rootfs"));
    }
    let work = store.work_dir("layer-")?;
    let dir = work.path().join("snapshot");
    let rootfs = dir.join("rootfs");
    fs_err::create_dir_all(&rootfs).map_err(io_at(&rootfs))?;
    if below.is_empty() {
        crate::snapshot::apply_layer(store, diff_id, &rootfs)?;
    } else if !unpacked_over(store, diff_id, &rootfs, below, work.path())? {
        // What only an overlay does (whiteouts, links to lower files, paths through lower
        // symlinks): the layer is unpacked through a writable overlay of the layers below.
        crate::store::remove_tree(&rootfs).map_err(io_at(&rootfs))?;
        fs_err::create_dir(&rootfs).map_err(io_at(&rootfs))?;
        let (ovl, merged) = (work.path().join("ovl"), work.path().join("merged"));
        for d in [&ovl, &merged] {
            fs_err::create_dir(d).map_err(io_at(d))?;
        }
        crate::fs::mount_overlay(below, Some((&rootfs, &ovl)), &merged).map_err(io_at(&merged))?;
        let applied = crate::snapshot::apply_layer(store, diff_id, &merged);
        crate::fs::detach_mount(&merged).map_err(io_at(&merged))?;
        applied?;
    }
    seal(&dir, chain, &target)?;
    Ok(target.join("rootfs"))
}

/// Writes the layer of `entries` on `parent` (the chain's diff IDs so far, whose stack is
/// `parent_view`) and, in the same pass, its layer directory, as [`layer_dir`] would make it
/// from the written layer (the one-pass COPY: the files are not unpacked again when a later
/// step reads the chain). If the unpack needs an overlay, the directory is left to be made
/// when first read. Only for the layers snapshotter.
pub(crate) fn write_layer_with_dir(
    store: &Store,
    parent: &[Digest],
    parent_view: &Path,
    entries: &mut [crate::snapshot::Entry],
    opts: crate::snapshot::TarOptions,
) -> Result<crate::snapshot::Layer> {
    let work = store.work_dir("layer-")?;
    let dir = work.path().join("snapshot");
    let rootfs = dir.join("rootfs");
    fs_err::create_dir_all(&rootfs).map_err(io_at(&rootfs))?;
    let over = (!parent.is_empty()).then_some(parent_view);
    let (layer, unpacked) =
        crate::snapshot::write_layer_unpacked(store, entries, opts, &rootfs, over)?;
    if unpacked {
        let mut diff_ids = parent.to_vec();
        diff_ids.push(layer.diff_id);
        if let Some(chain) = chain_ids(&diff_ids).last() {
            let root = layers_dir(store);
            fs_err::create_dir_all(&root).map_err(io_at(&root))?;
            let target = root.join(chain.hex());
            if !usable(store, &target, chain)? {
                seal(&dir, chain, &target)?;
            }
        }
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chains = chain_ids(&[a, b]);
        assert_eq!(chains[0], a);
        let mut h = Hasher::default();
        h.update(format!("{a} {b}").as_bytes());
        assert_eq!(chains[1], h.finish().0);
    }
}
