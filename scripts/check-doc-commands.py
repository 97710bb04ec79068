#!/usr/bin/env python3
"""Every `mirrorctl` command the README and docs/ show names a command and flags the built
mirrorctl has: the docs cannot drift from the CLI. Run by scripts/test.sh after the build.

Reads each line that holds `mirrorctl ` in the Markdown files; the part before a `#` comment is
split on `;` and `|` into alternatives (`import SRC [--prune] | diff SRC`, `users [list|add NAME]`).
An alternative that starts with `mirrorctl`, or whose first word is a command (or a subcommand of
the command before it), is checked: the command exists, and each `--flag` or `-f` it shows is in
that command's `--help`.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CTL = ROOT / "target" / "debug" / "mirrorctl"
GLOBAL = {"--url", "--json", "--help", "-h", "--version", "-V"}


def help_of(path):
    out = subprocess.run([str(CTL), *path, "--help"], capture_output=True, text=True, check=False)
    return out.stdout


def commands_in(text):
    names, inside = set(), False
    for line in text.splitlines():
        if line.startswith("Commands:"):
            inside = True
            continue
        if inside:
            m = re.match(r"^  (\S+)", line)
            if not m:
                break
            names.add(m.group(1))
    return names - {"help"}


def code_of(text):
    """(line number, code) of each line of a fenced block, and each inline code span, that
    names mirrorctl; a fenced line's `#` comment left out."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if "mirrorctl " in line:
                yield n, line.split(" #")[0]
            continue
        for span in re.findall(r"`([^`]*mirrorctl [^`]*)`", line):
            yield n, span


def main():
    if not CTL.exists():
        sys.exit(f"{CTL} is not built")
    top = commands_in(help_of([]))
    subs, helps, errors, checked = {}, {}, [], 0

    def help_for(path):
        key = tuple(path)
        if key not in helps:
            helps[key] = help_of(path)
        return helps[key]

    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for f in files:
        for n, code in code_of(f.read_text()):
            start = code.find("mirrorctl ")
            current = None
            # A shell's own syntax ends the command: process substitution, a pipe into another.
            code = re.split(r"<\(|\$\(|&&|>", code[start:])[0]
            for part in re.split(r"[;|]", code):
                words = [w.strip("[]`'\"(){}") for w in part.split()]
                words = [w for w in words if w]
                if not words:
                    continue
                if words[0] == "mirrorctl":
                    words = words[1:]
                    while words and words[0] in ("--url", "--json"):
                        words = words[2:] if words[0] == "--url" else words[1:]
                    if not words or words[0] not in top:
                        if words and not words[0].startswith("-") and words[0] != "...":
                            errors.append(f"{f.name}:{n}: no command '{words[0]}'")
                        current = None
                        continue
                    current = [words[0]]
                    words = words[1:]
                elif current and current[0] in subs and words[0] in subs[current[0]]:
                    current = [current[0]]
                elif words[0] in top:
                    current = [words[0]]
                    words = words[1:]
                elif not current:
                    continue
                else:
                    continue
                if current[0] not in subs:
                    subs[current[0]] = commands_in(help_for(current[:1]))
                if words and words[0] in subs[current[0]]:
                    current = [current[0], words[0]]
                    words = words[1:]
                text = help_for(current)
                for w in words:
                    flag = w.split("=")[0].rstrip(",.:")
                    if not re.fullmatch(r"--?[a-zA-Z][\w-]*", flag) or flag in GLOBAL:
                        continue
                    checked += 1
                    if not re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text):
                        errors.append(f"{f.name}:{n}: mirrorctl {' '.join(current)} has no {flag}")
    if errors:
        print("\n".join(errors))
        sys.exit(f"{len(errors)} mirrorctl commands in the docs do not match the CLI")
    print(f"docs: {checked} mirrorctl flags in {len(files)} files match the CLI")


if __name__ == "__main__":
    main()
