//! The fallback where overlayfs cannot mount: the changes between a root filesystem and a
//! modified copy of it, found by walking both (kind, mode, owner, size, time, link target).
//!
//! [`tree_diff`] gives the changes alone. [`overlay_diff`] gives what overlayfs's upper
//! directory would have held for the same command, so a RUN on a copy (chroot isolation, no
//! overlayfs) makes the same layer, byte for byte, as one on an overlay.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::layer::{Entry, EntryKind, FileSource};

struct Meta {
    /// Which inode the path is (see [`overlay_diff`]); not part of [`Meta::same`].
    ino: Ino,
    /// When its inode last changed (not part of [`Meta::same`] either): a change of owner,
    /// mode, links or extended attributes that leaves the rest alike still moves it, and
    /// overlayfs would have copied the file up.
    ctime: (i64, i64),
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    link: Option<std::path::PathBuf>,
}

impl Meta {
    /// Whether the entry looks the same: kind, mode, owner, size, time and link target (which
    /// inode it is aside).
    fn same(&self, other: &Self) -> bool {
        (
            self.kind, self.mode, self.uid, self.gid, self.size, self.mtime, &self.link,
        ) == (
            other.kind,
            other.mode,
            other.uid,
            other.gid,
            other.size,
            other.mtime,
            &other.link,
        )
    }
}

/// Whether `after` is new or looks different from `before`.
fn changed_from(before: Option<&Meta>, after: &Meta) -> bool {
    !before.is_some_and(|b| b.same(after))
}

/// A path's device, inode and birth time (where the filesystem keeps one: an inode number
/// freed and given again at once is told apart by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Ino(u64, u64, Option<std::time::SystemTime>);

/// The inode of every path below `root`: taken of a copy before a command runs on it, so
/// [`overlay_diff`] can tell a path the command replaced from one it left.
///
/// # Errors
/// A directory cannot be read.
pub fn inodes(root: &Path, skip: &[String]) -> std::io::Result<Inodes> {
    Ok(Inodes(
        tree(root, skip)?
            .into_iter()
            .map(|(path, meta)| (path, (meta.ino, meta.ctime)))
            .collect(),
    ))
}

/// What [`inodes`] gives.
#[derive(Debug, Default)]
pub struct Inodes(HashMap<String, (Ino, (i64, i64))>);

