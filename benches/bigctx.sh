#!/usr/bin/env bash
# The peers' bigctx case (../shared/peers/cases/bigctx: ~5,000 files / ~200 MB, COPY . /app then
# a RUN over it) with rbuild alone: median wall seconds of N runs (default 5) of
#   cold    an empty store (busybox imported first, not timed)
#   change  one context file appended to, then rebuilt
#   benches/bigctx.sh [path/to/rbuild] [N]
# Compare two binaries (before/after a store change) by running it with each.
set -euo pipefail
rbuild=$(realpath "${1:-target/release/rbuild}")
runs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$here/bigctx.py" "$work/ctx" >/dev/null
cat > "$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM busybox
WORKDIR /app
COPY . /app
RUN find /app -type f | wc -l > /app.count && du -sk /app >> /app.count
CMD ["cat", "/app.count"]
DOCKERFILE
now() { date +%s%N; }
median() { sort -n | sed -n "$(( (runs + 1) / 2 ))p"; }
cold=() change=()
for i in $(seq "$runs"); do
  rm -rf "$work/root"
  "$here/../fixtures/base/busybox.sh" "$rbuild" --root "$work/root" >/dev/null
  sync
  t=$(now); "$rbuild" --root "$work/root" build -q -t big "$work/ctx" >/dev/null; cold+=($(( $(now) - t )))
  echo "change $i" >> "$work/ctx/src/d00/f00000.dat"
  t=$(now); "$rbuild" --root "$work/root" build -q -t big "$work/ctx" >/dev/null; change+=($(( $(now) - t )))
done
fmt() { awk '{ printf "%.2f", $1 / 1e9 }'; }
echo "bigctx cold:   $(printf '%s\n' "${cold[@]}" | median | fmt) s (median of $runs)"
echo "bigctx change: $(printf '%s\n' "${change[@]}" | median | fmt) s (median of $runs)"
