# shellcheck shell=bash disable=SC2034
# Common settings for setup.sh and bench.sh (source it; bash only). Adapted from the
# workplace's shared peer harness (../shared/peers) into the project's own benchmark.
#
# Everything mutable lives under $PEERS_WORK (default /tmp/rbuild-bench):
#   registry/   config.yml, data/, pid       docker-registry on $PEERS_REGISTRY
#   docker/     daemon.json, data/, exec/, docker.sock, dockerd.pid
#   buildah/    buildah storage (root/, run/)   podman/  podman storage
#   base/       busybox OCI layout + oci-archive; debian/ debootstrap rootfs + OCI layout
#   ctx/        copies of cases/* (or $CASES_DIR/*) with generated data; results/ bench output; logs/
#
# Peers (names used by bench.sh / compare.sh, PEERS="..." selects):
#   docker-buildkit  Debian docker.io 20.10 dockerd + CLI, DOCKER_BUILDKIT=1 (BuildKit v0.8 inside dockerd)
#   docker-legacy    the same daemon, DOCKER_BUILDKIT=0 (classic builder)
#   buildah          buildah 1.28 bud --layers, overlay, isolation oci via runc, --jobs 2
#   podman           podman 4.3 build (buildah inside), overlay, runc, cgroupfs, --jobs 2
#   rbuild           the project's builder, only when RBUILD=/path/to/binary is set

PEERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Folder of cases (CASE/Dockerfile + case.env); CASES_DIR=other/folder takes them from elsewhere
CASES_DIR=$(cd "${CASES_DIR:-$PEERS_DIR/cases}" && pwd)
W=${PEERS_WORK:-/tmp/rbuild-bench}
REG=${PEERS_REGISTRY:-127.0.0.1:5000}
# Network for RUN steps. "none" keeps builds hermetic and needs no bridge:
# dockerd runs with bridge=none/iptables=false, so the default bridge network
# does not exist and "docker build" without --network fails ("network bridge not found").
NET=${PEERS_NETWORK:-none}
JOBS=${PEERS_JOBS:-2}

# Debian's CLI, not /usr/local/bin/docker (a 28.x CLI without buildx: its
# DOCKER_BUILDKIT=1 build fails for want of the buildx plugin).
DOCKER_BIN=${DOCKER_BIN:-/usr/bin/docker}
DOCKERD_BIN=${DOCKERD_BIN:-/usr/sbin/dockerd}
DOCKER_SOCK=$W/docker/docker.sock
DOCKER="$DOCKER_BIN -H unix://$DOCKER_SOCK"
# crun 1.8 refuses this hybrid cgroup v1/v2 host ("cgroups in hybrid mode not
# supported"), so buildah/podman must be told to use runc. cgroupfs and the file
# events backend are podman's defaults here anyway (no systemd as PID 1); kept explicit.
BUILDAH="buildah --root $W/buildah/root --runroot $W/buildah/run --storage-driver overlay"
PODMAN="podman --root $W/podman/root --runroot $W/podman/run --storage-driver overlay --runtime runc --cgroup-manager cgroupfs --events-backend file"

ALL_PEERS="docker-buildkit docker-legacy buildah podman"
# rbuild's store for the bench, unless the caller chose one
export RBUILD_ROOT=${RBUILD_ROOT:-$W/rbuild}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# peer_build_cmd PEER CTX TAG -> prints a shell command string that builds CTX/Dockerfile as TAG
peer_build_cmd() {
  local peer=$1 ctx=$2 tag=$3
  case $peer in
    docker-buildkit) echo "DOCKER_BUILDKIT=1 $DOCKER build -q --network $NET -t $tag $ctx" ;;
    docker-legacy)   echo "DOCKER_BUILDKIT=0 $DOCKER build -q --network $NET -t $tag $ctx" ;;
    buildah)         echo "$BUILDAH bud -q --layers --tls-verify=false --runtime runc --isolation oci --network $NET --jobs $JOBS -t $tag $ctx" ;;
    podman)          echo "$PODMAN build -q --layers --tls-verify=false --network $NET --jobs $JOBS -t $tag $ctx" ;;
    rbuild)
      # Slot for the project's builder. Override the whole command with
      # RBUILD_BUILD_CMD using {ctx} and {tag} placeholders if the CLI differs.
      if [ -n "${RBUILD_BUILD_CMD:-}" ]; then
        local c=${RBUILD_BUILD_CMD//\{ctx\}/$ctx}; echo "${c//\{tag\}/$tag}"
      else
        echo "$RBUILD build ${RBUILD_ARGS:-} --network $NET -t $tag -f $ctx/Dockerfile $ctx"
      fi ;;
    *) echo "unknown peer $peer" >&2; return 1 ;;
  esac
}

# peer_reset_cmd PEER -> command that drops all images and build cache (cold start;
# the base image then comes from the local registry again)
peer_reset_cmd() {
  case $1 in
    docker-buildkit|docker-legacy) echo "$DOCKER system prune -af >/dev/null" ;;
    buildah) echo "$BUILDAH rm -a >/dev/null; $BUILDAH rmi -af >/dev/null 2>&1; true" ;;
    podman)  echo "$PODMAN rm -af >/dev/null; $PODMAN rmi -af >/dev/null 2>&1; true" ;;
    rbuild)  echo "${RBUILD_RESET_CMD:-$RBUILD prune --all}" ;;
    *) return 1 ;;
  esac
}

# peer_export PEER TAG OUT_OCI_LAYOUT_DIR -> write the built image as an OCI layout (ref "img")
peer_export() {
  local peer=$1 tag=$2 out=$3
  rm -rf "$out"
  case $peer in
    docker-*)
      $DOCKER save -o "$out.docker.tar" "$tag" &&
      skopeo copy -q "docker-archive:$out.docker.tar" "oci:$out:img" && rm -f "$out.docker.tar" ;;
    buildah) $BUILDAH push -q "$tag" "oci:$out:img" ;;
    podman)  $PODMAN push -q "$tag" "oci:$out:img" ;;
    rbuild)
      if [ -n "${RBUILD_EXPORT_CMD:-}" ]; then
        local c=${RBUILD_EXPORT_CMD//\{tag\}/$tag}; eval "${c//\{out\}/$out}"
      else
        "$RBUILD" save --format oci -o "$out.oci.tar" "$tag" &&
        skopeo copy -q "oci-archive:$out.oci.tar" "oci:$out:img" && rm -f "$out.oci.tar"
      fi ;;
  esac
}

peer_available() {
  case $1 in
    docker-buildkit|docker-legacy) [ -S "$DOCKER_SOCK" ] && $DOCKER version >/dev/null 2>&1 ;;
    buildah) command -v buildah >/dev/null ;;
    podman)  command -v podman >/dev/null ;;
    rbuild)  [ -n "${RBUILD:-}" ] && [ -x "$RBUILD" ] ;;
    *) return 1 ;;
  esac
}

# prepare_ctx CASE -> fresh copy of $CASES_DIR/CASE under $W/ctx/CASE, plus generated data
prepare_ctx() {
  local src=$CASES_DIR/$1 dst=$W/ctx/$1
  rm -rf "$dst"; mkdir -p "$dst"
  cp -a "$src/." "$dst/"
  # shellcheck disable=SC1091
  ( . "$src/case.env"; if [ -n "${GEN:-}" ]; then "$src/$GEN" "$dst" >&2; fi )
  echo "$dst"
}
