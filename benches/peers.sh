#!/usr/bin/env bash
# The peer benchmark: rbuild beside BuildKit (docker 20.10's dockerd) and buildah 1.28, all from
# Debian's packages, on the same busybox and debian:bookworm bases from a loopback registry, in
# every case of benches/peers/cases and every scenario; writes benches/RESULTS.md.
#
#   benches/peers.sh [CASE ...]       default: every case (small multistage bigctx cache nodemodules debian)
#
# env: RUNS (3), PEERS ("rbuild docker-buildkit buildah"), SCENARIOS ("cold noop change touch dep"),
#      RBUILD (target/release/rbuild, built if missing), PEERS_WORK (/tmp/rbuild-bench),
#      KEEP_PEERS=1 leaves the registry and dockerd running afterwards.
# Needs root (dockerd, buildah). dockerd runs with bridge none and no iptables; RUN steps of every
# builder use --network none. The whole run takes about 40 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
if [ -z "${RBUILD:-}" ]; then
  cargo build --release -p builder-cli
  RBUILD=$PWD/target/release/rbuild
fi
export RBUILD
export PEERS_WORK=${PEERS_WORK:-/tmp/rbuild-bench}
export RBUILD_ROOT=$PEERS_WORK/rbuild-store
export RBUILD_RESET_CMD="rm -rf $RBUILD_ROOT"
export PEERS=${PEERS:-rbuild docker-buildkit buildah}
export RUNS=${RUNS:-3}
PEERS_DEBIAN=1 "$here/peers/setup.sh"
[ "${KEEP_PEERS:-0}" = 1 ] || trap '"$here/peers/setup.sh" stop' EXIT
"$here/peers/bench.sh" "$@"
latest=$(ls -d "$PEERS_WORK"/results/* | sort | tail -1)
python3 "$here/peers/results.py" "$latest" \
  --command "RUNS=$RUNS PEERS=\"$PEERS\" benches/peers.sh $*" > "$here/RESULTS.md"
echo "wrote benches/RESULTS.md from $latest"
