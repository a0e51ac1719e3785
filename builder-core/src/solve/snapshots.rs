//! Root filesystems keyed by chain ID, unpacked once and shared by every later build: a layer's
//! snapshot is a hard-link copy of its parent's with the layer applied (applying never writes a
//! file in place, so the parent is untouched).
//!
//! ```text
//! ROOT/snapshots/<chain id>/rootfs     the tree
//! ROOT/snapshots/<chain id>/complete   {chain, listing, entries}: written last, inside
//! ```
//!
//! A snapshot is made in a work directory, fsynced (`syncfs`), and renamed into place whole,
//! its completion record with it, so a snapshot directory without a record, or whose tree no
//! longer matches the record's listing digest, is one a crash or a stray write damaged. Such a
//! snapshot is moved out and rebuilt from its layers, never used. Each snapshot's listing is
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

/// The root filesystem of `diff_ids`, made from the longest valid ancestor if needed.
pub(crate) fn snapshot_for(store: &Store, diff_ids: &[Digest]) -> Result<PathBuf> {
    let root = snapshots_dir(store);
    fs_err::create_dir_all(&root).map_err(io_at(&root))?;
    if diff_ids.is_empty() {
        let empty = root.join("empty");
        fs_err::create_dir_all(&empty).map_err(io_at(&empty))?;
        return Ok(empty);
    }
    let chains = chain_ids(diff_ids);
    let mut parent = None;
    let mut start = 0;
    for (i, chain) in chains.iter().enumerate().rev() {
        let dir = root.join(chain.hex());
        if !dir.is_dir() {
            continue;
        }
        if checked().contains(&dir) {
            parent = Some(dir);
            start = i + 1;
            break;
        }
        match check(&dir, &chain.hex()) {
            None => {
                checked().insert(dir.clone());
                parent = Some(dir);
                start = i + 1;
                break;
            }
            Some(_why) => discard(store, &dir)?,
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
        let (listing, entries) =
            crate::snapshot::listing_digest(&rootfs).map_err(io_at(&rootfs))?;
        let record = Complete {
            chain: *chain,
            listing,
            entries,
        };
        let json = serde_json::to_vec(&record).map_err(|e| Error::Internal(e.to_string()))?;
        fs_err::write(dir.join("complete"), json).map_err(io_at(&dir))?;
        // One syncfs for the whole tree: cheaper than an fsync per file, and nothing is renamed
        // into place before it is on disk.
        let fd = fs_err::File::open(&dir).map_err(io_at(&dir))?;
        rustix::fs::syncfs(fd.file()).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e.into(),
        })?;
        let target = root.join(chain.hex());
        match crate::store::rename_durably(&dir, &target) {
            Ok(()) => {}
            // Another build made the same snapshot first: ours goes with the work directory.
            Err(_) if target.join("complete").is_file() => {}
            Err(e) => {
                return Err(Error::Io {
                    path: target,
                    source: e,
                });
            }
        }
        checked().insert(target.clone());
        parent = Some(target);
    }
    parent
        .map(|p| p.join("rootfs"))
        .ok_or_else(|| Error::Internal("no snapshot made".into()))
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
