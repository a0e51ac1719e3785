#!/usr/bin/env python3
"""Generates the benchmark context: 5,000 files / ~200 MB in 50 directories, half text, half
noise, deterministic (seed 42). Usage: bigctx.py DIR [FILES] [MB]"""
import os, random, sys

out = sys.argv[1]
files = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
total = (int(sys.argv[3]) if len(sys.argv) > 3 else 200) * 1024 * 1024
rng = random.Random(42)
for i in range(files):
    size = total // files // 2 + rng.randrange(total // files)
    path = os.path.join(out, "src", f"d{i % 50:02}", f"f{i:05}.dat")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        if i % 2 == 0:
            line = f"some text of file {i} that compresses\n".encode()
            f.write((line * (size // len(line) + 1))[:size])
        else:
            f.write(rng.randbytes(size))
with open(os.path.join(out, "Dockerfile"), "w") as f:
    f.write("FROM scratch\nCOPY src/ /app/\n")
