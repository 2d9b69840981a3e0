#!/usr/bin/env python3
"""Shows circles of calls between the source files of one directory.

    tools/file_cycles.py BUILD_DIR DIR [--graph]

Reads the object files CMake built from DIR's sources (BUILD_DIR/DIR/CMakeFiles/*.dir/*.o) with `nm`:
a file that leaves a symbol undefined which another file of DIR defines depends on that file. Every
strongly connected component of more than one file in that graph is a circle: none of its files can be
understood, tested or replaced without the others. It is reported with the symbols that close it.

It also checks that a private header (NAME_int.h) is included only by its own component, the files
whose names begin with NAME (pki_int.h by pki.c, pki_crl.c, pki_csr.c), and that DIR includes no
other directory's private header.

Exit status: 0 when there is neither, 1 when there is either, 2 on a usage error or no objects.
"""

import argparse
import collections
import os
import re
import subprocess
import sys


def objects(build_dir, src_root, src_dir):
    """{source file name: [object paths]} for DIR's sources, from every target that compiles them.
    Objects of sources no longer in DIR (left in the build tree after a move) are not counted."""
    base = os.path.join(build_dir, src_dir, "CMakeFiles")
    out = collections.defaultdict(list)
    if not os.path.isdir(base):
        return out
    for target in sorted(os.listdir(base)):
        tdir = os.path.join(base, target)
        if not target.endswith(".dir") or not os.path.isdir(tdir):
            continue
        for root, _, files in os.walk(tdir):
            for f in sorted(files):
                if f.endswith(".c.o") or f.endswith(".o"):
                    src = f[: -len(".o")]
                    if os.path.exists(os.path.join(src_root, src_dir, src)):
                        out[src].append(os.path.join(root, f))
    return out


def symbols(obj):
    """(defined, undefined) global symbol sets of one object file."""
    res = subprocess.run(["nm", "-P", obj], check=True, capture_output=True, text=True)
    defined, undefined = set(), set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRCVWGS":  # global (upper case): text, data, bss, rodata, common, weak
            defined.add(name)
    return defined, undefined


def graph(objs):
    """{file: {file it calls: sorted symbols}} between DIR's files."""
    defs, undefs = {}, {}
    for src, paths in objs.items():
        d, u = set(), set()
        for p in paths:
            pd, pu = symbols(p)
            d |= pd
            u |= pu
        defs[src], undefs[src] = d, u
    owner = {}
    for src, d in defs.items():
        for name in d:
            owner.setdefault(name, src)
    edges = collections.defaultdict(dict)
    for src, u in undefs.items():
        for name in sorted(u - defs[src]):
            dst = owner.get(name)
            if dst and dst != src:
                edges[src].setdefault(dst, []).append(name)
    return edges


def sccs(nodes, edges):
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, {})))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def private_includes(src_root, src_dir):
    """Messages for every inclusion of a NAME_int.h from outside its component."""
    bad = []
    top = os.path.join(src_root, src_dir)
    for f in sorted(os.listdir(top)):
        if not f.endswith((".c", ".h")):
            continue
        with open(os.path.join(top, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for inc in INCLUDE.findall(text):
            name = os.path.basename(inc)
            if not name.endswith("_int.h"):
                continue
            comp = name[: -len("_int.h")]
            here = os.path.normpath(os.path.join(src_dir, os.path.dirname(inc)))
            if here != os.path.normpath(src_dir):
                bad.append(f"{src_dir}/{f} includes {inc}, private to another directory")
            elif not f.startswith(comp):
                bad.append(f"{src_dir}/{f} includes {name}, private to {comp}*.c")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir")
    ap.add_argument("dir", help="source directory relative to the source root, e.g. hub")
    ap.add_argument("--src", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
                    help="the source root (default: this script's parent directory)")
    ap.add_argument("--graph", action="store_true", help="also print every file's dependencies")
    a = ap.parse_args()
    objs = objects(a.build_dir, a.src, a.dir)
    if not objs:
        print(f"file_cycles: no object files under {a.build_dir}/{a.dir}: build first",
              file=sys.stderr)
        return 2
    edges = graph(objs)
    if a.graph:
        for src in sorted(objs):
            print(f"{src} -> {', '.join(sorted(edges.get(src, {}))) or '-'}")
    status = 0
    for comp in sccs(objs.keys(), edges):
        if len(comp) < 2:
            continue
        status = 1
        print(f"circle in {a.dir}/: {' '.join(comp)}")
        members = set(comp)
        for src in comp:
            for dst, names in sorted(edges.get(src, {}).items()):
                if dst in members:
                    shown = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
                    print(f"  {src} -> {dst}: {shown}")
    for msg in private_includes(a.src, a.dir):
        status = 1
        print(msg)
    if status == 0:
        print(f"{a.dir}/: {len(objs)} files, no circle between them, no foreign private header")
    return status


if __name__ == "__main__":
    sys.exit(main())
