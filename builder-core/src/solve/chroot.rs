//! Chroot isolation's mounts: what the namespaced sandbox would bind, laid into the step's copy
//! of the root filesystem before the command runs, since nothing can be mounted.
//!
//! - the step's own files (a secret, the heredoc script, an ssh socket, `/etc/hosts`, a `rw`
//!   bind's scratch copy) are moved in;
//! - a cache mount's directory is moved in and moved back after (only a real directory: a
//!   RUN that put a symlink there leaves the cache empty, never pointing at the host);
//! - any other bind source (the context, a stage, an image) is copied in, so RUN cannot write
//!   to it;
//! - a tmpfs mount is an empty directory.
//!
//! Every target is resolved inside the copy ([`crate::fs::Root`]) and what was there is
//! removed first; the targets are left out of the layer, as mount points are.

use std::path::{Path, PathBuf};

use crate::exec::{Bind, SandboxSpec};
use crate::fs::{Last, Root};

use super::error::io_at;
use super::{Error, Result};

/// What was laid into the root, undone when dropped (whatever way the RUN ended).
pub(crate) struct Placed {
    /// Paths inside the root of what was moved or copied in, in order.
    placed: Vec<PathBuf>,
    /// Cache directories to move back: inside the root, and where they live.
    back: Vec<(PathBuf, PathBuf)>,
}

impl Drop for Placed {
    fn drop(&mut self) {
        let back: Vec<&PathBuf> = self.back.iter().map(|(inside, _)| inside).collect();
        // Nested ones first (a secret inside a cache mount must not stay in the cache).
        for inside in self.placed.iter().rev() {
            if !back.contains(&inside) {
                let _ = remove(inside);
            }
        }
        for (inside, home) in self.back.iter().rev() {
            let real_dir = fs_err::symlink_metadata(inside).is_ok_and(|m| m.is_dir());
            if real_dir && fs_err::rename(inside, home).is_ok() {
                continue;
            }
            // Gone, replaced by something else, or on another filesystem: an empty cache.
            let _ = remove(inside);
            let _ = fs_err::create_dir_all(home);
        }
    }
}

/// Removes whatever is at `path` (not following a link).
fn remove(path: &Path) -> std::io::Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(path),
        Ok(_) => fs_err::remove_file(path),
        Err(_) => Ok(()),
    }
}

/// Lays `spec`'s binds, tmpfs mounts, `/etc/hosts` and `/etc/resolv.conf` into `spec.merged`
/// (a copy of the root filesystem) and takes them out of `spec`. `scratch` is the step's own
/// directory (what is in it is moved); `caches` are the cache mounts' directories.
pub(crate) fn place(spec: &mut SandboxSpec, scratch: &Path, caches: &[PathBuf]) -> Result<Placed> {
    let root = Root::open(&spec.merged).map_err(|e| fs_error(&spec.merged, &e))?;
    let mut placed = Placed {
        placed: Vec::new(),
        back: Vec::new(),
    };
    let mut binds: Vec<Bind> = std::mem::take(&mut spec.binds);
    for (file, target) in [
        (spec.hosts.take(), "/etc/hosts"),
        (spec.resolv_conf.take(), "/etc/resolv.conf"),
    ] {
        if let Some(source) = file {
            binds.push(Bind {
                source,
                target: target.into(),
                readonly: true,
            });
        }
    }
    for bind in &binds {
        let at = target_in(&root, &bind.target)?;
        if bind.source.starts_with(scratch) {
            fs_err::rename(&bind.source, &at).map_err(io_at(&at))?;
        } else if caches.contains(&bind.source) {
            fs_err::rename(&bind.source, &at).map_err(io_at(&at))?;
            placed.back.push((at.clone(), bind.source.clone()));
        } else {
            super::snapshots::copy_tree(&bind.source, &at, false)?;
        }
        placed.placed.push(at);
    }
    for (target, _size) in std::mem::take(&mut spec.tmpfs) {
        let at = target_in(&root, &target)?;
        fs_err::create_dir(&at).map_err(io_at(&at))?;
        placed.placed.push(at);
    }
    Ok(placed)
}

/// Where `target` is inside the root (links followed inside it), its parents made and what
/// was there removed.
fn target_in(root: &Root, target: &str) -> Result<PathBuf> {
    let rel = root
        .resolve(target, Last::Follow)
        .map_err(|e| fs_error(root.path(), &e))?;
    let (dir, name) = root
        .parent(&rel, true)
        .map_err(|e| fs_error(root.path(), &e))?;
    crate::fs::remove_in(&dir, &name).map_err(io_at(root.path().join(&rel)))?;
    Ok(root.path().join(rel))
}

fn fs_error(root: &Path, e: &crate::fs::Error) -> Error {
    Error::Io {
        path: root.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}
