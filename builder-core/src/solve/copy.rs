//! COPY and ADD: which files, where they land, with what owner, mode and time.
//!
//! BuildKit's rules, as `../shared/SEMANTICS.md` records them: a wildcard that matches nothing
//! copies nothing; several sources into a destination without a trailing slash make it a file
//! (the last source wins) unless it is an existing directory; a directory source copies its
//! contents into the destination, which is made 0755 if missing and otherwise keeps its mode (the
//! source directory's own mode is not copied; the directories inside keep theirs); a destination that is a symlink in the image is written through; `--chown` names
//! resolve in the image's passwd and group files; `--chmod` applies to what is copied and to the
//! parent directories COPY creates. Files from the context are owned by root unless `--chown`;
//! files from a stage or image keep their owners. File times are `SOURCE_DATE_EPOCH` (or 0), so
//! touching a file changes no digest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::context::{Entry as Found, FileInfo, Ignore, Kind, Walker, resolve_scoped, tree_walker};
use crate::plan::{File, FileSource as Source};
use crate::snapshot::{Entry, EntryKind, FileSource};

use super::chown::{Chmod, resolve_chown};
use super::download::Download;
use super::env::missing_dirs;
use super::error::io_at;
use super::{Error, Result};

/// Where sources are read from.
pub(crate) enum Root<'a> {
    /// The build context, its `.dockerignore` applied.
    Context(&'a crate::context::Context),
    /// A stage's or an image's tree, named in errors by `label`.
    Dir { path: PathBuf, label: String },
}

/// What a COPY or ADD reads, on the host: the solver materialises it before the copy runs.
pub(crate) struct Inputs<'a> {
    /// The stage's root filesystem: what the destination already holds.
    pub(crate) rootfs: PathBuf,
    /// Where path sources are read.
    pub(crate) root: Root<'a>,
    /// The URL sources of an ADD, fetched, by URL.
    pub(crate) downloads: HashMap<String, Download>,
    /// The git sources of an ADD, checked out (the directory the URL names), by URL.
    pub(crate) trees: HashMap<String, PathBuf>,
    /// Where archives an ADD unpacks go.
    pub(crate) scratch: PathBuf,
    /// The time of every file written.
    pub(crate) mtime: i64,
}

pub(crate) fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `filepath.Match` on whole paths: `*` and `?` stay within one component.
pub(crate) fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern = crate::context::clean_path(pattern);
    let p: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let n: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    p.len() == n.len() && p.iter().zip(&n).all(|(p, n)| component_match(p, n))
}

fn component_match(p: &str, n: &str) -> bool {
    let mut re = String::from("^");
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let end = chars[i..].iter().position(|&c| c == ']').map(|e| e + i);
                match end {
                    Some(end) if end > i + 1 => {
                        let mut class: String = chars[i + 1..end].iter().collect();
                        if let Some(rest) = class.strip_prefix('^') {
                            class = format!("^{}", rest.replace('\\', "\\\\"));
                        } else {
                            class = class.replace('\\', "\\\\");
                        }
                        re.push('[');
                        re.push_str(&class);
                        re.push(']');
                        i = end;
                    }
                    _ => re.push_str(r"\["),
                }
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(n))
}

/// The entries of the layer a COPY or ADD makes, as its plan op says (every value expanded).
pub(crate) fn entries(inputs: Inputs<'_>, file: &File) -> Result<Vec<Entry>> {
    let Inputs {
        rootfs,
        root,
        downloads,
        trees,
        scratch,
        mtime,
    } = inputs;
    let exclude = Ignore::parse(&file.exclude.join("\n")).map_err(|e| Error::InvalidFlag {
        flag: "--exclude",
        value: e.pattern.clone(),
        reason: e.reason,
    })?;
    // Written through a symlink in the image, never replacing it.
    let dest = resolve_scoped(&rootfs, &file.dest)?;
    let mut copying = Copying {
        dest_is_dir: file.dest_is_dir || dir_in(&rootfs, &dest) || file.parents,
        dest,
        parents: file.parents,
        unpack: file.unpack,
        owner: file.chown.as_ref().map(|c| resolve_chown(c, &rootfs)),
        chmod: file.chmod.as_deref().map(Chmod::parse).transpose()?,
        exclude,
        mtime,
        rootfs,
        root,
        scratch,
        out: Vec::new(),
        hardlinks: HashMap::new(),
    };
    for source in &file.sources {
        match source {
            Source::Heredoc { name, content } => {
                let bytes = content.clone().into_bytes();
                let size = bytes.len() as u64;
                copying.new_file(name, FileSource::Bytes(bytes), size, 0o644);
            }
            // A repository's files go into the destination as an archive's do: 0:0 (or
            // --chown), the epoch's time.
            Source::Path(path) if trees.contains_key(path) => {
                copying.unpacked(&trees[path])?;
            }
            Source::Path(path) if file.action == "add" && is_url(path) => {
                let dl = downloads
                    .get(path)
                    .ok_or_else(|| Error::Internal(format!("`{path}` was not fetched")))?;
                // Remote files are 0600, as docker makes them.
                let name = super::download::file_name(path);
                copying.new_file(&name, FileSource::Path(dl.path.clone()), dl.size, 0o600);
            }
            Source::Path(path) => {
                for m in match_source(&copying.root, path)? {
                    copying.matched(&m)?;
                }
            }
        }
    }
    copying.finish()
}

