//! Applying a layer to a directory: regular entries unpacked (owners, modes, times and xattrs
//! kept; nothing written outside the directory), whiteouts deleting what lower layers put there.
//!
//! Directory times are restored after their children, as `tar` does: a directory the layer
//! holds gets the layer's time, one it only reaches into keeps the time it had before. Without
//! this, every unpack leaves its directories with the wall-clock time of the unpack, and a RUN
//! that reads them (`tar -c`, `ls -l`, `find -newer`) makes a different layer in every store.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::fs::Root;
use crate::store::{self, Store};

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the layer from the store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Unpacking failed.
    #[error("cannot apply layer entry `{entry}` to `{dir}`")]
    Io {
        /// The entry's path in the layer.
        entry: String,
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An entry whose path leaves the layer (`../x`, `/x` are cleaned; this is what remains).
    #[error("layer entry `{entry}` points outside the layer")]
    Escape {
        /// The entry's path.
        entry: String,
    },
    /// A build context's entry with an absolute name (a layer's is made relative).
    #[error("context entry `{entry}` has an absolute name")]
    Absolute {
        /// The entry's path.
        entry: String,
    },
    /// A build context's entry placed under a symlink an earlier entry made.
    #[error("context entry `{entry}` would be written through the symlink `{link}`")]
    ThroughLink {
        /// The entry's path.
        entry: String,
        /// The symlink on its way.
        link: String,
    },
    /// A build context's symlink whose relative target climbs out of the context.
    #[error("context symlink `{entry}` points outside the context (`{target}`)")]
    LinkOut {
        /// The symlink's path.
        entry: String,
        /// Its target.
        target: String,
    },
    /// A whiteout that names no entry (`.wh.`, `.wh..`, `.wh...`).
    #[error("layer entry `{entry}` is a whiteout of no name")]
    BadWhiteout {
        /// The entry's path.
        entry: String,
    },
    /// An entry's path could not be resolved inside the directory.
    #[error("cannot place layer entry `{entry}`")]
    Resolve {
        /// The entry's path.
        entry: String,
        /// The cause.
        #[source]
        source: crate::fs::Error,
    },
}

fn nix_is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Applies the layer tar read from `reader` on top of `dir`.
///
/// Every entry is placed through [`crate::fs::Root`]: its parent resolved inside `dir` (a
/// symlink an earlier entry made is followed, but never out of `dir`), then the entry made
/// under that resolved directory by name, so neither a whiteout, nor the removal of what an
/// entry replaces, nor a hard link's source can reach outside.
pub fn apply_tar<R: Read>(reader: R, dir: &Path) -> Result<(), ApplyError> {
    apply(reader, dir, false, None).map(|_| ())
}

/// Unpacks stored layer `diff_id` into the empty directory `upper` so that `upper` stacked by
/// overlayfs on `view` (the layers below, merged, read-only) reads as the layer applied to
/// `view`: a parent directory the layer only reaches into is made with the attributes and
/// time it has in `view`, as overlayfs's copy-up would. This writes each file once, without
/// the cost of creating it through an overlay mount.
///
/// `Ok(false)` when the layer needs what only an overlay mount gives: a whiteout or an opaque
/// directory, a hard link to a file of a lower layer, a path through a symlink or a file, or a
/// directory with extended attributes below. `upper` is then partly written: the caller
/// empties it and unpacks through an overlay instead.
pub fn apply_layer_over(
    store: &Store,
    diff_id: &crate::digest::Digest,
    upper: &Path,
    view: &Path,
) -> Result<bool, ApplyError> {
    apply_tar_over(store.open_blob(diff_id)?, upper, view)
}

/// [`apply_layer_over`] of a layer tar read from `reader` rather than from the store.
pub(crate) fn apply_tar_over<R: Read>(
    reader: R,
    upper: &Path,
    view: &Path,
) -> Result<bool, ApplyError> {
    apply(reader, upper, false, Some(view))
}

/// Unpacks a build context's tar into `dir`, as [`apply_tar`] does, more strictly (as docker's
/// untar refuses breakouts): an absolute name, an entry under a symlink another entry made, and
/// a symlink whose relative target climbs out are refused rather than cleaned or resolved.
pub fn apply_context_tar<R: Read>(reader: R, dir: &Path) -> Result<(), ApplyError> {
    apply(reader, dir, true, None).map(|_| ())
}

