#!/usr/bin/env bash
# The differential suite: builds every case under cases/ with rbuild and with docker's BuildKit
# (Debian's docker.io: dockerd 20.10 with BuildKit v0.8, DOCKER_BUILDKIT=1), saves both images in
# `docker save` format, describes each with normalise.py (config + file tree, no times) and diffs
# them.
#
#   tests/differential/run.sh [CASE ...]        (default: every case)
#
# A case is cases/NAME/ctx/ (the context, with its Dockerfile) and, optionally:
#   case.sh     sourced in a fresh copy of ctx/ before each build: makes what git cannot keep
#               (hard links, modes, empty directories) and may set ARGS=(...) (flags given to
#               both builders) and EXPECT=fail (both builders must refuse the build)
#   known.diff  a difference we keep on purpose: the exact `diff docker rbuild` lines expected
#               (`<` docker's, `>` rbuild's; no line numbers),
#   known.md    and why (also listed in the README's "Known differences")
# A case passes when the two descriptions are equal, or differ by exactly known.diff; a known
# difference that changed, or went away, fails too (so the README's list stays true).
#
# digests.txt pins rbuild's image (manifest digest) of every case whose image is reproducible,
# and of the busybox base they start from: a case whose image changes fails, so a change meant
# to keep images the same (a refactoring of the build core) is shown to. `NAME unstable` marks a
# case whose RUN writes what differs run to run. RECORD_DIGESTS=1 rewrites the file from this
# run (keeping `unstable` marks); RECORD_DIGESTS=stable marks as unstable every case whose digest
# differs from the file's (run it after a recording, on a fresh store).
#
# It starts a dockerd of its own (data root under a temp dir, no bridge, no iptables; RUN gets
# --network none in both builders) unless DOCKER_HOST is set, and stops it at the end. busybox is
# made with fixtures/base/busybox.sh in rbuild's store and loaded into docker from there, so both
# builders start from the same bytes.
#
# env: RBUILD (default: target/debug/rbuild, built with cargo when missing), DOCKER
#      (/usr/bin/docker: Debian's 20.10 CLI; a newer CLI without buildx cannot use BuildKit),
#      DOCKERD (/usr/sbin/dockerd), KEEP=1 keeps the work directory (contexts, store, dockerd), OUT: where the results go (default:
#      a new /tmp/rbuild-differential-out.*).
# Needs: apt-get install -y docker.io busybox-static python3
# Exit status: 0 when every case passes, 1 otherwise, 2 when the tools are missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}

for t in "$DOCKER" "$DOCKERD" /bin/busybox python3; do
  if ! command -v "$t" >/dev/null; then
    echo "error: $t not found: apt-get install -y docker.io busybox-static python3" >&2
    exit 2
  fi
done
if [ -z "${RBUILD:-}" ]; then
  (cd "$repo" && cargo build -q -p builder-cli)
  RBUILD=$repo/target/debug/rbuild
fi
# Builds run inside each case's context: a relative path would name nothing there.
RBUILD=$(realpath "$RBUILD")

work=$(mktemp -d /tmp/rbuild-differential.XXXXXX)
# The descriptions, diffs and logs outlive the work directory: they are what to read after a failure.
out=${OUT:-$(mktemp -d /tmp/rbuild-differential-out.XXXXXX)}
mkdir -p "$out"
dockerd_pid=""
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    # dockerd leaves its overlay mounts behind when killed hard
    grep -o " $work/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  fi
  [ "${KEEP:-}" = 1 ] && { echo "kept $work" >&2; return; }
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${DOCKER_HOST:-}" ]; then
  d=$work/docker
  mkdir -p "$d"
  cat > "$d/daemon.json" <<EOF
{"data-root": "$d/data", "exec-root": "$d/exec", "pidfile": "$d/dockerd.pid",
 "hosts": ["unix://$d/docker.sock"], "storage-driver": "overlay2",
 "bridge": "none", "iptables": false, "ip-forward": false, "ip-masq": false,
 "features": {"buildkit": true}}
EOF
  setsid "$DOCKERD" --config-file "$d/daemon.json" > "$d/dockerd.log" 2>&1 < /dev/null &
  dockerd_pid=$!
  export DOCKER_HOST=unix://$d/docker.sock
  for _ in $(seq 150); do "$DOCKER" version > /dev/null 2>&1 && break; sleep 0.2; done
  "$DOCKER" version > /dev/null 2>&1 || { cat "$d/dockerd.log" >&2; echo "error: dockerd did not start" >&2; exit 2; }
fi
export DOCKER_BUILDKIT=1

store=$work/store
"$repo/fixtures/base/busybox.sh" "$RBUILD" --root "$store" > /dev/null
"$RBUILD" --root "$store" save --format docker -o "$work/busybox.tar" busybox:latest
"$DOCKER" load -q -i "$work/busybox.tar" > /dev/null

# The pinned digests (see the top): NAME → digest or `unstable`.
pins=$here/digests.txt
declare -A pinned=()
if [ -f "$pins" ]; then
  while read -r k v; do [ -n "$k" ] && pinned[$k]=$v; done < "$pins"
