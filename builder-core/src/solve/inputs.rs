//! What an op reads, for the solver, in two forms from one reading: the inputs its key hashes
//! (the content digests of the context files a COPY selects or a RUN binds, the key of a stage
//! read, an image's digest, a URL's content), and the same inputs materialised for its
//! executor (the host paths of the trees and files it reads, downloads on disk). The
//! executors (`copy`, `run`) see only the second.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::digest::{Digest, Hasher};
use crate::plan::{Exec, File, FileSource as Source, From};

use super::copy::{self, Root, glob_match, has_wildcard, is_url};
use super::download::Download;
use super::env::{Built, StageState};
use super::error::io_at;
use super::job::Job;
use super::{Error, Result};

/// Named digests of what a step read, as its key and its explanation list them.
pub(crate) type Read = Vec<(String, Digest)>;

/// The root filesystem of the image `name`, unpacked once per build (`COPY --from` and
/// `RUN --mount=type=bind,from=` an image).
fn image_rootfs(job: &Job<'_>, name: &str) -> Result<PathBuf> {
    let image = job.image(name)?;
    let dir = job
        .work
        .join(format!("image-{}", image.config_digest.hex()));
    if !dir.exists() {
        // Unpacked beside and renamed into place, so a stage running at the same time never
        // sees half of it.
        let part = tempfile::Builder::new()
            .prefix("image-")
            .tempdir_in(job.work)
            .map_err(io_at(job.work))?;
        for d in image.diff_ids() {
            job.check_cancelled()?;
            crate::snapshot::apply_layer(job.store, d, part.path())?;
        }
        let part = part.keep();
        if fs_err::rename(&part, &dir).is_err() {
            // Another stage got there first: theirs is the same.
            let _ = fs_err::remove_dir_all(&part);
        }
    }
    Ok(dir)
}

/// The root filesystem `--from` names: a built stage's snapshot or an image unpacked.
fn from_rootfs(job: &Job<'_>, from: &From, built: &Built) -> Result<PathBuf> {
    match from {
        From::Stage(i) => job.rootfs(&built.wait(*i, job.cancel)?),
        From::Image(name) => image_rootfs(job, name),
        From::Context(name) => Ok(job.named(name)?.root().to_owned()),
    }
}

/// How errors and explanations name what `--from` reads: ``stage `name` `` or ``image `name` ``.
fn from_label(job: &Job<'_>, from: &From) -> String {
    match from {
        From::Stage(i) => {
            let stage = &job.checked.stages[*i];
            format!(
                "stage `{}`",
                stage.name.clone().unwrap_or_else(|| i.to_string())
            )
        }
        From::Image(name) => format!("image `{name}`"),
        From::Context(name) => format!("context `{name}`"),
    }
}

/// What `--from` reads, for the key: a stage's key, an image's manifest digest. (A directory
/// context is keyed file by file, as the build context is: see [`reads`].)
fn from_digest(job: &Job<'_>, from: &From, built: &Built) -> Result<Digest> {
    Ok(match from {
        From::Stage(i) => built.wait(*i, job.cancel)?.key,
        From::Image(name) => job.image(name)?.manifest_digest,
        From::Context(name) => {
            return Err(Error::Internal(format!(
                "context `{name}` is keyed by its files"
            )));
        }
    })
}

/// Where a step's paths are read.
enum Reads<'j, 'f> {
    /// A context, file by file: the build's, or the directory `--build-context` its `--from`
    /// names.
    Files(&'j crate::context::Context),
    /// A stage's or an image's tree, keyed whole.
    Tree(&'f From),
}

/// Where the paths of a step with `from` are read.
fn reads<'j, 'f>(job: &Job<'j>, from: Option<&'f From>) -> Result<Reads<'j, 'f>> {
    Ok(match from {
        None => Reads::Files(job.context),
        Some(From::Context(name)) => Reads::Files(job.named(name)?),
        Some(tree) => Reads::Tree(tree),
    })
}

/// What bounds the build's git calls.
fn git_limits<'j>(job: &Job<'j>) -> super::git::Limits<'j> {
    super::git::Limits::new(job.cancel, job.max_download)
}

