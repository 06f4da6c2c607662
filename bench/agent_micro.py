#!/usr/bin/env python3
"""agent_micro.py — the agent's per-query and per-request cost in one process.

No server and no load generator: the test project's views
(tests/targets/agent_django, SQLite) are called directly, N times over, first
with no wrapper installed and no request open (the baseline), then inside
_agent.begin()/finish() with the agent's execute wrapper on the connection
(what the middleware does).  Each figure is the minimum over repetitions
(thread CPU time: other processes on the machine only ever add to it), so it is stable on
a shared machine; bench/agent_bench.py measures the same thing end to end.

    python3 bench/agent_micro.py [--reps R] [--requests N]

Needs build/agent (make agent).  Prints a table; never fails.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
PROJECT = os.path.join(REPO, "tests", "targets", "agent_django")
AGENT_PY = os.environ.get("AGENT_BENCH_PY", os.path.join(REPO, "build", "agent", "python"))
QUERIES = 20


def measure(args):
    sys.path[:0] = [AGENT_PY, PROJECT]
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    import django
    django.setup()
    from django.db import connection
    import pyrometer
    from pyrometer import _agent
    from library import views

    pyrometer.enable(db=os.environ["PYROMETER_DB"])
    wrapper = _agent.QueryWrapper("default")

    def run(view, n, agent):
        """ns per call of view(n), best of the repetitions."""
        best = None
        for _ in range(args.reps):
            t0 = time.thread_time_ns()
            for _ in range(args.requests):
                if agent:
                    _agent.begin("django")
                    view(None, n)
                    _agent.finish("GET", "/bench/", "bench", 200)
                else:
                    view(None, n)
            dt = (time.thread_time_ns() - t0) / args.requests
            best = dt if best is None else min(best, dt)
        return best

    def with_wrapper(on):
        if on and wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)
        if not on and wrapper in connection.execute_wrappers:
            connection.execute_wrappers.remove(wrapper)

    connection.ensure_connection()
    rows = []
    for name, view in (("raw cursor", views.raw_queries), ("ORM", views.n_queries)):
        figures = {}
        for agent in (False, True, False, True):   # twice each, the best kept
            with_wrapper(agent)
            for n in (0, QUERIES):
                t = run(view, n, agent)
                figures[(agent, n)] = min(figures.get((agent, n), t), t)
            _agent.flush(30)
        with_wrapper(False)
        per_request = (figures[(True, 0)] - figures[(False, 0)]) / 1000
        per_query = ((figures[(True, QUERIES)] - figures[(False, QUERIES)]) / 1000
                     - per_request) / QUERIES
        rows.append((name, figures[(False, QUERIES)] / 1000 / QUERIES, per_request, per_query))
    _agent.flush(30)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(AGENT_PY, "pyrometer", "_agent.abi3.so")):
        print("agent micro bench: build/agent missing (make agent)")
        return
    tmp = tempfile.mkdtemp(prefix="pyrometer-agent-micro-")
    try:
        os.environ["AGENT_TEST_SQLITE"] = os.path.join(tmp, "library.sqlite3")
        os.environ["PYROMETER_DB"] = os.path.join(tmp, "agent.db")
        env = dict(os.environ, AGENT_TEST_NO_AGENT="1", PYTHONPATH=PROJECT)
        setup = subprocess.run([sys.executable, os.path.join(PROJECT, "setup_db.py")], env=env,
                               cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if b"ready" not in setup.stdout:
            print("agent micro bench: could not set up the project:\n" + setup.stdout.decode())
            return
        rows = measure(args)
        agent_ns = subprocess.run(
            ["sqlite3", os.environ["PYROMETER_DB"],
             "SELECT query_count, AVG(agent_ns) / 1000.0 FROM requests GROUP BY query_count"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().split()
        print("pyrometer agent, in-process (views called directly, best of %d x %d requests, "
              "%d queries each)" % (args.reps, args.requests, QUERIES))
        print("%-12s %16s %18s %16s" % ("queries", "query alone us", "added/request us",
                                       "added/query us"))
        for name, alone, per_request, per_query in rows:
            print("%-12s %16.2f %18.2f %16.2f" % (name, alone, per_request, per_query))
        if agent_ns:
            print("agent_ns (mean, us) by query count: " + ", ".join(
                "%s queries: %.2f" % (x.split("|")[0], float(x.split("|")[1])) for x in agent_ns))
    except Exception as e:   # figures only
        print("agent micro bench: failed: %s" % e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
