//! The deterministic layer tar writer.

use std::cmp::Ordering;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::digest::Digest;
use crate::store::{self, Store};

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A file on disk, streamed when the layer is written.
    Path(PathBuf),
    /// Bytes in memory (heredocs, small generated files).
    Bytes(Vec<u8>),
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Its bytes.
        source: FileSource,
        /// Its size.
        size: u64,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, as written.
        target: String,
    },
    /// A hard link to an earlier entry of the same layer.
    Hardlink {
        /// That entry's path.
        target: String,
    },
    /// A named pipe (`mkfifo`).
    Fifo,
    /// A deletion of `path` from the layers below (`.wh.<name>`).
    Whiteout,
    /// The directory's contents in the layers below are hidden (`<dir>/.wh..wh..opq`).
    Opaque,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the image, relative (`usr/bin/app`), no trailing slash.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission and special bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes (`security.capability`), sorted by name when written.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// A directory at `path` with that mode, owner and time, and no extended attributes.
    pub fn dir(path: String, mode: u32, uid: u32, gid: u32, mtime: i64) -> Self {
        Self {
            path,
            kind: EntryKind::Dir,
            mode,
            uid,
            gid,
            mtime,
            xattrs: Vec::new(),
        }
    }
}

/// Options that change a layer's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TarOptions {
    /// Clamp every mtime to at most this (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

/// A layer written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// The digest of the uncompressed tar: the diff ID, and the blob's name in the store.
    pub diff_id: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Path order, component by component: a directory comes right before what it holds.
fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

fn tar_path(entry: &Entry) -> String {
    match &entry.kind {
        EntryKind::Whiteout => match entry.path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{}", entry.path),
        },
        EntryKind::Opaque => format!("{}/.wh..wh..opq", entry.path),
        EntryKind::Dir => format!("{}/", entry.path),
        _ => entry.path.clone(),
    }
}

/// Writes `entries` as a deterministic PAX tar into `out`, sorting them by path first.
pub fn write_tar<W: Write>(entries: &mut [Entry], out: W, opts: TarOptions) -> io::Result<W> {
    entries.sort_by(|a, b| {
        path_order(&a.path, &b.path).then_with(|| kind_rank(&a.kind).cmp(&kind_rank(&b.kind)))
    });
    first_link_holds_the_bytes(entries);
    let mut builder = tar::Builder::new(out);
    for entry in entries.iter() {
        append(&mut builder, entry, opts)?;
    }
    builder.into_inner()
}

/// A hard link must follow the entry it names in the tar, or it cannot be applied. The walks
/// that find links name the first one they meet, which path order may put later: in each group,
/// the entry first in order becomes the file and the others link to it.
fn first_link_holds_the_bytes(entries: &mut [Entry]) {
    let index: std::collections::HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let EntryKind::Hardlink { target } = &e.kind {
            if let Some(&t) = index.get(target) {
                groups.entry(t).or_default().push(i);
            }
        }
    }
    for (file, links) in groups {
        let Some(&first) = links.iter().min() else {
            continue;
        };
        if first > file || !matches!(entries[file].kind, EntryKind::File { .. }) {
            continue;
        }
        let head = entries[first].path.clone();
        let bytes = std::mem::replace(
            &mut entries[file].kind,
            EntryKind::Hardlink {
                target: head.clone(),
            },
        );
        entries[first].kind = bytes;
        let meta = entries[file].clone();
        entries[first].mode = meta.mode;
        entries[first].uid = meta.uid;
        entries[first].gid = meta.gid;
        entries[first].mtime = meta.mtime;
        entries[first].xattrs = meta.xattrs;
        for &l in links.iter().filter(|&&l| l != first) {
            entries[l].kind = EntryKind::Hardlink {
                target: head.clone(),
            };
        }
    }
}

