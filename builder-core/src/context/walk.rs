//! Walking a context: paths resolved inside the root (never outside it), ignored files left out,
//! entries sorted by path so every result is deterministic.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Result;
use super::dockerignore::{Ignore, ignore_file_for};
use super::error::{Error, IoContext};
use super::hash::{FileInfo, Kind};

/// Resolves `path` inside `root` as if `root` were `/`: `..` stops at the root and symlinks
/// (absolute or relative) are followed without leaving it; a chain of more than
/// [`crate::fs::MAX_LINKS`] links is an error. Gives the path relative to `root`.
pub fn resolve_scoped(root: &Path, path: &str) -> Result<String> {
    crate::fs::resolve(root, path).map_err(|source| Error::Resolve {
        root: root.to_owned(),
        source,
    })
}

/// The largest Dockerfile or `.dockerignore` read (16 MiB: a BuildKit frontend would take no
/// more over its gRPC message limit).
pub const MAX_CONTROL_FILE: u64 = 16 << 20;

/// Reads a Dockerfile or ignore file at `path`: inside the context `root` (where the context
/// came from outside, such as a posted tar) it is resolved inside the context, links included;
/// elsewhere (`rbuild build -f ../x`) it is the user's own file. Either way only a regular file
/// of at most [`MAX_CONTROL_FILE`] bytes is read, as UTF-8.
pub fn read_control_file(root: &Path, path: &Path) -> Result<String> {
    let bytes = match path.strip_prefix(root) {
        Ok(rel) => crate::fs::Root::open(root)
            .and_then(|r| r.read(&rel.to_string_lossy(), MAX_CONTROL_FILE)),
        Err(_) => crate::fs::read_host(path, MAX_CONTROL_FILE),
    }
    .map_err(|source| Error::Resolve {
        root: root.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// A build context rooted at a directory.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
}

/// One file, directory or symlink of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the walked source, `/`-separated; `""` for the source itself.
    pub rel: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Its metadata.
    pub info: FileInfo,
}

impl Context {
    /// Opens the context at `root`, reading `<dockerfile>.dockerignore` or `.dockerignore`.
    pub fn open(given: &Path, dockerfile: Option<&Path>) -> Result<Self> {
        let root = fs_err::canonicalize(given).at(given)?;
        let ignore = match ignore_file_for(given, dockerfile) {
            Some(path) => {
                let text = read_control_file(given, &path)?;
                Ignore::parse(&text).map_err(|source| Error::Ignore { path, source })?
            }
            None => Ignore::default(),
        };
        Ok(Self { root, ignore })
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.dockerignore` rules in force.
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// Resolves a context path to a path on disk, following symlinks as if the context were the
    /// filesystem root: `..` stops at the root (`../a.txt` is the context's `a.txt`, as BuildKit
    /// reads it) and an absolute or `..` link target cannot leave it. Gives the resolved path
    /// relative to the root too.
    pub fn resolve(&self, path: &str) -> Result<(String, PathBuf)> {
        let rel = resolve_scoped(&self.root, path)?;
        let full = self.root.join(&rel);
        Ok((rel, full))
    }

    /// Every entry at and under `rel` (a file or directory of the context), in path order,
    /// without what `.dockerignore` excludes. The source itself comes first, with `rel` `""`.
    /// Collects [`Context::walker`]'s entries: a caller that reads each once should visit them
    /// instead, so a large tree is never held whole.
    pub fn walk(&self, rel: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.walker(rel)?.each(|e| {
            out.push(e);
            Ok::<_, Error>(())
        })?;
        Ok(out)
    }

    /// The walk of `rel`, its source looked up (a missing one is [`Error::NotFound`] here,
    /// before any entry is visited).
    pub fn walker(&self, rel: &str) -> Result<Walker<'_>> {
        let (root_rel, path) = self.resolve(rel)?;
        let info = match FileInfo::read(&path) {
            Ok(i) => i,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    path: rel.to_owned(),
                });
            }
            Err(e) => return Err(e),
        };
        Ok(Walker {
            context: Some(self),
            root_rel,
            path,
            info,
        })
    }
}

/// One walk, its source found: [`Walker::each`] visits its entries in path order.
#[derive(Debug)]
pub struct Walker<'c> {
    /// The context whose ignore rules apply (`None`: a tree walked whole).
    context: Option<&'c Context>,
    /// The source relative to the context root.
    root_rel: String,
    path: PathBuf,
    info: FileInfo,
}

impl Walker<'_> {
    /// Visits the source (with `rel` `""`) and then every entry under it, in path order, one at
    /// a time: nothing of the tree is kept. A visit's error ends the walk.
    pub fn each<E: From<Error>>(
        self,
        mut visit: impl FnMut(Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        let is_dir = self.info.kind == Kind::Dir;
        visit(Entry {
            rel: String::new(),
            path: self.path.clone(),
            info: self.info,
        })?;
        if !is_dir {
            return Ok(());
        }
        let ignore = match self.context {
            Some(c) if !c.ignore.is_empty() => &c.ignore,
            _ => return walk_sorted(&self.path, "", &|_| false, false, &mut visit),
        };
        let ctx_rel = self.root_rel.as_str();
        let ignored = |rel: &str| {
            let ctx_path = if ctx_rel.is_empty() {
                rel.to_owned()
            } else {
                format!("{ctx_rel}/{rel}")
            };
            ignore.is_ignored(&ctx_path)
        };
        // An ignored directory is still walked if a `!` rule may bring something back.
        walk_sorted(
            &self.path,
            "",
            &ignored,
            ignore.has_exclusions(),
            &mut visit,
        )
    }
}

/// The entries under `dir` in path order (a directory right before its contents). `skip(rel)`
/// leaves an entry out; a left-out directory is still walked if `descend_skipped`.
fn walk_sorted<E: From<Error>>(
    dir: &Path,
    rel: &str,
    skip: &dyn Fn(&str) -> bool,
    descend_skipped: bool,
    visit: &mut dyn FnMut(Entry) -> Result<(), E>,
) -> Result<(), E> {
    use rustix::fs::{Mode, OFlags};
    // Each entry is looked up by name in its open directory, not by its whole path.
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .at(dir)?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)
        .map_err(std::io::Error::from)
        .at(dir)?
    {
        let entry = entry.map_err(std::io::Error::from).at(dir)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsStr::from_bytes(name).to_owned());
        }
    }
    names.sort();
    for raw in names {
        let path = dir.join(&raw);
        let name = raw.to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let info = FileInfo::read_at(&fd, &raw, &path)?;
        let skipped = skip(&child_rel);
        let is_dir = info.kind == Kind::Dir;
        if is_dir && (!skipped || descend_skipped) {
            if !skipped {
                visit(Entry {
                    rel: child_rel.clone(),
                    path: path.clone(),
                    info,
                })?;
            }
            walk_sorted(&path, &child_rel, skip, descend_skipped, visit)?;
        } else if !skipped {
            visit(Entry {
                rel: child_rel,
                path,
                info,
            })?;
        }
    }
    Ok(())
}

/// The walk of the whole tree at `root` (any directory, no ignore rules): [`Walker::each`]
/// visits `root` itself first, with `rel` `""`, then everything under it in path order.
pub fn tree_walker(root: &Path) -> Result<Walker<'static>> {
    Ok(Walker {
        context: None,
        root_rel: String::new(),
        path: root.to_owned(),
        info: FileInfo::read(root)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, content).unwrap();
        }
        dir
    }

    fn rels(ctx: &Context, rel: &str) -> Vec<String> {
        ctx.walk(rel).unwrap().into_iter().map(|e| e.rel).collect()
    }

    #[test]
    fn walk_is_sorted_and_honours_dockerignore() {
        let dir = tree(&[
            (".dockerignore", "node_modules\n*.md\n!KEEP.md\nlogs/**\n"),
            ("b.txt", ""),
            ("a.txt", ""),
            ("README.md", ""),
            ("KEEP.md", ""),
            ("node_modules/x.js", ""),
            ("sub/node_modules/y.js", ""),
            ("logs/1.log", ""),
        ]);
        let ctx = Context::open(dir.path(), None).unwrap();
        assert_eq!(
            rels(&ctx, "."),
            [
                "",
                ".dockerignore",
                "KEEP.md",
                "a.txt",
                "b.txt",
                "logs",
                "sub",
                "sub/node_modules",
                "sub/node_modules/y.js"
            ]
        );
    }

    #[test]
    fn dockerfile_specific_ignore_wins() {
        let dir = tree(&[
            (".dockerignore", "a.txt\n"),
            ("app.Dockerfile.dockerignore", "b.txt\n"),
            ("a.txt", ""),
            ("b.txt", ""),
        ]);
        let df = dir.path().join("app.Dockerfile");
        let ctx = Context::open(dir.path(), Some(&df)).unwrap();
        let got = rels(&ctx, ".");
        assert!(
            got.contains(&"a.txt".to_owned()) && !got.contains(&"b.txt".to_owned()),
            "{got:?}"
        );
    }

    #[test]
    fn nothing_outside_the_context() {
        let outer = tree(&[("secret", "s"), ("ctx/in.txt", "i")]);
        let ctx_dir = outer.path().join("ctx");
        std::os::unix::fs::symlink("../secret", ctx_dir.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ctx_dir.join("abs")).unwrap();
        std::os::unix::fs::symlink("in.txt", ctx_dir.join("ok")).unwrap();
        let ctx = Context::open(&ctx_dir, None).unwrap();
        // `..` stops at the root, as BuildKit reads a source: the context's own `secret`.
        for clamped in ["../secret", "a/../../secret"] {
            let (rel, path) = ctx.resolve(clamped).unwrap();
            assert_eq!(rel, "secret", "{clamped}");
            assert_eq!(path, ctx.root().join("secret"), "{clamped}");
        }
        let (rel, path) = ctx.resolve("up").unwrap();
        assert_eq!(rel, "secret", "a `..` link is clamped at the context root");
        assert!(path.starts_with(ctx.root()));
        let (rel, _) = ctx.resolve("abs").unwrap();
        assert_eq!(
            rel, "etc/passwd",
            "an absolute link is read inside the context"
        );
        assert_eq!(ctx.resolve("ok").unwrap().0, "in.txt");
        assert!(matches!(ctx.walk("up"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn a_walker_visits_what_walk_collects_and_stops_at_the_first_error() {
        let dir = tree(&[
            (".dockerignore", "skip\n"),
            ("a/b.txt", ""),
            ("a/c.txt", ""),
            ("skip", ""),
        ]);
        let ctx = Context::open(dir.path(), None).unwrap();
        let mut seen = Vec::new();
        ctx.walker(".")
            .unwrap()
            .each(|e| {
                seen.push(e.rel);
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(seen, rels(&ctx, "."));
        assert_eq!(seen, ["", ".dockerignore", "a", "a/b.txt", "a/c.txt"]);
        let mut visits = 0;
        let stopped = ctx.walker("a").unwrap().each(|e| {
            visits += 1;
            if e.rel == "b.txt" {
                return Err(Error::NotFound { path: e.rel });
            }
            Ok(())
        });
        assert!(matches!(stopped, Err(Error::NotFound { path }) if path == "b.txt"));
        assert_eq!(visits, 2, "the walk went on after the visit failed");
        assert!(matches!(ctx.walker("nope"), Err(Error::NotFound { .. })));
    }
}