/// The commit a git source's ref names, resolved once per build; `--checksum` (a commit id
/// or a prefix of one) must match it. A full commit id as the checksum is the key offline.
fn git_commit(job: &Job<'_>, url: &str, checksum: Option<&str>) -> Result<String> {
    let parsed = super::git::GitUrl::parse(url)?;
    let full = checksum.filter(|c| super::git::is_commit_id(c));
    if job.policy.dry {
        return full
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| Error::KeyUnknown {
                what: format!("the commit `{url}` names (`--checksum=<commit>` makes it known)"),
            });
    }
    let known = job
        .tables
        .git
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(url)
        .cloned();
    let commit = match known {
        Some(c) => c,
        None => {
            let c = super::git::resolve(&parsed, git_limits(job))?;
            job.tables
                .git
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(url.to_owned(), c.clone());
            c
        }
    };
    if let Some(expected) = checksum {
        if expected.len() < 7 || !commit.starts_with(&expected.to_ascii_lowercase()) {
            return Err(Error::Git {
                url: url.to_owned(),
                reason: format!("it is at commit {commit}, not the `--checksum` {expected}"),
            });
        }
    }
    Ok(commit)
}

/// A git source checked out once per build: the directory its URL names.
fn git_tree(job: &Job<'_>, url: &str, file: &File) -> Result<PathBuf> {
    let commit = git_commit(job, url, file.checksum.as_deref())?;
    let parsed = super::git::GitUrl::parse(url)?;
    let dest = job.work.join(format!(
        "git-{}",
        Digest::of(format!("{commit}\0{}", file.keep_git_dir).as_bytes()).hex()
    ));
    if dest.exists() {
        return super::git::subdir(&parsed, &dest);
    }
    super::git::checkout(&parsed, &commit, &dest, file.keep_git_dir, git_limits(job))
}

/// A remote source, fetched once per build (and checked against `--checksum`).
fn download(job: &Job<'_>, url: &str, checksum: Option<&str>) -> Result<Download> {
    let key = format!("{url}\0{}", checksum.unwrap_or(""));
    let downloads = &job.tables.downloads;
    let known = downloads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .cloned();
    if let Some(d) = known {
        return Ok(d);
    }
    let dir = job.work.join("downloads");
    let d = super::download::fetch(url, &dir, checksum, job.max_download, job.cancel)?;
    downloads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, d.clone());
    Ok(d)
}

/// What a COPY or ADD reads, for its cache key: one digest over every source (names and
/// contents), and each input by name — the context files it selects, the stage or image
/// `--from` names, a URL's content (its checksum when given).
pub(crate) fn file_key(job: &Job<'_>, file: &File, built: &Built) -> Result<(Digest, Read)> {
    let mut h = Hasher::default();
    let mut inputs = Vec::new();
    let context = match reads(job, file.from.as_ref())? {
        Reads::Files(context) => context,
        Reads::Tree(from) => {
            h.update(match from {
                From::Image(_) => b"image\0",
                _ => b"stage\0",
            });
            let digest = from_digest(job, from, built)?;
            h.update(digest.as_bytes());
            inputs.push((from_label(job, from), digest));
            return Ok((h.finish().0, inputs));
        }
    };
    for source in &file.sources {
        let Source::Path(path) = source else {
            continue;
        };
        h.update(path.as_bytes());
        h.update(b"\0");
        if is_url(path) {
            if file.action != "add" {
                continue;
            }
            if super::git::is_git_url(path) {
                // The commit is the content: the same commit hits, a new one misses.
                let commit = git_commit(job, path, file.checksum.as_deref())?;
                let digest = Digest::of(format!("git\0{commit}\0{}", file.keep_git_dir).as_bytes());
                h.update(digest.as_bytes());
                inputs.push((format!("{path} (commit {commit})"), digest));
                continue;
            }
            // With a checksum the content is known without fetching; without one, fetch it.
            let digest = match &file.checksum {
                Some(c) => {
                    h.update(c.as_bytes());
                    Digest::of(c.as_bytes())
                }
                None if job.policy.dry => {
                    return Err(Error::KeyUnknown {
                        what: format!("the content of `{path}` (`--checksum` makes it known)"),
                    });
                }
                None => {
                    let d = download(job, path, None)?.digest;
                    h.update(d.as_bytes());
                    d
                }
            };
            inputs.push((path.clone(), digest));
            continue;
        }
        context_inputs(job, context, path, &mut h, &mut inputs)?;
    }
    Ok((h.finish().0, inputs))
}

