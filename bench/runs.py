#!/usr/bin/env python3
"""Benchmarks of the master's runs (stdlib only). Prints figures; asserts nothing.

1. dispatch: N projects (default 10,000) all due on the same second, with `rsync_path` set to a
   trivial program (/bin/true) and max_concurrent_runs 64. Reports the delay from the scheduled
   second to each run's start (p50, p99, max) and the master's peak RSS.
2. syncup: /syncup/ of an unchanged tree of 10,000 files from a real rsync daemon, against the same
   rsync run by hand. Reports both medians and the overhead; with the defaults (the guard as rsync's
   --max-delete, snapshots), without either, and with a probe that did not change.
3. changed: /syncup/ of a tree of 200,000 files (--files) in which 100 files change before each
   round, with snapshots and the guard on, against rsync by hand doing the same.

Usage: bench/runs.py [dispatch|syncup|changed|all] [--projects N] [--files N]
Needs a release build: cargo build --release --bin mirror-master (bench/runs.sh does it).
"""
import argparse
import atexit
import base64
import datetime as dt
import http.client
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASTER = os.path.join(ROOT, "target", "release", "mirror-master")
PASSWORD = "bench-root-pw"
AUTH = "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()


def scratch(prefix):
    """A temporary directory removed when the bench exits, whatever way it exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Master:
    def __init__(self, workdir, **env):
        self.workdir = workdir
        self.port = free_port()
        full = dict(os.environ)
        full.update({
            "MIRROR_ROOT_PASSWORD": PASSWORD,
            "MIRROR_MASTER__LISTEN": f"127.0.0.1:{self.port}",
            "MIRROR_MASTER__LOG": "warn",
        })
        full.update({f"MIRROR_MASTER__{k.upper()}": str(v) for k, v in env.items()})
        self.proc = subprocess.Popen([MASTER], cwd=workdir, env=full, stdout=subprocess.DEVNULL)
        self.conn = None
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.request("GET", "/list_projects/")
                return
            except OSError:
                self.conn = None
                time.sleep(0.05)
        raise SystemExit("master did not start")

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": AUTH, "Content-Type": "application/json"}
        data = json.dumps(body) if body is not None else None
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # A connection idle past the master's idle_timeout_secs was closed: once more, anew.
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None

    def rss_kib(self, field="VmHWM"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def peak_rss_kib(self):
        return self.rss_kib("VmHWM")

    def cpu_seconds(self):
        """CPU time of the master, and of its children it has waited for (the spawned programs)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        utime, stime, cutime, cstime = (int(v) / tick for v in fields[11:15])
        return utime + stime, cutime + cstime

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def syncup_and_wait(master, project, poll):
    """/syncup/ of `project`, then its run polled every `poll` seconds until it ends; it must succeed."""
    status, body = master.request("GET", f"/syncup/?id={project}")
    assert status == 202, body
    while True:
        _, run = master.request("GET", f"/runs/{body['run_id']}")
        if run["status"] not in ("queued", "running"):
            assert run["status"] == "success", run
            return run
        time.sleep(poll)


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def parse_ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def bench_dispatch(n, confine):
    work = scratch("bench-dispatch-")
    master = Master(work, rsync_path="/bin/true", max_concurrent_runs=64, log_keep=1, rsyncd__manage="false",
                    confine=confine)
    _, status = master.request("GET", "/status/")
    print(f"dispatch with confine = {confine}: runs confined: {status['confined']} ({status.get('confinement')})")
    # Every project fires at the same second, far enough ahead to add them all first.
    added_by = time.time() + max(10, n / 300)
    target = dt.datetime.fromtimestamp(added_by, dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=20)
    cron = {"year": str(target.year), "month": str(target.month), "day": str(target.day),
            "hour": str(target.hour), "minute": str(target.minute), "second": str(target.second)}
    started = time.time()
    for i in range(n):
        status, body = master.request("POST", "/add_project/", {
            "project": f"p{i}", "rsync_host": "upstream.example", "rsync_module": "mod",
            "dest": f"p{i}", "cron_options": cron,
        })
        if status != 201:
            raise SystemExit(f"add_project failed: {status} {body}")
    print(f"dispatch: added {n} projects in {time.time() - started:.1f}s; all fire at {target.isoformat()}; "
          f"RSS now {master.rss_kib('VmRSS') / 1024:.1f} MiB (peak so far {master.peak_rss_kib() / 1024:.1f} MiB)")
    if time.time() > target.timestamp() - 2:
        raise SystemExit("adding took too long for the chosen fire time")
    db = sqlite3.connect(f"file:{os.path.join(work, 'mirror-master.db')}?mode=ro", uri=True, timeout=30)
    own_before, children_before = master.cpu_seconds()
    deadline = target.timestamp() + 300
    done = 0
    while time.time() < deadline:
        time.sleep(1)
        done = db.execute("SELECT COUNT(*) FROM runs WHERE status IN ('success', 'failed')").fetchone()[0]
        if done >= n:
            break
    rows = db.execute("SELECT scheduled_for, started_at, status, queued_at FROM runs WHERE started_at IS NOT NULL").fetchall()
    delays = [(parse_ts(started) - parse_ts(scheduled)).total_seconds() for scheduled, started, *_ in rows if scheduled]
    queued = [(parse_ts(q) - parse_ts(scheduled)).total_seconds() for scheduled, _, _, q in rows if scheduled]
    ok = sum(1 for _, _, status, _ in rows if status == "success")
    rss = master.peak_rss_kib()
    own_after, children_after = master.cpu_seconds()
    master.stop()
    if len(delays) < n:
        print(f"dispatch: only {len(delays)} of {n} runs started")
    print(f"dispatch: {len(delays)} runs started, {ok} succeeded; delay from the scheduled second to start:")
    print(f"  p50 {percentile(delays, 50) * 1000:.0f} ms   p99 {percentile(delays, 99) * 1000:.0f} ms   "
          f"max {max(delays) * 1000:.0f} ms")
    print(f"  recorded as queued after: p50 {percentile(queued, 50) * 1000:.0f} ms   "
          f"p99 {percentile(queued, 99) * 1000:.0f} ms   max {max(queued) * 1000:.0f} ms")
    print(f"  master peak RSS: {rss / 1024:.1f} MiB")
    print(f"  CPU during the burst: master {own_after - own_before:.1f} s, "
          f"the programs it ran {children_after - children_before:.1f} s")
    return percentile(delays, 50), percentile(delays, 99), own_after - own_before


