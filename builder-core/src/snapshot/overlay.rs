//! An overlay upper directory read as a layer: whiteouts (character devices 0/0) become
//! `.wh.<name>`, opaque directories (`trusted.overlay.opaque=y`) become `.wh..wh..opq`.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::layer::{Entry, EntryKind, FileSource};

/// The changes in `upper` as layer entries; `skip` names paths (relative) to leave out, such as
/// mount points the sandbox had to create.
pub fn upper_entries(upper: &Path, skip: &[String]) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![(upper.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut names: Vec<_> = fs_err::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let path = dir.join(&name);
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if skip.contains(&child) {
                continue;
            }
            let m = fs_err::symlink_metadata(&path)?;
            let ft = m.file_type();
            let base = |kind| Entry {
                path: child.clone(),
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                xattrs: Vec::new(),
            };
            if ft.is_char_device() && m.rdev() == 0 {
                out.push(base(EntryKind::Whiteout));
            } else if ft.is_dir() {
                out.push(base(EntryKind::Dir));
                if xattr::get(&path, "trusted.overlay.opaque")
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some(b"y")
                {
                    out.push(base(EntryKind::Opaque));
                }
                stack.push((path, child));
            } else if ft.is_symlink() {
                let target = fs_err::read_link(&path)?.to_string_lossy().into_owned();
                out.push(base(EntryKind::Symlink { target }));
            } else if ft.is_file() {
                let kind = match links.get(&(m.dev(), m.ino())) {
                    Some(first) => EntryKind::Hardlink {
                        target: first.clone(),
                    },
                    None => {
                        if m.nlink() > 1 {
                            links.insert((m.dev(), m.ino()), child.clone());
                        }
                        EntryKind::File {
                            source: FileSource::Path(path.clone()),
                            size: m.len(),
                        }
                    }
                };
                let mut e = base(kind);
                if let Ok(Some(cap)) = xattr::get(&path, "security.capability") {
                    e.xattrs.push(("security.capability".into(), cap));
                }
                out.push(e);
            } else if ft.is_fifo() {
                out.push(base(EntryKind::Fifo));
            }
            // Devices and sockets a RUN creates are not carried into layers.
        }
    }
    Ok(out)
}
