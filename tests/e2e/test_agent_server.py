"""
test_agent_server.py — the agent in served processes: gunicorn (Debian) with
several workers writing one SQLite file at once, `pyrometer run` enabling it
with no change to settings or code, a real PostgreSQL server (initdb into a
temporary directory, loopback only, run as an unprivileged user), and
`record --by-endpoint` splitting a worker's flame graph by route.

Every request is counted exactly: the client knows what it sent, gunicorn is
stopped gracefully (workers exit through Python, flushing the agent), and
the file must hold exactly that many requests.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent_support import (VIEWS, agent_env, endpoint, gunicorn, http_get, postgres, report,  # noqa: F401
                           rows, setup_project_db, views_lines)
from conftest import Background, PYROMETER, parse_label, run_pyrometer

N_PLUS_ONE_SQL_PG = ('SELECT "library_book"."id", "library_book"."author_id", '
                     '"library_book"."title" FROM "library_book" WHERE '
                     '"library_book"."author_id" = ?')


def fetch_all(port, paths, workers=6):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: http_get(port, p)[0], paths))


def test_run_gunicorn_three_workers_one_database(tmp_path, gunicorn):
    """`pyrometer run -- gunicorn -w 3`: the app does not list pyrometer.django;
    every worker records, all into one file, every request exactly once."""
    env = agent_env(tmp_path, agent_on_path=False, AGENT_TEST_NO_AGENT="1")
    setup_project_db(env)
    db = str(tmp_path / "service.db")
    g = gunicorn(env, tmp_path / "gunicorn.log", workers=3,
                 prefix=[PYROMETER, "run", "--db", db, "--service", "library", "--"])
    paths = ["/authors/%d/" % (1 + i % 50) for i in range(240)] + ["/authors/n-plus-one/"] * 12
    statuses = fetch_all(g.port, paths)
    assert statuses == [200] * len(paths)
    assert g.stop() == 0, g.text()[-3000:]
    assert rows(db, "SELECT COUNT(*), SUM(status = 200) FROM requests") == [(252, 252)]
    assert rows(db, "SELECT value FROM meta WHERE key = 'service'") == [("library",)]
    pids = {r[0] for r in rows(db, "SELECT DISTINCT pid FROM requests")}
    assert pids <= set(g.worker_pids), (pids, g.worker_pids)
    assert len(pids) >= 2, "one worker served everything: %r (log:\n%s)" % (pids, g.text()[-2000:])
    assert rows(db, "SELECT COUNT(*) FROM queries") == [(240 * 2 + 12 * 51,)]
    rep = report(db)
    detail = endpoint(rep, "GET /authors/<int:pk>/")
    assert detail["count"] == 240 and detail["mean_queries"] == 2 and detail["n_plus_one"] == []
    finding = endpoint(rep, "GET /authors/n-plus-one/")["n_plus_one"]
    assert [(f["file"], f["line"], f["requests"], f["max_count"]) for f in finding] == \
        [(VIEWS, views_lines()["n-plus-one"], 12, 50)], finding


def test_run_without_agent_built(tmp_path):
    res = run_pyrometer(["run", "--", "true"], prefix=["env", "PYROMETER_AGENT_DIR=%s" % tmp_path])
    res.expect(2)
    assert "holds no built agent" in res.stderr
    run_pyrometer(["run"]).expect(1)
    run_pyrometer(["run", "--n-plus-one", "1", "--", "true"]).expect(1)
    res = run_pyrometer(["run", "--", "/nonexistent/program"]).expect(2)
    assert "cannot run /nonexistent/program" in res.stderr


def test_run_keeps_existing_sitecustomize_and_exit_status(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.ORIGINAL_SITECUSTOMIZE = 1\n")
    code = ("import builtins, sys, pyrometer; "
            "print(getattr(builtins, 'ORIGINAL_SITECUSTOMIZE', 0), pyrometer.enabled()); sys.exit(3)")
    res = run_pyrometer(["run", "--db", tmp_path / "x.db", "--", "/usr/bin/python3", "-c", code],
                        prefix=["env", "PYTHONPATH=%s" % site])
    assert res.returncode == 3, res.describe()
    assert res.stdout.strip() == "1 True", res.describe()


@pytest.mark.parametrize("via_run", [False, True], ids=["installed-app", "pyrometer-run"])
def test_postgres_n_plus_one_under_gunicorn(tmp_path, gunicorn, postgres, via_run):
    """On PostgreSQL; through `pyrometer run` psycopg2.connect is patched too,
    and each query must still be counted once (Django's wrapper records it,
    the cursor underneath passes it through)."""
    if via_run:
        env = agent_env(tmp_path, agent_on_path=False, AGENT_TEST_NO_AGENT="1", **postgres.env())
        prefix = [PYROMETER, "run", "--db", str(tmp_path / "agent.db"), "--"]
    else:
        env = agent_env(tmp_path, **postgres.env())
        prefix = []
    setup_project_db(env)
    # Django opens a connection per request (CONN_MAX_AGE 0) and sets its time
    # zone with the raw psycopg2 cursor: a real query that only the patched
    # driver sees, recorded once, first.
    extra = 1 if via_run else 0
    g = gunicorn(env, tmp_path / "gunicorn.log", workers=2, prefix=prefix)
    paths = ["/authors/n-plus-one/"] * 4 + ["/authors/prefetch/"] * 4 + ["/raw/"]
    assert fetch_all(g.port, paths, workers=2) == [200] * len(paths)
    assert g.stop() == 0
    db = str(tmp_path / "agent.db")
    rep = report(db)
    bad = endpoint(rep, "GET /authors/n-plus-one/")
    assert bad["count"] == 4 and bad["mean_queries"] == 51 + extra, bad
    assert [(f["file"], f["line"], f["function"], f["max_count"], f["requests"], f["sql"])
            for f in bad["n_plus_one"]] == [(VIEWS, views_lines()["n-plus-one"],
                                             "authors_n_plus_one", 50, 4, N_PLUS_ONE_SQL_PG)]
    good = endpoint(rep, "GET /authors/prefetch/")
    assert good["count"] == 4 and good["mean_queries"] == 2 + extra and good["n_plus_one"] == [], good
    setup = rows(db, "SELECT DISTINCT q.seq, q.db_alias, fp.sql FROM queries q JOIN fingerprints fp"
                     " USING (fingerprint) WHERE q.db_alias != 'default'")
    assert setup == ([(0, "psycopg2", "SET TIME ZONE ?")] if via_run else []), setup
    # psycopg2 knows SELECT row counts: three books per author
    got = rows(db, "SELECT DISTINCT q.rows FROM queries q JOIN findings f ON"
                   " f.request_id = q.request_id AND f.fingerprint = q.fingerprint")
    assert got == [(3,)], got
    lines = views_lines()
    raw = rows(db, "SELECT fp.sql, q.line FROM queries q JOIN fingerprints fp USING (fingerprint)"
                   " JOIN requests r ON r.id = q.request_id WHERE r.route = '/raw/'"
                   " AND q.db_alias = 'default' ORDER BY q.seq")
    assert [line for _, line in raw] == [lines["raw-cursor"], lines["raw-manager"],
                                         lines["orm-insert"], lines["raw-insert"]], raw
    assert raw[0][0] == "SELECT COUNT(*) FROM library_book WHERE title LIKE ?", raw
    assert raw[2][0].startswith('INSERT INTO "library_book" ("author_id", "title") VALUES (...)'), raw


def test_psycopg2_wrapper_and_run_patch(tmp_path, postgres):
    """pyrometer.dbapi.psycopg2_connect in a WSGI request, and the same through
    `pyrometer run`, which patches psycopg2.connect itself."""
    script = tmp_path / "pg_app.py"
    script.write_text(
        "import sys, psycopg2, pyrometer, pyrometer.wsgi\n"
        "from pyrometer.dbapi import psycopg2_connect\n"
        "connect = psycopg2.connect if sys.argv[2] == 'patched' else psycopg2_connect\n"
        "conn = connect(host='127.0.0.1', port=int(sys.argv[1]), user='postgres', dbname='postgres')\n"
        "def app(environ, start_response):\n"
        "    cur = conn.cursor()\n"
        "    for i in range(5):\n"
        "        cur.execute('SELECT %s + 1', (i,))\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n"
        "wrapped = pyrometer.wsgi.PyrometerMiddleware(app)\n"
        "env = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/pg'}\n"
        "wrapped(env, lambda s, h: None)\n"
        "assert pyrometer.flush(30)\n")
    env = agent_env(tmp_path)
    from agent_support import run_python
    run_python([script, postgres.port, "wrapper"], env)
    db = env["PYROMETER_DB"]
    assert rows(db, "SELECT query_count, n_plus_one_count FROM requests") == [(5, 1)]
    assert rows(db, "SELECT DISTINCT q.db_alias, q.rows, fp.sql FROM queries q JOIN fingerprints"
                    " fp USING (fingerprint)") == [("psycopg2", 1, "SELECT ? + ?")]
    db2 = str(tmp_path / "run.db")
    env2 = agent_env(tmp_path, agent_on_path=False)
    res = run_pyrometer(["run", "--db", db2, "--", "/usr/bin/python3", script, postgres.port,
                         "patched"], prefix=["env"] + ["%s=%s" % kv for kv in env2.items()
                                                       if kv[0] == "PYTHONPATH"])
    assert res.returncode == 0, res.describe()
    assert rows(db2, "SELECT query_count, n_plus_one_count FROM requests") == [(5, 1)]


def test_record_by_endpoint_splits_the_flame_graph(tmp_path, gunicorn):
    """Two routes burn CPU in two known functions; with --by-endpoint every
    sample of burn_alpha sits under GET /burn/alpha/ and burn_beta under
    GET /burn/beta/, read from the agent's table in the worker."""
    env = agent_env(tmp_path)
    setup_project_db(env)
    g = gunicorn(env, tmp_path / "gunicorn.log", workers=1)
    worker = g.worker_pids[0]
    assert http_get(g.port, "/hello/")[0] == 200   # the app is loaded in the worker
    stop = threading.Event()
    served = {"alpha": 0, "beta": 0}

    def load():
        while not stop.is_set():
            for name in ("alpha", "beta"):
                assert http_get(g.port, "/burn/%s/?s=0.03" % name)[0] == 200
                served[name] += 1

    client = threading.Thread(target=load)
    client.start()
    out = tmp_path / "by-endpoint.txt"
    try:
        rec = Background(["record", "--by-endpoint", "-p", worker, "-r", "200", "-d", "3",
                          "-f", "raw", "-o", out])
        res = rec.finish(timeout=60)
    finally:
        stop.set()
        client.join(timeout=60)
    assert res.returncode == 0, res.describe()
    assert served["alpha"] > 5 and served["beta"] > 5, served
    # root;frame;...;leaf COUNT, the root being the endpoint (a synthetic frame)
    under = {"GET /burn/alpha/": {}, "GET /burn/beta/": {}}
    with open(str(out), encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            labels = stack.split(";")
            names = {parse_label(label).name for label in labels[1:]}
            for fn in ("burn_alpha", "burn_beta"):
                if fn in names:
                    counts = under.setdefault(labels[0], {})
                    counts[fn] = counts.get(fn, 0) + int(count)
    alpha, beta = under["GET /burn/alpha/"], under["GET /burn/beta/"]
    assert alpha.get("burn_alpha", 0) >= 50 and beta.get("burn_beta", 0) >= 50, under
    # the route is read just before and just after the stacks, and a sample
    # during which it changed is left out: nothing is ever misfiled
    assert alpha.get("burn_beta", 0) == 0 and beta.get("burn_alpha", 0) == 0, under
    assert set(under) == {"GET /burn/alpha/", "GET /burn/beta/"}, under
    g.stop()