/// `dir/name`, relative, either part possibly empty.
fn join(dir: &str, name: &str) -> String {
    let d = dir.trim_matches('/');
    match (d.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (false, true) => d.to_owned(),
        (false, false) => format!("{d}/{name}"),
    }
}

/// One COPY or ADD being assembled: where it writes, as whom, and the entries so far.
struct Copying<'a> {
    /// The stage's root filesystem (what the destination already holds).
    rootfs: PathBuf,
    /// Where sources are read.
    root: Root<'a>,
    /// Where archives are unpacked.
    scratch: PathBuf,
    /// The destination, resolved inside the image.
    dest: String,
    dest_is_dir: bool,
    parents: bool,
    unpack: bool,
    owner: Option<(u32, u32)>,
    chmod: Option<Chmod>,
    exclude: Ignore,
    mtime: i64,
    /// The entries in the order they were made; a later one for a path replaces an earlier
    /// ([`by_path`] sorts them). A list, not a map: a 65,000-file COPY holds half the memory.
    out: Vec<Entry>,
    hardlinks: HashMap<(u64, u64), String>,
}

impl Copying<'_> {
    /// Where a source named `name` lands: inside a directory destination, else the
    /// destination itself.
    fn target(&self, name: &str) -> String {
        if self.dest_is_dir {
            join(&self.dest, name)
        } else {
            self.dest.trim_matches('/').to_owned()
        }
    }

    /// A file the instruction itself makes (a heredoc, a download), `mode` unless --chmod.
    fn new_file(&mut self, name: &str, source: FileSource, size: u64, mode: u32) {
        let target = self.target(name);
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        let mode = self.chmod.as_ref().map_or(mode, |c| c.apply(mode, false));
        self.out.push(Entry {
            path: target,
            kind: EntryKind::File { source, size },
            mode,
            uid,
            gid,
            mtime: self.mtime,
            xattrs: Vec::new(),
        });
    }

    /// One match of a source path: an archive ADD unpacks, a directory's contents, a file.
    fn matched(&mut self, m: &Found) -> Result<()> {
        if !self.exclude.is_empty() && !m.rel.is_empty() && self.exclude.is_ignored(&m.rel) {
            return Ok(());
        }
        if self.unpack && m.info.kind == Kind::File {
            if let Some(extracted) = extract_archive(&self.scratch, &m.path)? {
                return self.unpacked(&extracted);
            }
        }
        let base = if self.parents {
            join(&self.dest, parent_of(&m.rel))
        } else {
            self.dest.trim_matches('/').to_owned()
        };
        let name = m.rel.rsplit('/').next().unwrap_or(&m.rel).to_owned();
        match m.info.kind {
            Kind::Dir => self.directory(m, &base, &name),
            Kind::Other => Ok(()),
            _ => {
                let target = if self.dest_is_dir || self.parents {
                    join(&base, &name)
                } else {
                    base
                };
                // Files of a stage or image keep their owners; the context's are root's.
                let preserve = matches!(self.root, Root::Dir { .. });
                let (uid, gid) = self.owner.unwrap_or(if preserve {
                    (m.info.uid, m.info.gid)
                } else {
                    (0, 0)
                });
                let entry = file_entry(
                    &m.path,
                    &m.info,
                    target,
                    uid,
                    gid,
                    self.chmod.as_ref(),
                    self.mtime,
                    preserve.then_some(&mut self.hardlinks),
                );
                self.out.push(entry);
                Ok(())
            }
        }
    }

    /// A local archive ADD extracted: as BuildKit extracts one, entries are 0:0 (or --chown),
    /// the archive's owners are not kept, and a directory the image has already keeps its mode
    /// and owner (`/tmp` stays 1777).
    fn unpacked(&mut self, extracted: &Path) -> Result<()> {
        let exists = dir_in(&self.rootfs, &self.dest);
        let mut tree = Vec::new();
        add_tree(
            tree_walker(extracted)?,
            &self.dest,
            TreeRoot::Destination { exists },
            self.owner,
            self.chmod.as_ref(),
            self.mtime,
            false,
            &mut tree,
            Some(&mut self.hardlinks),
            None,
        )?;
        tree.retain(|e| !(e.kind == EntryKind::Dir && dir_in(&self.rootfs, &e.path)));
        self.out.extend(tree);
        Ok(())
    }

    /// A directory source: its contents into the destination (`--parents`: the directory
    /// itself, under its path).
    fn directory(&mut self, m: &Found, base: &str, name: &str) -> Result<()> {
        let target_dir = if self.parents {
            join(base, name)
        } else {
            base.to_owned()
        };
        // From the context, .dockerignore applies inside the directory too.
        let preserve = matches!(self.root, Root::Dir { .. });
        let listing = match &self.root {
            Root::Dir { .. } => tree_walker(&m.path)?,
            Root::Context(context) => context.walker(&m.rel)?,
        };
        let root = if self.parents {
            TreeRoot::Itself
        } else {
            TreeRoot::Destination {
                exists: dir_in(&self.rootfs, &target_dir),
            }
        };
        add_tree(
            listing,
            &target_dir,
            root,
            self.owner,
            self.chmod.as_ref(),
            self.mtime,
            preserve,
            &mut self.out,
            // BuildKit keeps hard links within a stage's tree, not between context files.
            preserve.then_some(&mut self.hardlinks),
            Some(&self.exclude),
        )
    }

    /// The entries, with the parent directories COPY has to create: mode 0755 (or --chmod),
    /// owner --chown or root.
    fn finish(self) -> Result<Vec<Entry>> {
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        let mode = self.chmod.as_ref().map_or(0o755, |c| c.apply(0o755, true));
        let mut out = by_path(self.out);
        // Each parent once (the files of a directory share it), in order.
        let mut wanted: std::collections::BTreeSet<String> =
            out.iter().map(|e| parent_of(&e.path).to_owned()).collect();
        if self.dest_is_dir && !out.is_empty() {
            wanted.insert(self.dest.clone());
        }
        let mut seen = super::env::Prefixes::default();
        let mut parents = Vec::new();
        for dir in wanted {
            let attrs = (mode, uid, gid, self.mtime);
            for e in missing_dirs(&self.rootfs, &dir, attrs, &mut seen)? {
                if out.binary_search_by(|o| o.path.cmp(&e.path)).is_err() {
                    parents.push(e);
                }
            }
        }
        out.extend(parents);
        Ok(by_path(out))
    }
}