/// What an unpack into an upper directory over a view found of a path: fine, or something
/// only an overlay mount can do.
struct NeedsOverlay;

/// Whether `path` has extended attributes (or they cannot be listed): a copy-up would carry
/// them, an unpack into an upper directory would not.
fn has_xattrs(path: &Path) -> bool {
    xattr::list(path).map_or(true, |mut l| l.next().is_some())
}

/// Makes the ancestors of `parts` that `upper` lacks and `view` has as directories, with the
/// view's mode, owner and (into `times`) mtime; [`NeedsOverlay`] for a non-directory on the
/// way, in either, or a directory with extended attributes. Each prefix is checked top-down
/// with `lstat`, so no symlink is ever followed.
fn copy_up_parents(
    upper: &Path,
    view: &Path,
    parts: &[String],
    seen: &mut std::collections::HashSet<String>,
    times: &mut DirTimes,
) -> Result<(), NeedsOverlay> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for n in 1..=parts.len() {
        let rel = parts[..n].join("/");
        if seen.contains(&rel) {
            continue;
        }
        match fs_err::symlink_metadata(upper.join(&rel)) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(NeedsOverlay),
            Err(_) => match fs_err::symlink_metadata(view.join(&rel)) {
                Err(_) => {}
                Ok(m) if !m.is_dir() => return Err(NeedsOverlay),
                Ok(m) => {
                    if has_xattrs(&view.join(&rel)) {
                        return Err(NeedsOverlay);
                    }
                    let at = upper.join(&rel);
                    fs_err::create_dir(&at)
                        .and_then(|()| {
                            fs_err::set_permissions(
                                &at,
                                std::fs::Permissions::from_mode(m.mode() & 0o7777),
                            )
                        })
                        .map_err(|_| NeedsOverlay)?;
                    if nix_is_root() {
                        std::os::unix::fs::lchown(&at, Some(m.uid()), Some(m.gid()))
                            .map_err(|_| NeedsOverlay)?;
                    }
                    times.before.insert(rel.clone(), m.modified().ok());
                }
            },
        }
        seen.insert(rel);
    }
    Ok(())
}

/// What [`apply_context_tar`] refuses of `name` (made of `parts`), given the symlinks seen.
fn context_check(
    raw: &Path,
    name: &str,
    parts: &[String],
    links: &std::collections::HashSet<String>,
) -> Result<(), ApplyError> {
    if raw.has_root() {
        return Err(ApplyError::Absolute {
            entry: name.to_owned(),
        });
    }
    for n in 1..parts.len() {
        let above = parts[..n].join("/");
        if links.contains(&above) {
            return Err(ApplyError::ThroughLink {
                entry: name.to_owned(),
                link: above,
            });
        }
    }
    Ok(())
}

