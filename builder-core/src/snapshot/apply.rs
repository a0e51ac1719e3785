//! Applying a layer to a directory: regular entries unpacked (owners, modes, times and xattrs
//! kept; nothing written outside the directory), whiteouts deleting what lower layers put there.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

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
}

/// The entry's path as a relative path without `.` and `..` components, or `None` if it leaves.
fn sanitize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn remove_all(path: &Path) -> std::io::Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(path),
        Ok(_) => fs_err::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn nix_is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Applies the layer tar read from `reader` on top of `dir`.
pub fn apply_tar<R: Read>(reader: R, dir: &Path) -> Result<(), ApplyError> {
    let io = |entry: &str, source| ApplyError::Io {
        entry: entry.to_owned(),
        dir: dir.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    // Owners are kept as root; a rootless build cannot chown, and its files, owned by the
    // user outside, are root inside the build's user namespace.
    archive.set_preserve_ownerships(nix_is_root());
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(|e| io("<layer>", e))? {
        let mut entry = entry.map_err(|e| io("<layer>", e))?;
        let raw = entry.path().map_err(|e| io("<layer>", e))?.into_owned();
        let name = raw.to_string_lossy().into_owned();
        let rel = sanitize(&raw).ok_or_else(|| ApplyError::Escape {
            entry: name.clone(),
        })?;
        let file_name = rel
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if file_name == ".wh..wh..opq" {
            let target = dir.join(&parent);
            if let Ok(children) = fs_err::read_dir(&target) {
                for child in children {
                    let child = child.map_err(|e| io(&name, e))?;
                    remove_all(&child.path()).map_err(|e| io(&name, e))?;
                }
            }
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            remove_all(&dir.join(&parent).join(hidden)).map_err(|e| io(&name, e))?;
            continue;
        }
        let target = dir.join(&rel);
        let kind = entry.header().entry_type();
        if !nix_is_root() && (kind.is_character_special() || kind.is_block_special()) {
            // Device nodes need privileges a rootless build has not; the sandbox mounts /dev.
            continue;
        }
        // A file replaces whatever was there (never written through in place); a directory
        // replaces a non-directory and merges with a directory.
        let is_dir = entry.header().entry_type().is_dir();
        match fs_err::symlink_metadata(&target) {
            Ok(m) if !(is_dir && m.is_dir()) => remove_all(&target).map_err(|e| io(&name, e))?,
            _ => {}
        }
        entry.unpack_in(dir).map_err(|e| io(&name, e))?;
    }
    Ok(())
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
}
