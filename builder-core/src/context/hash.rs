//! File metadata and content digests, as BuildKit's `contenthash` keys them: what a file *is*
//! (type, mode, owner, size, link target, capability xattr, bytes), never when it was touched.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

use super::Result;
use super::error::IoContext;

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Devices, fifos, sockets: never copied from a context.
    Other,
}

impl Kind {
    /// The kind as a file's digest hashes it: fixed names, never `Debug` text (these are the
    /// names digests were made with when they were that text, so no key changed).
    fn key_name(self) -> &'static str {
        match self {
            Kind::File => "File",
            Kind::Dir => "Dir",
            Kind::Symlink => "Symlink",
            Kind::Other => "Other",
        }
    }
}

/// A file's metadata, as read by `lstat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The kind.
    pub kind: Kind,
    /// Permission and special bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files only).
    pub size: u64,
    /// A symlink's target.
    pub link: Option<String>,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl FileInfo {
    /// `lstat` of `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let m = fs_err::symlink_metadata(path).at(path)?;
        let ft = m.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        };
        let link = if kind == Kind::Symlink {
            Some(
                fs_err::read_link(path)
                    .at(path)?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            None
        };
        Ok(Self {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: if kind == Kind::File { m.len() } else { 0 },
            link,
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ctime_ns: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        })
    }

    /// `lstat` of `name` in the open directory `dir` (`path` is the same file, for errors):
    /// the kernel looks up one name instead of a whole path.
    pub(crate) fn read_at(
        dir: &std::os::fd::OwnedFd,
        name: &std::ffi::OsStr,
        path: &Path,
    ) -> Result<Self> {
        use rustix::fs::{AtFlags, FileType};
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)
            .at(path)?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        let link = if kind == Kind::Symlink {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())
                .map_err(std::io::Error::from)
                .at(path)?;
            Some(target.to_string_lossy().into_owned())
        } else {
            None
        };
        let ns = |secs: i64, nsec: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsec);
        #[allow(clippy::useless_conversion)] // the field types differ between architectures
        Ok(Self {
            kind,
            mode: u32::from(st.st_mode) & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: if kind == Kind::File {
                u64::try_from(st.st_size).unwrap_or(0)
            } else {
                0
            },
            link,
            mtime_ns: ns(
                i64::from(st.st_mtime),
                i64::try_from(st.st_mtime_nsec).unwrap_or(0),
            ),
            ctime_ns: ns(
                i64::from(st.st_ctime),
                i64::try_from(st.st_ctime_nsec).unwrap_or(0),
            ),
            ino: u64::from(st.st_ino),
            dev: u64::from(st.st_dev),
        })
    }

    fn stat_key(&self) -> StatKey {
        StatKey {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            dev: self.dev,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// What must be unchanged for a cached digest to be reused. ctime catches a content change
/// whose mtime was set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StatKey {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Remembered digests of files, keyed by absolute path and stat, so an unchanged file is not
/// read again. Saved between builds.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: HashMap<PathBuf, (StatKey, Digest)>,
    hits: u64,
    misses: u64,
    dirty: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    version: u32,
    /// The context it was saved for: prune drops the file once that directory is gone.
    #[serde(default)]
    context: Option<PathBuf>,
    entries: Vec<(PathBuf, StatKey, Digest)>,
}

/// The context directory a saved stat cache is for (`None` if unreadable or from before it was
/// recorded).
pub fn stat_cache_context(path: &Path) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Head {
        context: Option<PathBuf>,
    }
    let bytes = fs_err::read(path).ok()?;
    serde_json::from_slice::<Head>(&bytes).ok()?.context
}

