//! Paths from outside resolved inside their root: the one way a tree that came from a context,
//! an image layer, a tar or a RUN is read or written.
//!
//! A [`Root`] is a directory held open; every path given to it is resolved as if that directory
//! were `/`: `..` stops at the root and a symlink, absolute or relative, is followed without
//! leaving it (runc's securejoin semantics, and the kernel's `RESOLVE_IN_ROOT`). Opening uses
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` where the kernel has it; elsewhere, and
//! wherever the resolved path itself is wanted, a component walk with `O_PATH | O_NOFOLLOW`
//! descriptors does the same. Both stop after [`MAX_LINKS`] links with an error ("too many
//! levels of symbolic links"), never by keeping a link as a plain name. Nothing is removed before
//! its parent has been resolved inside the root, and `.`/`..` are never names to remove.
//!
//! The walk keeps descriptors, not strings, so a link swapped in after a component was checked
//! is not followed. Operations that need a path (`tar` unpacking, mounts) get
//! `/proc/self/fd/N/name` from a resolved [`Dir`], which the kernel resolves through the held
//! descriptor.
//!
//! Imports: nothing in the crate.

mod mounts;

pub use mounts::{
    MAX_OPTIONS as MAX_OVERLAY_OPTIONS, detach as detach_mount, overlay as mount_overlay,
    overlay_options, under as mounts_under,
};

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The most symbolic links one resolution follows (the kernel's `MAXSYMLINKS`).
pub const MAX_LINKS: usize = 40;

/// Why a path could not be resolved, read or changed inside its root.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on the path.
    #[error("cannot resolve `{path}` inside `{root}`")]
    Io {
        /// The root.
        root: PathBuf,
        /// The path, as given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// More than [`MAX_LINKS`] symbolic links on the way.
    #[error("`{path}` has too many levels of symbolic links (more than {MAX_LINKS})")]
    Loop {
        /// The path, as given.
        path: String,
    },
    /// A name that cannot be created or removed (`.`, `..`, the root itself, a `/` inside).
    #[error("`{path}` does not name an entry inside the root")]
    BadName {
        /// The path, as given.
        path: String,
    },
    /// A file to read that is not a regular file (a device, a FIFO, a directory, a socket).
    #[error("`{path}` is not a regular file")]
    NotRegular {
        /// The path, as given.
        path: String,
    },
    /// A file to read that is larger than allowed.
    #[error("`{path}` is larger than {limit} bytes")]
    TooLarge {
        /// The path, as given.
        path: String,
        /// The limit.
        limit: u64,
    },
}

/// `Result` of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A directory every path is resolved inside.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Never use `openat2` (tests of the fallback walk).
    walk_only: bool,
}

/// A directory resolved inside a root, held by an `O_PATH` descriptor.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// A path to this directory that the kernel resolves through the descriptor
    /// (`/proc/self/fd/N`): valid while `self` lives, and immune to renames and links swapped
    /// in above it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// How the last component of a path is treated when it is a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// Followed, inside the root.
    Follow,
    /// Left as it is: the link itself is what the path names.
    NoFollow,
}

/// A path split for resolution: its components after lexical cleaning, `..` kept where it
/// cannot be cleaned away (it is resolved against what is on disk).
fn parts(path: &OsStr) -> Vec<OsString> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// `path` cleaned lexically as a path under `/` (`..` stops at the top): the components of
/// what a tar entry or a whiteout names.
pub fn clean(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// What a walk found: the directories resolved so far (each with its name), and the names past
/// the first one that does not exist.
struct Walked {
    dirs: Vec<(OwnedFd, OsString)>,
    /// The last component when it exists and is not a directory (or a link left unfollowed).
    leaf: Option<(OwnedFd, OsString)>,
    missing: Vec<OsString>,
}

impl Walked {
    fn rel(&self) -> String {
        let mut names: Vec<&OsStr> = self.dirs.iter().map(|(_, n)| n.as_os_str()).collect();
        if let Some((_, n)) = &self.leaf {
            names.push(n);
        }
        names.extend(self.missing.iter().map(OsString::as_os_str));
        names
            .iter()
            .map(|n| n.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn o_path() -> OFlags {
    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Root {
    /// Opens the directory at `path` as a root.
    pub fn open(path: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Io {
            root: path.to_owned(),
            path: String::new(),
            source: e.into(),
        })?;
        Ok(Self {
            fd,
            path: path.to_owned(),
            walk_only: false,
        })
    }

    /// [`Root::open`], resolving with the component walk only, never `openat2` (what kernels
    /// before 5.6 get; for tests).
    pub fn open_walk_only(path: &Path) -> Result<Self> {
        let mut root = Self::open(path)?;
        root.walk_only = true;
        Ok(root)
    }

    /// The root directory as it was named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &OsStr, e: impl Into<std::io::Error>) -> Error {
        let source = e.into();
        if source.raw_os_error() == Some(Errno::LOOP.raw_os_error()) {
            return Error::Loop {
                path: path.to_string_lossy().into_owned(),
            };
        }
        Error::Io {
            root: self.path.clone(),
            path: path.to_string_lossy().into_owned(),
            source,
        }
    }

    /// The walk: each component opened `O_PATH | O_NOFOLLOW` under the one before; a symlink
    /// (the last one only with [`Last::Follow`]) has its target pushed back onto the path, an
    /// absolute one starting again from the root; `..` goes up one directory but never above
    /// the root. With `create`, missing directories are made (0755) as the walk reaches them,
    /// the last component included.
    fn walk(&self, path: &OsStr, last: Last, create: bool) -> Result<Walked> {
        let mut pending: Vec<OsString> = parts(path);
        pending.reverse();
        let mut w = Walked {
            dirs: Vec::new(),
            leaf: None,
            missing: Vec::new(),
        };
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                // Back out of what was named last: a missing name, a non-directory, or a
                // directory (never above the root).
                if w.missing.pop().is_none() && w.leaf.take().is_none() {
                    w.dirs.pop();
                }
                continue;
            }
            if w.leaf.is_some() {
                // Under something that is not a directory: nothing more exists.
                let (_, name) = w.leaf.take().unwrap_or_else(|| unreachable!());
                w.missing.push(name);
            }
            if !w.missing.is_empty() {
                w.missing.push(part);
                continue;
            }
            let is_last = pending.is_empty();
            let cur = w.dirs.last().map_or(&self.fd, |(fd, _)| fd);
            let fd = match rustix::fs::openat(cur, &part, o_path(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(cur, &part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.io(path, e)),
                    }
                    rustix::fs::openat(cur, &part, o_path(), Mode::empty())
                        .map_err(|e| self.io(path, e))?
                }
                Err(Errno::NOENT | Errno::NOTDIR) => {
                    w.missing.push(part);
                    continue;
                }
                Err(e) => return Err(self.io(path, e)),
            };
            let stat = rustix::fs::fstat(&fd).map_err(|e| self.io(path, e))?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink if !is_last || last == Last::Follow => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::Loop {
                            path: path.to_string_lossy().into_owned(),
                        });
                    }
                    let target = rustix::fs::readlinkat(&fd, "", Vec::new())
                        .map_err(|e| self.io(path, e))?;
                    let target = OsStr::from_bytes(target.as_bytes());
                    if target.as_bytes().starts_with(b"/") {
                        w.dirs.clear();
                    }
                    let mut more = parts(target);
                    more.reverse();
                    pending.extend(more);
                }
                FileType::Directory => w.dirs.push((fd, part)),
                _ => w.leaf = Some((fd, part)),
            }
        }
        Ok(w)
    }

    /// Resolves `path` inside the root and gives it relative to the root, `/`-separated, with
    /// no symlink left in it (but the last component with [`Last::NoFollow`]). Components past
    /// the first that does not exist are kept as named, `..` among them cleaned lexically.
    pub fn resolve(&self, path: &str, last: Last) -> Result<String> {
        Ok(self.walk(OsStr::new(path), last, false)?.rel())
    }

    /// Opens `path` inside the root with `flags` (`O_CLOEXEC` is added; with `O_NOFOLLOW` the
    /// last component is not followed).
    pub fn open_at(&self, path: &str, flags: OFlags, mode: u32) -> Result<OwnedFd> {
        let p = OsStr::new(path);
        let flags = flags | OFlags::CLOEXEC;
        if !self.walk_only {
            let rel = path.trim_start_matches('/');
            let rel = if rel.is_empty() { "." } else { rel };
            match rustix::fs::openat2(
                &self.fd,
                rel,
                flags,
                Mode::from_raw_mode(mode),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::NOSYS) => {}
                Err(e) => return Err(self.io(p, e)),
                Ok(fd) => return Ok(fd),
            }
        }
        let last = if flags.contains(OFlags::NOFOLLOW) {
            Last::NoFollow
        } else {
            Last::Follow
        };
        if flags.contains(OFlags::CREATE) {
            // Resolve the parent, then create the last name under it, never through a link.
            let (parent, name) = self.parent(path, false)?;
            return rustix::fs::openat(
                &parent.fd,
                name.as_str(),
                flags | OFlags::NOFOLLOW,
                Mode::from_raw_mode(mode),
            )
            .map_err(|e| self.io(p, e));
        }
        let w = self.walk(p, last, false)?;
        if !w.missing.is_empty() {
            return Err(self.io(p, Errno::NOENT));
        }
        let fd = match (w.leaf, w.dirs.last()) {
            (Some((fd, _)), _) => fd,
            (None, Some((fd, _))) => fd.try_clone().map_err(|e| self.io(p, e))?,
            (None, None) => self.fd.try_clone().map_err(|e| self.io(p, e))?,
        };
        if flags.contains(OFlags::PATH) {
            return Ok(fd);
        }
        // Reopen the resolved descriptor itself with the flags asked for (not its name).
        let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::fs::open(
            proc.as_str(),
            flags - OFlags::NOFOLLOW,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| self.io(p, e))
    }

    /// Reads the regular file `path` (links followed inside the root), at most `limit` bytes:
    /// a device, FIFO, socket or directory is refused without being read, and so is a file
    /// larger than `limit`.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        // Non-blocking, so a FIFO is not waited on before it can be refused.
        let fd = self.open_at(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY, 0)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| self.io(OsStr::new(path), e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(Error::NotRegular {
                path: path.to_owned(),
            });
        }
        let too_large = || Error::TooLarge {
            path: path.to_owned(),
            limit,
        };
        if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > limit {
            return Err(too_large());
        }
        let mut out = Vec::new();
        // The error is named by `self.io` below.
        #[allow(clippy::disallowed_types)]
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| self.io(OsStr::new(path), e))?;
        if out.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(out)
    }

    /// Resolves the directory `path` (links followed inside the root); `None` if it does not
    /// exist or is not a directory.
    pub fn dir(&self, path: &str) -> Result<Option<Dir>> {
        let mut w = self.walk(OsStr::new(path), Last::Follow, false)?;
        if !w.missing.is_empty() || w.leaf.is_some() {
            return Ok(None);
        }
        match w.dirs.pop() {
            Some((fd, _)) => Ok(Some(Dir { fd })),
            None => self.root_dir().map(Some),
        }
    }

    /// The root itself as a [`Dir`].
    pub fn root_dir(&self) -> Result<Dir> {
        Ok(Dir {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| self.io(OsStr::new("/"), e))?,
        })
    }

    /// Resolves the directory `path`, making what is missing of it (0755), links followed
    /// inside the root. Something that is not a directory on the way is an error.
    pub fn create_dir_all(&self, path: &str) -> Result<Dir> {
        let p = OsStr::new(path);
        let mut w = self.walk(p, Last::Follow, true)?;
        if w.leaf.is_some() || !w.missing.is_empty() {
            return Err(self.io(p, Errno::NOTDIR));
        }
        match w.dirs.pop() {
            Some((fd, _)) => Ok(Dir { fd }),
            None => self.root_dir(),
        }
    }

    /// Makes an empty regular file (0644) at `path` if nothing is there, links followed inside
    /// the root and missing parents made; an existing entry is left as it is. Gives the
    /// resolved path relative to the root.
    pub fn create_file(&self, path: &str) -> Result<String> {
        let rel = self.resolve(path, Last::Follow)?;
        let (dir, name) = self.parent(&rel, true)?;
        match rustix::fs::openat(
            &dir.fd,
            name.as_str(),
            OFlags::CREATE | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) | Err(Errno::ISDIR) => Ok(rel),
            Err(e) => Err(self.io(OsStr::new(path), e)),
        }
    }

    /// The parent directory of `path` (made if `create`) and the name of its last component,
    /// after cleaning `path` lexically. The root itself, or a path whose last component is `.`
    /// or `..` after cleaning, has no parent: [`Error::BadName`].
    pub fn parent(&self, path: &str, create: bool) -> Result<(Dir, String)> {
        let mut comps = clean(path);
        let Some(name) = comps.pop() else {
            return Err(Error::BadName {
                path: path.to_owned(),
            });
        };
        let parent = comps.join("/");
        let dir = if create {
            self.create_dir_all(&parent)?
        } else {
            match self.dir(&parent)? {
                Some(d) => d,
                None => return Err(self.io(OsStr::new(path), Errno::NOENT)),
            }
        };
        Ok((dir, name))
    }

    /// Removes `path` (the entry itself, never what a link points at; a directory with
    /// everything in it) after resolving its parent inside the root. A path that does not
    /// exist is no error.
    pub fn remove(&self, path: &str) -> Result<()> {
        let mut comps = clean(path);
        let Some(name) = comps.pop() else {
            return Err(Error::BadName {
                path: path.to_owned(),
            });
        };
        match self.dir(&comps.join("/"))? {
            Some(parent) => remove_in(&parent, &name).map_err(|e| self.io(OsStr::new(path), e)),
            None => Ok(()),
        }
    }

    /// Removes everything inside the directory `path` (links followed inside the root to find
    /// it), keeping the directory; nothing if it does not exist.
    pub fn clear_dir(&self, path: &str) -> Result<()> {
        let Some(dir) = self.dir(path)? else {
            return Ok(());
        };
        let err = |e| self.io(OsStr::new(path), e);
        let names: Vec<OsString> = fs_err::read_dir(dir.path())
            .map_err(err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(err)?;
        for name in names {
            remove_in(&dir, &name.to_string_lossy()).map_err(err)?;
        }
        Ok(())
    }
}

/// Removes `name` from `dir`: a directory with its contents (std's `remove_dir_all`, which
/// opens every level `O_NOFOLLOW`), anything else unlinked. A missing name is no error.
pub fn remove_in(dir: &Dir, name: &str) -> std::io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{name}` is not a name to remove"),
        ));
    }
    match rustix::fs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            fs_err::remove_dir_all(dir.path().join(name))
        }
        Ok(_) => rustix::fs::unlinkat(&dir.fd, name, AtFlags::empty()).map_err(Into::into),
    }
}

