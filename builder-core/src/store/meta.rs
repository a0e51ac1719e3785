//! Small named records beside the blobs (`ROOT/meta/<kind>/<key>`): which compressed blob a
//! layer has, what a cache key resolved to. Replaced atomically; a missing one is `None`.

use std::io::Write;

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
        let tmp_dir = self.tmp_dir();
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).at(&tmp_dir)?;
        tmp.write_all(value.as_bytes()).at(tmp.path())?;
        tmp.as_file().sync_all().at(tmp.path())?;
        let path = dir.join(key);
        tmp.persist(&path).map_err(|e| e.error).at(&path)?;
        Ok(())
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
