#!/usr/bin/env python3
"""agent_bench.py — `make bench-agent`: what the in-process agent adds to a request.

The test project (tests/targets/agent_django, SQLite) served by Debian's
gunicorn (one sync worker), twice at once: without the agent (AGENT_TEST_NO_AGENT=1, the
package not even importable) and with "pyrometer.django" installed.  Load:
Debian's wrk, one connection, one thread (closed loop, so latency is not
queueing), short runs against each server back to back, alternating which
goes first, for many rounds (each endpoint gets well over 1000 requests per
server in total).  Latency per run
is wrk's median (bench/agent_latency.lua prints it in microseconds).

  /hello/            no query:  added latency per request
  /raw-queries/20/   20 queries through Django's cursor (each wrapped, timed,
                     given a call site): (added - the per-request part) / 20
                     = added latency per query
  /queries/20/       20 ORM queries (deeper stacks to walk for the call site;
                     each costs Django far more, so the figure is noisier)

Figures are medians over rounds; the machine is shared and noisy, so the
benchmark also prints what the agent measured of itself: requests.agent_ns,
the time spent in the agent's own C code on the request's thread.  Prints a
table; never fails (exit status 0 whatever happens).

    python3 bench/agent_bench.py [--quick] [--rounds N] [--seconds S]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
PROJECT = os.path.join(REPO, "tests", "targets", "agent_django")
AGENT_PY = os.path.join(REPO, "build", "agent", "python")
LUA = os.path.join(REPO, "bench", "agent_latency.lua")
GUNICORN = "/usr/bin/gunicorn"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
QUERIES = 20


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


def wrk(port, path, seconds):
    """(median latency in us, requests completed)."""
    out = subprocess.run([WRK, "-t1", "-c1", "-d%ds" % seconds, "-s", LUA,
                          "http://127.0.0.1:%d%s" % (port, path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=seconds + 60
                         ).stdout.decode()
    m = re.search(r"^agent-bench p50_us=(\d+(?:\.\d+)?) requests=(\d+) errors=(\d+)", out, re.M)
    if not m:
        raise RuntimeError("wrk printed no figures:\n" + out)
    if int(m.group(3)):
        raise RuntimeError("wrk saw %s errors:\n%s" % (m.group(3), out))
    return float(m.group(1)), int(m.group(2))


def warm(port):
    import urllib.request
    for path in ("/hello/", "/raw-queries/%d/" % QUERIES, "/queries/%d/" % QUERIES):
        for _ in range(50):
            urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30).read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="6 rounds of 1 s runs")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds = 6, 1
    for tool in (GUNICORN, WRK, os.path.join(AGENT_PY, "pyrometer", "_agent.abi3.so")):
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
        paths = ("/hello/", "/raw-queries/%d/" % QUERIES, "/queries/%d/" % QUERIES)
        results = {(agent, path): [] for agent in (False, True) for path in paths}
        counts = {(agent, path): 0 for agent in (False, True) for path in paths}
        servers = {}
        try:
            for agent in (False, True):
                servers[agent] = Server(env_for(tmp, agent), os.path.join(tmp, "gunicorn-%d.log" % agent))
                warm(servers[agent].port)
            for r in range(args.rounds):
                for path in paths:
                    # both servers run throughout; each round measures them back to
                    # back, in alternating order, so drifts in machine load cancel
                    for agent in ((False, True) if r % 2 == 0 else (True, False)):
                        p50, n = wrk(servers[agent].port, path, args.seconds)
                        results[(agent, path)].append(p50)
                        counts[(agent, path)] += n
                if sys.stderr.isatty():
                    sys.stderr.write("\ragent bench: round %d/%d" % (r + 1, args.rounds))
        finally:
            for server in servers.values():
                server.stop()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        med = {k: statistics.median(v) for k, v in results.items()}
        per_request = [a - b for a, b in zip(results[(True, paths[0])], results[(False, paths[0])])]
        def per_query(path):
            added = [a - b for a, b in zip(results[(True, path)], results[(False, path)])]
            return statistics.median([(q - p) / QUERIES for q, p in zip(added, per_request)])
        added_request = statistics.median(per_request)
        added_per_query = per_query(paths[1])
        added_per_orm_query = per_query(paths[2])
        own = dict(l.split("|") for l in subprocess.run(
            ["sqlite3", os.path.join(tmp, "agent.db"),
             "SELECT route, AVG(agent_ns) / 1000.0 FROM requests GROUP BY route"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().split())
        own = {k: float(v) for k, v in own.items()}
        stats = subprocess.run(["sqlite3", os.path.join(tmp, "agent.db"),
                                "SELECT COUNT(*), SUM(query_count) FROM requests"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        print("pyrometer agent overhead: Django %s app, gunicorn 1 sync worker, SQLite; wrk 1 "
              "connection, runs of %d s, %d rounds alternating (requests: fewer of the two totals)"
              % (__import__("django").get_version() if _has_django() else "?", args.seconds,
                 args.rounds))
        print()
        print("%-18s %12s %14s %10s %10s" % ("endpoint", "without us", "with agent us", "added us",
                                             "requests"))
        for path in paths:
            a, b = med[(False, path)], med[(True, path)]
            print("%-18s %12.1f %14.1f %10.1f %10d" % (path, a, b, b - a,
                                                       min(counts[(False, path)], counts[(True, path)])))
        print()
        print("added latency per request (median of rounds): %6.1f us   (goal <= 30 us)" % added_request)
        print("added latency per query   (median of rounds): %6.2f us   (goal <= 3 us)" % added_per_query)
        print("  the same from ORM queries                 : %6.2f us" % added_per_orm_query)
        if "/hello/" in own and "/raw-queries/<int:n>/" in own:
            print("agent's own time on the request path (requests.agent_ns, measured inside the"
                  " agent):")
            print("  per request %.1f us; per query %.2f us (raw), %.2f us (ORM)" % (
                own["/hello/"], (own["/raw-queries/<int:n>/"] - own["/hello/"]) / QUERIES,
                (own.get("/queries/<int:n>/", 0) - own["/hello/"]) / QUERIES))
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