def spawn_floor(n, cap):
    """The same number of /bin/true runs with nothing else: what spawning alone costs here."""
    t0 = time.perf_counter()
    running, started, starts = [], 0, []
    while started < n or running:
        while started < n and len(running) < cap:
            starts.append(time.perf_counter() - t0)
            running.append(subprocess.Popen(["/bin/true"]))
            started += 1
        running.pop(0).wait()
    print(f"  floor: {n} x /bin/true from Python's Popen, {cap} at a time, nothing else: "
          f"{time.perf_counter() - t0:.2f} s in all; start p50 {percentile(starts, 50) * 1000:.0f} ms, "
          f"p99 {percentile(starts, 99) * 1000:.0f} ms")


def start_rsyncd(data):
    conf_dir = scratch("bench-rsyncd-")
    port = free_port()
    uid, gid = os.getuid(), os.getgid()
    conf = os.path.join(conf_dir, "rsyncd.conf")
    with open(conf, "w") as f:
        f.write(f"use chroot = no\nuid = {uid}\ngid = {gid}\npid file = {conf_dir}/pid\n"
                f"[data]\n  path = {data}\n  read only = yes\n")
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={port}",
                             "--address=127.0.0.1"])
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("rsync daemon did not start")


def make_tree(root, files, dirs, lines):
    """`files` small text files spread over `dirs` directories, of 1 to `lines` lines each."""
    for i in range(files):
        d = os.path.join(root, f"d{i % dirs}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}"), "w") as f:
            f.write(f"file {i}\n" * (i % lines + 1))


