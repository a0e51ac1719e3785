#!/usr/bin/env bash
# What the RUN sandbox costs: wall time of a build whose only step is `RUN true`, run again and
# again with --no-cache, for each network, median of N runs (default 20):
#   benches/run.sh [path/to/rbuild] [N]
# Compare two binaries (before/after a sandbox change) by running it with each.
set -euo pipefail
rbuild=${1:-target/release/rbuild}
runs=${2:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$(dirname "$0")/../fixtures/base/busybox.sh" "$rbuild" --root "$work/root" >/dev/null
mkdir -p "$work/ctx"
printf 'FROM busybox\nRUN true\n' > "$work/ctx/Dockerfile"
for network in default none host; do
  times=()
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$rbuild" --root "$work/root" build -q --no-cache --network "$network" "$work/ctx" >/dev/null 2>&1 || {
      echo "$network: the build failed (an old binary may not take --network $network)"; continue 2; }
    times+=($(( ($(date +%s%N) - start) / 1000000 )))
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (${#times[@]} + 1) / 2 ))p")
  echo "RUN true, --network $network: median ${median} ms over ${#times[@]} builds"
done
