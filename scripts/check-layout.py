#!/usr/bin/env python3
"""The layout rules of docs/layout.md, checked on every test run:

- no file of the master, the slave or mirrorctl over 500 lines before its test module;
- no function over 80 lines, but those marked `// layout: table` on the line before (a table or a
  state machine ported as one, which reads best whole);
- SQL only in master/src/db/;
- no `json!` and no indexing of a response by field name in ctl/src (outside tests).

Exits 1 naming every breach.
"""

import os
import re
import sys

MAX_FILE = 500
MAX_FN = 80
FILE_ROOTS = ["master/src", "slave/src", "ctl/src"]
FN_ROOTS = ["master/src", "slave/src", "ctl/src", "common/src", "runtime/src", "confine/src"]

FN_START = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")
SQL = re.compile(r"sqlx::query|\bon!\(|\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b")


def sources(root):
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".rs"):
                yield os.path.join(dirpath, name)


def code_lines(path):
    """The lines before the file's test module."""
    lines = open(path, encoding="utf-8").read().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines


def strip(line):
    """A line without its string and char literals and its comment, for counting braces."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return re.sub(r"//.*", "", line)


def long_functions(path, lines):
    for i, line in enumerate(lines):
        m = FN_START.match(line)
        if not m:
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            s = strip(lines[j])
            depth += s.count("{") - s.count("}")
            opened = opened or "{" in s
            if opened and depth <= 0:
                break
            if not opened and s.rstrip().endswith(";"):
                break
            j += 1
        length = j - i + 1
        marked = i > 0 and "layout: table" in lines[i - 1]
        if length > MAX_FN and not marked:
            yield f"{path}:{i + 1}: fn {m.group(6)} is {length} lines (at most {MAX_FN})"


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    breaches = []
    for root in FILE_ROOTS:
        for path in sources(root):
            n = len(code_lines(path))
            if n > MAX_FILE:
                breaches.append(f"{path}: {n} lines before its tests (at most {MAX_FILE})")
    for root in FN_ROOTS:
        for path in sources(root):
            breaches.extend(long_functions(path, code_lines(path)))
    for root in ["master/src", "slave/src", "ctl/src", "common/src", "runtime/src"]:
        for path in sources(root):
            if path.startswith("master/src/db/"):
                continue
            for i, line in enumerate(code_lines(path)):
                if SQL.search(strip(line)):
                    breaches.append(f"{path}:{i + 1}: SQL outside master/src/db/")
    for path in sources("ctl/src"):
        for i, line in enumerate(code_lines(path)):
            s = strip(line)
            if "json!" in s or re.search(r'\[\s*""\s*\]', s):
                breaches.append(f"{path}:{i + 1}: json! or a response indexed by field name in mirrorctl")
    for b in breaches:
        print(b, file=sys.stderr)
    if breaches:
        sys.exit(1)
    print("layout: files, functions, SQL and mirrorctl's typing as docs/layout.md says")


if __name__ == "__main__":
    main()
