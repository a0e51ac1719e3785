//! Overlay mounts in the builder's own mount namespace: the read-only views of a layer stack
//! and the writable overlay a layer is unpacked through. Each lives under a work directory of
//! the store, so a process that dies leaves its mounts where the next clean-up of `tmp/`
//! finds and detaches them ([`under`], [`detach`]).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// The longest mount option string the kernel takes (one page, its NUL included), less room
/// for the options after the layers.
pub const MAX_OPTIONS: usize = 4096 - 128;

/// The options of an overlay of `lowers` (topmost first), with an upper and a work directory
/// when writable. Metadata-only copy-up, redirects and the inode index are off: an upper
/// directory is then a plain layer, readable without overlayfs.
pub fn overlay_options(lowers: &[PathBuf], rw: Option<(&Path, &Path)>) -> String {
    let joined: Vec<String> = lowers
        .iter()
        .map(|l| escape(&l.to_string_lossy()))
        .collect();
    let mut data = format!("lowerdir={}", joined.join(":"));
    if let Some((upper, work)) = rw {
        use std::fmt::Write;
        let _ = write!(
            data,
            ",upperdir={},workdir={}",
            escape(&upper.to_string_lossy()),
            escape(&work.to_string_lossy())
        );
    }
    data.push_str(",index=off,redirect_dir=off,metacopy=off");
    data
}

/// overlayfs's own escapes for a path in its options (`:` separates layers, `,` options).
fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Mounts an overlay of `lowers` (topmost first) at `target`: read-only without `rw`, else
/// writable into `rw`'s upper directory. Never set-user-ID, never devices.
pub fn overlay(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    target: &Path,
) -> std::io::Result<()> {
    let data = overlay_options(lowers, rw);
    if data.len() > MAX_OPTIONS {
        return Err(std::io::Error::other(format!(
            "an overlay of {} layers needs {} bytes of options; the kernel takes {MAX_OPTIONS}",
            lowers.len(),
            data.len()
        )));
    }
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if rw.is_none() {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(std::io::Error::from)
}

/// Detaches the mount at `target` (lazily: readers still in it finish first).
pub fn detach(target: &Path) -> std::io::Result<()> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Mount points at or below `dir` in this process's mount namespace, deepest first.
pub fn under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = &fs_err::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let text = fs_err::read_to_string("/proc/self/mountinfo")?;
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    Ok(out)
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(n) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_escape_separators_and_list_layers_topmost_first() {
        let lowers = [PathBuf::from("/s/top"), PathBuf::from("/s/a:b,c")];
        assert_eq!(
            overlay_options(&lowers, None),
            "lowerdir=/s/top:/s/a\\:b\\,c,index=off,redirect_dir=off,metacopy=off"
        );
        let rw = overlay_options(&lowers[..1], Some((Path::new("/u"), Path::new("/w"))));
        assert!(
            rw.starts_with("lowerdir=/s/top,upperdir=/u,workdir=/w,"),
            "{rw}"
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }
}
