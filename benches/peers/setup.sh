#!/usr/bin/env bash
# Idempotent setup of the peer builders and the local base images.
#
#   ./setup.sh          install packages, build base images, start registry + dockerd
#   ./setup.sh status   show what is running
#   ./setup.sh stop     stop the registry and dockerd started here (by their PIDs)
#
# env: PEERS_WORK (default /tmp/rbuild-peers), PEERS_REGISTRY (127.0.0.1:5000),
#      PEERS_DEBIAN=0 to skip the debootstrap'd debian:bookworm base (needs the
#      Debian mirror that apt uses; ~40 s).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKGS="buildah podman docker.io umoci skopeo docker-registry runc busybox-static debootstrap hyperfine time"
mkdir -p "$W/logs" "$W/base" "$W/registry/data" "$W/docker"

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
registry_up() { curl -fsS "http://$REG/v2/" >/dev/null 2>&1; }
docker_up() { [ -S "$DOCKER_SOCK" ] && $DOCKER version >/dev/null 2>&1; }
in_registry() { skopeo inspect --raw --tls-verify=false "docker://$REG/$1" >/dev/null 2>&1; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); log "  took $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s: $*"; }

stop_all() {
  local f
  for f in "$W/docker/dockerd.pid" "$W/registry/pid"; do
    if pid_alive "$f"; then log "stopping pid $(cat "$f") ($f)"; kill "$(cat "$f")"; fi
  done
  for _ in $(seq 1 30); do
    pid_alive "$W/docker/dockerd.pid" || pid_alive "$W/registry/pid" || break; sleep 0.5
  done
  rm -f "$W/registry/pid"
}

status() {
  if registry_up; then echo "registry: up on $REG (pid $(cat "$W/registry/pid" 2>/dev/null || echo '?'))"
    echo "  catalog: $(curl -fsS "http://$REG/v2/_catalog")"; else echo "registry: down"; fi
  if docker_up; then echo "dockerd: up, DOCKER_HOST=unix://$DOCKER_SOCK (pid $(cat "$W/docker/dockerd.pid"))"
  else echo "dockerd: down"; fi
}

case ${1:-up} in
  stop) stop_all; exit 0 ;;
  status) status; exit 0 ;;
  up) ;;
  *) echo "usage: $0 [up|status|stop]" >&2; exit 2 ;;
esac

# 1. packages -----------------------------------------------------------------
missing=""
for p in $PKGS curl jq python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >"$W/logs/apt.log" 2>&1
fi
# Debian's docker.io postinst may leave systemd units enabled; nothing here uses them.

# 2. busybox base image (reproducible: same busybox-static -> same digests) -------
BB_OCI=$W/base/busybox-oci
if [ ! -f "$BB_OCI/index.json" ] || [ /bin/busybox -nt "$BB_OCI/index.json" ]; then
  log "building busybox OCI layout in $BB_OCI"
  rm -rf "$BB_OCI"
  timed python3 "$PEERS_DIR/mkbase_busybox.py" "$BB_OCI" latest /bin/busybox > "$W/base/busybox.json"
  (cd "$BB_OCI" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$W/base/busybox.oci.tar" .)
  log "  $(cat "$W/base/busybox.json")"
fi

# 3. registry ---------------------------------------------------------------------
if ! registry_up; then
  cat > "$W/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry/data
  delete:
    enabled: true
http:
  addr: $REG
  secret: rbuild-peers-local-only
EOF
  log "starting docker-registry on $REG"
  setsid docker-registry serve "$W/registry/config.yml" >"$W/logs/registry.log" 2>&1 </dev/null &
  echo $! > "$W/registry/pid"
  for _ in $(seq 1 50); do registry_up && break; sleep 0.1; done
  registry_up || { echo "registry did not come up; see $W/logs/registry.log" >&2; exit 1; }
fi
if ! in_registry busybox:latest; then
  log "pushing $REG/busybox:latest"
  timed skopeo copy -q --dest-tls-verify=false "oci:$BB_OCI:latest" "docker://$REG/busybox:latest"
fi

# 4. debian:bookworm (debootstrap --variant=minbase) -----------------------------
if [ "${PEERS_DEBIAN:-1}" != 0 ] && ! in_registry debian:bookworm; then
  D=$W/debian
  # the mirror apt already uses (deb822 sources first, then sources.list)
  mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
  mirror=${mirror:-$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
  [ -n "$mirror" ] || { echo "no Debian mirror found in the apt config; set DEBIAN_MIRROR" >&2; exit 1; }
  if [ ! -x "$D/rootfs/bin/bash" ]; then
    log "debootstrap --variant=minbase bookworm from $mirror (log: $W/logs/debootstrap.log)"
    rm -rf "$D/rootfs"; mkdir -p "$D"
    bootstrap() { debootstrap --variant=minbase bookworm "$D/rootfs" "$mirror" >"$W/logs/debootstrap.log" 2>&1; }
    timed bootstrap
    # trim like the official images: no .debs, no apt lists, no device nodes
    rm -f "$D/rootfs"/var/cache/apt/archives/*.deb "$D/rootfs"/var/cache/apt/*.bin
    rm -rf "$D/rootfs"/var/lib/apt/lists/* "$D/rootfs"/dev/*
    mkdir -p "$D/rootfs/var/lib/apt/lists/partial"
  fi
  log "packing debian rootfs ($(du -sh "$D/rootfs" | cut -f1)) with umoci"
  rm -rf "$D/oci" "$D/bundle"
  pack() {
    umoci init --layout "$D/oci" && umoci new --image "$D/oci:bookworm" &&
    umoci unpack --image "$D/oci:bookworm" "$D/bundle" >/dev/null &&
    cp -a "$D/rootfs/." "$D/bundle/rootfs/" &&
    umoci repack --image "$D/oci:bookworm" "$D/bundle" &&
    umoci config --image "$D/oci:bookworm" --os linux --architecture amd64 --config.cmd=bash \
      --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env=LANG=C.UTF-8 &&
    umoci gc --layout "$D/oci" && rm -rf "$D/bundle"
  }
  timed pack
  log "  OCI layout: $(du -sh "$D/oci" | cut -f1)"
  timed skopeo copy -q --dest-tls-verify=false "oci:$D/oci:bookworm" "docker://$REG/debian:bookworm"
fi

# 5. dockerd (private data-root, own socket, no bridge, no iptables) --------------
if ! docker_up; then
  cat > "$W/docker/daemon.json" <<EOF
{
  "data-root": "$W/docker/data",
  "exec-root": "$W/docker/exec",
  "pidfile": "$W/docker/dockerd.pid",
  "hosts": ["unix://$DOCKER_SOCK"],
  "insecure-registries": ["$REG"],
  "storage-driver": "overlay2",
  "bridge": "none",
  "iptables": false,
  "ip-forward": false,
  "ip-masq": false,
  "features": {"buildkit": true}
}
EOF
  log "starting dockerd (DOCKER_HOST=unix://$DOCKER_SOCK)"
  setsid "$DOCKERD_BIN" --config-file "$W/docker/daemon.json" >"$W/logs/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 100); do docker_up && break; sleep 0.2; done
  docker_up || { echo "dockerd did not come up; see $W/logs/dockerd.log" >&2; exit 1; }
fi

mkdir -p "$W/buildah" "$W/podman"
status
echo "versions: $(buildah --version | cut -d' ' -f1-3); podman $(podman --version | cut -d' ' -f3);" \
  "docker $($DOCKER version -f '{{.Server.Version}}'); $(runc --version | head -1); hyperfine $(hyperfine --version | cut -d' ' -f2)"