/// `entries` in path order, one per path: where several were made for a path, the last.
fn by_path(mut entries: Vec<Entry>) -> Vec<Entry> {
    // Stable, so entries of one path stay in the order they were made.
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|later, kept| {
        if later.path != kept.path {
            return false;
        }
        std::mem::swap(later, kept);
        true
    });
    entries
}

/// Whether `rel` is a directory in the root filesystem `rootfs`.
fn dir_in(rootfs: &std::path::Path, rel: &str) -> bool {
    fs_err::metadata(rootfs.join(rel.trim_start_matches('/'))).is_ok_and(|m| m.is_dir())
}

pub(crate) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || super::git::is_git_url(s)
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// What of `all` the wildcard `pattern` matches, each then read as a named source would be: a
/// symlink is followed (by `resolve`, inside its root) and keeps its own name (BuildKit
/// resolves the wildcard, then follows each match). A match that leads nowhere is left out.
fn wildcard_matches(
    walker: Walker<'_>,
    pattern: &str,
    mut resolve: impl FnMut(&str) -> Result<PathBuf>,
) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    walker.each(|found| {
        if found.rel.is_empty() || !glob_match(pattern, &found.rel) {
            return Ok(());
        }
        if found.info.kind != Kind::Symlink {
            out.push(found);
            return Ok(());
        }
        let path = resolve(&found.rel)?;
        if let Ok(info) = FileInfo::read(&path) {
            out.push(Found {
                rel: found.rel,
                path,
                info,
            });
        }
        Ok::<_, Error>(())
    })?;
    Ok(out)
}