def bench_syncup(rounds=7, max_delete=None, snapshots=True, probe=False):
    work = scratch("bench-syncup-")
    data = os.path.join(work, "upstream")
    make_tree(data, files=10_000, dirs=100, lines=13)
    if probe:
        os.makedirs(os.path.join(data, "project", "trace"), exist_ok=True)
        with open(os.path.join(data, "project", "trace", "master"), "w") as f:
            f.write("Archive serial: 2026120301\n")
    rsyncd, port = start_rsyncd(data)
    master = Master(work, max_concurrent_runs=4, rsyncd__manage="false", snapshots=str(snapshots).lower())
    options = ["-avH", "--no-motd"]
    status, body = master.request("POST", "/add_project/", {
        "project": "tree", "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": "data",
        "dest": "tree", "rsync_options": {"defaults": options, "delete": "--delete"},
        **({"max_delete": max_delete} if max_delete else {}),
        **({"probe": "project/trace/master"} if probe else {}),
    })
    assert status == 201, body
    if snapshots:
        # A run makes a snapshot only for a reader: one slave (never started) is enough.
        status, body = master.request("POST", "/add_slave/", {"hostname": "127.0.0.1", "port": free_port()})
        assert status == 201, body

    def syncup():
        t0 = time.perf_counter()
        syncup_and_wait(master, "tree", poll=0.002)
        return time.perf_counter() - t0

    syncup()  # the first run copies the tree; the measured ones find it unchanged
    by_hand_dest = os.path.join(work, "by-hand")
    argv = ["rsync", *options, "--delete", "--stats", f"rsync://127.0.0.1:{port}/data/", by_hand_dest + "/"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    def by_hand():
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    via_api, direct = [], []
    for _ in range(rounds):
        via_api.append(syncup())
        direct.append(by_hand())
    master.stop()
    rsyncd.terminate()
    a, d = statistics.median(via_api), statistics.median(direct)
    guard = f"max_delete {max_delete}" if max_delete else "max_delete: the master's default (--max-delete in the run)"
    guard += ", snapshots " + ("on" if snapshots else "off") + (", a probe that did not change" if probe else "")
    print(f"syncup of an unchanged 10,000-file tree, median of {rounds} ({guard}):")
    print(f"  /syncup/ to recorded end: {a * 1000:.0f} ms   rsync by hand: {d * 1000:.0f} ms   "
          f"overhead: {(a - d) * 1000:.0f} ms ({(a - d) / d * 100:.1f} %)")


def bench_changed(files, rounds=3, changed=100):
    """A big tree in which `changed` files change before each round: the run (guard and snapshots
    on) against rsync by hand."""
    work = scratch("bench-changed-")
    data = os.path.join(work, "upstream")
    print(f"making a tree of {files} files...", flush=True)
    make_tree(data, files=files, dirs=max(1, files // 100), lines=3)
    rsyncd, port = start_rsyncd(data)
    master = Master(work, max_concurrent_runs=4, rsyncd__manage="false")
    options = ["-avH", "--no-motd"]
    status, body = master.request("POST", "/add_project/", {
        "project": "tree", "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": "data",
        "dest": "tree", "rsync_options": {"defaults": options, "delete": "--delete"},
    })
    assert status == 201, body
    status, body = master.request("POST", "/add_slave/", {"hostname": "127.0.0.1", "port": free_port()})
    assert status == 201, body
    # However the bench ends, the master and the daemon end with it.
    atexit.register(rsyncd.terminate)
    atexit.register(master.proc.terminate)
    syncup_and_wait(master, "tree", poll=0.01)
    by_hand_dest = os.path.join(work, "by-hand")
    argv = ["rsync", *options, "--delete", "--stats", f"rsync://127.0.0.1:{port}/data/", by_hand_dest + "/"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    via_api, direct = [], []
    for r in range(rounds):
        for i in range(changed):
            n = (r * changed + i) * 997 % files
            with open(os.path.join(data, f"d{n % max(1, files // 100)}", f"f{n}"), "a") as f:
                f.write(f"round {r}\n")
        t0 = time.perf_counter()
        run = syncup_and_wait(master, "tree", poll=0.01)
        via_api.append(time.perf_counter() - t0)
        assert run.get("changed") is True, run
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        direct.append(time.perf_counter() - t0)
    master.stop()
    rsyncd.terminate()
    a, d = statistics.median(via_api), statistics.median(direct)
    print(f"syncup of a {files}-file tree with {changed} changed files, median of {rounds} "
          f"(max_delete default, snapshots on):")
    print(f"  /syncup/ to recorded end: {a * 1000:.0f} ms   rsync by hand: {d * 1000:.0f} ms   "
          f"ratio: {a / d:.2f}x")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("which", nargs="?", default="all", choices=["dispatch", "syncup", "changed", "all"])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=200_000)
    args = parser.parse_args()
    if not os.path.exists(MASTER):
        raise SystemExit(f"{MASTER} missing: cargo build --release --bin mirror-master")
    if args.which in ("dispatch", "all"):
        # Without, then with, the Landlock helper between the master and each rsync.
        results = {confine: bench_dispatch(args.projects, confine) for confine in ("off", "auto")}
        (p50_off, p99_off, cpu_off), (p50_on, p99_on, cpu_on) = results["off"], results["auto"]
        print(f"dispatch, confined against not: p50 {p50_on / p50_off:.2f}x, p99 {p99_on / p99_off:.2f}x, "
              f"master CPU {cpu_on / cpu_off:.2f}x")
        spawn_floor(args.projects, 64)
    if args.which in ("syncup", "all"):
        bench_syncup()
        bench_syncup(max_delete="off")
        bench_syncup(max_delete="off", snapshots=False)
        bench_syncup(probe=True)
    if args.which in ("changed", "all"):
        bench_changed(args.files)


if __name__ == "__main__":
    sys.exit(main())
