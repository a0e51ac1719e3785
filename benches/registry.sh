#!/usr/bin/env bash
# Push and pull through a local registry (Debian's docker-registry on 127.0.0.1), timed with GNU
# time, against skopeo copying the same image. The image is the Debian minbase root filesystem
# fixtures/base/debian.sh caches (about 120 MB uncompressed, one layer).
#
#   benches/registry.sh [RBUILD]      (default target/release/rbuild)
set -euo pipefail
cd "$(dirname "$0")/.."
rbuild=${1:-target/release/rbuild}
rootfs=/var/tmp/rbuild-fixtures/debian-bookworm-minbase.tar
[ -f "$rootfs" ] || { echo "run fixtures/base/debian.sh first (it caches $rootfs)" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $reg 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/data}}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$work/config.yml" >/dev/null 2>&1 & reg=$!
until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done
host=127.0.0.1:$port
t() { local label=$1; shift; /usr/bin/time -f "$label: %e s, peak RSS %M KB" "$@" >/dev/null 2>"$work/t" || { cat "$work/t"; exit 1; }; tail -1 "$work/t"; }
"$rbuild" --root "$work/a" import "$rootfs" debian:bench >/dev/null
t "rbuild push, gzip (compresses the layer)" "$rbuild" --root "$work/a" push debian:bench "$host/debian:gzip"
t "rbuild push, zstd (compresses the layer)" "$rbuild" --root "$work/a" push --compression zstd debian:bench "$host/debian:zstd"
t "rbuild push again (all blobs there)" "$rbuild" --root "$work/a" push debian:bench "$host/debian:again"
t "rbuild pull, gzip (into an empty store, decompressed)" "$rbuild" --root "$work/b" pull "$host/debian:gzip"
t "rbuild pull, zstd (into an empty store, decompressed)" "$rbuild" --root "$work/c" pull "$host/debian:zstd"
t "rbuild pull again (nothing to fetch)" "$rbuild" --root "$work/b" pull "$host/debian:gzip"
t "skopeo copy to an OCI layout (kept compressed)" skopeo copy --src-tls-verify=false "docker://$host/debian:gzip" "oci:$work/skopeo:x"
