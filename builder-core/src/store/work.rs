//! Work directories under `ROOT/tmp`, each owned by the process that made it.
//!
//! `tmp/<name>/` is a work directory and `tmp/<name>.owner` its owner file, which the owner holds
//! an exclusive `flock` on for as long as it lives (the kernel drops it when the process dies,
//! `kill -9` included). The owner file says who (pid, command, start) for messages. Anything in
//! `tmp/` whose owner file is missing or unlocked belongs to a process that is gone, so
//! [`Store::clean_tmp`] can remove it while other builds run.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fs4::fs_std::FileExt;

use super::error::IoContext;
use super::{Result, Store};

const OWNER: &str = ".owner";

/// A directory under `ROOT/tmp` that this process owns; removed when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    owner_path: PathBuf,
    _owner: fs_err::File,
}

/// What [`Store::clean_tmp`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Work directories and files of processes that are gone.
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl WorkDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if remove_tree(&self.path).is_err() {
            // A mount left in it (a view or an unpack whose guard did not run): detached, then
            // removed.
            let _ = detach_under(&self.path);
            let _ = remove_tree(&self.path);
        }
        let _ = fs_err::remove_file(&self.owner_path);
    }
}

/// Who this process is, as an owner file says it.
fn whoami() -> String {
    let args: Vec<String> = std::env::args().take(4).collect();
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "pid {} `{}` since {}",
        std::process::id(),
        args.join(" "),
        super::fmt_unix(since)
    )
}

