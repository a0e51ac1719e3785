//! Step-cache records (`ROOT/meta/cache/<key hex>`): what a step produced, typed and versioned,
//! one type for every reader (the step cache's lookup, prune, fsck, `df` and the remote cache).
//! The store knows a record's layers (what it keeps alive) and keeps its result opaque.

use std::time::SystemTime;

use crate::digest::Digest;

use super::error::Error;
use super::{Result, Store};

/// The record format this rbuild writes and reads; a record of another version is unreadable
/// to it (a miss for a build, stale for prune, a problem for fsck).
pub const STEP_RECORD_VERSION: u32 = 1;

const KIND: &str = "cache";

/// What a step produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// [`STEP_RECORD_VERSION`] when written.
    pub version: u32,
    /// The layers (diff IDs) of the step's result, bottom first: the blobs it keeps alive.
    pub layers: Vec<Digest>,
    /// The result itself (the image config and what else the builder needs), opaque here.
    pub result: serde_json::Value,
}

impl StepRecord {
    /// A record of the current version.
    pub fn new(layers: Vec<Digest>, result: serde_json::Value) -> Self {
        Self {
            version: STEP_RECORD_VERSION,
            layers,
            result,
        }
    }

    /// Reads a record as stored (or as a remote cache carries it), refusing other versions.
    pub fn parse(key: &Digest, json: &str) -> Result<Self> {
        let bad = |why: String| Error::BadStepRecord { key: *key, why };
        let record: Self = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if record.version != STEP_RECORD_VERSION {
            return Err(bad(format!(
                "version {} (this rbuild reads {STEP_RECORD_VERSION})",
                record.version
            )));
        }
        Ok(record)
    }
}

impl Store {
    /// The record of step `key`: `None` if there is none, an error if it is unreadable.
    pub fn step_record(&self, key: &Digest) -> Result<Option<StepRecord>> {
        match self.meta(KIND, &key.hex())? {
            None => Ok(None),
            Some(json) => StepRecord::parse(key, &json).map(Some),
        }
    }

    /// Writes the record of step `key`, replacing any.
    pub fn set_step_record(&self, key: &Digest, record: &StepRecord) -> Result<()> {
        let json = serde_json::to_string(record).map_err(|e| Error::BadStepRecord {
            key: *key,
            why: e.to_string(),
        })?;
        self.set_meta(KIND, &key.hex(), &json)
    }

    /// Removes the record of step `key`; `false` if there was none.
    pub fn remove_step_record(&self, key: &Digest) -> Result<bool> {
        self.remove_meta(KIND, &key.hex())
    }

    /// Marks the record of step `key` used now: a hit makes it the most recently used, so a
    /// prune to a size (`keep_storage`, the service's `--cache-max-size`) drops the least
    /// recently used first. Best effort: a record that cannot be touched stays as it was.
    pub fn touch_step_record(&self, key: &Digest) {
        let path = self.root().join("meta").join(KIND).join(key.hex());
        if let Ok(f) = fs_err::File::open(&path) {
            let _ = f.file().set_modified(SystemTime::now());
        }
    }

    /// Every step key with a record, with when it was last written or hit, oldest first.
    pub fn step_record_keys(&self) -> Result<Vec<(SystemTime, Digest)>> {
        Ok(self
            .meta_keys(KIND)?
            .into_iter()
            .filter_map(|(t, hex)| format!("sha256:{hex}").parse().ok().map(|d| (t, d)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_other_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = Digest::of(b"step");
        assert_eq!(store.step_record(&key).unwrap(), None);
        let record = StepRecord::new(vec![Digest::of(b"layer")], serde_json::json!({"x": 1}));
        store.set_step_record(&key, &record).unwrap();
        assert_eq!(store.step_record(&key).unwrap(), Some(record));
        assert_eq!(store.step_record_keys().unwrap()[0].1, key);
        // An older rbuild's untyped record, and a newer version.
        store
            .set_meta("cache", &key.hex(), r#"{"config":{},"cmd_set":false}"#)
            .unwrap();
        assert!(matches!(
            store.step_record(&key),
            Err(Error::BadStepRecord { .. })
        ));
        store
            .set_meta(
                "cache",
                &key.hex(),
                r#"{"version":2,"layers":[],"result":null}"#,
            )
            .unwrap();
        let err = store.step_record(&key).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
        assert!(store.remove_step_record(&key).unwrap());
    }
}