/// The context files `path` selects, each hashed into `h` and named in `inputs`, visited one
/// at a time as the walk finds them (a tree of any size is never held whole).
fn context_inputs(
    job: &Job<'_>,
    context: &crate::context::Context,
    path: &str,
    h: &mut Hasher,
    inputs: &mut Read,
) -> Result<()> {
    let wildcard = has_wildcard(path);
    let walker = match context.walker(if wildcard { "." } else { path }) {
        Ok(w) => w,
        // The step itself reports it, with its line.
        Err(
            crate::context::Error::NotFound { .. } | crate::context::Error::OutsideContext { .. },
        ) if !wildcard => {
            h.update(b"missing\0");
            inputs.push((format!("{path} (missing)"), Digest::of(b"")));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    walker.each(|e| {
        if wildcard && (e.rel.is_empty() || !glob_match(path, &e.rel)) {
            return Ok(());
        }
        let digest = job.hash(&e.path, &e.info)?;
        h.update(e.rel.as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
        let shown = if e.rel.is_empty() {
            crate::context::clean_path(path)
        } else if wildcard {
            e.rel
        } else {
            crate::context::clean_path(&format!("{path}/{}", e.rel))
        };
        inputs.push((shown, digest));
        Ok::<_, Error>(())
    })
}

/// A COPY's or ADD's inputs on the host: the stage's tree, the tree it reads, its downloads.
pub(crate) fn file_inputs<'j>(
    job: &Job<'j>,
    state: &StageState,
    file: &File,
    built: &Built,
) -> Result<copy::Inputs<'j>> {
    let root = match reads(job, file.from.as_ref())? {
        Reads::Files(context) => Root::Context(context),
        Reads::Tree(from) => Root::Dir {
            path: from_rootfs(job, from, built)?,
            label: from_label(job, from),
        },
    };
    let mut downloads = HashMap::new();
    let mut trees = HashMap::new();
    if file.action == "add" {
        for source in &file.sources {
            if let Source::Path(url) = source {
                if super::git::is_git_url(url) {
                    trees.insert(url.clone(), git_tree(job, url, file)?);
                } else if is_url(url) {
                    let d = download(job, url, file.checksum.as_deref())?;
                    downloads.insert(url.clone(), d);
                }
            }
        }
    }
    Ok(copy::Inputs {
        rootfs: job.rootfs(state)?,
        root,
        downloads,
        trees,
        scratch: job.work.to_owned(),
        mtime: job.times.epoch,
    })
}

/// What the bind mounts of a RUN read, for its cache key: content digests of context sources,
/// the key of a stage or the digest of an image mounted from.
pub(crate) fn exec_key(job: &Job<'_>, exec: &Exec, built: &Built) -> Result<Read> {
    let mut inputs = Vec::new();
    for m in exec
        .mounts
        .iter()
        .filter(|m| m.kind == crate::dockerfile::MountType::Bind)
    {
        let source = m.source.clone().unwrap_or_else(|| ".".into());
        match reads(job, m.from.as_ref())? {
            Reads::Tree(from) => {
                inputs.push((from_label(job, from), from_digest(job, from, built)?));
            }
            Reads::Files(context) => context.walker(&source)?.each(|e| {
                let d = job.hash(&e.path, &e.info)?;
                inputs.push((
                    crate::context::clean_path(&format!("{source}/{}", e.rel)),
                    d,
                ));
                Ok::<_, Error>(())
            })?,
        }
    }
    Ok(inputs)
}

/// A RUN's inputs on the host: the stage's tree, each bind's source, its scratch directory.
pub(crate) fn exec_inputs(
    job: &Job<'_>,
    state: &StageState,
    exec: &Exec,
    built: &Built,
    step: usize,
) -> Result<super::run::Inputs> {
    let mut binds = Vec::with_capacity(exec.mounts.len());
    for m in &exec.mounts {
        if m.kind != crate::dockerfile::MountType::Bind {
            binds.push(None);
            continue;
        }
        let source = m.source.clone().unwrap_or_else(|| ".".into());
        binds.push(Some(match reads(job, m.from.as_ref())? {
            Reads::Files(context) => context.resolve(&source)?.1,
            Reads::Tree(from) => {
                let root = from_rootfs(job, from, built)?;
                root.join(crate::context::resolve_scoped(&root, &source)?)
            }
        }));
    }
    let stack = job.stack(state)?;
    Ok(super::run::Inputs {
        rootfs: stack.view,
        lowers: stack.lowers,
        dir: job.work.join(format!("run-{step}")),
        binds,
        cache_root: job.store.root().join("cache-mounts"),
        epoch: job.times.epoch,
    })
}