/// Whether `path` is one of `skip` or below one.
fn is_skipped(skip: &[String], path: &str) -> bool {
    skip.iter().any(|s| {
        path.strip_prefix(s.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Every entry below `root` by relative path, `skip`ped paths neither listed nor entered.
fn tree(root: &Path, skip: &[String]) -> std::io::Result<BTreeMap<String, Meta>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in fs_err::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if is_skipped(skip, &child) {
                continue;
            }
            let path = e.path();
            let m = fs_err::symlink_metadata(&path)?;
            let link = m
                .file_type()
                .is_symlink()
                .then(|| fs_err::read_link(&path))
                .transpose()?;
            if m.is_dir() {
                stack.push((path, child.clone()));
            }
            out.insert(
                child,
                Meta {
                    ino: Ino(m.dev(), m.ino(), m.created().ok()),
                    ctime: (m.ctime(), m.ctime_nsec()),
                    kind: m.mode() & 0o170_000,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if m.is_dir() { 0 } else { m.len() },
                    mtime: (m.mtime(), m.mtime_nsec()),
                    link,
                },
            );
        }
    }
    Ok(out)
}

/// What `changed` has that `base` has not (new or different entries) and what it lost
/// (whiteouts, only for the top-most deleted path). `skip` names paths to leave out.
pub fn tree_diff(base: &Path, changed: &Path, skip: &[String]) -> std::io::Result<Vec<Entry>> {
    let before = tree(base, skip)?;
    let after = tree(changed, skip)?;
    let skipped = |p: &str| is_skipped(skip, p);
    let paths: Vec<String> = after
        .iter()
        .filter(|(path, meta)| !skipped(path) && changed_from(before.get(*path), meta))
        .map(|(path, _)| path.clone())
        .collect();
    let mut out = entries_of(changed, &after, &paths)?;
    for path in before.keys() {
        if after.contains_key(path) || skipped(path) {
            continue;
        }
        // Only the top-most deleted path needs a whiteout.
        // (or no longer a directory: a whiteout below a link would delete through it)
        let parent_gone = path
            .rsplit_once('/')
            .is_some_and(|(p, _)| after.get(p).is_none_or(|m| m.kind != 0o040_000));
        if !parent_gone {
            out.push(Entry {
                path: path.clone(),
                kind: EntryKind::Whiteout,
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// The entries of `paths` (in order) of the tree at `root`, which `tree` walked: a file's
/// second and later names are hard links to its first.
fn entries_of(
    root: &Path,
    tree: &BTreeMap<String, Meta>,
    paths: &[String],
) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for path in paths {
        let Some(meta) = tree.get(path) else {
            continue;
        };
        let full = root.join(path);
        let m = fs_err::symlink_metadata(&full)?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink {
                target: meta
                    .link
                    .as_ref()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            }
        } else if ft.is_file() {
            match links.get(&(m.dev(), m.ino())) {
                Some(first) => EntryKind::Hardlink {
                    target: first.clone(),
                },
                None => {
                    if m.nlink() > 1 {
                        links.insert((m.dev(), m.ino()), path.clone());
                    }
                    EntryKind::File {
                        source: FileSource::Path(full.clone()),
                        size: m.len(),
                    }
                }
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            continue;
        };
        // A file's capabilities (`setcap`), as the upper directory's entries keep them.
        let mut xattrs = Vec::new();
        if matches!(kind, EntryKind::File { .. }) {
            if let Ok(Some(cap)) = xattr::get(&full, "security.capability") {
                xattrs.push(("security.capability".to_owned(), cap));
            }
        }
        out.push(Entry {
            path: path.clone(),
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime.0,
            xattrs,
        });
    }
    Ok(out)
}

/// What overlayfs's upper directory would hold had the command that turned a copy of `base`
/// into `changed` run on an overlay of `base` instead: [`tree_diff`]'s changes, and
/// - a path the command replaced (its inode is not the one `before` has) even where it looks
///   the same; a directory replaced is opaque, everything below it is recorded and nothing
///   below it is whited out;
/// - every directory above a recorded path (overlayfs copies parents up);
/// - every other name of a recorded hard-linked file (a link copies its file up).
///
/// Directories recorded only because their time changed, with nothing below them, are left
/// for the caller to drop as it does an upper directory's.
///
/// # Errors
/// A directory cannot be read.
pub fn overlay_diff(
    base: &Path,
    changed: &Path,
    before: &Inodes,
    skip: &[String],
) -> std::io::Result<Vec<Entry>> {
    let old = tree(base, skip)?;
    let new = tree(changed, skip)?;
    let skipped = |p: &str| is_skipped(skip, p);
    let replaced = |p: &str, meta: &Meta| before.0.get(p).is_some_and(|(ino, _)| *ino != meta.ino);
    let touched = |p: &str, meta: &Meta| before.0.get(p).is_some_and(|(_, c)| *c != meta.ctime);
    // Directories the command made anew where `base` had something: opaque, as overlayfs
    // makes a directory created over a whiteout.
    let opaque: Vec<&String> = new
        .iter()
        .filter(|(p, m)| {
            m.kind == 0o040_000
                && old
                    .get(*p)
                    .is_some_and(|o| o.kind != m.kind || replaced(p, m))
        })
        .map(|(p, _)| p)
        .collect();
    let under_opaque = |p: &str| opaque.iter().any(|o| p.starts_with(&format!("{o}/")));
    let mut record: std::collections::BTreeSet<&String> = new
        .iter()
        .filter(|(p, m)| {
            !skipped(p)
                && (changed_from(old.get(*p), m)
                    || replaced(p, m)
                    || touched(p, m)
                    || under_opaque(p))
        })
        .map(|(p, _)| p)
        .collect();
    // The other names of recorded hard-linked files.
    let linked: std::collections::HashSet<(u64, u64)> = record
        .iter()
        .filter_map(|p| new.get(*p))
        .filter(|m| m.kind == 0o100_000)
        .map(|m| (m.ino.0, m.ino.1))
        .collect();
    record.extend(
        new.iter()
            .filter(|(p, m)| !skipped(p) && linked.contains(&(m.ino.0, m.ino.1)))
            .map(|(p, _)| p),
    );
    let gone: Vec<&String> = old
        .keys()
        .filter(|p| !new.contains_key(*p) && !skipped(p) && !under_opaque(p))
        // Only where the parent is still a directory: a whiteout below a link would delete
        // through it.
        .filter(|p| {
            p.rsplit_once('/')
                .is_none_or(|(parent, _)| new.get(parent).is_some_and(|m| m.kind == 0o040_000))
        })
        .collect();
    // Parents of whatever is recorded or whited out, as overlayfs copies them up.
    let parents: Vec<&String> = record
        .iter()
        .copied()
        .chain(gone.iter().copied())
        .flat_map(|p| {
            let mut up = Vec::new();
            let mut at = p.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                up.push(parent);
                at = parent;
            }
            up
        })
        .filter_map(|p| new.get_key_value(p).map(|(k, _)| k))
        .collect();
    record.extend(parents);
    let paths: Vec<String> = record.into_iter().cloned().collect();
    let mut out = entries_of(changed, &new, &paths)?;
    for p in opaque {
        if let Some(dir) = out.iter().find(|e| &e.path == p).cloned() {
            out.push(Entry {
                kind: EntryKind::Opaque,
                ..dir
            });
        }
    }
    // A whiteout's time is its deletion's, which the parent's time (set by it) stands for.
    let root_time = fs_err::symlink_metadata(changed)?.mtime();
    out.extend(gone.into_iter().map(|p| {
        Entry {
            path: p.clone(),
            kind: EntryKind::Whiteout,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: p
                .rsplit_once('/')
                .and_then(|(parent, _)| new.get(parent))
                .map_or(root_time, |m| m.mtime.0),
            xattrs: Vec::new(),
        }
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(entries: &[Entry]) -> Vec<String> {
        let mut out: Vec<String> = entries
            .iter()
            .map(|e| {
                let kind = match &e.kind {
                    EntryKind::Dir => "dir".to_owned(),
                    EntryKind::Opaque => "opaque".to_owned(),
                    EntryKind::Whiteout => "whiteout".to_owned(),
                    EntryKind::Hardlink { target } => format!("link to {target}"),
                    EntryKind::File { .. } => "file".to_owned(),
                    other => format!("{other:?}"),
                };
                format!("{} {kind}", e.path)
            })
            .collect();
        out.sort();
        out
    }

    /// `base` copied beside it with `cp -a` (new inodes, as the copy fallback makes), and the
    /// copy's inodes before anything changes it.
    fn copied(base: &Path) -> (std::path::PathBuf, Inodes) {
        let copy = base.with_file_name("copy");
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(base)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(st.success());
        let before = inodes(&copy, &[]).unwrap();
        (copy, before)
    }

    /// A directory replaced by a link: the link alone, no whiteout below it (an extractor
    /// would delete through the link).
    #[test]
    fn nothing_is_whited_out_below_what_is_no_longer_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        fs_err::create_dir_all(base.join("d")).unwrap();
        fs_err::write(base.join("d/c"), "c").unwrap();
        let (copy, before) = copied(&base);
        fs_err::remove_dir_all(copy.join("d")).unwrap();
        std::os::unix::fs::symlink("/opt/d", copy.join("d")).unwrap();
        let overlay = shown(&overlay_diff(&base, &copy, &before, &[]).unwrap());
        assert_eq!(overlay.len(), 1, "{overlay:?}");
        assert!(overlay[0].starts_with("d Symlink"), "{overlay:?}");
        let plain = shown(&tree_diff(&base, &copy, &[]).unwrap());
        assert_eq!(plain, overlay);
    }

    /// What overlayfs's upper directory holds for the same command: parents copied up, a
    /// directory made over a deleted entry opaque (even where the inode number comes back),
    /// every name of a linked file, one whiteout per deleted tree.
    #[test]
    fn a_copy_diffs_as_overlayfs_records() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        for d in ["a/b", "keep/x", "gone/deep", "redo"] {
            fs_err::create_dir_all(base.join(d)).unwrap();
        }
        for f in ["a/b/f", "keep/x/same", "gone/deep/g", "redo/old", "file"] {
            fs_err::write(base.join(f), f).unwrap();
        }
        let (copy, before) = copied(&base);
        fs_err::write(copy.join("a/b/new"), "new").unwrap();
        fs_err::remove_dir_all(copy.join("gone")).unwrap();
        fs_err::remove_dir_all(copy.join("redo")).unwrap();
        fs_err::create_dir(copy.join("redo")).unwrap();
        fs_err::remove_file(copy.join("file")).unwrap();
        fs_err::create_dir(copy.join("file")).unwrap();
        fs_err::hard_link(copy.join("keep/x/same"), copy.join("keep/x/link")).unwrap();
        let entries = overlay_diff(&base, &copy, &before, &[]).unwrap();
        assert_eq!(
            shown(&entries),
            [
                "a dir",
                "a/b dir",
                "a/b/new file",
                "file dir",
                "file opaque",
                "gone whiteout",
                "keep dir",
                "keep/x dir",
                "keep/x/link file",
                "keep/x/same link to keep/x/link",
                "redo dir",
                "redo opaque",
            ]
        );
        // The plain diff sees none of what overlayfs copies up.
        assert_eq!(
            shown(&tree_diff(&base, &copy, &[]).unwrap()),
            [
                "a/b dir",
                "a/b/new file",
                "file dir",
                "gone whiteout",
                "keep/x dir",
                "keep/x/link file",
                "redo dir",
                "redo/old whiteout",
            ]
        );
    }
}
