//! Root filesystems keyed by chain ID (`ROOT/snapshots/<chain id>`), unpacked once and shared by
//! every later build: a layer's snapshot is a hard-link copy of its parent's with the layer
//! applied (applying never writes a file in place, so the parent is untouched), made under a
//! temporary name and renamed into place when complete.

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

/// Copies the tree `src` to `dst` (which must not exist) with `cp -a`, keeping owners, modes,
/// times, xattrs and hardlinks; with `hardlinks`, files are linked rather than copied (`cp -al`).
pub(crate) fn copy_tree(src: &Path, dst: &Path, hardlinks: bool) -> Result<()> {
    let flags = if hardlinks { "-al" } else { "-a" };
    let status = std::process::Command::new("cp")
        .arg(flags)
        .arg(src)
        .arg(dst)
        .status()
        .map_err(io_at(dst))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Io {
            path: dst.to_owned(),
            source: std::io::Error::other(format!("cp {flags} failed ({status})")),
        })
    }
}

/// The snapshot of `diff_ids`, made from the longest existing ancestor if needed.
pub(crate) fn snapshot_for(store: &Store, diff_ids: &[Digest]) -> Result<PathBuf> {
    let root = store.root().join("snapshots");
    fs_err::create_dir_all(&root).map_err(io_at(&root))?;
    let empty = root.join("empty");
    if diff_ids.is_empty() {
        fs_err::create_dir_all(&empty).map_err(io_at(&empty))?;
        return Ok(empty);
    }
    let chains = chain_ids(diff_ids);
    let existing = chains.iter().rposition(|c| root.join(c.hex()).is_dir());
    let mut parent = existing.map(|i| root.join(chains[i].hex()));
    let start = existing.map_or(0, |i| i + 1);
    for (i, chain) in chains.iter().enumerate().skip(start) {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&root)
            .map_err(io_at(&root))?
            .keep();
        let dir = tmp.join("rootfs");
        match &parent {
            Some(p) => copy_tree(p, &dir, true)?,
            None => fs_err::create_dir_all(&dir).map_err(io_at(&dir))?,
        }
        crate::snapshot::apply_layer(store, &diff_ids[i], &dir)?;
        let target = root.join(chain.hex());
        if fs_err::rename(&dir, &target).is_err() && !target.is_dir() {
            return Err(Error::Io {
                path: target,
                source: std::io::Error::other("cannot move the snapshot into place"),
            });
        }
        // Another build may have made the same snapshot first: ours goes.
        let _ = fs_err::remove_dir_all(&tmp);
        parent = Some(target);
    }
    parent.ok_or_else(|| Error::Internal("no snapshot made".into()))
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