/// An opaque marker sorts after its directory's own entry.
fn kind_rank(kind: &EntryKind) -> u8 {
    match kind {
        EntryKind::Opaque => 1,
        _ => 0,
    }
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &Entry,
    opts: TarOptions,
) -> io::Result<()> {
    let path = tar_path(entry);
    let mut header = tar::Header::new_ustar();
    let mtime = match opts.source_date_epoch {
        Some(epoch) => entry.mtime.min(epoch),
        None => entry.mtime,
    };
    header.set_mtime(u64::try_from(mtime.max(0)).unwrap_or(0));
    header.set_uid(u64::from(entry.uid));
    header.set_gid(u64::from(entry.gid));
    header.set_mode(entry.mode & 0o7777);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let (kind, size, link) = match &entry.kind {
        EntryKind::Dir => (tar::EntryType::Directory, 0, None),
        EntryKind::File { size, .. } => (tar::EntryType::Regular, *size, None),
        EntryKind::Symlink { target } => (tar::EntryType::Symlink, 0, Some(target.as_str())),
        EntryKind::Hardlink { target } => (tar::EntryType::Link, 0, Some(target.as_str())),
        EntryKind::Fifo => (tar::EntryType::Fifo, 0, None),
        EntryKind::Whiteout | EntryKind::Opaque => {
            header.set_mode(0);
            header.set_uid(0);
            header.set_gid(0);
            (tar::EntryType::Regular, 0, None)
        }
    };
    header.set_entry_type(kind);
    header.set_size(size);
    if header.set_path(&path).is_err() || path.len() > 100 {
        pax.push(("path".into(), path.clone().into_bytes()));
        header.set_path(truncate_name(&path))?;
    }
    if let Some(link) = link {
        // The tar crate rewrites some targets as it stores them (`/` becomes `//`): a target it
        // cannot hold byte for byte goes into a PAX record.
        let exact = header.set_link_name(link).is_ok()
            && header.link_name_bytes().as_deref() == Some(link.as_bytes());
        if link.len() > 100 || !exact {
            pax.push(("linkpath".into(), link.as_bytes().to_vec()));
            header.set_link_name(truncate_name(link))?;
        }
    }
    let mut xattrs = entry.xattrs.clone();
    xattrs.sort();
    for (name, value) in xattrs {
        pax.push((format!("SCHILY.xattr.{name}"), value));
    }
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    header.set_cksum();
    match &entry.kind {
        EntryKind::File {
            source: FileSource::Path(p),
            size,
        } => {
            let file = fs_err::File::open(p)?;
            let mut limited = file.take(*size);
            builder.append(&header, &mut limited)?;
        }
        EntryKind::File {
            source: FileSource::Bytes(b),
            ..
        } => builder.append(&header, b.as_slice())?,
        _ => builder.append(&header, io::empty())?,
    }
    Ok(())
}

/// The ustar name field when the real name lives in a PAX record: a stable stand-in.
fn truncate_name(path: &str) -> String {
    let mut end = path.len().min(99);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_owned()
}

/// Writes `entries` as a layer into the store (uncompressed), giving its diff ID.
pub fn write_layer(store: &Store, entries: &mut [Entry], opts: TarOptions) -> store::Result<Layer> {
    let writer = store.blob_writer()?;
    let writer = write_tar(entries, writer, opts).map_err(|source| store::Error::Io {
        path: store.root().join("blobs"),
        source,
    })?;
    let (diff_id, size) = writer.commit(None)?;
    Ok(Layer { diff_id, size })
}

/// How much of a layer [`write_layer_unpacked`] lets the unpacking thread fall behind: this
/// many chunks of [`TEE_CHUNK`] bytes.
const TEE_CHUNKS: usize = 4;
const TEE_CHUNK: usize = 1 << 20;

/// A writer that also hands every byte to a second thread, in chunks; once that thread stops
/// reading (it finished or gave way) the bytes only go to `inner`.
struct Tee<W> {
    inner: W,
    chunk: Vec<u8>,
    to: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl<W: Write> Tee<W> {
    fn pass(&mut self) {
        if let Some(to) = &self.to {
            let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(TEE_CHUNK));
            if to.send(chunk).is_err() {
                self.to = None;
            }
        }
    }

