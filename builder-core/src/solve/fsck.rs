//! `rbuild fsck`: checks that everything the store holds is whole and that every reference in it
//! leads somewhere, and with `repair` removes what is broken so the next build recreates it.
//!
//! Checked, in order (a repair early on can break a reference checked later, which is then
//! removed too): every blob's digest (full check only); every tag → manifest → config →
//! layers; every step-cache record's layers; every compressed-form record; every snapshot's
//! completion record (and, full check only, its listing).

use crate::digest::Digest;
use crate::store::Store;

use super::Result;
use super::error::io_at;

/// What to check and whether to repair.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Remove what is broken (under the store's exclusive lock).
    pub repair: bool,
    /// Only the cheap checks: no blob is hashed and no snapshot tree walked (what the service
    /// runs at start).
    pub quick: bool,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, in words, naming the blob, tag, record or snapshot.
    pub what: String,
    /// Whether `repair` removed it.
    pub repaired: bool,
}

/// What fsck looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Blobs hashed.
    pub blobs: usize,
    /// Tags followed.
    pub tags: usize,
    /// Step-cache records checked.
    pub cache_records: usize,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

struct Checker<'a> {
    store: &'a Store,
    repair: bool,
    report: FsckReport,
}

impl Checker<'_> {
    /// Records a problem; with `repair`, runs `fix` first.
    fn found(&mut self, what: String, fix: impl FnOnce() -> Result<()>) -> Result<()> {
        let repaired = if self.repair {
            fix()?;
            true
        } else {
            false
        };
        self.report.problems.push(Problem { what, repaired });
        Ok(())
    }

    fn blobs(&mut self) -> Result<()> {
        let bad = self.store.verify_blobs()?;
        self.report.blobs = crate::store::entry_count(&self.store.root().join("blobs/sha256"));
        for (expected, actual) in bad {
            let path = self.store.blob_path(&expected);
            let what = match actual {
                Some(actual) => {
                    format!("blob {expected} is corrupt: its content hashes to {actual}")
                }
                None => format!("`{}` is not named by a digest", path.display()),
            };
            self.found(what, || {
                fs_err::remove_file(&path).map_err(io_at(&path))?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Why `image`'s blobs are not all there, if they are not.
    fn missing_layers(&self, diff_ids: &[Digest]) -> Option<Digest> {
        diff_ids.iter().copied().find(|d| !self.store.has_blob(d))
    }

    fn tags(&mut self) -> Result<()> {
        for (name, digest) in self.store.tag_entries()? {
            self.report.tags += 1;
            let broken = match digest {
                Err(e) => Some(format!("tag `{name}`: {e}")),
                Ok(d) => match crate::oci::tagged_images(self.store, d) {
                    Err(e) => Some(format!("tag `{name}` → manifest {d}: {e}")),
                    Ok((images, _)) => images.iter().find_map(|image| {
                        self.missing_layers(image.diff_ids()).map(|l| {
                            format!(
                                "tag `{name}` → manifest {}: layer {l} is not in the store",
                                image.manifest_digest
                            )
                        })
                    }),
                },
            };
            if let Some(what) = broken {
                let store = self.store;
                self.found(what, || {
                    store.remove_tag(&name)?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    fn cache_records(&mut self) -> Result<()> {
        for (_, key) in self.store.step_record_keys()? {
            self.report.cache_records += 1;
            let broken = match self.store.step_record(&key) {
                Err(e) => Some(e.to_string()),
                Ok(None) => None, // removed meanwhile
                Ok(Some(record)) => self.missing_layers(&record.layers).map(|l| {
                    format!(
                        "step-cache record {} names layer {l}, which is not in the store",
                        key.hex()
                    )
                }),
            };
            if let Some(what) = broken {
                let store = self.store;
                self.found(what, || {
                    store.remove_step_record(&key)?;
                    Ok(())
                })?;
            }
        }
        for kind in ["gzip", "zstd"] {
            for (_, key) in self.store.meta_keys(kind)? {
                let value = self.store.meta(kind, &key)?.unwrap_or_default();
                let target = value.trim().parse::<Digest>().ok();
                if target.is_none_or(|t| !self.store.has_blob(&t)) {
                    let what = format!(
                        "the {kind} form of layer sha256:{key} names blob `{}`, which is not in the store",
                        value.trim()
                    );
                    let store = self.store;
                    self.found(what, || {
                        store.remove_meta(kind, &key)?;
                        Ok(())
                    })?;
                }
            }
        }
        Ok(())
    }

    fn snapshots(&mut self, quick: bool) -> Result<()> {
        let mut paths = Vec::new();
        for dir in super::snapshots::all_dirs(self.store) {
            if let Ok(entries) = fs_err::read_dir(&dir) {
                paths.extend(entries.flatten().map(|e| e.path()));
            }
        }
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == "empty" {
                continue;
            }
            self.report.snapshots += 1;
            let why = if format!("sha256:{name}").parse::<Digest>().is_err() {
                Some("it is not named by a chain ID".to_owned())
            } else if quick {
                (!path.join("complete").is_file()).then(|| {
                    "it has no completion record (a build was killed making it)".to_owned()
                })
            } else {
                super::snapshots::check(&path, &name)
            };
            if let Some(why) = why {
                let store = self.store;
                self.found(format!("snapshot {name}: {why}"), || {
                    super::snapshots::discard(store, &path)
                })?;
            }
        }
        Ok(())
    }
}

/// Checks the store (under its shared lock, or its exclusive lock to repair).
pub fn fsck(store: &Store, opts: FsckOptions) -> Result<FsckReport> {
    let _lock = if opts.repair {
        store.lock_exclusive()?
    } else {
        store.lock_shared()?
    };
    let mut c = Checker {
        store,
        repair: opts.repair,
        report: FsckReport::default(),
    };
    if !opts.quick {
        c.blobs()?;
    }
    c.tags()?;
    c.cache_records()?;
    c.snapshots(opts.quick)?;
    if opts.repair {
        store.clean_tmp()?;
    }
    Ok(c.report)
}
