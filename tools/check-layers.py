#!/usr/bin/env python3
# Layer check for the C tree: internal headers stay in their module, hub folders form no include cycle.
# SPDX-License-Identifier: MIT
"""Fails (exit 1) when
  - a file outside a module's folder includes that module's internal header
    (a header named *_int.h, e.g. hub/store/store_int.h), or
  - the folders under hub/ include each other in a cycle, or
  - a hub folder includes one of a higher layer (LAYERS), or is in none.
It reads #include "..." lines only (system headers cannot break a layer) and
prints the hub folder graph it checked, one edge a line.

  check-layers.py [--root DIR] [--modules]   check the tree at DIR (default:
                                 this repo); --modules also prints hub/'s
                                 include graph by module (foo.c + foo.h)
  check-layers.py --self-test    run the check on small made-up trees
"""
import os
import re
import sys
import tempfile

SCAN_DIRS = ("common", "hub", "site", "ctl", "tests", "tools")
SOURCE_EXT = (".c", ".h")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# The build's include directories, relative to the root (CMakeLists.txt).
INCLUDE_DIRS = (".", "tests/unit")


def sources(root):
    for top in SCAN_DIRS:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(x for x in dirs if not x.startswith(("build", ".")))
            for f in sorted(files):
                if f.endswith(SOURCE_EXT):
                    yield os.path.relpath(os.path.join(d, f), root)


def resolve(root, src, name):
    """The repo-relative path an include names, or None (outside the tree)."""
    for base in [os.path.dirname(src)] + list(INCLUDE_DIRS):
        p = os.path.normpath(os.path.join(base, name))
        if not p.startswith("..") and os.path.isfile(os.path.join(root, p)):
            return p
    return None


# The hub's layers, top first (docs/architecture.md). A folder may include
# its own layer's other folders (no cycle: checked below) and any lower layer,
# never a higher one.
LAYERS = (
    ("hub",),
    ("hub/api", "hub/net"),
    ("hub/query", "hub/proxy"),
    ("hub/auth",),
    ("hub/tunnel", "hub/http"),
    ("hub/core",),
    ("hub/store",),
)
RANK = {folder: i for i, layer in enumerate(LAYERS) for folder in layer}


def hub_folder(path):
    """hub, hub/store, ... for a path under hub/; None elsewhere."""
    if path != "hub" and not path.startswith("hub/"):
        return None
    return os.path.dirname(path)


def find_cycle(graph):
    """One cycle as a list of nodes (first == last), or None."""
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def check(root, out=sys.stdout, modules=False):
    """Prints the graph and every problem; returns the number of problems."""
    files = list(sources(root))
    internal = {}  # basename -> folders that own an internal header of that name
    for f in files:
        if f.endswith("_int.h"):
            internal.setdefault(os.path.basename(f), set()).add(os.path.dirname(f))
    problems = []
    graph = {}
    for src in files:
        with open(os.path.join(root, src), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        here = os.path.dirname(src)
        for name in INCLUDE_RE.findall(text):
            target = resolve(root, src, name)
            base = os.path.basename(name)
            # By resolved path, and by name too: an include path could reach
            # the header without a relative path.
            owners = {os.path.dirname(target)} if target and target.endswith("_int.h") else set()
            owners |= internal.get(base, set()) if base.endswith("_int.h") else set()
            if owners and here not in owners:
                problems.append(f"{src}: includes {name}, internal to {', '.join(sorted(owners))}/")
            a, b = hub_folder(src), hub_folder(target) if target else None
            if a and b and a != b:
                graph.setdefault(a, set()).add(b)
    if modules:
        print_modules(files, root, out)
    print("hub folder graph:", file=out)
    for a in sorted(graph):
        for b in sorted(graph[a]):
            print(f"  {a} -> {b}", file=out)
    if not graph:
        print("  (no edges)", file=out)
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if a not in RANK or b not in RANK:
                problems.append(f"hub folder {a if a not in RANK else b} is in no layer (LAYERS)")
            elif RANK[b] < RANK[a]:
                problems.append(f"{a} includes {b}, a higher layer")
    cycle = find_cycle(graph)
    if cycle:
        problems.append("include cycle between hub folders: " + " -> ".join(cycle))
    for p in problems:
        print("check-layers: " + p, file=out)
    return len(problems)



def print_modules(files, root, out):
    """The include graph of hub/ by module (foo.c + foo.h), and its two-way edges."""
    graph = {}
    for src in files:
        if not src.startswith("hub/"):
            continue
        with open(os.path.join(root, src), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        a = os.path.splitext(src)[0]
        for name in INCLUDE_RE.findall(text):
            target = resolve(root, src, name)
            if target and target.startswith("hub/") and os.path.splitext(target)[0] != a:
                graph.setdefault(a, set()).add(os.path.splitext(target)[0])
    print("hub module graph:", file=out)
    for a in sorted(graph):
        print(f"  {a} -> {' '.join(sorted(graph[a]))}", file=out)
    # A module and its folder's internal header (foo_int.h) include each
    # other by design (libuv's public/internal split): not reported.
    both = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a]
                   if a in graph.get(b, ()) and not (a.endswith("_int") or b.endswith("_int"))})
    print("two-way module edges: " + (", ".join(f"{a} <-> {b}" for a, b in both) or "none"),
          file=out)

def self_test():
    """The check passes a clean tree and fails each kind of breach."""
    import io
    import shutil

    def tree(files):
        d = tempfile.mkdtemp(prefix="check-layers-")
        for path, text in files.items():
            os.makedirs(os.path.join(d, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(d, path), "w") as fh:
                fh.write(text)
        return d

    clean = {
        "hub/store/store_int.h": "",
        "hub/store/db.c": '#include "store_int.h"\n#include "../../common/x.h"\n',
        "hub/store/registry.h": "",
        "hub/main.c": '#include "store/registry.h"\n',
        "common/x.h": "",
    }
    cases = [
        ("clean", clean, 0),
        ("outside include by path", dict(clean, **{"hub/main.c": '#include "store/store_int.h"\n'}), 1),
        ("outside include from tests", dict(clean, **{"tests/unit/hub/t.c": '#include "hub/store/store_int.h"\n'}), 1),
        ("outside include by name", dict(clean, **{"hub/api.c": '#include "store_int.h"\n'}), 1),
        ("folder cycle", dict(clean, **{"hub/store/sites.c": '#include "../hub.h"\n', "hub/hub.h": ""}), 1),
        ("include up a layer", dict(clean, **{"hub/http/h1.c": '#include "../api/api.h"\n',
                                              "hub/api/api.h": ""}), 1),
        ("include down a layer", dict(clean, **{"hub/api/a.c": '#include "../http/h.h"\n',
                                                "hub/http/h.h": ""}), 0),
        ("folder in no layer", dict(clean, **{"hub/misc/m.c": '#include "../store/registry.h"\n'}), 1),
    ]
    failed = 0
    for name, files, want in cases:
        buf = io.StringIO()
        d = tree(files)
        try:
            got = check(d, buf)
        finally:
            shutil.rmtree(d)
        ok = (got > 0) == (want > 0)
        print(f"{'ok' if ok else 'FAIL'}: {name}: {got} problem(s)")
        if not ok:
            print(buf.getvalue())
            failed += 1
    return 1 if failed else 0


def main(argv):
    if "--self-test" in argv:
        return self_test()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if "--root" in argv:
        root = argv[argv.index("--root") + 1]
    return 1 if check(root, modules="--modules" in argv) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