fi
base_digest=$("$RBUILD" --root "$store" inspect busybox:latest | python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
base_changed=""
if [ -n "${pinned[busybox]:-}" ] && [ "${pinned[busybox]}" != "$base_digest" ] && [ -z "${RECORD_DIGESTS:-}" ]; then
  base_changed="the busybox base is not the one the digests were pinned with (${pinned[busybox]} → $base_digest: Debian's busybox-static changed?); re-record with RECORD_DIGESTS=1"
  echo "error: $base_changed" >&2
fi

if [ $# -gt 0 ]; then cases=("$@"); else
  cases=()
  for c in "$here"/cases/*/; do cases+=("$(basename "$c")"); done
fi

# Builds case $1 with builder $2 (docker|rbuild) into $out/$1.$2.txt; the build's status is
# the function's.
build_one() {
  local name=$1 who=$2 dir=$here/cases/$1 ctx=$work/ctx/$1.$2
  rm -rf "$ctx" && mkdir -p "$work/ctx" && cp -a "$dir/ctx" "$ctx"
  ARGS=() EXPECT=ok
  if [ -f "$dir/case.sh" ]; then
    # shellcheck disable=SC1091
    (cd "$ctx" && CTX=$ctx && . "$dir/case.sh" && declare -p ARGS EXPECT) > "$work/vars" || return 3
    # shellcheck disable=SC1090
    . "$work/vars"
  fi
  local tag=rbuild-diff/$name:latest status=0
  if [ "$who" = docker ]; then
    (cd "$ctx" && "$DOCKER" build --network none -t "$tag" "${ARGS[@]}" .) > "$out/$name.$who.log" 2>&1 || status=$?
    if [ $status = 0 ]; then
      "$DOCKER" save -o "$work/img.tar" "$tag" && "$DOCKER" rmi -f "$tag" > /dev/null
    fi
  else
    rm -f "$work/meta.json"
    (cd "$ctx" && "$RBUILD" --root "$store" build --progress plain --network none -t "$tag" "${ARGS[@]}" \
      --metadata-file "$work/meta.json" -o "type=docker,dest=$work/img.tar" .) > "$out/$name.$who.log" 2>&1 || status=$?
    if [ $status = 0 ]; then
      python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' \
        "$work/meta.json" > "$out/$name.digest"
    fi
  fi
  if [ $status = 0 ]; then
    python3 "$here/normalise.py" "$work/img.tar" > "$out/$name.$who.txt"
    rm -f "$work/img.tar"
  fi
  echo "$EXPECT" > "$out/$name.expect"
  return $status
}

pass=0 fail=0 known=0
summary=$out/summary.txt
: > "$summary"
for name in "${cases[@]}"; do
  [ -d "$here/cases/$name/ctx" ] || { echo "error: no case $name" >&2; exit 2; }
  ds=0 rs=0
  build_one "$name" docker || ds=$?
  build_one "$name" rbuild || rs=$?
  expect=$(cat "$out/$name.expect")
  verdict=""
  if [ "$expect" = fail ]; then
    if [ $ds != 0 ] && [ $rs != 0 ]; then verdict="match (both refuse)"
    else verdict="FAIL: expected both to refuse (docker $ds, rbuild $rs)"; fi
  elif [ $ds != 0 ] || [ $rs != 0 ]; then
    verdict="FAIL: build failed (docker $ds, rbuild $rs; see $out/$name.*.log)"
  else
    # Only the differing lines (no line numbers: they move with the base image's size).
    { diff "$out/$name.docker.txt" "$out/$name.rbuild.txt" || true; } | { grep '^[<>]' || true; } > "$out/$name.diff"
    if [ -f "$here/cases/$name/known.diff" ]; then
      if diff -q "$here/cases/$name/known.diff" "$out/$name.diff" > /dev/null; then
        verdict="known difference (cases/$name/known.md)"
      else
        verdict="FAIL: the known difference changed (see $out/$name.diff)"
      fi
    elif [ -s "$out/$name.diff" ]; then
      verdict="FAIL: $(grep -c '^[<>]' "$out/$name.diff") lines differ: $(grep '^[<>]' "$out/$name.diff" | head -2 | cut -c1-70 | tr '\n' ' ')"
    else
      verdict="match"
    fi
  fi
  # The image must be the one pinned (only for builds that succeeded and matched).
  case $verdict in match*|known*)
    got=$(cat "$out/$name.digest" 2>/dev/null || true)
    want=${pinned[$name]:-}
    if [ -n "$base_changed" ] && [ -n "$want" ] && [ "$want" != unstable ]; then
      verdict="FAIL: $base_changed"
    elif [ -n "$got" ] && [ -n "$want" ] && [ "$want" != unstable ] && [ "$want" != "$got" ] && [ -z "${RECORD_DIGESTS:-}" ]; then
      verdict="FAIL: rbuild's image changed: $want → $got (tests/differential/digests.txt)"
    fi
    if [ -n "$got" ]; then echo "$name $got" >> "$out/digests.new"; fi ;;
  esac
  case $verdict in
    match*) pass=$((pass + 1)) ;;
    known*) known=$((known + 1)) ;;
    *) fail=$((fail + 1)) ;;
  esac
  printf '%-40s %s\n' "$name" "$verdict" | tee -a "$summary"
done
if [ -n "${RECORD_DIGESTS:-}" ]; then
  declare -A fresh=()
  touch "$out/digests.new"
  while read -r k v; do fresh[$k]=$v; done < "$out/digests.new"
  for k in "${!fresh[@]}"; do
    if [ "${pinned[$k]:-}" = unstable ]; then continue; fi
    if [ "$RECORD_DIGESTS" = stable ]; then
      if [ -n "${pinned[$k]:-}" ] && [ "${pinned[$k]}" != "${fresh[$k]}" ]; then pinned[$k]=unstable; fi
    else
      pinned[$k]=${fresh[$k]}
    fi
  done
  pinned[busybox]=$base_digest
  for k in "${!pinned[@]}"; do echo "$k ${pinned[$k]}"; done | sort > "$pins"
  echo "wrote $pins ($(grep -vc unstable "$pins") pinned, $(grep -c unstable "$pins" || true) unstable)"
fi
echo "differential: ${#cases[@]} cases, $pass match, $known known differences, $fail failed (details in $out)" | tee -a "$summary"
[ "$fail" = 0 ]
