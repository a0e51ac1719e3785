//! The snapshotter's hot paths (issue 16): unpacking a layer into its directory, mounting a
//! read-only overlay of a chain of layer directories, a COPY's layer (tar and digest, then its
//! directory; and the one-pass form), and reading a RUN's overlay upper directory back as a layer.
//!
//! `cargo bench -p rbuild-benches --bench snapshot` (as root: the overlay benchmark mounts;
//! `RBUILD_BENCH_LAYER_FILES` sets the files per layer, 2,000 by default).

use std::path::{Path, PathBuf};

use builder_core::snapshot::{
    Entry, EntryKind, FileSource, TarOptions, apply_tar, upper_entries, write_layer,
    write_layer_unpacked,
};
use builder_core::solve::Store;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn files() -> usize {
    std::env::var("RBUILD_BENCH_LAYER_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// `n` small files (100 B to 4 KiB) in a tree four levels deep, as a package's sources are.
fn generate(dir: &Path, n: usize) {
    for i in 0..n {
        let path = dir.join(format!("m{}/n{}/o{}/f{i:05}.js", i % 7, i % 13, i % 5));
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        let size = 100 + (i * 7919) % 4000;
        fs_err::write(path, format!("// file {i}\n").repeat(size / 12 + 1)).unwrap();
    }
}

/// The entries of a COPY of `dir` to `/app`.
fn entries(dir: &Path) -> Vec<Entry> {
    let mut out = vec![Entry {
        path: "app".into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: Vec::new(),
    }];
    let mut stack = vec![(dir.to_owned(), "app".to_owned())];
    while let Some((d, rel)) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = format!("{rel}/{}", e.file_name().to_string_lossy());
            let m = e.metadata().unwrap();
            let kind = if m.is_dir() {
                stack.push((e.path(), name.clone()));
                EntryKind::Dir
            } else {
                EntryKind::File {
                    source: FileSource::Path(e.path()),
                    size: m.len(),
                }
            };
            let mode = if m.is_dir() { 0o755 } else { 0o644 };
            out.push(Entry {
                path: name,
                kind,
                mode,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Vec::new(),
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let n = files();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    generate(&src, n);
    let store = Store::open(work.path().join("store")).unwrap();
    let layer = write_layer(&store, &mut entries(&src), TarOptions::default()).unwrap();
    let blob = store.root().join("blobs/sha256").join(layer.diff_id.hex());

    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    let fresh = |name: &str| -> PathBuf {
        let d = work.path().join(name);
        let _ = fs_err::remove_dir_all(&d);
        fs_err::create_dir_all(&d).unwrap();
        d
    };

    g.bench_function("layer unpack into its directory", |b| {
        b.iter(|| {
            let d = fresh("unpack");
            apply_tar(fs_err::File::open(&blob).unwrap(), &d).unwrap();
        });
    });

    // The same tar unpacked by GNU tar, as the floor of what the filesystem costs.
    g.bench_function("reference: GNU tar -x of the same layer", |b| {
        b.iter(|| {
            let d = fresh("gnutar");
            let ok = std::process::Command::new("tar")
                .arg("-xf")
                .arg(&blob)
                .arg("-C")
                .arg(&d)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        });
    });

    g.bench_function("COPY: layer tar and digest, then its directory", |b| {
        b.iter(|| {
            let layer = write_layer(&store, &mut entries(&src), TarOptions::default()).unwrap();
            let d = fresh("copy");
            apply_tar(store.open_blob(&layer.diff_id).unwrap(), &d).unwrap();
        });
    });

    // What a COPY a later step reads does now: the tar, its digest and the directory in one
    // pass over the sources, the directory written on a second thread.
    g.bench_function(
        "COPY one pass: layer tar, digest and directory together",
        |b| {
            b.iter(|| {
                let d = fresh("copy1");
                let (_, unpacked) = write_layer_unpacked(
                    &store,
                    &mut entries(&src),
                    TarOptions::default(),
                    &d,
                    None,
                )
                .unwrap();
                assert!(unpacked);
            });
        },
    );

    // A chain of 20 layer directories, each with a file of its own, under a read-only view.
    let lowers: Vec<PathBuf> = (0..20)
        .map(|i| {
            let d = fresh(&format!("layer{i:02}"));
            fs_err::write(d.join(format!("l{i}")), b"x").unwrap();
            d
        })
        .collect();
    let view = fresh("view");
    if builder_core::fs::mount_overlay(&lowers, None, &view).is_ok() {
        builder_core::fs::detach_mount(&view).unwrap();
        g.bench_function("overlay view of 20 layers: mount and detach", |b| {
            b.iter(|| {
                builder_core::fs::mount_overlay(&lowers, None, &view).unwrap();
                builder_core::fs::detach_mount(&view).unwrap();
            });
        });
    } else {
        eprintln!("overlay benchmark skipped: overlayfs does not mount here (not root?)");
    }

    // An upper directory as a RUN leaves it: the generated tree, read back as layer entries and
    // written as the layer.
    g.bench_function("RUN's upper directory read as a layer", |b| {
        b.iter(|| {
            let mut e = upper_entries(&src, &[]).unwrap();
            write_layer(&store, &mut e, TarOptions::default()).unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
