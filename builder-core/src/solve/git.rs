//! Git sources: `ADD <git url>`, a git build context, `--build-context NAME=<git url>`.
//!
//! A URL is `REMOTE[#REF[:SUBDIR]]`, as BuildKit reads it. The ref is resolved to a commit first
//! (`git ls-remote`, or the ref itself when it is a full commit id): the commit is what a step's
//! key holds, so the same commit hits the cache without fetching, and a new commit on the branch
//! misses it. On a miss the commit is fetched shallow (`--depth 1`) into a fresh repository and
//! checked out; without `--keep-git-dir` the checkout has no `.git`.
//!
//! The `git` program does the fetching, with what the user has configured (credential helpers,
//! `insteadOf`, proxies), but never prompts, runs no hooks, and speaks only `https`, `http`, `git`
//! and `ssh` (no `file://`, no `ext::`): a Dockerfile cannot make it read the builder's own disk.
//! Each call is bounded in time, the fetch in size (the build's `--max-download`), and stops at
//! the build's cancel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cancel::Cancel;

use super::error::io_at;
use super::{Error, Result};

/// How long one `git` call may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// A git source, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    /// The URL as given, fragment included (how errors name it).
    pub url: String,
    /// The repository to fetch.
    pub remote: String,
    /// A branch, a tag, `refs/…` or a full commit id (`None`: the remote's HEAD).
    pub reference: Option<String>,
    /// The directory of the repository that is the source (`None`: its root).
    pub subdir: Option<String>,
}

/// Whether `s` is a full (SHA-1) commit id: 40 hex digits.
pub(crate) fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` names a git repository, as BuildKit tells: `git://`, `git@`, `ssh://`, or an
/// `http(s)://` URL whose path ends in `.git`.
pub fn is_git_url(s: &str) -> bool {
    if s.starts_with("git://") || s.starts_with("git@") || s.starts_with("ssh://") {
        return true;
    }
    let base = s.split(['#', '?']).next().unwrap_or(s);
    (base.starts_with("https://") || base.starts_with("http://"))
        && Path::new(base).extension().is_some_and(|e| e == "git")
}

impl GitUrl {
    /// Parses `REMOTE[#REF[:SUBDIR]]`.
    ///
    /// # Errors
    /// Not a git URL, or a ref or subdirectory git or the build cannot take (an option-like
    /// ref, `..` in the subdirectory).
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Git {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if !is_git_url(url) {
            return Err(invalid(
                "not a git URL (git://, git@, ssh:// or http(s)://….git)",
            ));
        }
        let (remote, fragment) = match url.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (url, None),
        };
        let (reference, subdir) = match fragment.map(|f| f.split_once(':').unwrap_or((f, ""))) {
            None => (None, None),
            Some((r, s)) => (
                (!r.is_empty()).then(|| r.to_owned()),
                (!s.is_empty()).then(|| s.trim_matches('/').to_owned()),
            ),
        };
        if remote.starts_with('-') || remote.chars().any(char::is_whitespace) {
            return Err(invalid("the remote may not start with `-` or hold spaces"));
        }
        if let Some(r) = &reference {
            if r.starts_with('-')
                || r.contains("..")
                || r.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(invalid("invalid ref"));
            }
        }
        if let Some(s) = &subdir {
            if s.split('/').any(|c| c == "..") {
                return Err(invalid("the subdirectory may not contain `..`"));
            }
        }
        Ok(Self {
            url: url.to_owned(),
            remote: remote.to_owned(),
            reference,
            subdir,
        })
    }

    /// The ref when it is a full commit id already.
    fn commit_id(&self) -> Option<&str> {
        self.reference.as_deref().filter(|r| is_commit_id(r))
    }
}

/// What bounds a git call: the build's cancel, a time and a size limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Stops the call at its next check (every few milliseconds).
    pub cancel: &'a Cancel,
    /// How long one call may run.
    pub timeout: Duration,
    /// The most a fetch may bring.
    pub max_bytes: u64,
}

impl<'a> Limits<'a> {
    /// A build's bounds: its cancel, [`GIT_TIMEOUT`] per call, `max_bytes` per fetch.
    pub fn new(cancel: &'a Cancel, max_bytes: u64) -> Self {
        Self {
            cancel,
            timeout: GIT_TIMEOUT,
            max_bytes,
        }
    }
}

/// The commit `url`'s ref names now.
///
/// # Errors
/// The remote cannot be reached, has no such ref, or `git` fails.
pub fn resolve(url: &GitUrl, limits: Limits<'_>) -> Result<String> {
    if let Some(id) = url.commit_id() {
        return Ok(id.to_ascii_lowercase());
    }
    let dir = tempfile::tempdir().map_err(io_at(std::env::temp_dir()))?;
    let out = git(
        url,
        &[&"ls-remote", &"--", &url.remote.as_str()],
        dir.path(),
        None,
        limits,
    )?;
    pick_ref(&out, url.reference.as_deref()).ok_or_else(|| Error::Git {
        url: url.url.clone(),
        reason: match &url.reference {
            Some(r) => format!("the remote has no branch or tag `{r}`"),
            None => "the remote has no HEAD".into(),
        },
    })
}

