#!/usr/bin/env bash
# Load on rbuild-server's build jobs: N builds posted at once (default 50) by 5 tenants, each a
# COPY and a RUN that hashes busybox a few times (a build arg makes every RUN a miss). Prints,
# from the server's own records, p50/p95 of the queue wait and of the build time, whether all
# succeeded, in what order tenants were served, and the server's peak RSS (VmHWM). Run it with
# N=10 and N=50: the peak should follow --max-builds, not N.
#
#   benches/server-load.sh [RBUILD_SERVER] [N]   (default target/release/rbuild-server, 50)
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-target/release/rbuild-server}
n=${2:-50}
[ -x "$server" ] || { echo "build it first: cargo build --release -p builder-server" >&2; exit 2; }
[ -x /bin/busybox ] || { echo "apt-get install -y busybox-static" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: > "$work/tokens"
for t in 1 2 3 4 5; do echo "bench-token-of-tenant-$t-0123456789 tenant-$t" >> "$work/tokens"; done
mkdir -p "$work/ctx"
cp /bin/busybox "$work/ctx/busybox"
cat > "$work/ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
ARG N
RUN ["/bin/busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do /bin/busybox sha256sum /bin/busybox >/dev/null; done; echo build $N"]
EOF
tar -C "$work/ctx" -cf "$work/ctx.tar" .
"$server" --root "$work/root" --listen "127.0.0.1:$port" --tokens "$work/tokens" \
  --max-queued 100 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
# Warm the shared COPY step once, so the load measures queueing and RUNs.
curl -sf -H "Authorization: Bearer bench-token-of-tenant-1-0123456789" \
  --data-binary @"$work/ctx.tar" "http://127.0.0.1:$port/v1/builds?buildarg=N=warm" >/dev/null
sleep 2
start=$(date +%s.%N)
for i in $(seq 1 "$n"); do
  t=$(( (i - 1) % 5 + 1 ))
  curl -sf -H "Authorization: Bearer bench-token-of-tenant-$t-0123456789" \
    --data-binary @"$work/ctx.tar" "http://127.0.0.1:$port/v1/builds?buildarg=N=$i" \
    -o "$work/post-$i.json" &
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
python3 - "$port" "$n" "$start" "$pid" <<'PY'
import json, sys, time, urllib.request
port, n, start, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def builds(t):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/builds?limit=500",
        headers={"Authorization": f"Bearer bench-token-of-tenant-{t}-0123456789"})
    return json.load(urllib.request.urlopen(req))["builds"]
peak = 0
while True:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    all_builds = [b for t in range(1, 6) for b in builds(t)]
    if all(b["state"] not in ("queued", "running") for b in all_builds):
        break
    time.sleep(0.2)
wall = time.time() - start
posted = sorted((b for b in all_builds if b["start_order"] and b["start_order"] > 1), key=lambda b: b["start_order"])
states = {}
for b in posted:
    states[b["state"]] = states.get(b["state"], 0) + 1
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
wait = [b["queued_seconds"] for b in posted]
run = [b["duration_seconds"] for b in posted]
print(f"builds: {len(posted)} posted, states {states}, wall {wall:.1f} s")
print(f"queue wait: p50 {pct(wait, 50):.2f} s, p95 {pct(wait, 95):.2f} s, max {max(wait):.2f} s")
print(f"build time: p50 {pct(run, 50):.2f} s, p95 {pct(run, 95):.2f} s")
print("first 10 starts by tenant:", " ".join(b["tenant"][-1] for b in posted[:10]))
print(f"server peak RSS (VmHWM): {peak / 1024:.1f} MiB")
PY
