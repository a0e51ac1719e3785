//! Image tags: `name:tag` → manifest digest, one small file per tag, replaced atomically.

use std::fmt::Write as _;

use crate::digest::Digest;

use super::error::{Error, IoContext};
use super::{Result, Store};

/// `name:tag` as a file name: anything but `[A-Za-z0-9._-]` percent-encoded.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn decode(file: &str) -> Option<String> {
    let bytes = file.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = file.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `name` as tags are stored: `:latest` added when it has neither a tag nor a digest, as docker
/// names images (`app` is `app:latest`; `host:5000/app` too, the port being no tag).
pub fn tag_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

impl Store {
    /// Points `name` at `digest`, replacing what it pointed at.
    pub fn set_tag(&self, name: &str, digest: Digest) -> Result<()> {
        if name.is_empty() || name.len() > 1024 || name.chars().any(char::is_control) {
            return Err(Error::InvalidName {
                name: name.to_owned(),
            });
        }
        let path = self.root.join("tags").join(encode(name));
        super::write_durably(self, &path, format!("{digest}\n").as_bytes())
    }

    /// What `name` points at.
    pub fn tag(&self, name: &str) -> Result<Option<Digest>> {
        let path = self.root.join("tags").join(encode(name));
        match fs_err::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::BadTag { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Removes `name`; `false` if it did not exist.
    pub fn remove_tag(&self, name: &str) -> Result<bool> {
        let path = self.root.join("tags").join(encode(name));
        match fs_err::remove_file(&path) {
            Ok(()) => {
                let dir = self.root.join("tags");
                super::sync_dir(&dir).at(dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Every tag file, sorted by name, with what it holds or why it cannot be read (for fsck:
    /// [`Store::tags`] fails on the first bad one).
    pub fn tag_entries(&self) -> Result<Vec<(String, Result<Digest>)>> {
        let dir = self.root.join("tags");
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(decode) else {
                continue;
            };
            match self.tag(&name) {
                Ok(None) => {} // removed meanwhile
                Ok(Some(d)) => out.push((name, Ok(d))),
                Err(e) => out.push((name, Err(e))),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every tag, sorted by name.
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        self.tag_entries()?
            .into_iter()
            .map(|(name, d)| d.map(|d| (name, d)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_a_tag_get_latest() {
        assert_eq!(tag_name("app"), "app:latest");
        assert_eq!(tag_name("app:v1"), "app:v1");
        assert_eq!(tag_name("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(tag_name("localhost:5000/app:v1"), "localhost:5000/app:v1");
        let pinned = format!("app@sha256:{}", "a".repeat(64));
        assert_eq!(tag_name(&pinned), pinned);
    }

    #[test]
    fn names_round_trip_through_file_names() {
        for name in [
            "docker.io/library/busybox:latest",
            "localhost:5000/a/b@x",
            "ünï:ç",
        ] {
            let enc = encode(name);
            assert!(!enc.contains('/') && !enc.contains(':'), "{enc}");
            assert_eq!(decode(&enc).as_deref(), Some(name));
        }
    }

    #[test]
    fn tags_set_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        store.set_tag("app:v1", a).unwrap();
        store.set_tag("app:v1", b).unwrap();
        store.set_tag("other/x:latest", a).unwrap();
        assert_eq!(store.tag("app:v1").unwrap(), Some(b));
        assert_eq!(
            store.tags().unwrap(),
            [("app:v1".to_owned(), b), ("other/x:latest".to_owned(), a)]
        );
        assert!(store.remove_tag("app:v1").unwrap());
        assert!(!store.remove_tag("app:v1").unwrap());
        assert_eq!(store.tag("app:v1").unwrap(), None);
        assert!(store.set_tag("", a).is_err());
    }
}
