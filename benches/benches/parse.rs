//! Parsing speed: a generated 10,000-line Dockerfile through `parse` and `parse_and_check`.
//! Target: under 50 ms for the 10,000 lines.

use std::fmt::Write;

use builder_core::dockerfile::{self, CheckOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A realistic mix: stages, continuations, heredocs, mounts, ENV/LABEL/ARG, COPY --from.
fn generate(lines: usize) -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut stage = 0;
    while s.lines().count() < lines {
        let _ = writeln!(s, "FROM ${{BASE}} AS stage{stage}");
        let _ = writeln!(s, "ARG VERSION=1.{stage}");
        let _ = writeln!(
            s,
            "ENV PATH=/opt/s{stage}/bin:$PATH LANG=C.UTF-8 \\\n    HOME=/home/app"
        );
        let _ = writeln!(
            s,
            "LABEL org.opencontainers.image.version=\"${{VERSION}}\" stage=\"{stage}\""
        );
        let _ = writeln!(
            s,
            "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    apt-get update && \\\n    # a comment inside\n    apt-get install -y --no-install-recommends curl ca-certificates && \\\n    rm -rf /var/lib/apt/lists/*"
        );
        let _ = writeln!(s, "WORKDIR /src/{stage}");
        let _ = writeln!(s, "COPY --chown=1000:1000 --chmod=0644 src/ ./src/");
        if stage > 0 {
            let _ = writeln!(s, "COPY --from=stage{} /out /prev", stage - 1);
        }
        let _ = writeln!(
            s,
            "RUN <<EOF\nset -e\necho building {stage}\nmake -j2 VERSION=$VERSION\nEOF"
        );
        let _ = writeln!(
            s,
            "HEALTHCHECK --interval=30s --timeout=3s CMD [\"curl\", \"-f\", \"http://localhost/\"]"
        );
        let _ = writeln!(s, "CMD [\"/usr/local/bin/app\", \"--stage\", \"{stage}\"]");
        stage += 1;
    }
    s
}

fn bench(c: &mut Criterion) {
    let src = generate(10_000);
    let lines = src.lines().count();
    let mut group = c.benchmark_group("parse_10k_lines");
    group.throughput(Throughput::Bytes(src.len() as u64));
    group.bench_function(format!("parse/{lines}"), |b| {
        b.iter(|| dockerfile::parse(std::hint::black_box(&src)).unwrap());
    });
    group.bench_function(format!("parse_and_check/{lines}"), |b| {
        b.iter(|| {
            dockerfile::parse_and_check(std::hint::black_box(&src), &CheckOptions::default())
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