/// Resolves `path` inside the directory `root` (see [`Root::resolve`]), the last component
/// followed: the relative path a context or image path names.
pub fn resolve(root: &Path, path: &str) -> Result<String> {
    Root::open(root)?.resolve(path, Last::Follow)
}

/// What `path` names inside the directory `root` (see [`Root::resolve`]): its path on the host
/// and its metadata (of the link itself with [`Last::NoFollow`]), or `None` if nothing is there.
pub fn entry(root: &Path, path: &str, last: Last) -> Result<Option<(PathBuf, std::fs::Metadata)>> {
    let full = root.join(Root::open(root)?.resolve(path, last)?);
    Ok(fs_err::symlink_metadata(&full).ok().map(|m| (full, m)))
}

/// Reads the regular file at the host path `path` (a file the user named, such as
/// `rbuild build -f`): links followed as the host has them, but only a regular file, and at most
/// `limit` bytes.
pub fn read_host(path: &Path, limit: u64) -> Result<Vec<u8>> {
    // Rooted at `/`, so the host's links are followed as they are.
    let root = Root::open(Path::new("/"))?;
    let abs = std::path::absolute(path).map_err(|e| root.io(path.as_os_str(), e))?;
    root.read(&abs.to_string_lossy(), limit)
}

/// Whether `fd` is a directory (for callers holding an [`OwnedFd`] from [`Root::open_at`]).
pub fn is_dir(fd: impl AsFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn roots(dir: &Path) -> [Root; 2] {
        [Root::open(dir).unwrap(), Root::open_walk_only(dir).unwrap()]
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("secret"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs_err::create_dir_all(d.join("in")).unwrap();
        fs_err::write(d.join("in/file"), "inside").unwrap();
        symlink(outside.path(), d.join("abs")).unwrap();
        symlink("../../../../..", d.join("in/up")).unwrap();
        symlink("/in", d.join("to-in")).unwrap();
        for root in roots(d) {
            assert_eq!(
                root.resolve("abs/secret", Last::Follow).unwrap(),
                format!(
                    "{}/secret",
                    outside.path().display().to_string().trim_start_matches('/')
                )
            );
            assert!(root.read("abs/secret", 100).is_err());
            assert_eq!(
                root.resolve("in/up/in/file", Last::Follow).unwrap(),
                "in/file"
            );
            assert_eq!(root.read("in/up/in/file", 100).unwrap(), b"inside");
            assert_eq!(root.read("to-in/file", 100).unwrap(), b"inside");
            assert_eq!(
                root.resolve("../../to-in", Last::NoFollow).unwrap(),
                "to-in"
            );
            assert_eq!(
                root.resolve("/missing/a/../b", Last::Follow).unwrap(),
                "missing/b"
            );
        }
    }

    #[test]
    fn a_chain_longer_than_the_cap_is_an_error_not_a_plain_name() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("secret"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let n = 256;
        for i in 0..n {
            symlink(format!("l{}", i + 1), d.join(format!("l{i}"))).unwrap();
        }
        symlink(outside.path(), d.join(format!("l{n}"))).unwrap();
        for root in roots(d) {
            assert!(matches!(
                root.resolve("l0/secret", Last::Follow),
                Err(Error::Loop { .. })
            ));
            assert!(matches!(
                root.read("l0/secret", 100),
                Err(Error::Loop { .. })
            ));
            assert!(root.dir("l0").is_err());
        }
        // At the cap it still resolves.
        for root in roots(d) {
            let at_cap = format!("l{}", n - MAX_LINKS + 1);
            assert!(
                root.resolve(&format!("{at_cap}/secret"), Last::Follow)
                    .is_ok()
            );
        }
    }

    #[test]
    fn reads_are_bounded_and_only_of_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs_err::write(d.join("big"), vec![b'x'; 100]).unwrap();
        symlink("/dev/zero", d.join("zero")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        fs_err::create_dir(d.join("sub")).unwrap();
        for root in roots(d) {
            assert!(matches!(root.read("big", 99), Err(Error::TooLarge { .. })));
            assert_eq!(root.read("big", 100).unwrap().len(), 100);
            // `/dev/zero` inside the root does not exist; the host's is never reached.
            assert!(matches!(root.read("zero", 10), Err(Error::Io { .. })));
            assert!(matches!(
                root.read("fifo", 10),
                Err(Error::NotRegular { .. })
            ));
            assert!(matches!(
                root.read("sub", 10),
                Err(Error::NotRegular { .. })
            ));
        }
    }

    #[test]
    fn removal_never_leaves_the_root_or_follows_the_last_link() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("keep"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        symlink(outside.path(), d.join("evil")).unwrap();
        for root in roots(d) {
            // Through the link: resolved inside the root, where nothing is.
            root.remove("evil/keep").unwrap();
            root.clear_dir("evil").unwrap();
            assert!(outside.path().join("keep").exists());
            for bad in ["", "/", ".", "..", "a/.."] {
                assert!(
                    matches!(root.remove(bad), Err(Error::BadName { .. })),
                    "{bad}"
                );
            }
        }
        let root = Root::open(d).unwrap();
        root.remove("evil").unwrap();
        assert!(!d.join("evil").exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn directories_are_made_inside_the_root_through_links() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        symlink(outside.path().join("new"), d.join("dangling")).unwrap();
        for root in roots(d) {
            let made = root.create_dir_all("dangling/x").unwrap();
            fs_err::write(made.path().join("f"), "y").unwrap();
            assert!(!outside.path().join("new").exists());
        }
        let inside = d
            .join(outside.path().strip_prefix("/").unwrap())
            .join("new/x/f");
        assert!(inside.exists());
        fs_err::write(d.join("file"), "").unwrap();
        assert!(Root::open(d).unwrap().create_dir_all("file/x").is_err());
    }
}
