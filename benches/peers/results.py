#!/usr/bin/env python3
"""benches/RESULTS.md from one bench.sh results folder: medians per case and scenario, rbuild's
ratio to each peer, the host floor of cold builds, rbuild's peak RSS, and which of issue 16's
targets hold.

Usage: results.py RESULTS_DIR --command "the command that made it"
"""
import json
import os
import sys

d = sys.argv[1]
command = sys.argv[sys.argv.index("--command") + 1] if "--command" in sys.argv else "?"
cells, rss = {}, {}
for f in sorted(os.listdir(d)):
    stem, _, ext = f.rpartition(".")
    parts = stem.split(".")
    if ext == "rbuild" and len(parts) == 2 and parts[1].startswith("rss-"):
        try:
            rss[(parts[0], parts[1][4:])] = int(open(os.path.join(d, f)).read().split()[-1])
        except (ValueError, IndexError):
            pass
        continue
    if len(parts) != 3 or ext not in ("json", "fail"):
        continue
    case, scen, peer = parts
    if ext == "fail":
        cells[(case, scen, peer)] = None
        continue
    try:
        cells[(case, scen, peer)] = json.load(open(os.path.join(d, f)))["results"][0]["median"]
    except (ValueError, KeyError, IndexError):
        pass

order = ["small", "multistage", "bigctx", "cache", "nodemodules", "debian"]
cases = sorted({c for c, _, _ in cells}, key=lambda c: order.index(c) if c in order else 99)
scens = ["cold", "noop", "change", "touch", "dep"]
peers = [p for p in ["docker-buildkit", "buildah", "podman", "docker-legacy"]
         if any(k[2] == p for k in cells)]
short = {"docker-buildkit": "BuildKit", "buildah": "buildah", "podman": "podman",
         "docker-legacy": "docker legacy"}


def fmt(v):
    return "FAIL" if v is None else f"{v:.2f}"


def target(case, scen):
    """Whether issue 16's target for the cell holds, and the target in words."""
    r = cells.get((case, scen, "rbuild"))
    bk = cells.get((case, scen, "docker-buildkit"))
    ba = cells.get((case, scen, "buildah"))
    if r is None:
        return None, "rbuild failed"
    if scen in ("change", "touch", "dep"):
        ok = (bk is None or r <= 0.8 * bk) and (ba is None or r <= 0.5 * ba)
        want = "≤0.8× BuildKit, ≤0.5× buildah"
        if case == "nodemodules" and scen == "touch":
            ok, want = ok and r <= 0.25, want + ", ≤0.25 s"
        return ok, want
    if scen == "cold":
        floor = cells.get((case, "floor", "host"))
        if bk is not None and r <= 0.6 * bk:
            return True, "≤0.6× BuildKit"
        if floor is not None and r <= 1.05 * floor:
            return True, "≤1.05× host floor"
        return False, "≤0.6× BuildKit or ≤1.05× floor"
    if scen == "noop":
        ok, want = bk is None or r <= 0.2 * bk, "≤0.2× BuildKit"
        if case == "bigctx":
            ok, want = ok and r <= 0.05, want + ", ≤50 ms"
        if case == "nodemodules":
            ok, want = ok and r <= 0.25, want + ", ≤0.25 s"
        return ok, want
    return None, ""


meta = open(os.path.join(d, "meta.txt")).read().strip() if os.path.exists(os.path.join(d, "meta.txt")) else ""
print("# Benchmark results: rbuild beside BuildKit and buildah\n")
print("Written by `benches/peers/results.py` from one run of `benches/peers.sh`; do not edit by hand.\n")
print(f"- Command: `{command}`")
for line in meta.splitlines():
    print(f"- {line}")
print("- Scenarios: **cold** = empty store (rbuild) / `system prune -af` (docker) / `rmi -af` (buildah), "
      "base pulled again from the loopback registry; **noop** = nothing changed; **change** = one line "
      "appended to one file; **touch** = one file's mtime only; **dep** = the file under the expensive step changed.")
print("- Cells are median wall seconds of one build command (hyperfine). Ratio = rbuild ÷ peer "
      "(below 1 is faster). Floor = the case's RUN commands run directly on the host.\n")
head = ["case", "scenario", "rbuild"] + [short[p] for p in peers] + \
       [f"÷ {short[p]}" for p in peers] + ["floor", "target", "holds"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * 2 + "---:|" * (1 + 2 * len(peers) + 1) + "---|---|")
held = total = 0
for c in cases:
    for s in scens:
        if (c, s, "rbuild") not in cells and not any((c, s, p) in cells for p in peers):
            continue
        r = cells.get((c, s, "rbuild"))
        row = [c, s, fmt(r) if (c, s, "rbuild") in cells else "-"]
        row += [fmt(cells[(c, s, p)]) if (c, s, p) in cells else "-" for p in peers]
        for p in peers:
            v = cells.get((c, s, p))
            row.append(f"{r / v:.2f}" if r is not None and v else "-")
        floor = cells.get((c, "floor", "host")) if s == "cold" else None
        row.append(fmt(floor) if floor is not None else "")
        ok, want = target(c, s)
        row.append(want)
        row.append("" if ok is None else ("yes" if ok else "**no**"))
        if ok is not None:
            total += 1
            held += ok
        print("| " + " | ".join(row) + " |")
print(f"\nTargets held: {held} of {total} cells.\n")
if rss:
    print("## rbuild's peak RSS (GNU time, MiB; target ≤ 64)\n")
    print("| case | cold | change |")
    print("|---|---:|---:|")
    for c in cases:
        vals = [rss.get((c, k)) for k in ("cold", "change")]
        print(f"| {c} | " + " | ".join("-" if v is None else f"{v / 1024:.1f}" for v in vals) + " |")
