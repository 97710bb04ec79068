#!/usr/bin/env python3
"""Versioned configuration and import at scale (stdlib only).

1. POST /import of a document with N projects (default 10,000) into an empty master: the time of
   the request (one transaction, N commits), then the same document again (nothing changes), then a
   dry run with prune of a document that drops a tenth and edits a tenth.
2. A project given V versions (default 10,000: alternate enable/disable), then
   GET /projects/{id}/history (the newest 100, with their changed fields) and ?limit=1000.

Each timing is the median of a few rounds, timed by curl on the same machine to the last byte.
Usage: bench/config.py [--projects N] [--versions V]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import AUTH, Master, scratch  # noqa: E402


def curl(master, method, path, body_file=None):
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-X", method,
            "-H", f"Authorization: {AUTH}", "-H", "Content-Type: application/json"]
    if body_file:
        args += ["--data-binary", f"@{body_file}"]
    out = subprocess.run(args + [f"http://127.0.0.1:{master.port}{path}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), float(out[1])


def document(n, drop=0, edit=0):
    projects = []
    for i in range(n):
        if i < drop:
            continue
        host = "edited.example" if i >= n - edit else "upstream.example"
        projects.append({"id": f"p{i:05}", "project": f"p{i:05}", "rsync_host": host, "rsync_module": "mod",
                         "dest": f"p{i:05}", "cron_options": {"hour": "*/6", "minute": str(i % 60)},
                         "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"}})
    return {"projects": projects}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--projects", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=10_000)
    a = ap.parse_args()
    work = scratch("bench-config-")
    master = Master(work, rsyncd__manage="false", confine="off", rsync_path="/bin/true")
    full = os.path.join(work, "full.json")
    with open(full, "w") as f:
        json.dump(document(a.projects), f)
    size = os.path.getsize(full)
    status, first = curl(master, "POST", "/import", full)
    assert status == 200, status
    again = []
    for _ in range(3):
        status, t = curl(master, "POST", "/import", full)
        assert status == 200, status
        again.append(t)
    changed = os.path.join(work, "changed.json")
    with open(changed, "w") as f:
        json.dump(document(a.projects, drop=a.projects // 10, edit=a.projects // 10), f)
    dry = []
    for _ in range(3):
        status, t = curl(master, "POST", "/import?prune=true&dry_run=true", changed)
        assert status == 200, status
        dry.append(t)
    print(f"import of {a.projects} projects ({size / 1e6:.1f} MB JSON) into an empty master: {first * 1000:.0f} ms")
    print(f"the same document again (no change): median {statistics.median(again) * 1000:.0f} ms")
    print(f"dry run with prune, a tenth dropped and a tenth edited: median {statistics.median(dry) * 1000:.0f} ms")

    # A project with many versions (a new connection: the server closed the idle one meanwhile).
    master.conn = None
    started = time.time()
    key = f"p{a.projects - 1:05}"
    for v in range(a.versions - 1):
        status, _ = master.request("POST", f"/{'disable' if v % 2 == 0 else 'enable'}_project/?id={key}")
        assert status == 200, status
    made = time.time() - started
    _, body = master.request("GET", f"/projects/{key}/history?limit=1")
    versions = body["versions"][0]["version"]
    times = {}
    for limit in (100, 1000):
        rounds = []
        for _ in range(20):
            status, t = curl(master, "GET", f"/projects/{key}/history?limit={limit}")
            assert status == 200, status
            rounds.append(t)
        times[limit] = rounds
    print(f"{versions} versions of one project ({a.versions - 1} writes in {made:.1f} s)")
    for limit, rounds in times.items():
        print(f"GET /projects/{{id}}/history?limit={limit}: median {statistics.median(rounds) * 1000:.1f} ms, "
              f"slowest {max(rounds) * 1000:.1f} ms")
    master.stop()


if __name__ == "__main__":
    main()
