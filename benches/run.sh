#!/usr/bin/env bash
# What the RUN sandbox costs: wall time of a build whose only step is `RUN true`, run again and
# again with --no-cache, for each network, median of N runs (default 20); then the same RUN
# under each --isolation (namespaces, chroot: a copy of the root filesystem per RUN) on busybox
# and, when its fixture is cached or RBUILD_BENCH_DEBIAN=1, on a Debian minbase root (what the
# copy costs on a real base):
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

# Isolation: --network host for both (chroot shares the builder's network anyway). chroot runs
# only in a container; this machine is one.
median_of() {
  local ctx=$1 isolation=$2 times=()
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$rbuild" --root "$work/root" build -q --no-cache --network host --isolation "$isolation" "$ctx" >/dev/null 2>&1 || {
      echo "the build failed under --isolation $isolation" >&2; return 1; }
    times+=($(( ($(date +%s%N) - start) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (${#times[@]} + 1) / 2 ))p"
}
bases=(busybox)
if [ -s "${RBUILD_FIXTURE_CACHE:-/var/tmp/rbuild-fixtures}/debian-bookworm-minbase.tar" ] || [ "${RBUILD_BENCH_DEBIAN:-}" = 1 ]; then
  "$(dirname "$0")/../fixtures/base/debian.sh" "$rbuild" --root "$work/root" >/dev/null
  bases+=(debian:bookworm)
fi
for base in "${bases[@]}"; do
  mkdir -p "$work/iso"
  printf 'FROM %s\nRUN true\n' "$base" > "$work/iso/Dockerfile"
  for isolation in namespaces chroot; do
    median=$(median_of "$work/iso" "$isolation") || continue
    echo "RUN true on $base, --isolation $isolation: median ${median} ms over $runs builds"
  done
done
