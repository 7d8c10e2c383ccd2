#!/usr/bin/env python3
"""Fails when two top-level modules of src/ import each other, directly or through others.

A module is a top-level entry of src/ (src/wal/ and src/wal.rs are `wal`); an import is any
`crate::<module>` path in a source file of another module (use lines and inline paths,
comments and doc comments excluded). Prints the graph's cycles (strongly connected
components of more than one module) and exits 1 if there is one; with --graph, prints every
module's imports.
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)


def module_of(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def graph():
    modules = {module_of(n) for n in os.listdir(SRC)} - {"lib", "main"}
    edges = {m: set() for m in modules}
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            me = module_of(os.path.relpath(path, SRC))
            if me not in modules:
                continue
            text = strip_comments(open(path, encoding="utf-8").read())
            names = set(PATH.findall(text))
            for group in USE_GROUP.findall(text):
                names |= {re.split(r"\W", g.strip())[0] for g in group.split(",") if g.strip()}
            edges[me] |= {n for n in names if n in modules and n != me}
    return edges


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    edges = graph()
    if "--graph" in sys.argv:
        for m in sorted(edges):
            print(f"{m}: {' '.join(sorted(edges[m]))}")
    found = cycles(edges)
    for comp in found:
        inner = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
        print(f"cycle among {', '.join(comp)}: {'; '.join(inner)}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