fn match_source(root: &Root<'_>, path: &str) -> Result<Vec<Found>> {
    let wildcard = has_wildcard(path);
    match root {
        Root::Context(context) => {
            if wildcard {
                let all = context.walker(".")?;
                return wildcard_matches(all, path, |rel| Ok(context.resolve(rel)?.1));
            }
            let (rel, resolved) = context.resolve(path)?;
            if !rel.is_empty() && context.ignore().is_ignored(&rel) {
                return Err(Error::SourceNotFound {
                    path: path.to_owned(),
                    place: "the build context (it is excluded by .dockerignore)".into(),
                });
            }
            // The source itself is followed if it is a symlink, as BuildKit follows it, and the
            // copy keeps the name it was given by (`COPY link.txt /d/` makes `/d/link.txt`).
            let Ok(info) = FileInfo::read(&resolved) else {
                return Err(Error::SourceNotFound {
                    path: path.to_owned(),
                    place: "the build context".into(),
                });
            };
            Ok(vec![Found {
                rel: crate::fs::clean(path).join("/"),
                path: resolved,
                info,
            }])
        }
        Root::Dir { path: dir, label } => {
            if wildcard {
                return wildcard_matches(tree_walker(dir)?, path, |rel| {
                    Ok(dir.join(resolve_scoped(dir, &format!("/{rel}"))?))
                });
            }
            let rel = resolve_scoped(dir, &format!("/{path}"))?;
            let full = dir.join(&rel);
            let info = FileInfo::read(&full).map_err(|_| Error::SourceNotFound {
                path: path.to_owned(),
                place: label.clone(),
            })?;
            Ok(vec![Found {
                rel,
                path: full,
                info,
            }])
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn file_entry(
    path: &Path,
    info: &FileInfo,
    target: String,
    uid: u32,
    gid: u32,
    chmod: Option<&Chmod>,
    mtime: i64,
    hardlinks: Option<&mut HashMap<(u64, u64), String>>,
) -> Entry {
    let mode = chmod.map_or(info.mode, |c| c.apply(info.mode, false));
    let kind = match info.kind {
        Kind::Symlink => EntryKind::Symlink {
            target: info.link.clone().unwrap_or_default(),
        },
        _ => {
            let key = (info.dev, info.ino);
            let first = hardlinks.as_ref().and_then(|h| h.get(&key)).cloned();
            match first {
                Some(first) if first != target => EntryKind::Hardlink { target: first },
                _ => {
                    if let Some(h) = hardlinks {
                        if fs_err::metadata(path)
                            .is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) > 1)
                        {
                            h.insert(key, target.clone());
                        }
                    }
                    EntryKind::File {
                        source: FileSource::Path(path.to_owned()),
                        size: info.size,
                    }
                }
            }
        }
    };
    let xattrs = match (&kind, xattr::get(path, "security.capability")) {
        (EntryKind::File { .. }, Ok(Some(cap))) => vec![("security.capability".to_owned(), cap)],
        _ => Vec::new(),
    };
    Entry {
        path: target,
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    }
}

/// How the directory a tree is copied into is made.
#[derive(Clone, Copy)]
enum TreeRoot {
    /// `COPY dir/ /dest/` and archives: contents go into the destination, which keeps its
    /// metadata if it exists and is otherwise created 0755 (or `--chmod`), owned by `--chown` or
    /// root — as BuildKit's copy does (`MkdirAll(dest, 0755)`), whatever the source's mode.
    Destination { exists: bool },
    /// `COPY --parents`: the directory is copied as itself, with its own mode.
    Itself,
}

/// The contents of a directory (`listing`, a walk of a tree or of the context) placed at
/// `target`, one entry at a time as the walk finds it; `root` says what the directory itself
/// gets.
#[allow(clippy::too_many_arguments)]
fn add_tree(
    listing: Walker<'_>,
    target: &str,
    root: TreeRoot,
    owner: Option<(u32, u32)>,
    chmod: Option<&Chmod>,
    mtime: i64,
    preserve_owner: bool,
    out: &mut Vec<Entry>,
    mut hardlinks: Option<&mut HashMap<(u64, u64), String>>,
    exclude: Option<&Ignore>,
) -> Result<()> {
    let target = target.trim_matches('/');
    listing.each(|m| {
        if let Some(ex) = exclude {
            if !m.rel.is_empty() && !ex.is_empty() && ex.is_ignored(&m.rel) {
                return Ok(());
            }
        }
        if m.info.kind == Kind::Other {
            return Ok(());
        }
        let path = match (target.is_empty(), m.rel.is_empty()) {
            (_, true) => target.to_owned(),
            (true, false) => m.rel.clone(),
            (false, false) => format!("{target}/{}", m.rel),
        };
        if path.is_empty() {
            return Ok(());
        }
        let (uid, gid) = owner.unwrap_or(if preserve_owner {
            (m.info.uid, m.info.gid)
        } else {
            (0, 0)
        });
        let entry = if m.info.kind == Kind::Dir {
            let (mode, uid, gid) = match root {
                TreeRoot::Destination { exists: true } if m.rel.is_empty() => return Ok(()),
                TreeRoot::Destination { exists: false } if m.rel.is_empty() => {
                    let (uid, gid) = owner.unwrap_or((0, 0));
                    (chmod.map_or(0o755, |c| c.apply(0o755, true)), uid, gid)
                }
                _ => (
                    chmod.map_or(m.info.mode, |c| c.apply(m.info.mode, true)),
                    uid,
                    gid,
                ),
            };
            Entry::dir(path, mode, uid, gid, mtime)
        } else {
            file_entry(
                &m.path,
                &m.info,
                path,
                uid,
                gid,
                chmod,
                mtime,
                hardlinks.as_deref_mut(),
            )
        };
        out.push(entry);
        Ok::<_, Error>(())
    })
}

/// Whether `block` is a tar header: its checksum (the sum of its bytes, the checksum field
/// counted as spaces) is the one it holds, as Go's `archive/tar` checks it.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0'))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    block.iter().any(|b| *b != 0) && stored == Some(sum)
}

