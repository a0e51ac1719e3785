#!/usr/bin/env bash
# Side-by-side build benchmark of the peer builders (and rbuild, when given).
#
#   ./bench.sh [CASE ...]        default: small multistage bigctx cache (every case when CASES_DIR is set)
#
# env:
#   RUNS=5            hyperfine runs per measurement (median is reported)
#   (the project's copy of ../shared/peers/bench.sh, with the nodemodules and debian cases,
#   the host floor of each case's RUN commands and rbuild's peak RSS; results.py writes
#   benches/RESULTS.md)
#   PEERS="..."       subset of: docker-buildkit docker-legacy buildah podman rbuild
#   RBUILD=/path      enables the rbuild peer (skipped when unset); see lib.sh for
#                     RBUILD_ARGS, RBUILD_BUILD_CMD ("{ctx}" "{tag}") and RBUILD_RESET_CMD
#   SCENARIOS="..."   subset of: cold noop change touch dep (floor: only the host floor)
#   CASES_DIR=dir     take the cases from dir instead of ./cases
#   PEERS_WORK, PEERS_REGISTRY, PEERS_NETWORK (none), PEERS_JOBS (2): see lib.sh
#
# Scenarios, each timed as wall-clock seconds of one build command:
#   cold    builder state wiped before every run (images + build cache; the base
#           image is pulled again from the local registry). Page cache stays warm.
#   noop    rebuild with nothing changed
#   change  rebuild after appending a line to one context file (case.env MUTATE)
#   touch   rebuild after only touching one file's mtime (case.env TOUCH, cache case)
#   dep     rebuild after changing the "lockfile" under the expensive step (MUTATE_DEP)
#
# Needs ./setup.sh first (registry + dockerd). Results: $PEERS_WORK/results/<stamp>/
# (hyperfine JSON per measurement, hyperfine.log, table.md); the table is printed at the end.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-5}
SCENARIOS=${SCENARIOS:-cold noop change touch dep}
if [ "$CASES_DIR" = "$PEERS_DIR/cases" ]; then CASES=${*:-small multistage bigctx cache nodemodules debian}
else CASES=${*:-$(cd "$CASES_DIR" && for d in */; do printf '%s ' "${d%/}"; done)}; fi
want_peers=${PEERS:-$ALL_PEERS${RBUILD:+ rbuild}}

command -v hyperfine >/dev/null || { echo "hyperfine missing: run ./setup.sh" >&2; exit 1; }
curl -fsS "http://$REG/v2/" >/dev/null || { echo "registry $REG down: run ./setup.sh" >&2; exit 1; }

peers=""
for p in $want_peers; do
  if peer_available "$p"; then peers="$peers $p"; else log "skipping peer $p (not available)"; fi
done
[ -n "$peers" ] || { echo "no peer available" >&2; exit 1; }

out=$W/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
  echo "runs: $RUNS  network: $NET  jobs(buildah/podman): $JOBS  peers:$peers  cases (${CASES_DIR##*/}): $CASES"
} > "$out/meta.txt"
cat "$out/meta.txt" >&2

has() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }

# hf NAME BUILD [hyperfine options...]: one measurement, FAIL marker on error
hf() {
  local name=$1 build=$2; shift 2
  log "  $name"
  echo "### $name" >> "$out/hyperfine.log"
  if ! hyperfine --style basic --runs "$RUNS" --export-json "$out/$name.json" "$@" "$build" \
       >> "$out/hyperfine.log" 2>&1; then
    echo "FAIL" > "$out/$name.fail"; rm -f "$out/$name.json"
    log "  $name FAILED (see $out/hyperfine.log; output of a plain run follows)"
    eval "$build" 2>&1 | tail -5 >&2 || true
  fi
}

for case in $CASES; do
  log "case $case: preparing context"
  ctx=$(prepare_ctx "$case")
  unset MUTATE TOUCH MUTATE_DEP GEN DESC FLOOR FLOOR_SHELL
  # shellcheck disable=SC1090
  . "$CASES_DIR/$case/case.env"
  if { has cold || has floor; } && [ -n "${FLOOR:-}" ]; then
    # The floor: the case's RUN commands run directly on the host, in the context, under the
    # image's own shell and tools where the host has them (FLOOR_SHELL: busybox sh).
    printf '%s\n' "$FLOOR" > "$out/$case.floor.sh"
    hf "$case.floor.host" "cd $ctx && ${FLOOR_SHELL:-sh} $out/$case.floor.sh" --warmup 1 --prepare sync
  fi
  for peer in $peers; do
    log "case $case / peer $peer"
    tag=rbench/$case:$peer
    build=$(peer_build_cmd "$peer" "$ctx" "$tag")
    reset=$(peer_reset_cmd "$peer")
    echo "$case $peer: $build" >> "$out/commands.txt"
    # Every run starts on a quiet disk: `sync` before it (untimed) flushes what the run before
    # left in writeback and the discards of a reset's deletions, which otherwise land on
    # whichever build comes next (this VM's disk is mounted with `discard`).
    if has cold; then hf "$case.cold.$peer" "$build" --prepare "$reset; sync"; fi
    if [ "$peer" = rbuild ] && command -v /usr/bin/time >/dev/null; then
      # Peak RSS of a cold and of a changed build (GNU time, KiB).
      eval "$reset" || true
      /usr/bin/time -f %M -o "$out/$case.rss-cold.rbuild" sh -c "$build" >/dev/null 2>&1 || true
      if [ -n "${MUTATE:-}" ]; then
        date +%s%N >> "$ctx/$MUTATE"
        /usr/bin/time -f %M -o "$out/$case.rss-change.rbuild" sh -c "$build" >/dev/null 2>&1 || true
      fi
    fi
    if has noop; then hf "$case.noop.$peer" "$build" --warmup 1 --prepare sync; fi
    if has change && [ -n "${MUTATE:-}" ]; then
      hf "$case.change.$peer" "$build" --warmup 1 --prepare "date +%s%N >> $ctx/$MUTATE; sync"; fi
    if has touch && [ -n "${TOUCH:-}" ]; then
      hf "$case.touch.$peer" "$build" --warmup 1 --prepare "touch $ctx/$TOUCH; sync"; fi
    if has dep && [ -n "${MUTATE_DEP:-}" ]; then
      hf "$case.dep.$peer" "$build" --warmup 1 --prepare "date +%s%N >> $ctx/$MUTATE_DEP; sync"; fi
    eval "$reset" || true   # keep disk use bounded between peers
  done
done

python3 "$PEERS_DIR/summarize.py" "$out" | tee "$out/table.md"
log "results in $out"
