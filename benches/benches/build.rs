//! Build speed on a generated context of 5,000 files / 200 MB (deterministic content):
//! context hashing cold and stat-cached, layer writing, gzip and zstd export, and a no-op
//! rebuild. Targets (issue 3): no-op rebuild ≤ 50 ms; zstd ≥ 300 MB/s, gzip ≥ 150 MB/s.
//!
//! `cargo bench -p rbuild-benches --bench build` (set `RBUILD_BENCH_FILES` / `RBUILD_BENCH_MB` to
//! change the context).

use std::path::Path;

use builder_core::context::{Context, StatCache, hash_file};
use builder_core::oci::compressed_layer;
use builder_core::snapshot::{Entry, EntryKind, FileSource, TarOptions, write_layer};
use builder_core::solve::{BuildRequest, Builder, Compression, Store};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 5,000 files in 50 directories, sizes varied, 200 MB in all; half compressible text, half noise.
fn generate(dir: &Path, files: usize, total_mb: usize) {
    let total = total_mb * 1024 * 1024;
    let mut seed: u64 = 42;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed
    };
    for i in 0..files {
        let size = total / files / 2
            + usize::try_from(next() % (total as u64 / files as u64)).unwrap_or(0);
        let mut body = Vec::with_capacity(size);
        if i % 2 == 0 {
            while body.len() < size {
                body.extend_from_slice(
                    format!(
                        "line {} of file {i}: some text that compresses\n",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        } else {
            while body.len() < size {
                body.extend_from_slice(&next().to_le_bytes());
            }
        }
        body.truncate(size);
        let path = dir.join(format!("src/d{:02}/f{i:05}.dat", i % 50));
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, body).unwrap();
    }
    fs_err::write(dir.join("Dockerfile"), "FROM scratch\nCOPY src/ /app/\n").unwrap();
}

fn hash_all(ctx: &Context, cache: &mut StatCache) -> usize {
    let entries = ctx.walk(".").unwrap();
    for e in &entries {
        hash_file(&e.path, &e.info, cache).unwrap();
    }
    entries.len()
}

fn bench(c: &mut Criterion) {
    let files = env_usize("RBUILD_BENCH_FILES", 5_000);
    let mb = env_usize("RBUILD_BENCH_MB", 200);
    let work = tempfile::tempdir().unwrap();
    let ctx_dir = work.path().join("ctx");
    generate(&ctx_dir, files, mb);
    let bytes: u64 = walk_size(&ctx_dir);
    let store = Store::open(work.path().join("root")).unwrap();
    let ctx = Context::open(&ctx_dir, None).unwrap();

    let mut g = c.benchmark_group(format!("context_{files}_files_{mb}MB"));
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("hash_cold", |b| {
        b.iter(|| hash_all(&ctx, &mut StatCache::default()));
    });
    let mut warm = StatCache::default();
    hash_all(&ctx, &mut warm);
    g.bench_function("hash_stat_cached", |b| b.iter(|| hash_all(&ctx, &mut warm)));

    let entries: Vec<Entry> = ctx
        .walk("src")
        .unwrap()
        .into_iter()
        .filter(|e| !e.rel.is_empty())
        .map(|e| Entry {
            kind: match e.info.kind {
                builder_core::context::Kind::Dir => EntryKind::Dir,
                _ => EntryKind::File {
                    source: FileSource::Path(e.path.clone()),
                    size: e.info.size,
                },
            },
            path: format!("app/{}", e.rel),
            mode: e.info.mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        })
        .collect();
    g.bench_function("layer_write_uncompressed", |b| {
        b.iter(|| write_layer(&store, &mut entries.clone(), TarOptions::default()).unwrap());
    });
    let layer = write_layer(&store, &mut entries.clone(), TarOptions::default()).unwrap();
    for (name, comp) in [
        ("export_gzip", Compression::Gzip),
        ("export_zstd", Compression::Zstd),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                // Forget the remembered compressed blob so each iteration compresses.
                let _ = fs_err::remove_dir_all(store.root().join("meta"));
                compressed_layer(&store, &layer.diff_id, comp).unwrap()
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rebuild");
    g.sample_size(20);
    let builder = Builder::new(store.clone());
    let req = BuildRequest {
        context: ctx_dir.clone(),
        ..BuildRequest::default()
    };
    builder.build(&req, &mut |_| {}).unwrap();
    g.bench_function("noop_rebuild", |b| {
        b.iter(|| builder.build(&req, &mut |_| {}).unwrap());
    });
    g.finish();
}

fn walk_size(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs_err::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            walk_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

criterion_group!(benches, bench);
criterion_main!(benches);