/// Applies the tar to `dir`; with `over`, into the upper directory `dir` of the view `over`
/// (see [`apply_layer_over`]): `Ok(false)` when that cannot be done without an overlay.
fn apply<R: Read>(
    reader: R,
    dir: &Path,
    strict: bool,
    over: Option<&Path>,
) -> Result<bool, ApplyError> {
    let mut links = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    let io = |entry: &str, source| ApplyError::Io {
        entry: entry.to_owned(),
        dir: dir.to_owned(),
        source,
    };
    let fs_err = |entry: &str, source: crate::fs::Error| ApplyError::Resolve {
        entry: entry.to_owned(),
        source,
    };
    let root = Root::open(dir).map_err(|e| fs_err("<layer>", e))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    // Owners are kept as root; a rootless build cannot chown, and its files, owned by the
    // user outside, are root inside the build's user namespace.
    archive.set_preserve_ownerships(nix_is_root());
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut times = DirTimes::default();
    let mut last_parent: Option<(String, crate::fs::Dir)> = None;
    for entry in archive.entries().map_err(|e| io("<layer>", e))? {
        let mut entry = entry.map_err(|e| io("<layer>", e))?;
        let raw = entry.path().map_err(|e| io("<layer>", e))?.into_owned();
        let name = raw.to_string_lossy().into_owned();
        if escapes(&raw) {
            return Err(ApplyError::Escape { entry: name });
        }
        let mut parts = crate::fs::clean(&name);
        if strict {
            context_check(&raw, &name, &parts, &links)?;
            if entry.header().entry_type().is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(|e| io(&name, e))?
                    .map(std::borrow::Cow::into_owned)
                    .unwrap_or_default();
                let from_parent =
                    Path::new(&parts[..parts.len().saturating_sub(1)].join("/")).join(&target);
                if !target.has_root() && escapes(&from_parent) {
                    return Err(ApplyError::LinkOut {
                        entry: name,
                        target: target.to_string_lossy().into_owned(),
                    });
                }
                links.insert(parts.join("/"));
            }
        }
        let Some(file_name) = parts.pop() else {
            // The layer's root itself (`./`): nothing to make.
            continue;
        };
        let parent = parts.join("/");
        if let Some(view) = over {
            let whiteout = file_name.starts_with(".wh.");
            if whiteout || copy_up_parents(dir, view, &parts, &mut seen, &mut times).is_err() {
                return Ok(false);
            }
        }
        // Everything below changes `parent` (and makes what is missing above it): their times
        // are taken now, to be put back when the layer is applied.
        times.before_change(&root, &parts);
        if file_name == ".wh..wh..opq" {
            root.clear_dir(&parent).map_err(|e| fs_err(&name, e))?;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(ApplyError::BadWhiteout { entry: name });
            }
            root.remove(&format!("{parent}/{hidden}"))
                .map_err(|e| fs_err(&name, e))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if !nix_is_root() && (kind.is_character_special() || kind.is_block_special()) {
            // Device nodes need privileges a rootless build has not; the sandbox mounts /dev.
            continue;
        }
        // Entries in path order come a directory's worth at a time: its handle is kept from
        // the last entry (one of them only ever changes a child of it, never it).
        let parent_dir = match last_parent.take() {
            Some((p, d)) if p == parent => d,
            _ => root.create_dir_all(&parent).map_err(|e| fs_err(&name, e))?,
        };
        let parent_dir = &last_parent.insert((parent.clone(), parent_dir)).1;
        // A file replaces whatever was there (never written through in place); a directory
        // replaces a non-directory and merges with a directory.
        let target = parent_dir.path().join(&file_name);
        match fs_err::symlink_metadata(&target) {
            Ok(m) if !(kind.is_dir() && m.is_dir()) => {
                crate::fs::remove_in(parent_dir, &file_name).map_err(|e| io(&name, e))?;
            }
            _ => {}
        }
        if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(|e| io(&name, e))?
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            if escapes(Path::new(&link)) {
                return Err(ApplyError::Escape { entry: link });
            }
            // The link's source is the entry it names, resolved inside the root; a symlink
            // there is linked itself, never followed.
            let (src_dir, src_name) = match root.parent(&link, false) {
                Ok(found) => found,
                Err(_) if over.is_some() => return Ok(false),
                Err(e) => return Err(fs_err(&name, e)),
            };
            if over.is_some() && fs_err::symlink_metadata(src_dir.path().join(&src_name)).is_err() {
                // A link to a file of a lower layer: only the overlay's copy-up has it.
                return Ok(false);
            }
            rustix::fs::linkat(
                src_dir.fd(),
                src_name.as_str(),
                parent_dir.fd(),
                file_name.as_str(),
                rustix::fs::AtFlags::empty(),
            )
            .map_err(|e| io(&name, e.into()))?;
            continue;
        }
        if kind.is_dir() {
            if let Some(view) = over {
                // A directory merging with one below keeps that one's extended attributes
                // through a copy-up; a new directory has none to keep.
                let below = view.join(format!("{parent}/{file_name}"));
                if fs_err::symlink_metadata(&below).is_ok_and(|m| m.is_dir()) && has_xattrs(&below)
                {
                    return Ok(false);
                }
            }
            let mtime = entry.header().mtime().map_err(|e| io(&name, e))?;
            times.in_layer(format!("{parent}/{file_name}"), mtime);
        }
        entry.unpack(&target).map_err(|e| io(&name, e))?;
    }
    times.restore(&root).map_err(|(entry, e)| io(&entry, e))?;
    Ok(true)
}