    /// The inner writer, after the last chunk went (the reader then sees the end).
    fn finish(mut self) -> W {
        if !self.chunk.is_empty() {
            self.pass();
        }
        self.inner
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.to.is_some() {
            self.chunk.extend_from_slice(&buf[..n]);
            if self.chunk.len() >= TEE_CHUNK {
                self.pass();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The reading end of a [`Tee`].
struct Chunks {
    from: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.from.recv() {
                Ok(next) => (self.chunk, self.at) = (next, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// [`write_layer`] that also unpacks the layer into the empty directory `upper` in the same
/// pass, on a second thread reading the bytes as they are written: with `over` (the layers
/// below, merged) as [`crate::snapshot::apply_layer_over`] does, else as
/// [`crate::snapshot::apply_tar`]. Each file is read once and written twice at the same time,
/// instead of written into the tar, then read back and written again.
///
/// Gives the layer and whether `upper` holds it; `false` when the unpack needs an overlay or
/// failed (`upper` is then partly written and is the caller's to discard). The layer itself
/// never depends on the unpack.
pub fn write_layer_unpacked(
    store: &Store,
    entries: &mut [Entry],
    opts: TarOptions,
    upper: &std::path::Path,
    over: Option<&std::path::Path>,
) -> store::Result<(Layer, bool)> {
    let (to, from) = std::sync::mpsc::sync_channel(TEE_CHUNKS);
    std::thread::scope(|scope| {
        let unpack = scope.spawn(move || {
            let reader = Chunks {
                from,
                chunk: Vec::new(),
                at: 0,
            };
            match over {
                Some(view) => super::apply::apply_tar_over(reader, upper, view),
                None => super::apply::apply_tar(reader, upper).map(|()| true),
            }
        });
        let tee = Tee {
            inner: store.blob_writer()?,
            chunk: Vec::with_capacity(TEE_CHUNK),
            to: Some(to),
        };
        let written = write_tar(entries, tee, opts).map_err(|source| store::Error::Io {
            path: store.root().join("blobs"),
            source,
        });
        // Dropping the sender (with the writer, on an error too) ends the unpack's input.
        let writer = written.map(Tee::finish);
        let unpacked = matches!(unpack.join(), Ok(Ok(true)));
        let (diff_id, size) = writer?.commit(None)?;
        Ok((Layer { diff_id, size }, unpacked))
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_hard_link_met_first_in_a_walk_but_later_in_order_is_reordered() {
        let entry = |path: &str, kind| Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            xattrs: Vec::new(),
        };
        // The walk met `app/hard` first; path order puts `app/a/f` before it.
        let mut entries = vec![
            entry(
                "app/hard",
                EntryKind::File {
                    source: FileSource::Bytes(b"x".to_vec()),
                    size: 1,
                },
            ),
            entry(
                "app/a/f",
                EntryKind::Hardlink {
                    target: "app/hard".into(),
                },
            ),
            entry(
                "app/z",
                EntryKind::Hardlink {
                    target: "app/hard".into(),
                },
            ),
        ];
        let tar = write_tar(&mut entries, Vec::new(), TarOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        crate::snapshot::apply_tar(tar.as_slice(), dir.path()).unwrap();
        for p in ["app/a/f", "app/hard", "app/z"] {
            assert_eq!(fs_err::read(dir.path().join(p)).unwrap(), b"x", "{p}");
        }
        let ino = |p: &str| nix::sys::stat::stat(&dir.path().join(p)).unwrap().st_ino;
        assert_eq!(ino("app/a/f"), ino("app/hard"));
        assert_eq!(ino("app/z"), ino("app/hard"));
    }

    use super::*;

    fn file(path: &str, body: &[u8], mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File {
                source: FileSource::Bytes(body.to_vec()),
                size: body.len() as u64,
            },
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime,
            xattrs: Vec::new(),
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 5,
            xattrs: Vec::new(),
        }
    }

    fn listing(tar_bytes: &[u8]) -> Vec<(String, u64, u64, u64, String)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut body = String::new();
                e.read_to_string(&mut body).unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    u64::from(h.mode().unwrap()),
                    body,
                )
            })
            .collect()
    }

    #[test]
    fn link_targets_are_kept_byte_for_byte() {
        for target in ["/", "/etc/", "a//b", "../x"] {
            let mut entries = vec![Entry {
                path: "l".into(),
                kind: EntryKind::Symlink {
                    target: target.into(),
                },
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: 1,
                xattrs: Vec::new(),
            }];
            let tar = write_tar(&mut entries, Vec::new(), TarOptions::default()).unwrap();
            let mut archive = tar::Archive::new(tar.as_slice());
            let entry = archive.entries().unwrap().next().unwrap().unwrap();
            let read = entry
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert_eq!(read, target);
        }
    }

    #[test]
    fn same_entries_any_order_same_bytes() {
        let mut a = vec![
            file("b/x", b"1", 10),
            dir("b"),
            file("a-c", b"2", 10),
            dir("a"),
            file("a/z", b"3", 10),
        ];
        let mut b = a.clone();
        b.reverse();
        let ta = write_tar(&mut a, Vec::new(), TarOptions::default()).unwrap();
        let tb = write_tar(&mut b, Vec::new(), TarOptions::default()).unwrap();
        assert_eq!(ta, tb);
        let names: Vec<String> = listing(&ta).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["a/", "a/z", "a-c", "b/", "b/x"]);
    }

    #[test]
    fn mtimes_are_clamped_and_owners_numeric() {
        let mut e = vec![file("new", b"x", 2_000_000_000), file("old", b"y", 100)];
        let t = write_tar(
            &mut e,
            Vec::new(),
            TarOptions {
                source_date_epoch: Some(1_000),
            },
        )
        .unwrap();
        let l = listing(&t);
        assert_eq!((l[0].1, l[1].1), (1_000, 100));
        let mut archive = tar::Archive::new(t.as_slice());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.username().unwrap(), Some(""));
            assert_eq!(h.groupname().unwrap(), Some(""));
        }
    }

    #[test]
    fn long_paths_whiteouts_links_and_xattrs() {
        let long = format!("{}/file", "d".repeat(150));
        let mut entries = vec![
            file(&long, b"long", 1),
            Entry {
                kind: EntryKind::Whiteout,
                ..file("etc/gone", b"", 1)
            },
            Entry {
                kind: EntryKind::Opaque,
                ..dir("var/cache")
            },
            Entry {
                kind: EntryKind::Symlink {
                    target: "/usr/bin/app".into(),
                },
                ..file("bin/app", b"", 1)
            },
            Entry {
                kind: EntryKind::Hardlink {
                    target: "bin/real".into(),
                },
                // After its target in path order (the other case is the test above).
                ..file("bin/real-hard", b"", 1)
            },
            Entry {
                xattrs: vec![("security.capability".into(), vec![1, 2, 3])],
                ..file("bin/real", b"r", 1)
            },
        ];
        let t = write_tar(&mut entries, Vec::new(), TarOptions::default()).unwrap();
        let names: Vec<String> = listing(&t).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "bin/app",
                "bin/real",
                "bin/real-hard",
                &long,
                "etc/.wh.gone",
                "var/cache/.wh..wh..opq"
            ]
        );
        let mut archive = tar::Archive::new(t.as_slice());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().ends_with("bin/real") {
                let ext: Vec<_> = entry
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|e| e.unwrap().key().unwrap().to_owned())
                    .collect();
                assert_eq!(ext, ["SCHILY.xattr.security.capability"]);
            }
            if entry.path().unwrap().ends_with("bin/real-hard") {
                assert_eq!(entry.header().entry_type(), tar::EntryType::Link);
                assert_eq!(
                    entry.link_name().unwrap().unwrap().to_string_lossy(),
                    "bin/real"
                );
            }
        }
    }

    #[test]
    fn a_layer_unpacked_as_it_is_written_is_the_layer_unpacked_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Bigger than the tee's chunks and its queue, so the unpack reads across many.
        let big: Vec<u8> = (0..TEE_CHUNK * (TEE_CHUNKS + 3))
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let entries = || {
            vec![
                Entry::dir("app".into(), 0o755, 0, 0, 5),
                file("app/big", &big, 7),
                file("app/small", b"small", 9),
                Entry {
                    path: "app/link".into(),
                    kind: EntryKind::Symlink {
                        target: "small".into(),
                    },
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    mtime: 3,
                    xattrs: Vec::new(),
                },
            ]
        };
        let (view, upper, after) = (
            dir.path().join("view"),
            dir.path().join("upper"),
            dir.path().join("after"),
        );
        for d in [&view, &upper, &after] {
            fs_err::create_dir(d).unwrap();
        }
        let opts = TarOptions::default();
        let (layer, unpacked) =
            write_layer_unpacked(&store, &mut entries(), opts, &upper, Some(&view)).unwrap();
        assert!(unpacked);
        // The layer's bytes are write_layer's, and the tree is what unpacking them gives.
        assert_eq!(layer, write_layer(&store, &mut entries(), opts).unwrap());
        crate::snapshot::apply_layer(&store, &layer.diff_id, &after).unwrap();
        let listing = |d: &std::path::Path| crate::snapshot::listing_digest(d).unwrap();
        assert_eq!(listing(&upper), listing(&after));
        assert_eq!(fs_err::read(upper.join("app/big")).unwrap(), big);
        // A layer the upper directory cannot hold alone (a whiteout) is still written whole;
        // the unpack gives way.
        let gone = dir.path().join("gone");
        fs_err::create_dir(&gone).unwrap();
        let mut whiteout = vec![file("app/.wh.small", b"", 1), file("app/big", &big, 7)];
        let (layer, unpacked) =
            write_layer_unpacked(&store, &mut whiteout.clone(), opts, &gone, Some(&after)).unwrap();
        assert!(!unpacked);
        assert_eq!(layer, write_layer(&store, &mut whiteout, opts).unwrap());
    }

    #[test]
    fn layer_lands_in_the_store_under_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut e = vec![file("hello", b"hi", 1)];
        let layer = write_layer(&store, &mut e, TarOptions::default()).unwrap();
        let bytes = store.read_blob(&layer.diff_id).unwrap();
        assert_eq!(Digest::of(&bytes), layer.diff_id);
        assert_eq!(bytes.len() as u64, layer.size);
    }
}
