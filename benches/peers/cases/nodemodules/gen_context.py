#!/usr/bin/env python3
"""A node_modules-like context, deterministically: PACKAGES packages of small files in a deep
tree (lib/, dist/esm/, dist/cjs/, nested node_modules/), `.bin` symlinks and symlinked
duplicates, as npm and pnpm lay them out. Default: 680 packages, about 52,000 files.

Usage: gen_context.py DIR [--packages N] [--seed S]
"""
import argparse
import os
import random

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--packages", type=int, default=680)
ap.add_argument("--seed", type=int, default=16)
a = ap.parse_args()
rng = random.Random(a.seed)
root = a.dir
nm = os.path.join(root, "node_modules")
os.makedirs(os.path.join(nm, ".bin"), exist_ok=True)
files = links = 0


def write(path, size):
    global files
    os.makedirs(os.path.dirname(path), exist_ok=True)
    line = f"// {os.path.basename(path)} {rng.random():.12f}\n"
    with open(path, "w") as f:
        f.write((line * (size // len(line) + 1))[:size])
    files += 1


names = [f"pkg-{i:04d}" for i in range(a.packages)]
for i, name in enumerate(names):
    pkg = os.path.join(nm, name)
    write(os.path.join(pkg, "package.json"), 400)
    write(os.path.join(pkg, "README.md"), rng.randint(500, 3000))
    write(os.path.join(pkg, "index.js"), rng.randint(100, 800))
    for sub in ("lib", "dist/esm", "dist/cjs", "dist/types"):
        for j in range(rng.randint(12, 24)):
            depth = "/".join(f"m{k}" for k in range(j % 4))
            write(os.path.join(pkg, sub, depth, f"f{j:02d}.js"), rng.randint(80, 2400))
    # A nested dependency with a version of its own, as npm leaves conflicting ones.
    if i % 5 == 0:
        inner = os.path.join(pkg, "node_modules", names[(i * 7 + 3) % len(names)])
        for j in range(8):
            write(os.path.join(inner, "lib", f"g{j}.js"), rng.randint(80, 1200))
    if i % 4 == 0:
        write(os.path.join(pkg, "bin", "cli.js"), 300)
        os.symlink(f"../{name}/bin/cli.js", os.path.join(nm, ".bin", name))
        links += 1
    if i % 9 == 0:
        os.symlink("lib", os.path.join(pkg, "src"))
        links += 1
os.makedirs(os.path.join(root, "src"), exist_ok=True)
with open(os.path.join(root, "src", "index.js"), "w") as f:
    f.write("console.log('app')\n")
with open(os.path.join(root, "package.json"), "w") as f:
    f.write('{"name": "app", "dependencies": {' + ", ".join(f'"{n}": "1.0.0"' for n in names[:50]) + "}}\n")
print(f"nodemodules: {files + 2} files, {links} symlinks in {root}")
