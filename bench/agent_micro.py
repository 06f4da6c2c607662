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
    python3 bench/agent_micro.py --instructions

--instructions (needs valgrind): what the agent adds counted in instructions
by callgrind, a figure the machine's load does not move.  The same loop runs
in a child process, with and without the agent, for 20 and 60 requests (the
difference over 40 leaves start-up out), each thread counted apart: the
request thread (what a request waits for) and the agent's writer thread.
Per request: at 0 queries; per query: the slope from 0 to 20 queries.  The
microseconds beside them are those instructions at the rate the same view
runs natively without the agent (its thread CPU time over its instructions):
an estimate, not a measurement of time.

Needs build/agent (make agent).  Prints a table; never fails.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
PROJECT = os.path.join(REPO, "tests", "targets", "agent_django")
AGENT_PY = os.environ.get("AGENT_BENCH_PY", os.path.join(REPO, "build", "agent", "python"))
QUERIES = 20


def setup():
    """The test project, set up in this process, and the agent enabled:
    (connection, _agent, views)."""
    sys.path[:0] = [AGENT_PY, PROJECT]
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    import django
    django.setup()
    from django.db import connection
    import pyrometer
    from pyrometer import _agent
    from library import views

    pyrometer.enable(db=os.environ["PYROMETER_DB"])
    return connection, _agent, views


def requests(_agent, view, n, count, agent):
    """count calls of view(n), as requests when agent; thread CPU ns taken."""
    t0 = time.thread_time_ns()
    for _ in range(count):
        if agent:
            _agent.begin("django")
            view(None, n)
            _agent.finish("GET", "/bench/", "bench", 200)
        else:
            view(None, n)
    return time.thread_time_ns() - t0


def measure(args):
    connection, _agent, views = setup()
    wrapper = _agent.QueryWrapper("default")

    def run(view, n, agent):
        """ns per call of view(n), best of the repetitions."""
        return min(requests(_agent, view, n, args.requests, agent)
                   for _ in range(args.reps)) / args.requests

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


def child(mode, view_name, nq, n):
    """One configuration in this process (under callgrind): n requests."""
    connection, _agent, views = setup()
    agent = mode == "agent"
    if agent:
        connection.execute_wrappers.append(_agent.QueryWrapper("default"))
    connection.ensure_connection()
    view = views.n_queries if view_name == "orm" else views.raw_queries
    sys.stdout.write("cpu_ns %d\n" % requests(_agent, view, nq, n, agent))
    _agent.flush(30)


def callgrind_threads(argv, out):
    """Instructions of the process's first thread and of all the others."""
    for f in os.listdir(os.path.dirname(out)):
        if f.startswith(os.path.basename(out)):
            os.unlink(os.path.join(os.path.dirname(out), f))
    subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                    "--callgrind-out-file=" + out] + argv,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    first, others = 0, 0
    for f in os.listdir(os.path.dirname(out)):
        m = re.match(re.escape(os.path.basename(out)) + r"-(\d+)$", f)
        if not m:
            continue
        with open(os.path.join(os.path.dirname(out), f)) as fh:
            total = next((int(l.split()[1]) for l in fh if l.startswith("summary:")), 0)
        if int(m.group(1)) == 1:
            first = total
        else:
            others += total
    return first, others


def instructions(tmp):
    me = os.path.realpath(__file__)
    env = dict(os.environ, PYTHONHASHSEED="0")
    os.environ.update(env)
    per = {}
    for mode, view, nq in (("plain", "raw", 0), ("agent", "raw", 0), ("plain", "raw", QUERIES),
                           ("agent", "raw", QUERIES), ("plain", "orm", QUERIES),
                           ("agent", "orm", QUERIES)):
        counts = [callgrind_threads([sys.executable, me, "--child", mode, view, str(nq), str(n)],
                                    os.path.join(tmp, "cg"))
                  for n in (20, 60)]
        per[(mode, view, nq)] = tuple((b - a) / 40 for a, b in zip(counts[0], counts[1]))
        if sys.stderr.isatty():
            sys.stderr.write("\ragent micro bench: %d of 6 configurations" % len(per))
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    rate = {}   # ns per instruction of each view, natively, without the agent
    for view in ("raw", "orm"):
        best = None
        for _ in range(5):
            out = subprocess.run([sys.executable, me, "--child", "plain", view, str(QUERIES), "100"],
                                 stdout=subprocess.PIPE, env=env).stdout.decode()
            m = re.search(r"cpu_ns (\d+)", out)
            if m:
                best = int(m.group(1)) if best is None else min(best, int(m.group(1)))
        rate[view] = best / 100 / per[("plain", view, QUERIES)][0] if best else None
    req = per[("agent", "raw", 0)][0] - per[("plain", "raw", 0)][0]
    print("pyrometer agent, instructions added (callgrind, requests 60 - 20, %d queries "
          "each, Python %d.%d)" % (QUERIES, sys.version_info[0], sys.version_info[1]))
    # the writer's own thread: per query with its request's share (it
    # commits by time as well as by count, so a request alone is not steady)
    print("%-26s %14s %10s %18s" % ("", "request thread", "~us", "writer thread"))
    us = (lambda i, v: "%10.2f" % (i * rate[v] / 1000) if rate.get(v) else "%10s" % "-")
    print("%-26s %14.0f %s %18s" % ("per request (no query)", req, us(req, "raw"), "-"))
    for view, name in (("raw", "per query (Django cursor)"), ("orm", "per query (ORM)")):
        q = (per[("agent", view, QUERIES)][0] - per[("plain", view, QUERIES)][0] - req) / QUERIES
        w = per[("agent", view, QUERIES)][1] / QUERIES
        print("%-26s %14.0f %s %18.0f" % (name, q, us(q, view), w))
    for view in ("raw", "orm"):
        if rate.get(view):
            print("rate without the agent, %s view: %.3f ns per instruction" % (view, rate[view]))


def main():
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--instructions", action="store_true")
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
        if args.instructions:
            if shutil.which("valgrind") is None:
                print("agent micro bench: valgrind not installed")
            else:
                instructions(tmp)
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