/// ADD's archive auto-extraction: a local tar, plain or compressed with gzip or zstd, is
/// unpacked (into a scratch directory, nothing written outside it) and its tree copied.
fn extract_archive(scratch: &Path, path: &Path) -> Result<Option<PathBuf>> {
    use std::io::Read;
    let open = || -> Result<Box<dyn Read>> {
        let file = fs_err::File::open(path).map_err(io_at(path))?;
        crate::oci::decompressed(std::io::BufReader::new(file)).map_err(io_at(path))
    };
    // An archive is what holds a tar header once decompressed (BuildKit's rule): a gzip of
    // anything else, or a file named like an archive, is copied as it is.
    let mut peek = open()?;
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < block.len() {
        match peek.read(&mut block[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    if got < block.len() || !is_tar_header(&block) {
        return Ok(None);
    }
    let reader = open()?;
    let digest = crate::digest::Digest::of(path.as_os_str().as_encoded_bytes());
    let dir = scratch.join(format!("add-{}", digest.hex()));
    if dir.exists() {
        fs_err::remove_dir_all(&dir).map_err(io_at(&dir))?;
    }
    fs_err::create_dir_all(&dir).map_err(io_at(&dir))?;
    crate::snapshot::apply_tar(reader, &dir).map_err(|source| Error::Archive {
        path: path.to_owned(),
        source,
    })?;
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_in_their_component() {
        assert!(glob_match("*.go", "main.go"));
        assert!(!glob_match("*.go", "cmd/main.go"));
        assert!(glob_match("cmd/*/main.go", "cmd/x/main.go"));
        assert!(glob_match("./src/*.rs", "src/lib.rs"));
        assert!(glob_match("file[0-9].txt", "file1.txt"));
        assert!(!glob_match("file[^0-9].txt", "file1.txt"));
        assert!(glob_match("f?le", "file"));
    }

    #[test]
    fn entries_are_in_byte_order_and_the_last_made_for_a_path_wins() {
        let e = |path: &str, mode| Entry::dir(path.into(), mode, 0, 0, 0);
        // "a.txt" sorts between "a" and "a/x" (as a tar's names compare), and the second
        // entry made for "a" (a later source) replaces the first.
        let got = by_path(vec![
            e("a/x", 1),
            e("a", 2),
            e("a.txt", 3),
            e("a", 4),
            e("b", 5),
        ]);
        let got: Vec<_> = got.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(got, [("a", 4), ("a.txt", 3), ("a/x", 1), ("b", 5)]);
    }
}