impl Store {
    /// Makes a work directory `tmp/<prefix><random>/`, owned by this process until dropped.
    pub fn work_dir(&self, prefix: &str) -> Result<WorkDir> {
        let tmp = self.tmp_dir();
        loop {
            // A new owner file with a random name (made with O_EXCL); the directory is its name
            // without the suffix.
            let (file, owner_path) = tempfile::Builder::new()
                .prefix(prefix)
                .suffix(OWNER)
                .tempfile_in(&tmp)
                .at(&tmp)?
                .keep()
                .map_err(|e| e.error)
                .at(&tmp)?;
            let mut owner = fs_err::File::from_parts(file, &owner_path);
            let name = owner_path
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(OWNER).to_owned())
                .unwrap_or_default();
            let path = tmp.join(name);
            FileExt::lock_exclusive(owner.file()).at(&owner_path)?;
            // A clean-up may have taken the file between its creation and our lock: then the
            // name is no longer ours.
            let ours = fs_err::metadata(&owner_path)
                .is_ok_and(|m| m.ino() == owner.file().metadata().map_or(0, |o| o.ino()));
            if !ours {
                continue;
            }
            writeln!(owner, "{}", whoami()).at(&owner_path)?;
            fs_err::create_dir(&path).at(&path)?;
            return Ok(WorkDir {
                path,
                owner_path,
                _owner: owner,
            });
        }
    }

    /// This process's scratch directory for temporary files (blobs, tags and records being
    /// written), made on first use and removed when the last clone of the store goes.
    pub(crate) fn scratch(&self) -> Result<PathBuf> {
        let mut slot = self
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = slot.as_ref() {
            if w.path.is_dir() {
                return Ok(w.path.clone());
            }
        }
        let w = self.work_dir("proc-")?;
        let path = w.path.clone();
        *slot = Some(w);
        Ok(path)
    }

    /// The live users of the store: what each owner file that is still locked says.
    pub fn users(&self) -> Vec<String> {
        let tmp = self.tmp_dir();
        let mut out = Vec::new();
        let Ok(entries) = fs_err::read_dir(&tmp) else {
            return out;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !path.to_string_lossy().ends_with(OWNER) {
                continue;
            }
            let Ok(file) = fs_err::File::open(&path) else {
                continue;
            };
            if !matches!(FileExt::try_lock_shared(file.file()), Ok(true)) {
                if let Ok(who) = fs_err::read_to_string(&path) {
                    let who = who.trim().to_owned();
                    if !who.is_empty() && !out.contains(&who) {
                        out.push(who);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Removes what processes that are gone left in `tmp/`: work directories whose owner file is
    /// missing or no longer locked, and loose files of older versions. Safe while builds run.
    pub fn clean_tmp(&self) -> Result<Cleaned> {
        let tmp = self.tmp_dir();
        let mut names = std::collections::BTreeSet::new();
        for e in fs_err::read_dir(&tmp).at(&tmp)? {
            let name = e.at(&tmp)?.file_name().to_string_lossy().into_owned();
            names.insert(name.strip_suffix(OWNER).unwrap_or(&name).to_owned());
        }
        let mut cleaned = Cleaned::default();
        for name in names {
            let path = tmp.join(&name);
            let owner_path = tmp.join(format!("{name}{OWNER}"));
            let owner = match fs_err::OpenOptions::new().write(true).open(&owner_path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(super::Error::Io {
                        path: owner_path,
                        source,
                    });
                }
            };
            if let Some(f) = &owner {
                if !matches!(FileExt::try_lock_exclusive(f.file()), Ok(true)) {
                    continue; // its owner is alive
                }
            }
            if fs_err::symlink_metadata(&path).is_ok() {
                // A dead process's overlay views and unpacks are detached first: removing
                // through a mount would reach the layers under it.
                detach_under(&path).at(&path)?;
                cleaned.bytes += tree_bytes(&path);
                remove_tree(&path).at(&path)?;
                cleaned.entries += 1;
            }
            if owner.is_some() {
                // Still holding its lock, so no one can take the name meanwhile.
                match fs_err::remove_file(&owner_path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(super::Error::Io {
                            path: owner_path,
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(cleaned)
    }
}

/// Bytes under `path`, each inode once.
pub(crate) fn tree_bytes(path: &Path) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs_err::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(entries) = fs_err::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if seen.insert((m.dev(), m.ino())) {
            total += m.len();
        }
    }
    total
}

/// Entries directly in `dir`.
pub(crate) fn entry_count(dir: &Path) -> usize {
    fs_err::read_dir(dir).map_or(0, Iterator::count)
}

/// Removes `path` (a file or a tree) without crossing into another file system: a mount left
/// below it (it should never be) keeps what it shows.
/// Detaches every mount at or below `path`, deepest first.
fn detach_under(path: &Path) -> std::io::Result<()> {
    for m in crate::fs::mounts_under(path)? {
        crate::fs::detach_mount(&m)?;
    }
    Ok(())
}

pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    let m = match fs_err::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !m.is_dir() {
        return fs_err::remove_file(path);
    }
    let dev = m.dev();
    for e in fs_err::read_dir(path)? {
        let e = e?;
        let child = e.path();
        let cm = fs_err::symlink_metadata(&child)?;
        if cm.is_dir() {
            if cm.dev() != dev {
                return Err(std::io::Error::other(format!(
                    "`{}` is a mount point: not removed",
                    child.display()
                )));
            }
            remove_tree(&child)?;
        } else {
            fs_err::remove_file(&child)?;
        }
    }
    fs_err::remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_work_dir_is_kept_and_a_dead_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = store.work_dir("build-").unwrap();
        fs_err::write(live.path().join("f"), b"x").unwrap();
        // A dead owner: its lock file exists and is not locked; and a loose file of an old
        // version.
        let tmp = store.root().join("tmp");
        fs_err::create_dir(tmp.join("build-dead")).unwrap();
        fs_err::write(tmp.join("build-dead/f"), b"abc").unwrap();
        fs_err::write(tmp.join("build-dead.owner"), b"pid 1").unwrap();
        fs_err::write(tmp.join("blob-old"), b"abcd").unwrap();
        let cleaned = store.clean_tmp().unwrap();
        assert_eq!(
            cleaned,
            Cleaned {
                entries: 2,
                bytes: 7
            }
        );
        assert!(live.path().join("f").is_file());
        assert!(!tmp.join("build-dead").exists() && !tmp.join("build-dead.owner").exists());
        assert!(
            store
                .users()
                .iter()
                .any(|u| u.starts_with(&format!("pid {}", std::process::id())))
        );
        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists());
        assert!(store.users().is_empty());
    }

    #[test]
    fn another_processs_dir_is_kept_while_it_lives_and_removed_after() {
        // flock(1) holds the owner file's lock in another process, as a build would.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tmp = store.root().join("tmp");
        fs_err::create_dir(tmp.join("build-other")).unwrap();
        fs_err::write(tmp.join("build-other/f"), b"x").unwrap();
        fs_err::write(tmp.join("build-other.owner"), b"pid 0 `other`").unwrap();
        // `-o`: the lock stays with flock itself, not with the sleep it starts.
        let mut holder = std::process::Command::new("flock")
            .arg("-o")
            .arg(tmp.join("build-other.owner"))
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.users().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(store.users(), ["pid 0 `other`"]);
        assert_eq!(store.clean_tmp().unwrap().entries, 0, "removed a live dir");
        assert!(tmp.join("build-other/f").is_file());
        holder.kill().unwrap(); // as kill -9: the kernel drops the lock
        holder.wait().unwrap();
        assert_eq!(store.clean_tmp().unwrap().entries, 1);
        assert!(!tmp.join("build-other").exists() && !tmp.join("build-other.owner").exists());
    }
}
