#!/usr/bin/env python3
"""agent_bench.py — `make bench-agent`: what the in-process agent adds to a request.

The test project (tests/targets/agent_django, SQLite) served by Debian's
gunicorn (one sync worker), twice at once: without the agent (AGENT_TEST_NO_AGENT=1, the
package not even importable) and with "pyrometer.django" installed.  Load:
one client, one request at a time (closed loop, so latency is not
queueing), each request timed from connect to the end of the response.  The
machine is shared and noisy, so the figure is built to survive that: the
requests go in pairs, one to each server back to back (which one first
alternates), so a change of load hits both members of a pair alike; a
round is a run of such pairs per endpoint and its figure is the median of
the pair differences (with - without); what is reported is the median over
rounds, with the interquartile range (IQR) of the rounds as the spread.

  /hello/              no query: added latency per request
  /raw-queries/N/      N = 0, 10, 40 queries through Django's cursor; per
                       round, a least-squares line through the three
                       differences: its slope is the added latency per
                       query, its intercept the per-request part
  /queries/20/         20 ORM queries (deeper stacks to walk for the call
                       site): (difference - /hello/'s) / 20; each costs
                       Django far more than the agent, so this one is noisy

It also prints what the agent measured of itself (requests.agent_ns: the
time spent in its own code on the request's thread).  Never fails (exit
status 0 whatever happens).

    python3 bench/agent_bench.py [--quick] [--rounds N] [--pairs P]
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
PROJECT = os.path.join(REPO, "tests", "targets", "agent_django")
AGENT_PY = os.environ.get("AGENT_BENCH_PY", os.path.join(REPO, "build", "agent", "python"))
GUNICORN = "/usr/bin/gunicorn"
QUERIES = 20
RAW_N = (0, 10, 40)


def env_for(tmp, agent):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYROMETER_")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "AGENT_TEST_SQLITE": os.path.join(tmp, "library.sqlite3"),
        "PYROMETER_DB": os.path.join(tmp, "agent.db"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join(([AGENT_PY] if agent else []) + [PROJECT]),
    })
    if not agent:
        env["AGENT_TEST_NO_AGENT"] = "1"
    return env


class Server:
    def __init__(self, env, log):
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen([GUNICORN, "-w", "1", "-b", "127.0.0.1:0", "--chdir", PROJECT,
                                      "mysite.wsgi"], env=env, cwd=PROJECT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited: " + open(log).read()[-2000:])
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", open(log).read())
            if m and "Booting worker" in open(log).read():
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("gunicorn did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def fetch(port, path):
    """Latency of one request in us (connect to end of response)."""
    t0 = time.perf_counter_ns()
    s = socket.create_connection(("127.0.0.1", port))
    try:
        s.sendall(b"GET %s HTTP/1.0\r\nHost: bench\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    t1 = time.perf_counter_ns()
    if not data.startswith(b"HTTP/1.1 200") and not data.startswith(b"HTTP/1.0 200"):
        raise RuntimeError("%s answered %r" % (path, data[:60]))
    return (t1 - t0) / 1000.0


def warm(port):
    import urllib.request
    for path in ["/hello/", "/queries/%d/" % QUERIES] + ["/raw-queries/%d/" % n for n in RAW_N]:
        for _ in range(30):
            urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30).read()


def quartiles(xs):
    """(first quartile, median, third quartile)."""
    if len(xs) < 2:
        return (xs[0],) * 3 if xs else (float("nan"),) * 3
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def slope_intercept(xs, ys):
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return b, my - b * mx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="6 rounds")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=100,
                    help="request pairs per endpoint and round (half for the ORM one)")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 6
    for tool in (GUNICORN, os.path.join(AGENT_PY, "pyrometer", "_agent.abi3.so")):
        if not os.path.exists(tool):
            print("agent bench: %s missing (make deps; make agent)" % tool)
            return
    tmp = tempfile.mkdtemp(prefix="pyrometer-agent-bench-")
    try:
        setup = subprocess.run([sys.executable, os.path.join(PROJECT, "setup_db.py")],
                               env=env_for(tmp, False), cwd=PROJECT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
        if b"ready" not in setup.stdout:
            print("agent bench: could not set up the project:\n" + setup.stdout.decode())
            return
        hello, orm = "/hello/", "/queries/%d/" % QUERIES
        raw = ["/raw-queries/%d/" % n for n in RAW_N]
        paths = [hello] + raw + [orm]
        results = {(agent, path): [] for agent in (False, True) for path in paths}
        counts = {(agent, path): 0 for agent in (False, True) for path in paths}
        servers = {}
        try:
            for agent in (False, True):
                servers[agent] = Server(env_for(tmp, agent), os.path.join(tmp, "gunicorn-%d.log" % agent))
                warm(servers[agent].port)
            rounds_diff = {path: [] for path in paths}
            for r in range(args.rounds):
                for path in paths:
                    pairs = max(4, args.pairs // 2) if path == orm else args.pairs
                    lat = {False: [], True: []}
                    for k in range(pairs):
                        # both servers run throughout; a pair is one request to
                        # each, back to back, in alternating order
                        for agent in ((False, True) if k % 2 == 0 else (True, False)):
                            lat[agent].append(fetch(servers[agent].port, path))
                    for agent in (False, True):
                        results[(agent, path)].append(statistics.median(lat[agent]))
                        counts[(agent, path)] += pairs
                    rounds_diff[path].append(statistics.median(
                        [a - b for a, b in zip(lat[True], lat[False])]))
                if sys.stderr.isatty():
                    sys.stderr.write("\ragent bench: round %d/%d" % (r + 1, args.rounds))
        finally:
            for server in servers.values():
                server.stop()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        diff = rounds_diff
        fits = [slope_intercept(RAW_N, [diff[p][r] for p in raw]) for r in range(args.rounds)]
        per_query = [f[0] for f in fits]
        intercept = [f[1] for f in fits]
        per_orm_query = [(o - h) / QUERIES for o, h in zip(diff[orm], diff[hello])]
        db = os.path.join(tmp, "agent.db")
        own = dict(l.split("|") for l in subprocess.run(
            ["sqlite3", db, "SELECT route || ':' || query_count, AVG(agent_ns) / 1000.0 "
             "FROM requests GROUP BY route, query_count"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().split())
        own = {k: float(v) for k, v in own.items()}
        stats = subprocess.run(["sqlite3", db, "SELECT COUNT(*), SUM(query_count) FROM requests"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        print("pyrometer agent overhead: Django %s app, gunicorn 1 sync worker, SQLite; 1 client; "
              "%d rounds of %d request pairs per endpoint (%d for the ORM one), alternating"
              % (__import__("django").get_version() if _has_django() else "?", args.rounds,
                 args.pairs, max(4, args.pairs // 2)))
        print("(us; without/with: medians of the rounds' medians; added: median over rounds of "
              "the round's median pair difference, IQR its interquartile range over rounds)")
        print()
        print("%-18s %10s %10s %9s %17s %9s" % ("endpoint", "without", "with", "added",
                                               "IQR of added", "requests"))
        for path in paths:
            q1, m, q3 = quartiles(diff[path])
            print("%-18s %10.1f %10.1f %9.1f %8.1f..%-7.1f %9d" % (
                path, statistics.median(results[(False, path)]),
                statistics.median(results[(True, path)]), m, q1, q3,
                min(counts[(False, path)], counts[(True, path)])))
        print()

        def line(label, xs, goal):
            q1, m, q3 = quartiles(xs)
            print("%-46s %7.2f us  IQR %6.2f..%-6.2f %s" % (label, m, q1, q3, goal))
        line("added per request (/hello/)", diff[hello], "(goal <= 30 us)")
        line("added per request (intercept, raw N=%s)" % ",".join(map(str, RAW_N)), intercept, "")
        line("added per query (slope, raw cursor)", per_query, "(goal <= 3 us)")
        line("added per query (ORM: (/queries/%d/ - /hello/)/%d)" % (QUERIES, QUERIES),
             per_orm_query, "")
        print()
        key = lambda p, n: own.get("%s:%d" % (p, n))
        r0, r40 = key("/raw-queries/<int:n>/", 0), key("/raw-queries/<int:n>/", 40)
        h, o = key("/hello/", 0), key("/queries/<int:n>/", QUERIES)
        if None not in (h, r0, r40, o):
            print("agent's own time on the request thread (requests.agent_ns, mean): per request "
                  "%.1f us; per query %.2f us (raw cursor), %.2f us (ORM)"
                  % (h, (r40 - r0) / 40, (o - h) / QUERIES))
        print("records written by the agent (requests, queries): %s" % stats.replace("|", ", "))
    except Exception as e:   # figures only: never fail the build
        print("agent bench: failed: %s" % e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _has_django():
    try:
        import django  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
