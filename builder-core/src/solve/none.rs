//! `--isolation none`, kaniko's model: RUN runs in the builder's own root. Before each RUN the
//! root is made the stage's root filesystem (what differs is replaced, what the stage lacks is
//! removed), except what the builder needs and the container gives: `/proc`, `/sys`, `/dev`,
//! every mount point, the store, the context and the rbuild binary. The layer is then the diff of
//! `/` against the stage, as overlayfs would record it.
//!
//! Only asked for by name, and only inside a container: the container is the sandbox, and it
//! must hold nothing but this one build.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::io_at;
use super::{Error, Result};

/// Whether this process runs in a container (docker's `/.dockerenv`, podman's
/// `/run/.containerenv`, the `container` variable of systemd's convention, or Kubernetes' and
/// ECS's variables).
pub(crate) fn in_a_container() -> bool {
    looks_like_a_container(Path::new("/"), &|name| std::env::var_os(name).is_some())
}

/// [`in_a_container`] for the root `root` and the variables `set` says are set.
fn looks_like_a_container(root: &Path, set: &dyn Fn(&str) -> bool) -> bool {
    [".dockerenv", "run/.containerenv"]
        .iter()
        .any(|f| root.join(f).exists())
        || [
            "container",
            "KUBERNETES_SERVICE_HOST",
            "ECS_CONTAINER_METADATA_URI_V4",
        ]
        .iter()
        .any(|v| set(v))
}

