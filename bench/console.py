#!/usr/bin/env python3
"""The console's pages with 1,000 projects (stdlib only): the front page (/ui/, its first page of
100 rows with a sparkline each), the same filtered and sorted, and a project's page (charts of its
last 100 runs, its runs, configuration, versions, slaves).

Every project runs once (rsync_path = /bin/true, all due on the same second, as bench/status.py
does); then each project's runs are copied in the database until it has 100 (what the pages read
is the same whatever made the runs). Reports the median and the slowest of 20 requests, timed by
curl on the same machine to the last byte, and the page's size, beside the targets (50 ms, 200 KB).

Usage: bench/console.py [--projects N]
Needs a release build (bench/console.sh does it).
"""
import argparse
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import PASSWORD  # noqa: E402
from status import master_with_runs, timed  # noqa: E402


def more_runs(master, per_project):
    """Copies each project's run until it has `per_project` (ids after the master's own)."""
    db = sqlite3.connect(os.path.join(master.workdir, "mirror-master.db"), timeout=60)
    cols = [r[1] for r in db.execute("PRAGMA table_info(runs)") if r[1] != "id"]
    listed = ", ".join(cols)
    # Copies are manual runs (no scheduled fire: one run per fire is a constraint).
    picked = ", ".join({"scheduled_for": "NULL", "trigger": "'manual'"}.get(c, c) for c in cols)
    db.execute(
        f"WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < ?) "
        f"INSERT INTO runs ({listed}) SELECT {picked} FROM runs, k ORDER BY k.n, runs.id", (per_project - 1,))
    db.commit()
    return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def login(master, jar):
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-c", jar, "-H", "Sec-Fetch-Site: same-origin",
         "--data-urlencode", "username=root", "--data-urlencode", f"password={PASSWORD}",
         f"http://127.0.0.1:{master.port}/ui/login"], capture_output=True, text=True, check=True).stdout
    if out != "303":
        raise SystemExit(f"login: {out}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--projects", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    master = master_with_runs(args.projects)
    total = more_runs(master, args.runs)
    jar = os.path.join(master.workdir, "cookies")
    login(master, jar)
    print(f"{args.projects} projects, {total} runs; targets: 50 ms, 200 KB a page")
    for path, what in (("/ui/", "front page (100 rows)"), ("/ui/?state=success&sort=size&q=p0", "front page, filtered and sorted"),
                       ("/ui/projects/p00000", f"project page ({args.runs} runs)"), ("/ui/cluster", "cluster timeline")):
        med, worst, size = timed(master, path, accept="text/html", login=["-b", jar])
        print(f"{what}: median {med:.1f} ms, slowest {worst:.1f} ms, {size / 1000:.0f} KB")
    master.stop()


if __name__ == "__main__":
    main()
