#!/usr/bin/env bash
# Peak memory and wall time of real builds on the benchmark context (GNU time):
#   benches/rss.sh [path/to/rbuild]
set -euo pipefail
rbuild=${1:-target/release/rbuild}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$(dirname "$0")/bigctx.py" "$work/ctx"
measure() {
  local label=$1; shift
  local root=(--root "$work/root")
  if [ "$1" = --root ]; then root=(--root "$2"); shift 2; fi
  /usr/bin/time -f "$label: %e s wall, %M KiB peak RSS" "$rbuild" "${root[@]}" "$@" 2>&1 >/dev/null | tail -1
}
measure "cold build (COPY of the context into a layer)" build -q -t big:1 "$work/ctx"
measure "no-op rebuild" build -q -t big:1 "$work/ctx"
measure "OCI export, zstd" save -o "$work/a.tar" --compression zstd big:1
measure "OCI export, gzip" save -o "$work/b.tar" --compression gzip big:1
measure "build + export in one, new store" --root "$work/root2" build -q -o "type=oci,dest=$work/c.tar" "$work/ctx"
