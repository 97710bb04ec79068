#!/usr/bin/env python3
"""Hostile schedules against a release master (stdlib only). Prints figures; asserts nothing.

1. The worst time to accept or refuse one schedule, over a set of adversarial `cron_options`
   (long comma lists, every field at its item cap, schedules that never fire or fire once in
   decades, zones with DST, far start dates), each sent 5 times. Goal: under 10 ms.
2. The latency of anonymous GET /list_projects/ (100 projects) while 8 clients send those
   schedules as fast as they can (each accepted one changes a project, so the listing is rebuilt).
   Goal: p99 under 50 ms.

Usage: bench/schedules.py [--seconds N]   (bench/schedules.sh builds the release master first)
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import AUTH, MASTER, PASSWORD, free_port, percentile, scratch  # noqa: E402


def adversarial():
    """(name, cron_options) pairs, each as costly as a request may make a schedule."""
    every = lambda n, top: ",".join(str(i % (top + 1)) for i in range(n))
    ranges = ",".join(f"{i}-{i + 1}" for i in range(0, 58, 1))[:256]
    return [
        ("20 KB week list", {"week": ",".join(str(i % 53 + 1) for i in range(7000))}),
        ("900 KB second list", {"second": "1," * 450_000}),
        ("64 items in every field", {
            "year": every(64, 2100).replace("0,", "2030,"), "month": every(64, 12).replace("0", "1"),
            "day": every(64, 31).replace("0", "1"), "week": every(64, 53).replace("0", "1"),
            "day_of_week": every(64, 6), "hour": every(64, 23), "minute": every(64, 59), "second": every(64, 59)}),
        ("256-char range lists", {"minute": ranges, "second": ranges}),
        ("never fires: Feb 30", {"month": "2", "day": "30"}),
        ("never fires: Feb 31 on a Monday, every second", {"month": "2", "day": "31", "day_of_week": "mon",
                                                           "second": "*"}),
        ("rare: Feb 29 on a Monday", {"month": "2", "day": "29", "day_of_week": "mon"}),
        ("rare: 5th Friday of February", {"month": "2", "day": "5th fri"}),
        ("last Sunday, DST zone, every second", {"day": "last sun", "hour": "2", "minute": "*", "second": "*",
                                                 "timezone": "Europe/Berlin"}),
        ("Lord Howe half-hour DST", {"hour": "2", "minute": "*/7", "timezone": "Australia/Lord_Howe"}),
        ("start in year 9000", {"hour": "*", "start_date": "9000-01-01 00:00"}),
        ("end before the first fire", {"year": "2090", "end_date": "2080-01-01"}),
        ("ISO week 53 in leap years", {"week": "53", "day_of_week": "sun", "hour": "23"}),
        ("steps everywhere", {"year": "*/3", "month": "*/5", "day": "*/7", "hour": "*/11", "minute": "*/13",
                              "second": "*/17"}),
    ]


class Master:
    def __init__(self, workdir):
        self.port = free_port()
        env = dict(os.environ)
        env.update({"MIRROR_ROOT_PASSWORD": PASSWORD, "MIRROR_MASTER__LISTEN": f"127.0.0.1:{self.port}",
                    "MIRROR_MASTER__LOG": "warn", "MIRROR_MASTER__RSYNCD__MANAGE": "false"})
        self.proc = subprocess.Popen([MASTER], cwd=workdir, env=env, stdout=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                Client(self.port).request("GET", "/list_projects/")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("master did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


class Client:
    def __init__(self, port, auth=True):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.auth = auth

    def request(self, method, path, body=None):
        """(status, body); a 413 the master answered before the whole body was sent, and closed,
        comes back as the status it sent, or "closed" when the answer could not be read."""
        headers = {"Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = AUTH
        payload = json.dumps(body).encode() if body is not None else None
        try:
            self.conn.request(method, path, body=payload, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer may still be there to read
        try:
            resp = self.conn.getresponse()
            status, data = resp.status, resp.read()
            if resp.will_close:
                self.conn.close()
            return status, data
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return "closed", b""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    if not os.path.exists(MASTER):
        raise SystemExit(f"{MASTER} missing: cargo build --release --bin mirror-master")
    work = scratch("bench-schedules-")
    master = Master(work)
    try:
        run(master, args.seconds)
    finally:
        master.stop()


def run(master, seconds):
    admin = Client(master.port)
    for i in range(100):
        status, data = admin.request("POST", "/add_project/", {
            "project": f"p{i}", "rsync_host": "upstream.example", "rsync_module": "m", "dest": f"p{i}",
            "cron_options": {"minute": str(i % 60)}})
        assert status == 201, data

    cases = adversarial()
    print(f"1. time to accept or refuse one schedule (/update_project/schedule/, best of 5; worst case counts):")
    worst = 0.0
    for name, cron in cases:
        times, answer = [], None
        for _ in range(5):
            t0 = time.perf_counter()
            status, data = admin.request("POST", "/update_project/schedule/", {"id": "p0", **cron})
            times.append(time.perf_counter() - t0)
            answer = status
        body_kib = len(json.dumps(cron)) / 1024
        slowest = max(times)
        worst = max(worst, slowest)
        print(f"   {name:48} {body_kib:8.1f} KiB  -> {answer}  median {sorted(times)[2] * 1000:6.2f} ms  "
              f"max {slowest * 1000:6.2f} ms")
    print(f"   worst: {worst * 1000:.2f} ms (goal: under 10 ms)")

    print(f"2. anonymous GET /list_projects/ (100 projects) while 8 clients send these schedules, "
          f"{seconds} s:")
    stop = time.time() + seconds
    sent = [0] * 8

    def attacker(k):
        c = Client(master.port)
        i = k
        while time.time() < stop:
            _, cron = cases[i % len(cases)]
            c.request("POST", "/update_project/schedule/", {"id": f"p{1 + k}", **cron})
            sent[k] += 1
            i += 1

    threads = [threading.Thread(target=attacker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    reader = Client(master.port, auth=False)
    latencies = []
    while time.time() < stop:
        t0 = time.perf_counter()
        status, _ = reader.request("GET", "/list_projects/")
        latencies.append(time.perf_counter() - t0)
        assert status == 200
    for t in threads:
        t.join()
    print(f"   {len(latencies)} listings, {sum(sent)} hostile schedule requests "
          f"({sum(sent) / seconds:.0f}/s)")
    print(f"   listing latency p50 {percentile(latencies, 50) * 1000:.2f} ms  p99 "
          f"{percentile(latencies, 99) * 1000:.2f} ms  max {max(latencies) * 1000:.2f} ms (goal: p99 under 50 ms)")


if __name__ == "__main__":
    main()
