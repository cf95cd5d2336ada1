#!/usr/bin/env bash
# Checks that every target's `dependencies:` in Package.swift are exactly the project modules its sources use:
# the modules its Swift files `import` (system library targets included), and for C targets the system library
# targets whose headers (as listed in their shim.h) the C files `#include`. A dependency nothing imports only
# slows the build and hides the layering; an import that works only through another target's dependency breaks
# when that one changes. Modules outside the package (Foundation, Testing, Glibc, Dispatch) are ignored.
# Also checks that every target with Swift sources builds with the upcoming feature MemberImportVisibility
# (SE-0444): without it a file can use members of a module it only loads transitively, the incremental build does
# not track that module for the file, and an object compiled against an old layout of one of its types is kept
# (tune read BPETokenizer.padId at a stale field offset and trapped).
# Exit 0 when all targets agree, 1 (with one line per mismatch) otherwise. Needs only bash and python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
exec python3 - "$root" <<'PY'
import os, re, sys

root = sys.argv[1]
text = open(os.path.join(root, "Package.swift"), encoding="utf-8").read()
# Drop // comments so a commented-out target or dependency does not count (no string in Package.swift holds "//").
text = re.sub(r"//[^\n]*", "", text)

def call_args(start):
    """The text between the parenthesis at `start` and its match."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    sys.exit("check_deps: unbalanced parentheses in Package.swift")

targets = []   # (kind, name, dependencies, directory)
settings = {}  # target -> the name of its swiftSettings variable, or the literal list's text, or None
for m in re.finditer(r"\.(target|executableTarget|testTarget|systemLibrary)\s*\(", text):
    args = call_args(m.end() - 1)
    name = re.search(r'\bname:\s*"([^"]+)"', args).group(1)
    deps = set()
    d = re.search(r"\bdependencies:\s*\[", args)
    if d:
        depth, j = 1, d.end()
        while depth:
            depth += {"[": 1, "]": -1}.get(args[j], 0)
            j += 1
        body = args[d.end():j - 1]
        # "X", .target(name: "X"), .byName(name: "X"); products of other packages would be .product(...): none.
        deps = set(re.findall(r'"([^"]+)"', body))
    p = re.search(r'\bpath:\s*"([^"]+)"', args)
    kind = m.group(1)
    directory = p.group(1) if p else ("Tests/" if kind == "testTarget" else "Sources/") + name
    targets.append((kind, name, deps, directory))
    ss = re.search(r"\bswiftSettings:\s*(\w+|\[)", args)
    settings[name] = None if not ss else (args[ss.start(1):] if ss.group(1) == "[" else ss.group(1))

names = {t[1] for t in targets}
# The headers each system library target provides: what its shim.h includes.
headers = {}
for kind, name, _, directory in targets:
    if kind == "systemLibrary":
        shim = os.path.join(root, directory, "shim.h")
        if os.path.exists(shim):
            for h in re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', open(shim, encoding="utf-8").read(), re.M):
                headers[h] = name

import_re = re.compile(r"^\s*(?:@\w+\s+)*import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?(\w+)", re.M)
include_re = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)

bad = 0
for kind, name, deps, directory in targets:
    if kind == "systemLibrary":
        continue
    used = set()
    for dirpath, dirnames, files in os.walk(os.path.join(root, directory)):
        dirnames[:] = [x for x in dirnames if x != "Resources"]   # test data, not code
        for f in files:
            path = os.path.join(dirpath, f)
            if f.endswith(".swift"):
                used |= {x for x in import_re.findall(open(path, encoding="utf-8").read()) if x in names}
            elif f.endswith((".c", ".h")):
                used |= {headers[h] for h in include_re.findall(open(path, encoding="utf-8").read()) if h in headers}
    used.discard(name)
    missing, unused = sorted(used - deps), sorted(deps - used)
    if missing or unused:
        bad += 1
        parts = []
        if missing:
            parts.append("imported but not declared: " + ", ".join(missing))
        if unused:
            parts.append("declared but not imported: " + ", ".join(unused))
        print(f"check_deps: {name}: " + "; ".join(parts))
# Settings variables (`let x: [SwiftSetting] = ...`) that enable MemberImportVisibility, directly or through another.
defs = dict(re.findall(r"\blet\s+(\w+)\s*:\s*\[SwiftSetting\]\s*=\s*([^\n]*(?:\n[ \t]+[^\n]*)*)", text))
feature = '.enableUpcomingFeature("MemberImportVisibility")'
good = {n for n, e in defs.items() if feature in e}
while True:
    more = {n for n, e in defs.items() if n not in good and any(re.search(rf"\b{g}\b", e) for g in good)}
    if not more:
        break
    good |= more
for kind, name, _, directory in targets:
    if kind == "systemLibrary":
        continue
    swift = any(f.endswith(".swift") for _, _, files in os.walk(os.path.join(root, directory)) for f in files)
    s = settings.get(name)
    if swift and not (s in good or (s is not None and s.startswith("[") and feature in s.split("]")[0])):
        bad += 1
        print(f"check_deps: {name}: Swift target without {feature} in its swiftSettings")
if bad:
    sys.exit(1)
print(f"check_deps: {len([t for t in targets if t[0] != 'systemLibrary'])} targets, dependencies equal imports, MemberImportVisibility on")
PY