/// The times directories get back once the layer is applied.
#[derive(Default)]
struct DirTimes {
    /// Directories an entry went into, by path in the layer: the time they had before the
    /// layer, or `None` when the layer's entries made them without naming them (time 0, so
    /// that this too is the same in every store).
    before: HashMap<String, Option<std::time::SystemTime>>,
    /// Directories the layer holds, with their time in the layer; set last, so they win.
    layer: Vec<(String, u64)>,
}

impl DirTimes {
    /// Takes the times of `parts` and each of its ancestors, the root included, unless taken
    /// already.
    fn before_change(&mut self, root: &Root, parts: &[String]) {
        for n in 0..=parts.len() {
            let dir = parts[..n].join("/");
            if self.before.contains_key(&dir) {
                continue;
            }
            let time = match root.dir(&dir) {
                Ok(Some(d)) => fs_err::metadata(d.path()).and_then(|m| m.modified()).ok(),
                _ => None,
            };
            self.before.insert(dir, time);
        }
    }

    fn in_layer(&mut self, dir: String, mtime: u64) {
        self.layer.push((dir, mtime));
    }

    /// Puts the times back: the ones from before first, then the layer's. A directory a later
    /// entry removed or replaced is skipped.
    fn restore(self, root: &Root) -> Result<(), (String, std::io::Error)> {
        let epoch = std::time::SystemTime::UNIX_EPOCH;
        let before = self
            .before
            .into_iter()
            .map(|(d, t)| (d, t.unwrap_or(epoch)));
        let layer = self
            .layer
            .into_iter()
            .map(|(d, t)| (d, epoch + std::time::Duration::from_secs(t)));
        for (dir, time) in before.chain(layer) {
            let Ok(Some(d)) = root.dir(&dir) else {
                continue;
            };
            let set = fs_err::File::open(d.path()).and_then(|f| {
                f.file().set_times(
                    std::fs::FileTimes::new()
                        .set_accessed(time)
                        .set_modified(time),
                )
            });
            set.map_err(|e| (dir, e))?;
        }
        Ok(())
    }
}

/// Whether an entry's path climbs above the layer's root (`a/../../x`): such a layer is
/// refused rather than cleaned.
fn escapes(path: &Path) -> bool {
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return true,
        }
    }
    false
}