impl StatCache {
    /// Loads a saved cache; a missing or unreadable one is an empty cache.
    pub fn load(path: &Path) -> Self {
        let Ok(bytes) = fs_err::read(path) else {
            return Self::default();
        };
        match serde_json::from_slice::<Saved>(&bytes) {
            Ok(saved) if saved.version == 1 => Self {
                entries: saved
                    .entries
                    .into_iter()
                    .map(|(p, k, d)| (p, (k, d)))
                    .collect(),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    /// Saves the cache for `context` (temp file + rename), if anything changed.
    pub fn save(&self, path: &Path, context: &Path) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut entries: Vec<_> = self
            .entries
            .iter()
            .map(|(p, (k, d))| (p.clone(), *k, *d))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes = serde_json::to_vec(&Saved {
            version: 1,
            context: Some(context.to_owned()),
            entries,
        })
        .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir).at(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
        std::io::Write::write_all(&mut tmp, &bytes).at(tmp.path())?;
        tmp.persist(path).map_err(|e| e.error).at(path)?;
        Ok(())
    }

    /// How many digests were reused and how many files were read.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

/// The digest of one file: its kind, mode, owner, size, link target and capability xattr, and
/// for a regular file its bytes (read only when the stat cache cannot vouch for them).
pub fn hash_file(path: &Path, info: &FileInfo, cache: &mut StatCache) -> Result<Digest> {
    let key = info.stat_key();
    if let Some((cached_key, digest)) = cache.entries.get(path) {
        if *cached_key == key {
            cache.hits += 1;
            return Ok(*digest);
        }
    }
    cache.misses += 1;
    let mut h = Hasher::default();
    h.update(b"rbuild-file-v1\0");
    h.update(
        format!(
            "{}\0{:o}\0{}\0{}\0{}\0",
            info.kind.key_name(),
            info.mode,
            info.uid,
            info.gid,
            info.size
        )
        .as_bytes(),
    );
    if let Some(link) = &info.link {
        h.update(link.as_bytes());
    }
    h.update(b"\0");
    if let Ok(Some(cap)) = xattr::get(path, "security.capability") {
        h.update(&cap);
    }
    h.update(b"\0");
    if info.kind == Kind::File {
        let file = fs_err::File::open(path).at(path)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).at(path)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    let (digest, _) = h.finish();
    cache.entries.insert(path.to_owned(), (key, digest));
    cache.dirty = true;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn digest(path: &Path, cache: &mut StatCache) -> Digest {
        let info = FileInfo::read(path).unwrap();
        hash_file(path, &info, cache).unwrap()
    }

    #[test]
    fn mtime_is_not_content_but_mode_is() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        fs_err::write(&f, b"hello").unwrap();
        let first = digest(&f, &mut StatCache::default());
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        fs_err::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert_eq!(
            digest(&f, &mut StatCache::default()),
            first,
            "mtime changed the digest"
        );
        fs_err::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(
            digest(&f, &mut StatCache::default()),
            first,
            "mode did not change the digest"
        );
    }

    #[test]
    fn cache_reuses_unchanged_and_catches_reset_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        fs_err::write(&f, b"hello").unwrap();
        let mut cache = StatCache::default();
        let first = digest(&f, &mut cache);
        assert_eq!(digest(&f, &mut cache), first);
        assert_eq!(cache.stats(), (1, 1));
        // Same size, mtime set back: only ctime tells.
        let old = fs_err::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs_err::write(&f, b"jello").unwrap();
        fs_err::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let second = digest(&f, &mut cache);
        assert_ne!(
            second, first,
            "a content change with a reset mtime was missed"
        );
        let saved = dir.path().join("cache.json");
        cache.save(&saved, dir.path()).unwrap();
        assert_eq!(stat_cache_context(&saved).as_deref(), Some(dir.path()));
        let mut loaded = StatCache::load(&saved);
        assert_eq!(digest(&f, &mut loaded), second);
        assert_eq!(loaded.stats(), (1, 0));
    }

    #[test]
    fn symlink_target_is_content() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink("x", &a).unwrap();
        std::os::unix::fs::symlink("y", &b).unwrap();
        let mut c = StatCache::default();
        assert_ne!(digest(&a, &mut c), digest(&b, &mut c));
    }
}
