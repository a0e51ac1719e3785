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

/// What was laid into the root, undone when dropped (whatever way the RUN ended). Paths are
/// kept relative to the root and resolved inside it again at the end: the RUN may have turned
/// any directory of the copy into a link to the builder's own files.
pub(crate) struct Placed {
    root: Root,
    /// What was moved or copied in, resolved relative to the root, in order.
    targets: Vec<String>,
    /// Cache directories to move back: relative to the root, and where they live.
    back: Vec<(String, PathBuf)>,
}

impl Placed {
    /// Where the mounts went, as the copy has them (a target through a link of the image is
    /// where the link led): left out of the layer.
    pub(crate) fn targets(&self) -> &[String] {
        &self.targets
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let back: Vec<&String> = self.back.iter().map(|(inside, _)| inside).collect();
        // Nested ones first (a secret inside a cache mount must not stay in the cache).
        for inside in self.targets.iter().rev() {
            if !back.contains(&inside) {
                if let Ok((dir, name)) = self.root.parent(inside, false) {
                    let _ = crate::fs::remove_in(&dir, &name);
                }
            }
        }
        for (inside, home) in self.back.iter().rev() {
            let Ok((dir, name)) = self.root.parent(inside, false) else {
                let _ = fs_err::create_dir_all(home);
                continue;
            };
            // Through the held descriptor, the last name not followed.
            let at = dir.path().join(&name);
            let real_dir = fs_err::symlink_metadata(&at).is_ok_and(|m| m.is_dir());
            if real_dir && fs_err::rename(&at, home).is_ok() {
                continue;
            }
            // Gone, replaced by something else, or on another filesystem: an empty cache.
            let _ = crate::fs::remove_in(&dir, &name);
            let _ = fs_err::create_dir_all(home);
        }
    }
}

/// Lays `spec`'s binds, tmpfs mounts, `/etc/hosts` and `/etc/resolv.conf` into `spec.merged`
/// (a copy of the root filesystem) and takes them out of `spec`. `scratch` is the step's own
/// directory (what is in it is moved); `caches` are the cache mounts' directories.
pub(crate) fn place(spec: &mut SandboxSpec, scratch: &Path, caches: &[PathBuf]) -> Result<Placed> {
    let root = Root::open(&spec.merged).map_err(|e| fs_error(&spec.merged, &e))?;
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
    let tmpfs = std::mem::take(&mut spec.tmpfs);
    // Shallow targets first, so one inside another is laid into it, not removed with it.
    let depth = |t: &str| t.split('/').filter(|c| !c.is_empty()).count();
    let mut all: Vec<(String, Option<&Bind>)> = binds
        .iter()
        .map(|b| (b.target.clone(), Some(b)))
        .chain(tmpfs.iter().map(|(t, _)| (t.clone(), None)))
        .collect();
    all.sort_by_key(|(t, _)| depth(t));
    // Parents keep their times: the layer must not record a directory as the sandbox left it.
    let times = parent_times(&root, all.iter().map(|(t, _)| t.as_str()));
    let mut placed = Placed {
        root,
        targets: Vec::new(),
        back: Vec::new(),
    };
    for (target, bind) in all {
        let (rel, at) = target_in(&placed.root, &target)?;
        match bind {
            None => fs_err::create_dir(&at).map_err(io_at(&at))?,
            Some(b) if b.source.starts_with(scratch) => {
                fs_err::rename(&b.source, &at).map_err(io_at(&at))?;
            }
            // A writable cache is moved in and back; a read-only one is a copy.
            Some(b) if caches.contains(&b.source) && !b.readonly => {
                fs_err::rename(&b.source, &at).map_err(io_at(&at))?;
                placed.back.push((rel.clone(), b.source.clone()));
            }
            Some(b) => super::snapshots::copy_tree(&b.source, &at, false)?,
        }
        placed.targets.push(rel);
    }
    for (dir, time) in times {
        let _ = fs_err::File::open(&dir).and_then(|f| {
            f.file()
                .set_times(std::fs::FileTimes::new().set_modified(time))
        });
    }
    Ok(placed)
}

/// The modification times of the existing parents of `targets` inside `root`.
fn parent_times<'a>(
    root: &Root,
    targets: impl Iterator<Item = &'a str>,
) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for t in targets {
        let Ok(rel) = root.resolve(t, Last::Follow) else {
            continue;
        };
        let mut at = Path::new(&rel).parent();
        while let Some(p) = at {
            let dir = root.path().join(p);
            if let Ok(time) = fs_err::metadata(&dir).and_then(|m| m.modified()) {
                if !out.iter().any(|(d, _)| d == &dir) {
                    out.push((dir, time));
                }
            }
            at = p.parent();
        }
    }
    out
}

/// Where `target` is inside the root (links followed inside it), relative and on the host,
/// its parents made and what was there removed.
fn target_in(root: &Root, target: &str) -> Result<(String, PathBuf)> {
    let rel = root
        .resolve(target, Last::Follow)
        .map_err(|e| fs_error(root.path(), &e))?;
    let (dir, name) = root
        .parent(&rel, true)
        .map_err(|e| fs_error(root.path(), &e))?;
    crate::fs::remove_in(&dir, &name).map_err(io_at(root.path().join(&rel)))?;
    let at = root.path().join(&rel);
    Ok((rel, at))
}

fn fs_error(root: &Path, e: &crate::fs::Error) -> Error {
    Error::Io {
        path: root.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}
