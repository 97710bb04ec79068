#!/usr/bin/env python3
"""Hostile documents against the release master (stdlib only; issue 31).

Each class (alias bombs, deep nesting in JSON and YAML, duplicate keys, an oversized body) is
posted to POST /import ROUNDS times (default 5). Printed per class: the status, the worst time to
the answer, and the master's peak resident memory while it was refused (VmHWM, reset before each
class through /proc/PID/clear_refs), beside the master's resident memory before and after.
For scale, the same is printed for a valid 1,000-project document, which the master applies.
Usage: bench/documents.py [--rounds N]
"""
import argparse
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import AUTH, Master, scratch  # noqa: E402


def alias_bomb(levels, pad_to):
    doc = "projects:\n  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels):
        doc += f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    pad = "# a site's notes\n"
    line = "# lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n"
    pad += line * max(0, (pad_to - len(doc) - len(pad)) // len(line))
    return (pad + doc).encode()


def classes():
    valid = {"projects": [{"id": f"p{i:04}", "project": f"p{i:04}", "rsync_host": "up.example",
                           "rsync_module": "m", "dest": f"p{i:04}"} for i in range(1000)]}
    block = "".join(f"{' ' * i}k{i}:\n" for i in range(1000))
    return [
        ("valid, 1,000 projects (applied)", json.dumps(valid).encode()),
        ("alias bomb, 40 KiB", alias_bomb(12, 40 * 1024)),
        ("alias bomb, 391 KiB", alias_bomb(30, 391 * 1024)),
        ("JSON nested 200,000 deep", b'{"projects": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
        ("YAML flow nested 1,000,000 deep", b"projects: " + b"[" * 1_000_000 + b"]" * 1_000_000 + b"\n"),
        ("YAML block nested 1,000 deep", block.encode()),
        ("duplicate keys (users[0].role)", b"users:\n  - username: m\n    role: user\n    role: root\n"),
        ("9 MiB document", b"#" * (9 * 1024 * 1024)),
    ]


def post(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    try:
        conn.request("POST", "/import", body=body, headers={"Authorization": AUTH,
                                                            "Content-Type": "application/yaml"})
        resp = conn.getresponse()
        resp.read()
        status = resp.status
    except (BrokenPipeError, ConnectionResetError):
        status = "reset"
    return status, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    work = scratch("bench-documents-")
    master = Master(work, rsyncd__manage="false", confine="off")
    pid = master.proc.pid
    print(f"{'class':34} {'status':>6} {'worst ms':>9} {'peak MB':>8} {'before':>7} {'after':>7}")
    try:
        for name, body in classes():
            before = master.rss_kib("VmRSS") / 1024
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            worst, status = 0.0, None
            for _ in range(a.rounds):
                status, took = post(master.port, body)
                worst = max(worst, took)
            peak = master.rss_kib("VmHWM") / 1024
            after = master.rss_kib("VmRSS") / 1024
            print(f"{name:34} {status!s:>6} {worst * 1000:9.1f} {peak:8.1f} {before:7.1f} {after:7.1f}")
    finally:
        master.proc.terminate()
        master.proc.wait()


if __name__ == "__main__":
    main()
