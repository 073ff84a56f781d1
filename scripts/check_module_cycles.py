#!/usr/bin/env python3
"""Fails if two top-level modules of src/ import each other (directly or through others).

The folder tree reads as the data path only while dependencies point one way; doc links
(`//` comments) do not count as imports, nor do unit-test files (`tests.rs`, `tests/`): a test
may build the whole config tree to exercise one section. Run by scripts/test.sh.
"""
import os
import re
import sys

root = os.path.join(os.path.dirname(__file__), "..", "src")
tops = {n[:-3] if n.endswith(".rs") else n for n in os.listdir(root)} - {"lib", "bin", "main"}
graph = {m: set() for m in tops}
for base, _, files in os.walk(root):
    for name in files:
        path = os.path.join(base, name)
        top = os.path.relpath(path, root).split(os.sep)[0].removesuffix(".rs")
        if top not in graph or name == "tests.rs" or "tests" in os.path.relpath(base, root).split(os.sep):
            continue
        for line in open(path, encoding="utf-8"):
            if line.lstrip().startswith("//"):
                continue
            for used in re.findall(r"crate::(\w+)", line):
                if used != top and used in graph:
                    graph[top].add(used)


def reaches(start, goal):
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return False


cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
if cycles:
    for m in sorted(graph):
        print(f"  {m} -> {', '.join(sorted(graph[m]))}", file=sys.stderr)
    sys.exit(f"module import cycles: {cycles}")
print(f"module graph: {len(graph)} top-level modules, no import cycle")
