//! File metadata and content digests, as BuildKit's `contenthash` keys them: what a file *is*
//! (type, mode, owner, size, link target, capability xattr, bytes), never when it was touched.

use std::collections::HashMap;
use std::io::Write as _;
use std::io::{BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
        let st = rustix::fs::lstat(path)
            .map_err(std::io::Error::from)
            .at(path)?;
        Self::from_stat(&st, || rustix::fs::readlink(path, Vec::new()), path)
    }

    /// `lstat` of `name` in the open directory `dir` (`path` is the same file, for errors):
    /// the kernel looks up one name instead of a whole path.
    pub(crate) fn read_at(
        dir: &std::os::fd::OwnedFd,
        name: &std::ffi::OsStr,
        path: &Path,
    ) -> Result<Self> {
        let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)
            .at(path)?;
        Self::from_stat(&st, || rustix::fs::readlinkat(dir, name, Vec::new()), path)
    }

    /// The info of a file whose `lstat` is `st`; `read_link` gives a symlink's target.
    fn from_stat(
        st: &rustix::fs::Stat,
        read_link: impl FnOnce() -> rustix::io::Result<std::ffi::CString>,
        path: &Path,
    ) -> Result<Self> {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        let link = if kind == Kind::Symlink {
            let target = read_link().map_err(std::io::Error::from).at(path)?;
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

    /// Which file this is, as the stat cache finds it: its device, its inode and (a 64-bit
    /// FNV-1a hash of) the path it was found at, so the guarantee is the one a path key gives.
    fn inode(&self, path: &Path) -> Inode {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.as_os_str().as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        (self.dev, self.ino, h)
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// A stat cache key: device, inode, path hash.
type Inode = (u64, u64, u64);

/// What must be unchanged, beside the inode, for a cached digest to be reused. ctime catches a
/// content change whose mtime was set back (and an xattr change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Remembered digests of files, so an unchanged file is not read again; saved between builds.
///
/// Keyed by the file's device, inode and a hash of its path, not the path itself: a hit needs
/// the same inode at the same path with the same size, times (ctime to the nanosecond), mode and
/// owner, which is the same file unchanged (even a path hash collision would need the inode to
/// match too). The cache holds no paths: a 65,000-file context's is 12 MB in memory, not 20.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: HashMap<Inode, (Stamp, Digest)>,
    hits: u64,
    misses: u64,
    dirty: bool,
}

/// The saved form's first bytes: the format and its version.
const MAGIC: &[u8] = b"rbuild-statcache\n3\n";
/// The most entries a saved cache may claim (a bound on what a damaged file makes us allocate).
const MAX_SAVED: u64 = 50_000_000;

/// A reader or writer that hashes what goes through it: the saved cache ends with the digest
/// of everything before it, so a torn or damaged file is never believed.
struct Hashed<T> {
    inner: T,
    hasher: Hasher,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: std::io::Write> std::io::Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn take<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn take_u64(r: &mut impl Read) -> std::io::Result<u64> {
    take::<8>(r).map(u64::from_le_bytes)
}

fn take_u32(r: &mut impl Read) -> std::io::Result<u32> {
    take::<4>(r).map(u32::from_le_bytes)
}

fn take_bytes(r: &mut impl Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// Reads a saved cache's header: its context, and how many entries follow.
fn read_head(r: &mut impl Read) -> std::io::Result<(PathBuf, u64)> {
    let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    if take_bytes(r, MAGIC.len())? != MAGIC {
        return Err(bad());
    }
    let len = take_u32(r)?;
    if len > 1 << 16 {
        return Err(bad());
    }
    let context = take_bytes(r, len as usize)?;
    let count = take_u64(r)?;
    if count > MAX_SAVED {
        return Err(bad());
    }
    let context = PathBuf::from(std::ffi::OsString::from_vec(context));
    Ok((context, count))
}

/// Reads a saved cache whole, checking its trailing digest.
fn read_saved(path: &Path) -> std::io::Result<HashMap<Inode, (Stamp, Digest)>> {
    let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let file = fs_err::File::open(path)?;
    let mut r = Hashed {
        inner: BufReader::with_capacity(1 << 16, file),
        hasher: Hasher::default(),
    };
    let (_, count) = read_head(&mut r)?;
    let mut entries = HashMap::with_capacity(usize::try_from(count.min(1 << 20)).unwrap_or(0));
    for _ in 0..count {
        let inode = (take_u64(&mut r)?, take_u64(&mut r)?, take_u64(&mut r)?);
        let stamp = Stamp {
            size: take_u64(&mut r)?,
            mtime_ns: take::<8>(&mut r).map(i64::from_le_bytes)?,
            ctime_ns: take::<8>(&mut r).map(i64::from_le_bytes)?,
            mode: take_u32(&mut r)?,
            uid: take_u32(&mut r)?,
            gid: take_u32(&mut r)?,
        };
        let digest = Digest::from_bytes(take::<32>(&mut r)?);
        entries.insert(inode, (stamp, digest));
    }
    let (expected, _) = std::mem::take(&mut r.hasher).finish();
    let trailer = take::<32>(&mut r.inner)?;
    if trailer != *expected.as_bytes() || r.inner.read(&mut [0u8; 1])? != 0 {
        return Err(bad());
    }
    Ok(entries)
}

/// Writes the saved form of `entries` for `context`: fixed-width records in inode order (the
/// same cache, the same bytes), then the digest of all before.
fn write_saved(
    out: impl std::io::Write,
    context: &Path,
    entries: &HashMap<Inode, (Stamp, Digest)>,
) -> std::io::Result<()> {
    let mut w = Hashed {
        inner: std::io::BufWriter::with_capacity(1 << 16, out),
        hasher: Hasher::default(),
    };
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_unstable_by_key(|(inode, _)| **inode);
    let context = context.as_os_str().as_bytes();
    w.write_all(MAGIC)?;
    w.write_all(&u32::try_from(context.len()).unwrap_or(0).to_le_bytes())?;
    w.write_all(context)?;
    w.write_all(&(sorted.len() as u64).to_le_bytes())?;
    for ((dev, ino, path), (stamp, digest)) in sorted {
        let times = [stamp.mtime_ns.to_le_bytes(), stamp.ctime_ns.to_le_bytes()];
        for bytes in [
            dev.to_le_bytes(),
            ino.to_le_bytes(),
            path.to_le_bytes(),
            stamp.size.to_le_bytes(),
            times[0],
            times[1],
        ] {
            w.write_all(&bytes)?;
        }
        for n in [stamp.mode, stamp.uid, stamp.gid] {
            w.write_all(&n.to_le_bytes())?;
        }
        w.write_all(digest.as_bytes())?;
    }
    let (digest, _) = std::mem::take(&mut w.hasher).finish();
    w.inner.write_all(digest.as_bytes())?;
    w.inner.flush()
}

/// The context directory a saved stat cache is for (`None` if it cannot be read).
pub fn stat_cache_context(path: &Path) -> Option<PathBuf> {
    let file = fs_err::File::open(path).ok()?;
    read_head(&mut BufReader::new(file)).ok().map(|(c, _)| c)
}

impl StatCache {
    /// Loads a saved cache; a missing, damaged or older one is an empty cache (every file is
    /// read again, never a digest believed from a file that does not check out).
    pub fn load(path: &Path) -> Self {
        match read_saved(path) {
            Ok(entries) => Self {
                entries,
                ..Self::default()
            },
            Err(_) => Self::default(),
        }
    }

    /// Saves the cache for `context` (temp file + rename), if anything changed.
    pub fn save(&self, path: &Path, context: &Path) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir).at(dir)?;
        let tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
        write_saved(tmp.as_file(), context, &self.entries).at(tmp.path())?;
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
    let (inode, stamp) = (info.inode(path), info.stamp());
    if let Some((cached, digest)) = cache.entries.get(&inode) {
        if *cached == stamp {
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
        let mut file = fs_err::File::open(path).at(path)?;
        // One buffer per thread, reused: a megabyte allocated and zeroed per file cost more
        // than hashing the small files a context is mostly made of.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 << 10]);
        }
        BUF.with_borrow_mut(|buf| -> Result<()> {
            loop {
                let n = file.read(buf).at(path)?;
                if n == 0 {
                    return Ok(());
                }
                h.update(&buf[..n]);
            }
        })?;
    }
    let (digest, _) = h.finish();
    cache.entries.insert(inode, (stamp, digest));
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
    fn a_damaged_or_torn_saved_cache_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = StatCache::default();
        for name in ["a", "ab", "b/c"] {
            let f = dir.path().join(name);
            fs_err::create_dir_all(f.parent().unwrap()).unwrap();
            fs_err::write(&f, name).unwrap();
            digest(&f, &mut cache);
        }
        let saved = dir.path().join("cache.stat");
        cache.save(&saved, dir.path()).unwrap();
        let good = fs_err::read(&saved).unwrap();
        assert_eq!(StatCache::load(&saved).entries, cache.entries);
        // Any byte changed, the end cut off, or a byte added: an empty cache.
        for at in [MAGIC.len() + 2, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            fs_err::write(&saved, &bad).unwrap();
            assert!(
                StatCache::load(&saved).entries.is_empty(),
                "byte {at} flipped"
            );
        }
        for bad in [
            &good[..good.len() - 5],
            &[good.as_slice(), b"x"].concat()[..],
        ] {
            fs_err::write(&saved, bad).unwrap();
            assert!(StatCache::load(&saved).entries.is_empty());
        }
    }

    #[test]
    fn a_hard_link_is_cached_at_each_path_and_a_moved_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs_err::write(&a, b"same").unwrap();
        fs_err::hard_link(&a, &b).unwrap();
        let mut cache = StatCache::default();
        let first = digest(&a, &mut cache);
        assert_eq!(digest(&b, &mut cache), first);
        assert_eq!(cache.stats(), (0, 2));
        // Both paths of the one inode stay cached: neither pushes the other out.
        for _ in 0..2 {
            digest(&a, &mut cache);
            digest(&b, &mut cache);
        }
        assert_eq!(cache.stats(), (4, 2));
        // The path is part of the key, as it was when the key was the path.
        fs_err::rename(&a, &c).unwrap();
        assert_eq!(digest(&c, &mut cache), first);
        assert_eq!(cache.stats(), (4, 3));
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
