#!/usr/bin/env python3
"""Checks that every file and function the docs name exists.

In README.md and docs/**/*.md: each `path/with/extension` in backticks must be
a file or folder of the repository; each `name()` in backticks must be defined
somewhere in the sources (as `name(` in a .h/.cpp/.cu/.py/.sh file); each
relative Markdown link must point at an existing file. Exits 1 listing what is
missing. Usage: scripts/check_docs.py [ROOT]
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
docs = [os.path.join(root, "README.md")]
for d, _, fs in os.walk(os.path.join(root, "docs")):
    docs += [os.path.join(d, f) for f in fs if f.endswith(".md")]
sources = []
for top in ["engine", "io", "layers", "data", "dicom", "phantom", "weights", "train", "seq", "infer", "report", "serve", "apps", "tests", "scripts", "bench"]:
    for d, _, fs in os.walk(os.path.join(root, top)):
        sources += [os.path.join(d, f) for f in fs if f.endswith((".h", ".cpp", ".cu", ".inc", ".py", ".sh"))]
code = "\n".join(open(p, errors="replace").read() for p in sources)
# a path: at least one slash, and a last part with an extension, or a trailing slash
path_re = re.compile(r"`([\w.-]+(?:/[\w.*<>-]+)*(?:/[\w*<>-]+\.[\w]+|/))`")
func_re = re.compile(r"`(?:[\w:]+::)?(\w+)\(\)`")
link_re = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")
missing = []
checked = 0
for doc in docs:
    text = open(doc).read()
    rel = os.path.relpath(doc, root)
    for p in path_re.findall(text):
        if "<" in p or "*" in p:
            continue  # patterns, not files
        exists = os.path.exists(os.path.join(root, p))
        if not exists and p.startswith(("build", "demo/", "run/", "images/", "split/", "eval/", "phantom/", "report/", "WORK/")):
            continue  # outputs of a run (phantom/ and report/ are also source folders: their files are checked)
        checked += 1
        if not exists:
            missing.append(f"{rel}: file `{p}`")
    for f in func_re.findall(text):
        checked += 1
        if not re.search(r"\b" + re.escape(f) + r"\(", code):
            missing.append(f"{rel}: function `{f}()`")
    for link in link_re.findall(text):
        if link.startswith("http"):
            continue
        checked += 1
        if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(doc), link))):
            missing.append(f"{rel}: link ({link})")
for m in missing:
    print("missing:", m)
print(f"{checked} references in {len(docs)} documents checked, {len(missing)} missing")
print(f"{0 if missing else 1} passed, {1 if missing else 0} failed")
sys.exit(1 if missing else 0)
