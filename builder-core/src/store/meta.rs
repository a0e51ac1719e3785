//! Small named records beside the blobs (`ROOT/meta/<kind>/<key>`): which compressed blob a
//! layer has, what a cache key resolved to. Replaced atomically; a missing one is `None`.

use super::error::{Error, IoContext};
use super::{Result, Store};

fn valid(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && part != "."
        && part != ".."
}

impl Store {
    /// Reads record `key` of `kind`.
    pub fn meta(&self, kind: &str, key: &str) -> Result<Option<String>> {
        if !valid(kind) || !valid(key) {
            return Err(Error::InvalidName {
                name: format!("{kind}/{key}"),
            });
        }
        let path = self.root.join("meta").join(kind).join(key);
        match fs_err::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Writes record `key` of `kind`, replacing it.
    pub fn set_meta(&self, kind: &str, key: &str, value: &str) -> Result<()> {
        if !valid(kind) || !valid(key) {
            return Err(Error::InvalidName {
                name: format!("{kind}/{key}"),
            });
        }
        let dir = self.root.join("meta").join(kind);
        fs_err::create_dir_all(&dir).at(&dir)?;
        super::write_durably(self, &dir.join(key), value.as_bytes())
    }

    /// Removes record `key` of `kind`; `false` if there was none.
    pub fn remove_meta(&self, kind: &str, key: &str) -> Result<bool> {
        if !valid(kind) || !valid(key) {
            return Err(Error::InvalidName {
                name: format!("{kind}/{key}"),
            });
        }
        let path = self.root.join("meta").join(kind).join(key);
        match fs_err::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// The keys of every record of `kind`, with when each was last written, oldest first.
    pub fn meta_keys(&self, kind: &str) -> Result<Vec<(std::time::SystemTime, String)>> {
        let dir = self.root.join("meta").join(kind);
        let mut out = Vec::new();
        let entries = match fs_err::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        for e in entries {
            let e = e.at(&dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid(&name) {
                continue;
            }
            let modified = e.metadata().and_then(|m| m.modified()).at(e.path())?;
            out.push((modified, name));
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.meta("gzip", "abc").unwrap(), None);
        s.set_meta("gzip", "abc", "x").unwrap();
        s.set_meta("gzip", "abc", "y").unwrap();
        assert_eq!(s.meta("gzip", "abc").unwrap().as_deref(), Some("y"));
        assert!(s.set_meta("../x", "a", "b").is_err());
        assert!(s.meta("gzip", "a/b").is_err());
    }
}
