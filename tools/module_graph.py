#!/usr/bin/env python3
"""Which module calls which, read off the object files with nm.

  module_graph.py BUILDDIR [--dot]

A module is a source file's stem, except that files named <module>_<verb>.c
that belong to one module are folded into it (FOLD below). An edge A -> B
means an object of A refers to a symbol an object of B defines. Prints the
edges, then every cycle; exits 1 when there is one (docs/architecture.md:
no two modules call each other)."""
import os
import re
import subprocess
import sys

# files that are one module with another file
FOLD = {"leg_media": "leg", "transfer_refer": "transfer"}
# libc names some modules define on purpose (interposers): calls to them
# are calls to libc, not to the module
INTERPOSED = {"getaddrinfo", "getnameinfo", "freeaddrinfo", "gai_strerror", "accept",
              "accept4", "close", "epoll_wait", "epoll_pwait"}


def objects(builddir):
    for d in sorted(os.listdir(builddir)):
        if d.endswith(".p") and d.startswith("lib") or d == "sipxferd.p":
            for f in sorted(os.listdir(os.path.join(builddir, d))):
                if f.endswith(".o"):
                    yield os.path.join(builddir, d, f)


def module_of(obj):
    stem = re.sub(r"\.c\.o$", "", os.path.basename(obj))
    stem = re.sub(r"^src_", "", stem)
    return FOLD.get(stem, stem)


def nm(obj):
    out = subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True, text=True,
                         check=True).stdout
    defined = {l.split()[-1] for l in out.splitlines() if l.strip()}
    out = subprocess.run(["nm", "-u", obj], capture_output=True, text=True, check=True).stdout
    undefined = {l.split()[-1] for l in out.splitlines() if l.strip()}
    return defined, undefined


def graph(builddir):
    defs, uses = {}, {}
    for obj in objects(builddir):
        m = module_of(obj)
        d, u = nm(obj)
        for s in d:
            if s not in INTERPOSED:
                defs[s] = m
        uses.setdefault(m, set()).update(u)
    edges = {}
    for m, syms in uses.items():
        for s in syms:
            t = defs.get(s)
            if t and t != m:
                edges.setdefault(m, {}).setdefault(t, set()).add(s)
    return edges


def cycles(edges):
    """Every elementary cycle's smallest rotation, found by DFS (the graph
    is small)."""
    found = set()

    def dfs(start, node, path, seen):
        for nxt in edges.get(node, {}):
            if nxt == start:
                cyc = path[:]
                i = cyc.index(min(cyc))
                found.add(tuple(cyc[i:] + cyc[:i]))
            elif nxt not in seen and nxt > start:
                seen.add(nxt)
                dfs(start, nxt, path + [nxt], seen)
                seen.discard(nxt)

    for start in edges:
        dfs(start, start, [start], {start})
    return sorted(found, key=lambda c: (len(c), c))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    edges = graph(sys.argv[1])
    if "--dot" in sys.argv:
        print("digraph modules {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print('  "%s" -> "%s";' % (a, b))
        print("}")
        return 0
    for a in sorted(edges):
        print("%s -> %s" % (a, ", ".join(sorted(edges[a]))))
    cyc = cycles(edges)
    for c in cyc:
        names = []
        for a, b in zip(c, c[1:] + c[:1]):
            names.append("%s -> %s (%s)" % (a, b, ", ".join(sorted(edges[a][b])[:3])))
        print("CYCLE: " + "; ".join(names))
    print("%d modules, %d cycles" % (len(edges), len(cyc)))
    return 1 if cyc else 0


if __name__ == "__main__":
    sys.exit(main())
