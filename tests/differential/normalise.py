#!/usr/bin/env python3
"""Describes an image saved in `docker save` format as normalised text, for diffing builders.

Usage: normalise.py ARCHIVE

Prints the runtime config (the fields a container sees: Env, Cmd, Entrypoint, WorkingDir, User,
Labels, ExposedPorts, Volumes, StopSignal, Shell, Healthcheck, OnBuild) and then the final file
tree after applying every layer in order (whiteouts and opaque directories honoured), one line
per path: `path type mode uid:gid`, then `size sha256` for files, `-> target` for symlinks and
`=> path` for a hard link (the path it links to, so a builder that keeps context hard links and
one that does not differ). Times are left out: docker 20.10's BuildKit keeps wall-clock times,
rbuild clamps to its epoch. The archive is read as a stream, one layer at a time.
"""
import hashlib
import json
import sys
import tarfile

CONFIG_FIELDS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts",
                 "Volumes", "StopSignal", "Shell", "Healthcheck", "OnBuild"]


def norm(name):
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def drop_tree(fs, path):
    for k in [k for k in fs if k == path or k.startswith(path + "/")]:
        del fs[k]


def apply_layer(fs, layer):
    for ti in layer:
        p = norm(ti.name)
        if p in ("", "."):
            continue
        d, _, b = p.rpartition("/")
        if b == ".wh..wh..opq":
            for k in [k for k in fs if not d or k.startswith(d + "/")]:
                del fs[k]
            continue
        if b.startswith(".wh."):
            drop_tree(fs, (d + "/" if d else "") + b[4:])
            continue
        e = {"mode": ti.mode & 0o7777, "own": f"{ti.uid}:{ti.gid}"}
        if ti.isdir():
            e["type"] = "dir"
        elif ti.issym():
            e["type"] = "sym"
            e["target"] = ti.linkname
        elif ti.islnk():
            target = fs.get(norm(ti.linkname), {})
            e.update({k: v for k, v in target.items() if k in ("type", "size", "sha")})
            e.setdefault("type", "file")
            e["link"] = "/" + norm(ti.linkname)
        elif ti.isreg():
            h = hashlib.sha256()
            f = layer.extractfile(ti)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            e.update(type="file", size=ti.size, sha=h.hexdigest()[:16])
        else:
            e["type"] = {tarfile.CHRTYPE: "chr", tarfile.BLKTYPE: "blk",
                         tarfile.FIFOTYPE: "fifo"}.get(ti.type, "other")
        old = fs.get(p)
        if old is not None and old["type"] == "dir" and e["type"] != "dir":
            drop_tree(fs, p)
        fs[p] = e


def main():
    archive = tarfile.open(sys.argv[1], "r:*")
    members = {m.name: m for m in archive.getmembers()}
    manifest = json.load(archive.extractfile(members["manifest.json"]))[0]
    config = json.load(archive.extractfile(members[manifest["Config"]]))
    c = config.get("config") or {}
    print("#config os/arch", config.get("os"), config.get("architecture"))
    for k in CONFIG_FIELDS:
        v = c.get(k)
        if v in (None, "", [], {}):
            v = None
        print("#config", k, json.dumps(v, sort_keys=True))
    fs = {}
    for name in manifest["Layers"]:
        with tarfile.open(fileobj=archive.extractfile(members[name]), mode="r|*") as layer:
            apply_layer(fs, layer)
    for p in sorted(fs):
        e = fs[p]
        line = f"/{p} {e['type']} {e['mode']:04o} {e['own']}"
        if e["type"] == "file":
            line += f" {e.get('size')} {e.get('sha')}"
        elif e["type"] == "sym":
            line += " -> " + e["target"]
        if "link" in e:
            line += " => " + e["link"]
        print(line)


if __name__ == "__main__":
    main()