/// What of `/` is never replaced, removed or diffed, relative to `/`: `/proc`, `/sys`, `/dev`,
/// every mount point but `/`, and `keep` (the store, the context, the binary).
pub(crate) fn protected(keep: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = ["proc", "sys", "dev"].map(str::to_owned).to_vec();
    if let Ok(info) = fs_err::read_to_string("/proc/self/mountinfo") {
        out.extend(
            info.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(unescape)
                .map(|m| m.trim_start_matches('/').to_owned())
                .filter(|m| !m.is_empty()),
        );
    }
    let exe = std::env::current_exe().ok();
    for p in keep.iter().chain(exe.as_ref()) {
        if let Ok(p) = fs_err::canonicalize(p) {
            let rel = p.to_string_lossy().trim_start_matches('/').to_owned();
            if !rel.is_empty() {
                out.push(rel);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A mountinfo path with its octal escapes (`\040` for a space) read back.
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes the tree at `root` (the builder's `/`) hold what `stage` holds, `protected` paths
/// aside: entries that differ (kind, mode, owner, size, time, link target) are replaced, the
/// ones `stage` lacks removed, hard links within `stage` kept. Nothing is followed: a link in
/// `root` is removed, never entered.
pub(crate) fn sync(stage: &Path, root: &Path, protected: &[String]) -> Result<()> {
    let mut links = HashMap::new();
    sync_dir(stage, root, "", protected, &mut links)
}

fn is_protected(protected: &[String], rel: &str) -> bool {
    protected.iter().any(|p| {
        rel.strip_prefix(p.as_str())
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    })
}

/// Whether `rel` is a directory above a protected path (kept as a directory).
fn holds_protected(protected: &[String], rel: &str) -> bool {
    protected
        .iter()
        .any(|p| rel.is_empty() || p.strip_prefix(rel).is_some_and(|r| r.starts_with('/')))
}

fn sync_dir(
    stage: &Path,
    root: &Path,
    rel: &str,
    protected: &[String],
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let join = |name: &str| {
        if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        }
    };
    let src_dir = stage.join(rel);
    let dst_dir = root.join(rel);
    let names = |dir: &Path| -> Result<Vec<String>> {
        match fs_err::read_dir(dir) {
            Ok(d) => Ok(d
                .filter_map(std::result::Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_at(dir)(e)),
        }
    };
    let wanted = names(&src_dir)?;
    for name in names(&dst_dir)? {
        let path = join(&name);
        if wanted.contains(&name) || is_protected(protected, &path) {
            continue;
        }
        if holds_protected(protected, &path) {
            // Empty it around what it holds.
            sync_dir(stage, root, &path, protected, links)?;
            continue;
        }
        remove(&root.join(&path))?;
    }
    for name in wanted {
        let path = join(&name);
        if is_protected(protected, &path) {
            continue;
        }
        let (src, dst) = (stage.join(&path), root.join(&path));
        let want = fs_err::symlink_metadata(&src).map_err(io_at(&src))?;
        let have = fs_err::symlink_metadata(&dst).ok();
        if !want.is_dir() && holds_protected(protected, &path) {
            return Err(Error::NoneKeeps {
                path: format!("/{path}"),
            });
        }
        if want.is_dir() {
            if !have.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                remove(&dst)?;
                fs_err::create_dir(&dst).map_err(io_at(&dst))?;
            }
            sync_dir(stage, root, &path, protected, links)?;
            super::tree_copy::copy_attributes(&src, &dst, &want)?;
            continue;
        }
        if let Some(first) = (want.nlink() > 1)
            .then(|| links.get(&(want.dev(), want.ino())))
            .flatten()
        {
            let first = first.clone();
            remove(&dst)?;
            fs_err::hard_link(&first, &dst).map_err(io_at(&dst))?;
            continue;
        }
        let same = have
            .as_ref()
            .is_some_and(|h| looks_same(&src, &want, &dst, h));
        if !same {
            remove(&dst)?;
            super::snapshots::copy_tree(&src, &dst, false)?;
        }
        if want.nlink() > 1 {
            links.insert((want.dev(), want.ino()), dst);
        }
    }
    Ok(())
}

/// Kind, mode, owner, size, time and link target alike.
fn looks_same(src: &Path, a: &std::fs::Metadata, dst: &Path, b: &std::fs::Metadata) -> bool {
    let link = |p: &Path, m: &std::fs::Metadata| {
        m.file_type()
            .is_symlink()
            .then(|| fs_err::read_link(p).ok())
            .flatten()
    };
    (
        a.mode(),
        a.uid(),
        a.gid(),
        a.size(),
        a.mtime(),
        a.mtime_nsec(),
    ) == (
        b.mode(),
        b.uid(),
        b.gid(),
        b.size(),
        b.mtime(),
        b.mtime_nsec(),
    ) && a.rdev() == b.rdev()
        && link(src, a) == link(dst, b)
}

/// Removes whatever is at `path`, a link itself, never what it points to.
fn remove(path: &Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(path).map_err(io_at(path)),
        Ok(_) => fs_err::remove_file(path).map_err(io_at(path)),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_made_the_stage_around_what_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let (stage, root) = (dir.path().join("stage"), dir.path().join("root"));
        for d in ["bin", "etc", "var/lib"] {
            fs_err::create_dir_all(stage.join(d)).unwrap();
        }
        fs_err::write(stage.join("bin/sh"), "stage sh").unwrap();
        fs_err::write(stage.join("etc/passwd"), "root").unwrap();
        fs_err::hard_link(stage.join("bin/sh"), stage.join("bin/ash")).unwrap();
        std::os::unix::fs::symlink("/bin/sh", stage.join("etc/shell")).unwrap();
        for d in ["bin", "usr/lib", "var/lib/rbuild", "etc/passwd"] {
            fs_err::create_dir_all(root.join(d)).unwrap();
        }
        fs_err::write(root.join("bin/sh"), "builder's sh").unwrap();
        fs_err::write(root.join("usr/lib/libc.so"), "libc").unwrap();
        fs_err::write(root.join("var/lib/rbuild/blob"), "store").unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("bin/out")).unwrap();
        let protected = vec!["var/lib/rbuild".to_owned()];
        sync(&stage, &root, &protected).unwrap();
        assert_eq!(
            fs_err::read_to_string(root.join("bin/sh")).unwrap(),
            "stage sh"
        );
        assert_eq!(
            fs_err::metadata(root.join("bin/ash")).unwrap().ino(),
            fs_err::metadata(root.join("bin/sh")).unwrap().ino(),
            "hard links kept"
        );
        assert_eq!(
            fs_err::read_to_string(root.join("etc/passwd")).unwrap(),
            "root"
        );
        assert_eq!(
            fs_err::read_link(root.join("etc/shell")).unwrap(),
            Path::new("/bin/sh")
        );
        assert!(!root.join("usr").exists(), "what the stage lacks goes");
        assert!(
            !root.join("bin/out").exists(),
            "a link is removed, not followed"
        );
        assert!(stage.exists() && dir.path().join("stage/bin/sh").exists());
        assert_eq!(
            fs_err::read_to_string(root.join("var/lib/rbuild/blob")).unwrap(),
            "store",
            "the store is kept"
        );
        // Again: nothing to do, nothing changes.
        let before = fs_err::metadata(root.join("etc/passwd")).unwrap().ino();
        sync(&stage, &root, &protected).unwrap();
        assert_eq!(
            fs_err::metadata(root.join("etc/passwd")).unwrap().ino(),
            before
        );
    }

    #[test]
    fn none_is_only_for_containers() {
        let dir = tempfile::tempdir().unwrap();
        let unset = |_: &str| false;
        assert!(!looks_like_a_container(dir.path(), &unset));
        assert!(looks_like_a_container(dir.path(), &|v| v == "KUBERNETES_SERVICE_HOST"));
        fs_err::create_dir_all(dir.path().join("run")).unwrap();
        fs_err::write(dir.path().join("run/.containerenv"), "").unwrap();
        assert!(looks_like_a_container(dir.path(), &unset));
    }

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
