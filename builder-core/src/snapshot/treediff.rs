//! The fallback where overlayfs cannot mount: the changes between a root filesystem and a
//! modified copy of it, found by walking both (kind, mode, owner, size, time, link target).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::layer::{Entry, EntryKind, FileSource};

#[derive(PartialEq)]
struct Meta {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    link: Option<std::path::PathBuf>,
}

fn tree(root: &Path) -> std::io::Result<BTreeMap<String, Meta>> {
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
    let before = tree(base)?;
    let after = tree(changed)?;
    let skipped = |p: &str| {
        skip.iter()
            .any(|s| p == s || p.starts_with(&format!("{s}/")))
    };
    let mut out = Vec::new();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for (path, meta) in &after {
        if skipped(path) || before.get(path) == Some(meta) {
            continue;
        }
        let full = changed.join(path);
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
        out.push(Entry {
            path: path.clone(),
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime.0,
            xattrs: Vec::new(),
        });
    }
    for path in before.keys() {
        if after.contains_key(path) || skipped(path) {
            continue;
        }
        // Only the top-most deleted path needs a whiteout.
        let parent_gone = path
            .rsplit_once('/')
            .is_some_and(|(p, _)| !after.contains_key(p));
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
