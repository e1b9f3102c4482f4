#!/usr/bin/env python3
"""Each folder includes only folders before it (README, "Layout").

The order is read from the README's sentence "Each folder uses only folders
above it in this list (engine, io, ...)", so the rule and its statement
cannot drift apart. Every #include "<folder>/..." in a folder's .h, .cpp,
.cu and .inc files is checked; an include of a later folder (a dependency
upwards, or a circle) is reported with file and line, and the exit status
is 1. Usage: scripts/check_layout.py [ROOT]
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
m = re.search(r"Each folder uses only folders\s+above it in this list \(([^)]*)\)", readme)
if not m:
    sys.exit("check_layout: README.md has no 'Each folder uses only folders above it in this list (...)' sentence")
order = [w.strip() for w in m.group(1).replace("\n", " ").split(",")]
missing = [d for d in order if not os.path.isdir(os.path.join(root, d))]
if missing:
    sys.exit(f"check_layout: README.md names folders that do not exist: {', '.join(missing)}")
include = re.compile(r'\s*#\s*include\s+"([A-Za-z0-9_]+)/')
bad, checked = [], 0
for rank, folder in enumerate(order):
    for dirpath, _, files in os.walk(os.path.join(root, folder)):
        for name in sorted(files):
            if not name.endswith((".h", ".cpp", ".cu", ".cuh", ".inc")):
                continue
            path = os.path.join(dirpath, name)
            for lineno, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
                hit = include.match(line)
                if not hit or hit.group(1) not in order:
                    continue
                checked += 1
                if order.index(hit.group(1)) > rank:
                    bad.append(f"{os.path.relpath(path, root)}:{lineno}: {folder}/ includes {hit.group(1)}/, "
                               f"which comes after it ({' < '.join(order)})")
for b in bad:
    print(b)
print(f"check_layout: {checked} includes across folders in {len(order)} folders, {len(bad)} against the order")
sys.exit(1 if bad else 0)
