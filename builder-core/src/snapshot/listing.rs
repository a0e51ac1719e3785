//! A digest of a tree's listing: every entry's path, type, mode, owner, size, mtime, device
//! number and link target, in path order. What a crash or a stray write changes in an unpacked
//! tree changes it; reading the tree does not (no atime, no ctime, no link counts, which hard
//! links from newer snapshots change).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::digest::{Digest, Hasher};

/// The listing digest of the tree under `root` (`root` itself left out) and its entry count.
pub fn listing_digest(root: &Path) -> std::io::Result<(Digest, u64)> {
    let mut h = Hasher::default();
    let mut entries = 0;
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut names: Vec<_> = fs_err::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        // Children are pushed in reverse so they pop in order: a depth-first walk in path order.
        let mut dirs = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let child = format!("{rel}/{}", name.to_string_lossy());
            let m = fs_err::symlink_metadata(&path)?;
            h.update(child.as_bytes());
            let size = if m.is_dir() { 0 } else { m.len() };
            h.update(
                format!(
                    "\0{:o} {} {} {size} {}.{} {}\0",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.rdev()
                )
                .as_bytes(),
            );
            if m.file_type().is_symlink() {
                h.update(fs_err::read_link(&path)?.as_os_str().as_encoded_bytes());
                h.update(b"\0");
            }
            entries += 1;
            if m.is_dir() {
                dirs.push((path, child));
            }
        }
        stack.extend(dirs.into_iter().rev());
    }
    Ok((h.finish().0, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_crash_changes_changes_the_digest_and_reading_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs_err::create_dir_all(root.join("a/b")).unwrap();
        fs_err::write(root.join("a/b/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("b/f", root.join("a/l")).unwrap();
        let (first, n) = listing_digest(&root).unwrap();
        assert_eq!(n, 4);
        // Reading, and a hard link from elsewhere (a newer snapshot), change nothing.
        let _ = fs_err::read(root.join("a/b/f")).unwrap();
        fs_err::hard_link(root.join("a/b/f"), dir.path().join("newer")).unwrap();
        assert_eq!(listing_digest(&root).unwrap().0, first);
        // A truncated file changes it, even with its mtime put back.
        let f = fs_err::OpenOptions::new()
            .write(true)
            .open(root.join("a/b/f"))
            .unwrap();
        let mtime = f.metadata().unwrap().modified().unwrap();
        f.set_len(2).unwrap();
        f.set_modified(mtime).unwrap();
        assert_ne!(listing_digest(&root).unwrap().0, first);
    }
}
