"""The body of bench/backends.sh (see there)."""
import base64, json, os, signal, socket, statistics, subprocess, sys, threading, time, urllib.request

master, pg, work, secs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
PW = "bench-pw"
AUTH = "Basic " + base64.b64encode(f"root:{PW}".encode()).decode()


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def call(base, method, path, body=None, auth=AUTH, timeout=30):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", auth)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def create_db(name):
    subprocess.run(["psql", pg + "/postgres", "-qc", f"CREATE DATABASE {name}"], check=True,
                   stdout=subprocess.DEVNULL)
    return f"{pg}/{name}"


def start(name, database, cwd, root):
    os.makedirs(cwd, exist_ok=True)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "MIRROR_ROOT_PASSWORD": PW, "MIRROR_MASTER__LISTEN": f"127.0.0.1:{port}",
           "MIRROR_MASTER__LOG": "warn", "MIRROR_MASTER__RSYNCD__MANAGE": "false", "MIRROR_MASTER__NODE": name,
           "MIRROR_MASTER__DATABASE": database, "MIRROR_MASTER__MIRROR_ROOT": root,
           "MIRROR_MASTER__MAX_WRITES_IN_FLIGHT": "64"}
    p = subprocess.Popen([master], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        if call(base, "GET", "/list_projects/")[0] == 200:
            return p, base
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start")


def adds(base, n, clients=16):
    token = json.loads(call(base, "GET", "/get_token/")[1])["token"]
    bearer = "Bearer " + token
    errors = []

    def worker(k):
        for i in range(k, n, clients):
            body = {"project": f"p{i:05}", "rsync_host": "rsync.example.org", "rsync_module": f"m{i}/sub",
                    "dest": f"p{i:05}", "rsync_password": f"secret{i}",
                    "cron_options": {"hour": "*/6", "minute": str(i % 60)},
                    "rsync_options": {"basic": ["--no-motd"], "delete": "--delete-after"}}
            status, text = call(base, "POST", "/add_project/", body, bearer)
            if status != 201:
                errors.append((status, text[:200]))

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    took = time.monotonic() - started
    if errors:
        raise SystemExit(f"add_project failed: {errors[:3]}")
    return n / took


def listing(base):
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{secs}s", "--latency", "-H", f"Authorization: {AUTH}",
                          base + "/list_projects/"], capture_output=True, text=True, check=True).stdout
    rps = next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec"))
    p99 = next(l.split()[1] for l in out.splitlines() if l.strip().startswith("99%"))
    if "Non-2xx" in out:
        raise SystemExit(out)
    return float(rps), p99


rows = []
for backend in ["sqlite", "postgres"]:
    d = os.path.join(work, backend)
    database = os.path.join(d, "master.db") if backend == "sqlite" else create_db("bench_" + backend)
    p, base = start("solo", database, d, os.path.join(d, "mirror"))
    try:
        per_sec = adds(base, 1000)
        rps, p99 = listing(base)
        rows.append((backend, per_sec, rps, p99))
    finally:
        p.terminate(); p.wait()

print(f"\n{'backend':<12} {'add_project/s (16 clients)':>28} {'list_projects/s (32 conns, 1000 projects)':>44} {'p99':>8}")
for b, a, r, p99 in rows:
    print(f"{b:<12} {a:>28.0f} {r:>44.0f} {p99:>8}")

# Failover: three nodes, ten SIGKILLs of the leader; the time until a survivor names a new one.
database = create_db("bench_failover")
root = os.path.join(work, "shared")
nodes = {}
for name in ["a", "b", "c"]:
    nodes[name] = start(name, database, os.path.join(work, name), root)


def leader_seen_by(base):
    status, text = call(base, "GET", "/nodes", timeout=2)
    if status != 200:
        return None
    return next((n["name"] for n in json.loads(text) if n["leader"]), None)


times = []
for kill in range(10):
    any_base = next(iter(nodes.values()))[1]
    leader = None
    while leader is None:
        leader = leader_seen_by(any_base); time.sleep(0.05)
    proc, _ = nodes.pop(leader)
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL); proc.wait()
    other = next(iter(nodes.values()))[1]
    while True:
        now = leader_seen_by(other)
        if now and now != leader:
            break
        time.sleep(0.05)
    times.append(time.monotonic() - killed)
    nodes[leader] = start(leader, database, os.path.join(work, leader), root)
for p, _ in nodes.values():
    p.terminate(); p.wait()
times.sort()
print(f"\nfailover over {len(times)} SIGKILLs of the leader (node_lease_secs = 5): "
      f"p50 {statistics.median(times):.2f} s, max {max(times):.2f} s, all {[round(t, 2) for t in times]}")