/// The commit `ls-remote` lists for `reference`: HEAD, a branch, a peeled tag, a tag, or a
/// full `refs/…` name, in that order (git's own).
fn pick_ref(listing: &str, reference: Option<&str>) -> Option<String> {
    let refs: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
    let find = |name: &str| {
        refs.iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| (*c).to_owned())
    };
    match reference {
        None => find("HEAD"),
        Some(r) => find(&format!("refs/heads/{r}"))
            .or_else(|| find(&format!("refs/tags/{r}^{{}}")))
            .or_else(|| find(&format!("refs/tags/{r}")))
            .or_else(|| find(&format!("{r}^{{}}")))
            .or_else(|| find(r)),
    }
}

/// Fetches `commit` of `url` and checks it out into `dest` (which must not exist), with its
/// `.git` when `keep_git_dir`. Returns the directory the URL names (`dest` or its subdirectory,
/// never a place outside `dest`).
///
/// # Errors
/// The fetch fails or brings another commit, it passes the limits, or the subdirectory is not
/// a directory of the checkout.
pub fn checkout(
    url: &GitUrl,
    commit: &str,
    dest: &Path,
    keep_git_dir: bool,
    limits: Limits<'_>,
) -> Result<PathBuf> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent).map_err(io_at(parent))?;
    let repo = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(parent)
        .map_err(io_at(parent))?;
    let work = repo.path().join("tree");
    let git_dir = if keep_git_dir {
        work.join(".git")
    } else {
        repo.path().join("repo.git")
    };
    fs_err::create_dir_all(&work).map_err(io_at(&work))?;
    let gd = git_dir.to_string_lossy().into_owned();
    let wt = work.to_string_lossy().into_owned();
    let at = |args: &[&dyn AsRef<std::ffi::OsStr>], watch: Option<&Path>| {
        git(url, args, repo.path(), watch, limits)
    };
    if keep_git_dir {
        at(&[&"init", &"-q", &wt.as_str()], None)?;
    } else {
        at(&[&"init", &"-q", &"--bare", &gd.as_str()], None)?;
    }
    // By name where the remote names it (every server serves its refs), else by id.
    let wanted = match (&url.reference, url.commit_id()) {
        (Some(r), None) => r.clone(),
        _ => commit.to_owned(),
    };
    let fetch = [
        &"--git-dir" as &dyn AsRef<std::ffi::OsStr>,
        &gd.as_str(),
        &"fetch",
        &"-q",
        &"--depth",
        &"1",
        &"--no-tags",
        &"--",
        &url.remote.as_str(),
        &wanted.as_str(),
    ];
    at(&fetch, Some(&git_dir))?;
    let fetched = at(
        &[
            &"--git-dir",
            &gd.as_str(),
            &"rev-parse",
            &"FETCH_HEAD^{commit}",
        ],
        None,
    )?;
    if fetched.trim() != commit {
        return Err(Error::Git {
            url: url.url.clone(),
            reason: format!(
                "the ref moved while it was fetched (commit {} instead of {commit}); build again",
                fetched.trim()
            ),
        });
    }
    let mut co: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--git-dir", &gd, &"--work-tree", &wt];
    if keep_git_dir {
        co.extend([&"checkout" as &dyn AsRef<std::ffi::OsStr>, &"-q", &commit]);
    } else {
        co.extend([
            &"checkout" as &dyn AsRef<std::ffi::OsStr>,
            &"-q",
            &commit,
            &"--",
            &".",
        ]);
    }
    at(&co, None)?;
    normalize_modes(&work)?;
    // Two stages checking out the same commit at once: the second finds the first's.
    if let Err(e) = fs_err::rename(&work, dest) {
        if !dest.is_dir() {
            return Err(io_at(dest)(e));
        }
    }
    subdir(url, dest)
}

/// The directory `url`'s subdirectory names inside `root`, refused if a symlink leads it out.
pub(crate) fn subdir(url: &GitUrl, root: &Path) -> Result<PathBuf> {
    let Some(sub) = &url.subdir else {
        return Ok(root.to_owned());
    };
    let not_there = |reason: String| Error::Git {
        url: url.url.clone(),
        reason,
    };
    let root_real = fs_err::canonicalize(root).map_err(io_at(root))?;
    let path = std::fs::canonicalize(root.join(sub))
        .map_err(|_| not_there(format!("the repository has no directory `{sub}`")))?;
    if !path.starts_with(&root_real) || !path.is_dir() {
        return Err(not_there(format!(
            "`{sub}` is not a directory inside the repository"
        )));
    }
    Ok(path)
}

/// Git writes files with the process's umask: they are made 0644 or 0755 (what git records),
/// directories 0755, so the image does not depend on the builder's umask.
fn normalize_modes(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs_err::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let path = entry.path();
            let meta = fs_err::symlink_metadata(&path).map_err(io_at(&path))?;
            let mode = if meta.is_dir() {
                pending.push(path.clone());
                0o755
            } else if meta.is_file() {
                if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                }
            } else {
                continue;
            };
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io_at(&path))?;
        }
    }
    Ok(())
}