/// Applies stored layer `diff_id` on top of `dir`.
pub fn apply_layer(
    store: &Store,
    diff_id: &crate::digest::Digest,
    dir: &Path,
) -> Result<(), ApplyError> {
    let reader = store.open_blob(diff_id)?;
    apply_tar(reader, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Entry, EntryKind, FileSource, TarOptions, write_tar};
    use std::os::unix::fs::PermissionsExt;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o640,
            uid: 0,
            gid: 0,
            mtime: 1,
            xattrs: Vec::new(),
        }
    }

    fn file(path: &str, body: &str) -> Entry {
        entry(
            path,
            EntryKind::File {
                source: FileSource::Bytes(body.as_bytes().to_vec()),
                size: body.len() as u64,
            },
        )
    }

    #[test]
    fn whiteouts_and_opaque_dirs_delete_lower_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut lower = vec![
            entry("etc", EntryKind::Dir),
            file("etc/a", "a"),
            file("etc/b", "b"),
            entry("var", EntryKind::Dir),
            file("var/x", "x"),
        ];
        apply_tar(
            write_tar(&mut lower, Vec::new(), TarOptions::default())
                .unwrap()
                .as_slice(),
            dir.path(),
        )
        .unwrap();
        let mut upper = vec![
            entry("etc/a", EntryKind::Whiteout),
            entry("var", EntryKind::Dir),
            entry("var", EntryKind::Opaque),
            file("var/y", "y"),
            file("etc/b", "new"),
        ];
        apply_tar(
            write_tar(&mut upper, Vec::new(), TarOptions::default())
                .unwrap()
                .as_slice(),
            dir.path(),
        )
        .unwrap();
        assert!(!dir.path().join("etc/a").exists());
        assert_eq!(
            fs_err::read_to_string(dir.path().join("etc/b")).unwrap(),
            "new"
        );
        assert!(!dir.path().join("var/x").exists());
        assert_eq!(
            fs_err::read_to_string(dir.path().join("var/y")).unwrap(),
            "y"
        );
        assert_eq!(
            fs_err::metadata(dir.path().join("etc/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
    }

    #[test]
    fn nothing_is_written_through_a_symlink_out_of_the_tree() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut lower = vec![entry(
            "evil",
            EntryKind::Symlink {
                target: outside.path().to_string_lossy().into_owned(),
            },
        )];
        apply_tar(
            write_tar(&mut lower, Vec::new(), TarOptions::default())
                .unwrap()
                .as_slice(),
            dir.path(),
        )
        .unwrap();
        let mut upper = vec![file("evil/pwned", "x")];
        let _ = apply_tar(
            write_tar(&mut upper, Vec::new(), TarOptions::default())
                .unwrap()
                .as_slice(),
            dir.path(),
        );
        assert!(
            !outside.path().join("pwned").exists(),
            "a layer wrote outside its directory"
        );
    }

    /// Issue 14: a build context is unpacked strictly. Each of these is refused with an error
    /// naming the entry, where a layer would have the same entries cleaned or resolved inside.
    #[test]
    fn a_context_with_an_absolute_name_a_link_out_or_a_write_through_a_link_is_refused() {
        let raw = |entries: Vec<(&str, tar::EntryType, &str)>| {
            let mut b = tar::Builder::new(Vec::new());
            for (path, kind, link) in entries {
                let mut h = header(kind, u64::from(kind.is_file()));
                if !link.is_empty() {
                    h.set_link_name(link).unwrap();
                }
                // `set_path` refuses an absolute name: the bytes go in by hand.
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                let data: &[u8] = if kind.is_file() { b"x" } else { b"" };
                b.append(&h, data).unwrap();
            }
            b.into_inner().unwrap()
        };
        let cases = [
            (
                vec![("/etc/abs", tar::EntryType::Regular, "")],
                "absolute name",
            ),
            (
                vec![
                    ("out", tar::EntryType::Symlink, "/tmp"),
                    ("out/x", tar::EntryType::Regular, ""),
                ],
                "through the symlink `out`",
            ),
            (
                vec![("d/up", tar::EntryType::Symlink, "../../etc")],
                "points outside the context",
            ),
        ];
        for (entries, says) in cases {
            let tar = raw(entries);
            let dir = tempfile::tempdir().unwrap();
            let err = apply_context_tar(tar.as_slice(), dir.path()).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
            // A layer takes the same entries, placed inside.
            let dir = tempfile::tempdir().unwrap();
            apply_tar(tar.as_slice(), dir.path()).unwrap();
        }
        // Links that stay inside, and absolute ones (resolved in the image at COPY), are kept.
        let ok = raw(vec![
            ("d/in", tar::EntryType::Symlink, "../f"),
            ("abs", tar::EntryType::Symlink, "/usr/bin"),
            ("f", tar::EntryType::Regular, ""),
        ]);
        let dir = tempfile::tempdir().unwrap();
        apply_context_tar(ok.as_slice(), dir.path()).unwrap();
        assert!(dir.path().join("d/in").is_symlink());
    }

    /// A header with every numeric field set (`tar` refuses blank ones).
    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h
    }

    /// Finding 1 of issue 10: whiteouts, replaced entries and hard links through a symlink an
    /// earlier entry of the same tar made. Each must leave the host directory as it was.
    #[test]
    fn issue_10_entries_through_a_symlink_of_the_same_tar_stay_inside() {
        let apply = |entries: &mut Vec<Entry>, dir: &Path| {
            apply_tar(
                write_tar(entries, Vec::new(), TarOptions::default())
                    .unwrap()
                    .as_slice(),
                dir,
            )
        };
        let evil = |outside: &Path| {
            entry(
                "evil",
                EntryKind::Symlink {
                    target: outside.to_string_lossy().into_owned(),
                },
            )
        };
        for attack in ["evil/.wh..wh..opq", "evil/.wh.keep", "evil/keep"] {
            let outside = tempfile::tempdir().unwrap();
            fs_err::write(outside.path().join("keep"), "host").unwrap();
            let dir = tempfile::tempdir().unwrap();
            // The raw names, as a hostile layer would hold them.
            let mut tar = tar::Builder::new(Vec::new());
            let mut lower = vec![evil(outside.path())];
            let first = write_tar(&mut lower, Vec::new(), TarOptions::default()).unwrap();
            let mut h = header(
                tar::EntryType::Regular,
                if attack == "evil/keep" { 5 } else { 0 },
            );
            let body: &[u8] = if attack == "evil/keep" { b"pwned" } else { b"" };
            tar.append_data(&mut h, attack, body).unwrap();
            let second = tar.into_inner().unwrap();
            apply_tar(first.as_slice(), dir.path()).unwrap();
            let _ = apply_tar(second.as_slice(), dir.path());
            assert_eq!(
                fs_err::read_to_string(outside.path().join("keep")).unwrap(),
                "host",
                "`{attack}` reached the host directory"
            );
        }
        // A hard link to a host file, named through the link: resolved inside, so missing.
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("keep"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut lower = vec![evil(outside.path())];
        apply(&mut lower, dir.path()).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Link, 0);
        tar.append_link(&mut h, "stolen", "evil/keep").unwrap();
        assert!(apply_tar(tar.into_inner().unwrap().as_slice(), dir.path()).is_err());
        assert!(!dir.path().join("stolen").exists());
        assert_eq!(
            nix::sys::stat::stat(&outside.path().join("keep"))
                .unwrap()
                .st_nlink,
            1
        );
    }

    /// `.wh..` and `.wh...` name the directory itself or its parent: refused, nothing removed.
    #[test]
    fn issue_10_dot_whiteouts_are_refused() {
        let store_tmp = tempfile::tempdir().unwrap();
        let dir = store_tmp.path().join("layer");
        fs_err::create_dir(&dir).unwrap();
        fs_err::write(store_tmp.path().join("other-build"), "x").unwrap();
        fs_err::write(dir.join("mine"), "x").unwrap();
        for name in [".wh..", ".wh...", "sub/.wh..", ".wh."] {
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = header(tar::EntryType::Regular, 0);
            tar.append_data(&mut h, name, &b""[..]).unwrap();
            let err = apply_tar(tar.into_inner().unwrap().as_slice(), &dir).unwrap_err();
            assert!(
                matches!(err, ApplyError::BadWhiteout { .. }),
                "{name}: {err}"
            );
        }
        assert!(store_tmp.path().join("other-build").exists());
        assert!(dir.join("mine").exists());
    }

    /// Directories end with the layer's time (not the unpack's), directories the layer only
    /// reaches into keep theirs, and ones it makes without naming them get time 0.
    #[test]
    fn directory_times_are_the_layers_not_the_unpacks() {
        let mtime = |p: &Path| nix::sys::stat::lstat(p).unwrap().st_mtime;
        let dir = tempfile::tempdir().unwrap();
        let mut lower = vec![entry("d", EntryKind::Dir), file("d/f", "f")];
        apply_tar(
            write_tar(&mut lower, Vec::new(), TarOptions::default())
                .unwrap()
                .as_slice(),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            mtime(&dir.path().join("d")),
            1,
            "a directory the layer holds"
        );
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(12345);
        fs_err::File::open(dir.path())
            .unwrap()
            .file()
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .unwrap();
        let mut upper = vec![
            file("d/g", "g"),
            entry("d/f", EntryKind::Whiteout),
            file("x/y/z", "z"),
        ];
        apply_tar(
            write_tar(&mut upper, Vec::new(), TarOptions::default())
                .unwrap()
                .as_slice(),
            dir.path(),
        )
        .unwrap();
        assert_eq!(mtime(&dir.path().join("d")), 1, "reached into: kept");
        assert_eq!(mtime(dir.path()), 12345, "the root: kept");
        assert_eq!(mtime(&dir.path().join("x")), 0, "made, not named");
        assert_eq!(mtime(&dir.path().join("x/y")), 0, "made, not named");
    }

    fn tar(mut entries: Vec<Entry>) -> Vec<u8> {
        write_tar(&mut entries, Vec::new(), TarOptions::default()).unwrap()
    }

    /// A layer unpacked into an upper directory over a view reads, stacked, as the layer
    /// applied to the view: a parent it only reaches into has the view's mode and time.
    #[test]
    fn issue_16_an_upper_directory_gets_the_attributes_of_what_it_reaches_into() {
        let mtime = |p: &Path| nix::sys::stat::lstat(p).unwrap().st_mtime;
        let work = tempfile::tempdir().unwrap();
        let (view, upper, tree) = (
            work.path().join("view"),
            work.path().join("upper"),
            work.path().join("tree"),
        );
        for d in [&view, &upper, &tree] {
            fs_err::create_dir(d).unwrap();
        }
        for root in [&view, &tree] {
            apply_tar(
                tar(vec![entry("d", EntryKind::Dir), file("d/f", "f")]).as_slice(),
                root,
            )
            .unwrap();
            fs_err::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(12345);
            fs_err::File::open(root.join("d"))
                .unwrap()
                .file()
                .set_times(std::fs::FileTimes::new().set_modified(old))
                .unwrap();
        }
        let layer = tar(vec![file("d/g", "g"), file("n/m/o", "o")]);
        let done = apply(layer.as_slice(), &upper, false, Some(&view)).unwrap();
        assert!(done);
        apply_tar(layer.as_slice(), &tree).unwrap();
        for rel in ["d", "n", "n/m"] {
            let (u, t) = (
                fs_err::metadata(upper.join(rel)).unwrap(),
                fs_err::metadata(tree.join(rel)).unwrap(),
            );
            assert_eq!(u.permissions().mode(), t.permissions().mode(), "{rel}");
            assert_eq!(mtime(&upper.join(rel)), mtime(&tree.join(rel)), "{rel}");
        }
        assert_eq!(mtime(&upper.join("d")), 12345);
        assert!(!upper.join("d/f").exists(), "a lower file was copied up");
    }

    /// What only an overlay does is left to one: the unpack says so instead of guessing.
    #[test]
    fn issue_16_an_upper_directory_unpack_gives_way_where_only_an_overlay_is_right() {
        let work = tempfile::tempdir().unwrap();
        let view = work.path().join("view");
        fs_err::create_dir(&view).unwrap();
        apply_tar(
            tar(vec![
                entry("d", EntryKind::Dir),
                file("d/f", "f"),
                entry("l", EntryKind::Symlink { target: "d".into() }),
                entry("x", EntryKind::Dir),
            ])
            .as_slice(),
            &view,
        )
        .unwrap();
        xattr::set(view.join("x"), "user.rbuild-test", b"1").unwrap();
        let cases = [
            ("a whiteout", vec![entry("d/f", EntryKind::Whiteout)]),
            ("an opaque directory", vec![entry("d", EntryKind::Opaque)]),
            ("a path through a lower symlink", vec![file("l/new", "n")]),
            (
                "a hard link to a lower file",
                vec![entry(
                    "d/h",
                    EntryKind::Hardlink {
                        target: "d/f".into(),
                    },
                )],
            ),
            ("a directory with xattrs below", vec![file("x/y", "y")]),
        ];
        for (what, entries) in cases {
            let upper = work.path().join(what.replace(' ', "-"));
            fs_err::create_dir(&upper).unwrap();
            let done = apply(tar(entries).as_slice(), &upper, false, Some(&view)).unwrap();
            assert!(!done, "{what}: unpacked without an overlay");
        }
    }

    /// Hard links inside the layer still work, and to a symlink link the symlink itself.
    #[test]
    fn hard_links_inside_the_layer_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Regular, 1);
        tar.append_data(&mut h, "a/f", &b"x"[..]).unwrap();
        let mut h = header(tar::EntryType::Link, 0);
        tar.append_link(&mut h, "b/g", "a/f").unwrap();
        apply_tar(tar.into_inner().unwrap().as_slice(), dir.path()).unwrap();
        let a = nix::sys::stat::stat(&dir.path().join("a/f")).unwrap();
        let b = nix::sys::stat::stat(&dir.path().join("b/g")).unwrap();
        assert_eq!((a.st_ino, a.st_nlink), (b.st_ino, 2));
    }
}
