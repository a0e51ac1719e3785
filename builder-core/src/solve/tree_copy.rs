//! Copying a tree in-process, as `cp -a` (or `cp -al`) does, without a subprocess on the hot
//! path: owners, modes (setuid/setgid included), times to the nanosecond, extended attributes,
//! symlinks, device nodes, fifos and hard links within the tree are kept. File data goes through
//! `std::fs::copy`, which uses `copy_file_range` (a reflink where the filesystem has them).

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

use super::{Error, Result};

fn err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn errno(path: &Path) -> impl Fn(rustix::io::Errno) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

/// `src`'s owner, mode, extended attributes and times (`m`, its metadata) onto `dst`.
pub(crate) fn copy_attributes(src: &Path, dst: &Path, m: &std::fs::Metadata) -> Result<()> {
    attributes(dst, src, m, true)
}

/// The entry's owner, mode, extended attributes and times onto `dst` (times last: setting the
/// others changes none of them but a directory's contents would). A symlink gets owner and
/// times only.
fn attributes(dst: &Path, src: &Path, m: &std::fs::Metadata, times: bool) -> Result<()> {
    let link = m.file_type().is_symlink();
    rustix::fs::chownat(
        CWD,
        dst,
        Some(rustix::fs::Uid::from_raw(m.uid())),
        Some(rustix::fs::Gid::from_raw(m.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(errno(dst))?;
    if !link {
        // After the chown, which clears setuid and setgid.
        fs_err::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(err(dst))?;
        if let Ok(names) = xattr::list(src) {
            for name in names {
                if let Ok(Some(value)) = xattr::get(src, &name) {
                    xattr::set(dst, &name, &value).map_err(err(dst))?;
                }
            }
        }
    }
    if times {
        set_times(dst, m)?;
    }
    Ok(())
}

fn set_times(dst: &Path, m: &std::fs::Metadata) -> Result<()> {
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(CWD, dst, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(errno(dst))
}

/// Copies the tree `src` to `dst` (which must not exist). With `hardlinks`, every entry but the
/// directories is a hard link to the source's (`cp -al`); without, files are copied, and files
/// hard-linked to each other in `src` are hard-linked to each other in `dst`.
pub(crate) fn copy_tree(src: &Path, dst: &Path, hardlinks: bool) -> Result<()> {
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Directories get their times once everything inside them is made, deepest first.
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    let mut stack = vec![(src.to_owned(), dst.to_owned())];
    while let Some((from, to)) = stack.pop() {
        let m = fs_err::symlink_metadata(&from).map_err(err(&from))?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs_err::create_dir(&to).map_err(err(&to))?;
            attributes(&to, &from, &m, false)?;
            for e in fs_err::read_dir(&from).map_err(err(&from))? {
                let e = e.map_err(err(&from))?;
                stack.push((e.path(), to.join(e.file_name())));
            }
            dirs.push((to, m));
            continue;
        }
        if hardlinks {
            // The entry itself (a symlink is linked, never followed).
            rustix::fs::linkat(CWD, &from, CWD, &to, AtFlags::empty()).map_err(errno(&to))?;
            continue;
        }
        if m.nlink() > 1 && !ft.is_symlink() {
            if let Some(first) = linked.get(&(m.dev(), m.ino())) {
                fs_err::hard_link(first, &to).map_err(err(&to))?;
                continue;
            }
            linked.insert((m.dev(), m.ino()), to.clone());
        }
        if ft.is_symlink() {
            let target = fs_err::read_link(&from).map_err(err(&from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(err(&to))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(err(&to))?;
        } else {
            let kind = FileType::from_raw_mode(m.mode());
            rustix::fs::mknodat(
                CWD,
                &to,
                kind,
                Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(errno(&to))?;
        }
        attributes(&to, &from, &m, true)?;
    }
    for (dir, m) in dirs.iter().rev() {
        set_times(dir, m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with what `cp -a` keeps: modes with setuid, owners, a symlink, a fifo, hard links,
    /// an xattr, times; the in-process copy's listing equals `cp -a`'s, both ways.
    #[test]
    fn the_copy_keeps_what_cp_a_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs_err::create_dir_all(src.join("a/b")).unwrap();
        fs_err::write(src.join("a/b/f"), b"hello").unwrap();
        fs_err::write(src.join("suid"), b"x").unwrap();
        fs_err::set_permissions(src.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        fs_err::hard_link(src.join("a/b/f"), src.join("a/hard")).unwrap();
        std::os::unix::fs::symlink("b/f", src.join("a/link")).unwrap();
        rustix::fs::mknodat(
            CWD,
            src.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        if nix::unistd::Uid::effective().is_root() {
            rustix::fs::chownat(
                CWD,
                src.join("a/b/f"),
                Some(rustix::fs::Uid::from_raw(1234)),
                Some(rustix::fs::Gid::from_raw(5678)),
                AtFlags::empty(),
            )
            .unwrap();
        }
        let _ = xattr::set(src.join("a/b/f"), "user.rbuild", b"kept");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::new(1_000_000, 123);
        fs_err::File::open(src.join("a/b"))
            .unwrap()
            .set_modified(old)
            .unwrap();

        let ours = dir.path().join("ours");
        copy_tree(&src, &ours, false).unwrap();
        let theirs = dir.path().join("theirs");
        assert!(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&theirs)
                .status()
                .unwrap()
                .success()
        );
        let listing = |p: &Path| crate::snapshot::listing_digest(p).unwrap();
        assert_eq!(listing(&ours), listing(&theirs));
        assert_eq!(listing(&ours), listing(&src));
        // The hard link is one inode in the copy too, a different one from the source's.
        let ino = |p: PathBuf| fs_err::metadata(p).unwrap().ino();
        assert_eq!(ino(ours.join("a/b/f")), ino(ours.join("a/hard")));
        assert_ne!(ino(ours.join("a/b/f")), ino(src.join("a/b/f")));
        if xattr::get(src.join("a/b/f"), "user.rbuild")
            .unwrap_or_default()
            .is_some()
        {
            assert_eq!(
                xattr::get(ours.join("a/b/f"), "user.rbuild")
                    .unwrap()
                    .unwrap(),
                b"kept"
            );
        }
        // With hard links, every file is the source's inode and the listing is the same.
        let linked = dir.path().join("linked");
        copy_tree(&src, &linked, true).unwrap();
        assert_eq!(ino(linked.join("a/b/f")), ino(src.join("a/b/f")));
        assert_eq!(listing(&linked), listing(&src));
    }
}
