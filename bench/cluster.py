#!/usr/bin/env python3
"""Propagation benchmark (stdlib only). Prints figures; asserts nothing.

A real upstream rsync daemon with a tree of 2,000 files, a release master with its managed rsync
daemon, and 16 release mirror-slave processes on loopback. For 1, 4 and 16 registered slaves, the
tree is synced several times, one file changed upstream each time; each time the delay from the
end of the master's run (runs/{id}.ended_at) to the last slave's acknowledgement (the latest served_at in
/projects/{id}/propagation) is taken from the servers' own timestamps. Prints the medians.

Usage: bench/cluster.sh  (builds the release binaries, then runs this)
"""
import http.client
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import ROOT, Master, free_port, make_tree, parse_ts, scratch, start_rsyncd, syncup_and_wait  # noqa: E402

SLAVE = os.path.join(ROOT, "target", "release", "mirror-slave")
RSYNCD_PASSWORD = "bench-rsyncd-pw"
ROUNDS = 5


def start_slave(work, master_url, password_file, port, token):
    """A slave on `port` with the token the master issued for it."""
    d = os.path.join(work, f"slave-{port}")
    os.makedirs(d)
    env = dict(os.environ)
    env.update({
        "MIRROR_SLAVE__LISTEN": f"127.0.0.1:{port}",
        "MIRROR_SLAVE__ROOT": os.path.join(d, "root"),
        "MIRROR_SLAVE__MASTER_URL": master_url,
        "MIRROR_SLAVE__TOKEN": token,
        "MIRROR_SLAVE__RSYNC_PASSWORD_FILE": password_file,
        "MIRROR_SLAVE__STATE_FILE": os.path.join(d, "state.json"),
        "MIRROR_SLAVE__LOG": "warn",
    })
    proc = subprocess.Popen([SLAVE], env=env, cwd=d, stdout=subprocess.DEVNULL)
    return proc


def wait_answering(port, timeout=30):
    """Waits until a slave answers GET /status (it is ready), not a fixed time."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/status")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"slave on port {port} did not answer")


def wait_generation(master, project, slaves, generation, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, view = master.request("GET", f"/projects/{project}/propagation")
        served = [s for s in view["slaves"] if s["generation"] >= generation]
        if len(served) == slaves:
            return view
        time.sleep(0.01)
    raise SystemExit(f"slaves did not reach generation {generation}")


def main():
    for binary in (SLAVE,):
        if not os.path.exists(binary):
            raise SystemExit(f"{binary} missing: cargo build --release --bins")
    work = scratch("bench-cluster-")
    data = os.path.join(work, "upstream")
    make_tree(data, files=2000, dirs=40, lines=17)
    upstream, upstream_port = start_rsyncd(data)
    rsyncd_port = free_port()
    master = Master(work, rsyncd__manage="true", rsyncd__port=rsyncd_port,
                    rsyncd__password=RSYNCD_PASSWORD, reconcile_interval_secs=60, max_concurrent_runs=4)
    password_file = os.path.join(work, "slave.password")
    with open(password_file, "w") as f:
        f.write(RSYNCD_PASSWORD + "\n")
    os.chmod(password_file, 0o600)
    ports = [free_port() for _ in range(16)]
    slaves = []
    status, body = master.request("POST", "/add_project/", {
        "project": "tree", "rsync_host": "127.0.0.1", "rsync_port": upstream_port, "rsync_module": "data",
        "dest": "pub/tree", "rsync_options": {"defaults": ["-avH", "--no-motd"], "delete": "--delete"},
    })
    assert status == 201, body

    rounds = iter(range(1_000_000))

    def sync():
        # One file changes upstream each round: a run that changes nothing makes no new generation
        # (issue 26), and then the slaves are rightly not asked again.
        # (Longer each time: rsync's quick check compares size and seconds.)
        n = next(rounds)
        with open(os.path.join(data, "round"), "w") as f:
            f.write(f"{n}\n" * (n + 1))
        return syncup_and_wait(master, "tree", poll=0.01)

    registered = 0
    results = {}
    try:
        for count in (1, 4, 16):
            for port in ports[registered:count]:
                # Each slave is registered first: it starts with the token the master issues for it.
                status, body = master.request("POST", "/add_slave/", {"hostname": "127.0.0.1", "port": port})
                assert status == 201, body
                slaves.append(start_slave(work, f"http://127.0.0.1:{master.port}", password_file, port, body["token"]))
                wait_answering(port)
            registered = count
            run = sync()  # brings new slaves up to date; not measured
            _, view = master.request("GET", "/projects/tree/propagation")
            wait_generation(master, "tree", count, view["generation"])
            delays = []
            for _ in range(ROUNDS):
                run = sync()
                _, view = master.request("GET", "/projects/tree/propagation")
                view = wait_generation(master, "tree", count, view["generation"])
                last_ack = max(parse_ts(s["served_at"]) for s in view["slaves"])
                delays.append((last_ack - parse_ts(run["ended_at"])).total_seconds())
            results[count] = statistics.median(delays)
            print(f"{count:2d} slave(s): end of master run -> last slave ack, median of {ROUNDS}: "
                  f"{results[count] * 1000:.0f} ms (min {min(delays) * 1000:.0f}, max {max(delays) * 1000:.0f})")
        print(f"16 slaves / 1 slave: {results[16] / results[1]:.2f}x (goal: at most 1.5x)")
        by_hand(work, rsyncd_port, password_file)
    finally:
        master.stop()
        for proc in slaves:
            proc.terminate()
        upstream.terminate()


def by_hand(work, rsyncd_port, password_file):
    """The floor: the slaves' own rsync command run by hand against the master's rsync daemon,
    1 and 16 at once, with no master or slave involved."""
    argv = ["rsync", "-avH", "--no-motd", "--delete", "--stats", f"--password-file={password_file}",
            f"rsync://mirror@127.0.0.1:{rsyncd_port}/mirror/pub/tree/"]
    dests = [os.path.join(work, f"by-hand-{i}") + "/" for i in range(16)]
    for d in dests:
        subprocess.run(argv + [d], check=True, stdout=subprocess.DEVNULL)
    results = {}
    for count in (1, 16):
        times = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            procs = [subprocess.Popen(argv + [d], stdout=subprocess.DEVNULL) for d in dests[:count]]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("rsync by hand failed")
            times.append(time.perf_counter() - t0)
        results[count] = statistics.median(times)
        print(f"by hand, {count:2d} rsync(s) at once against the master's daemon, median of {ROUNDS}: "
              f"{results[count] * 1000:.0f} ms")
    print(f"by hand, 16 / 1: {results[16] / results[1]:.2f}x")


if __name__ == "__main__":
    main()
