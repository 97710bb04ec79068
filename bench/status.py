#!/usr/bin/env python3
"""Time of a /metrics scrape with 10,000 projects and of the status page with 1,000 (stdlib only).

Every project runs once first (rsync_path = /bin/true, all due on the same second), so each has a
latest run, a last success and a next fire: the metrics and the page show everything they can.
Reports the median and the slowest of 20 requests, each timed by curl on the same machine to its
last byte (the server's time plus a loopback transfer).

Usage: bench/status.py [--metrics-projects N] [--page-projects N]
Needs a release build (bench/status.sh does it).
"""
import argparse
import datetime as dt
import os
import sqlite3
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import AUTH, Master, scratch  # noqa: E402


def master_with_runs(n):
    work = scratch("bench-status-")
    master = Master(work, rsync_path="/bin/true", max_concurrent_runs=64, log_keep=1, rsyncd__manage="false",
                    confine="off")
    target = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=max(15, n / 250))
    cron = {"year": str(target.year), "month": str(target.month), "day": str(target.day),
            "hour": str(target.hour), "minute": str(target.minute), "second": str(target.second)}
    every_6h = {"hour": "*/6", "minute": "7"}
    for i in range(n):
        status, body = master.request("POST", "/add_project/", {
            "project": f"p{i:05}", "rsync_host": "upstream.example", "rsync_module": "mod", "dest": f"p{i:05}",
            "cron_options": cron,
        })
        if status != 201:
            raise SystemExit(f"add_project failed: {status} {body}")
    db = sqlite3.connect(f"file:{os.path.join(work, 'mirror-master.db')}?mode=ro", uri=True, timeout=30)
    deadline = target.timestamp() + 600
    while time.time() < deadline:
        time.sleep(1)
        if db.execute("SELECT COUNT(*) FROM runs WHERE status = 'success'").fetchone()[0] >= n:
            break
    # A schedule that goes on, so that every project has a next fire (a new connection: the server
    # closed the idle one while the runs went).
    master.conn = None
    for i in range(n):
        master.request("POST", "/update_project/schedule/", dict(every_6h, id=f"p{i:05}"))
    return master


def timed(master, path, accept="*/*", rounds=20, login=None):
    """curl's time to the last byte (a fast client, as Prometheus' scraper is), median and slowest.
    `login`: curl's arguments for the login (default: the root's Basic credentials)."""
    times, size = [], 0
    login = login or ["-H", f"Authorization: {AUTH}"]
    for _ in range(rounds):
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}",
             *login, "-H", f"Accept: {accept}", f"http://127.0.0.1:{master.port}{path}"],
            capture_output=True, text=True, check=True).stdout.split()
        if out[0] != "200":
            raise SystemExit(f"{path}: {out[0]}")
        times.append(float(out[1]))
        size = int(out[2])
    return statistics.median(times) * 1000, max(times) * 1000, size


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--metrics-projects", type=int, default=10_000)
    parser.add_argument("--page-projects", type=int, default=1_000)
    args = parser.parse_args()
    for n, what in ((args.page_projects, "page"), (args.metrics_projects, "metrics")):
        if n == 0:
            continue
        master = master_with_runs(n)
        if what == "page":
            med, worst, size = timed(master, "/", accept="text/html")
            print(f"status page, {n} projects: median {med:.1f} ms, slowest {worst:.1f} ms, {size / 1024:.0f} KiB")
            med, worst, size = timed(master, "/jobs")
            print(f"/jobs, {n} projects: median {med:.1f} ms, slowest {worst:.1f} ms, {size / 1024:.0f} KiB")
        else:
            med, worst, size = timed(master, "/metrics")
            print(f"/metrics, {n} projects: median {med:.1f} ms, slowest {worst:.1f} ms, {size / 1024:.0f} KiB")
        master.stop()


if __name__ == "__main__":
    main()
