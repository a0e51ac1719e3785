//! Where a built image goes besides the store: `-o type=oci|docker|local|tar,dest=…`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::oci::{Compression, Image, write_docker_archive, write_oci_archive};
use crate::snapshot;
use crate::store::Store;

use super::error::io_at;
use super::{Error, Result};

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout tarball.
    Oci {
        /// The file to write.
        dest: PathBuf,
    },
    /// A `docker load` tarball.
    Docker {
        /// The file to write.
        dest: PathBuf,
    },
    /// The final root filesystem, as a directory.
    Local {
        /// The directory to fill.
        dest: PathBuf,
    },
    /// The final root filesystem, as a tarball.
    Tar {
        /// The file to write.
        dest: PathBuf,
    },
}

impl Output {
    /// Reads docker's `--output` syntax: `type=oci,dest=out.tar`, or a bare path (local).
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        if !spec.contains('=') {
            return Ok(Self::Local { dest: spec.into() });
        }
        let mut kind = None;
        let mut dest = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_owned()),
                Some(("dest", v)) => dest = Some(PathBuf::from(v)),
                Some((k, _)) => {
                    return Err(format!("unknown output option `{k}` (known: type, dest)"));
                }
                None => return Err(format!("`{field}` is not key=value")),
            }
        }
        let dest = dest.ok_or("missing `dest=`")?;
        match kind.as_deref() {
            Some("oci") => Ok(Self::Oci { dest }),
            Some("docker") => Ok(Self::Docker { dest }),
            Some("local") | None => Ok(Self::Local { dest }),
            Some("tar") => Ok(Self::Tar { dest }),
            Some(other) => Err(format!(
                "unknown output type `{other}` (known: oci, docker, local, tar)"
            )),
        }
    }
}

/// Writes a file through a temp file beside it, renamed into place when complete.
fn atomic_file(dest: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_at(&dir))?;
    let mut buf = std::io::BufWriter::with_capacity(1 << 20, tmp);
    write(&mut buf)?;
    let tmp = buf.into_inner().map_err(|e| Error::Io {
        path: dest.to_owned(),
        source: e.into_error(),
    })?;
    tmp.persist(dest).map_err(|e| Error::Io {
        path: dest.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// Exports a multi-platform build as `output`: an OCI layout whose index names each
/// platform's image (`type=oci`); `type=local` and `type=tar` write each platform's files
/// under a directory of its name (`linux_arm64/`), as BuildKit does. `type=docker` holds one
/// image only and is refused.
///
/// # Errors
/// As [`export`]; a docker archive.
pub fn export_index(
    store: &Store,
    multi: &super::MultiOutput,
    output: &Output,
    names: &[String],
    compression: Compression,
    mtime: u64,
) -> Result<()> {
    match output {
        Output::Oci { dest } => atomic_file(dest, |w| {
            crate::oci::write_oci_index_archive(
                store,
                &multi.index.entries,
                names.first().map(String::as_str),
                compression,
                mtime,
                w,
            )?;
            Ok(())
        }),
        Output::Docker { .. } => Err(Error::Unsupported {
            what: "a docker archive of several platforms (use -o type=oci)".into(),
        }),
        Output::Local { dest } | Output::Tar { dest } => {
            for (platform, out) in &multi.outputs {
                let dir = format!(
                    "{}_{}{}",
                    platform.os,
                    platform.architecture,
                    platform
                        .variant
                        .as_deref()
                        .map(|v| format!("_{v}"))
                        .unwrap_or_default()
                );
                let one = match output {
                    Output::Local { .. } => Output::Local {
                        dest: dest.join(&dir),
                    },
                    _ => Output::Tar {
                        dest: dest.join(format!("{dir}.tar")),
                    },
                };
                if let Output::Tar { .. } = one {
                    fs_err::create_dir_all(dest).map_err(io_at(dest))?;
                }
                export(store, &out.image, &one, names, compression, mtime)?;
            }
            Ok(())
        }
    }
}

/// Exports `image` as `output`. `names` are the image's tags; `mtime` the archive entries' time.
pub fn export(
    store: &Store,
    image: &Image,
    output: &Output,
    names: &[String],
    compression: Compression,
    mtime: u64,
) -> Result<()> {
    match output {
        Output::Oci { dest } => atomic_file(dest, |w| {
            write_oci_archive(
                store,
                image,
                names.first().map(String::as_str),
                compression,
                mtime,
                w,
            )?;
            Ok(())
        }),
        Output::Docker { dest } => atomic_file(dest, |w| {
            write_docker_archive(store, image, names, mtime, w)?;
            Ok(())
        }),
        Output::Local { dest } => {
            fs_err::create_dir_all(dest).map_err(io_at(dest))?;
            for d in image.diff_ids() {
                snapshot::apply_layer(store, d, dest)?;
            }
            Ok(())
        }
        Output::Tar { dest } => {
            let scratch = store.work_dir("export-")?;
            for d in image.diff_ids() {
                snapshot::apply_layer(store, d, scratch.path())?;
            }
            let mut entries = tree_entries(scratch.path(), i64::try_from(mtime).unwrap_or(0))?;
            // Rootless, the unpacked files are all ours: they are written as root's.
            super::env::rootless_owners(&mut entries);
            atomic_file(dest, |w| {
                snapshot::write_tar(&mut entries, w, snapshot::TarOptions::default())
                    .map_err(io_at(dest))?;
                Ok(())
            })
        }
    }
}

/// The files under `root` as layer entries (sorted when written), hard links detected, times
/// set to `mtime`.
fn tree_entries(root: &Path, mtime: i64) -> Result<Vec<snapshot::Entry>> {
    use crate::context::{Kind, tree_walker};
    use snapshot::{Entry, EntryKind, FileSource};
    let mut seen: std::collections::HashMap<(u64, u64), String> = std::collections::HashMap::new();
    let mut out = Vec::new();
    tree_walker(root)?.each(|found| {
        if found.rel.is_empty() {
            return Ok(());
        }
        let info = found.info;
        let kind = match info.kind {
            Kind::Dir => EntryKind::Dir,
            Kind::Symlink => EntryKind::Symlink {
                target: info.link.clone().unwrap_or_default(),
            },
            Kind::File => match seen.get(&(info.dev, info.ino)) {
                Some(first) => EntryKind::Hardlink {
                    target: first.clone(),
                },
                None => {
                    seen.insert((info.dev, info.ino), found.rel.clone());
                    EntryKind::File {
                        source: FileSource::Path(found.path),
                        size: info.size,
                    }
                }
            },
            Kind::Other => return Ok(()),
        };
        out.push(Entry {
            path: found.rel,
            kind,
            mode: info.mode,
            uid: info.uid,
            gid: info.gid,
            mtime,
            xattrs: Vec::new(),
        });
        Ok::<_, super::Error>(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        assert_eq!(
            Output::parse("type=oci,dest=a.tar").unwrap(),
            Output::Oci {
                dest: "a.tar".into()
            }
        );
        assert_eq!(
            Output::parse("out").unwrap(),
            Output::Local { dest: "out".into() }
        );
        assert!(Output::parse("type=s3,dest=x").is_err());
        assert!(Output::parse("type=oci").is_err());
    }
}