/// Runs `git ARGS` in `dir`, its output to files (never a full pipe), stopped at the cancel, the
/// timeout, or when `watch` (the repository being fetched into) grows past the size limit.
/// Returns its standard output.
fn git(
    url: &GitUrl,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    dir: &Path,
    watch: Option<&Path>,
    limits: Limits<'_>,
) -> Result<String> {
    let failed = |reason: String| Error::Git {
        url: url.url.clone(),
        reason,
    };
    let stdout = tempfile::tempfile_in(dir).map_err(io_at(dir))?;
    let stderr = tempfile::tempfile_in(dir).map_err(io_at(dir))?;
    let mut cmd = Command::new("git");
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.file.allow=never",
    ])
    .args([
        "-c",
        "advice.detachedHead=false",
        "-c",
        "core.autocrlf=false",
    ])
    .args(args.iter().map(AsRef::as_ref))
    .current_dir(dir)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_ALLOW_PROTOCOL", "https:http:git:ssh")
    // ssh may ask nothing either: no host key prompt, no password prompt.
    .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    .stdin(Stdio::null())
    .stdout(stdout.try_clone().map_err(io_at(dir))?)
    .stderr(stderr.try_clone().map_err(io_at(dir))?);
    let mut child = cmd.spawn().map_err(|e| {
        failed(if e.kind() == std::io::ErrorKind::NotFound {
            "the `git` program is not installed (apt-get install git)".into()
        } else {
            format!("cannot run git: {e}")
        })
    })?;
    let start = Instant::now();
    let mut last_size_check = start;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_at(dir))? {
            break status;
        }
        let stop = if limits.cancel.is_cancelled() {
            Some(Error::Cancelled)
        } else if start.elapsed() > limits.timeout {
            Some(failed(format!(
                "git did not finish in {} s",
                limits.timeout.as_secs()
            )))
        } else if let Some(w) =
            watch.filter(|_| last_size_check.elapsed() > Duration::from_millis(200))
        {
            last_size_check = Instant::now();
            let size = tree_size(w);
            (size > limits.max_bytes).then(|| {
                failed(format!(
                    "the fetch is larger than {} bytes, the most this build downloads (--max-download)",
                    limits.max_bytes
                ))
            })
        } else {
            None
        };
        if let Some(e) = stop {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        let err = read(stderr);
        let last: Vec<&str> = err.lines().rev().take(3).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        return Err(failed(format!("git {status}: {}", last.join("; "))));
    }
    Ok(read(stdout))
}

/// At most 1 MiB of a command's output file, from its start.
fn read(mut f: impl std::io::Read + std::io::Seek) -> String {
    use std::io::Read as _;
    let mut s = String::new();
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = f.take(1 << 20).read_to_string(&mut s);
    s
}

/// The bytes of the files under `dir` (a repository being fetched into: a few files).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = fs_err::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => pending.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_told_and_split_as_buildkit_does() {
        for yes in [
            "git://host/repo",
            "git@github.com:o/r.git",
            "ssh://git@host/r",
            "https://host/o/r.git#main",
            "http://host/r.git?x=1",
        ] {
            assert!(is_git_url(yes), "{yes}");
        }
        for no in [
            "https://host/file.tar.gz",
            "https://host/r.git.bak",
            "r.git",
            "ftp://h/r.git",
        ] {
            assert!(!is_git_url(no), "{no}");
        }
        let u = GitUrl::parse("https://host/o/r.git#v1.2:app/web/").unwrap();
        assert_eq!(u.remote, "https://host/o/r.git");
        assert_eq!(u.reference.as_deref(), Some("v1.2"));
        assert_eq!(u.subdir.as_deref(), Some("app/web"));
        let u = GitUrl::parse("git://h/r#:sub").unwrap();
        assert_eq!((u.reference, u.subdir.as_deref()), (None, Some("sub")));
        for bad in [
            "git://h/r#--upload-pack=x",
            "git://h/r#main:../up",
            "git://h/r#a..b",
        ] {
            assert!(GitUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ref_resolves_to_a_branch_then_a_peeled_tag_then_a_tag() {
        let listing = "aaaa\tHEAD\nbbbb\trefs/heads/main\ncccc\trefs/tags/v1\ndddd\trefs/tags/v1^{}\neeee\trefs/tags/light\n";
        assert_eq!(pick_ref(listing, None).as_deref(), Some("aaaa"));
        assert_eq!(pick_ref(listing, Some("main")).as_deref(), Some("bbbb"));
        assert_eq!(pick_ref(listing, Some("v1")).as_deref(), Some("dddd"));
        assert_eq!(pick_ref(listing, Some("light")).as_deref(), Some("eeee"));
        assert_eq!(
            pick_ref(listing, Some("refs/heads/main")).as_deref(),
            Some("bbbb")
        );
        assert_eq!(pick_ref(listing, Some("nope")), None);
    }
}
