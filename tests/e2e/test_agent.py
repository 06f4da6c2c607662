"""
test_agent.py — the in-process agent on the Django test project (SQLite),
the WSGI middleware, the sqlite3 wrapper, max_queries(), and `pyrometer
requests` (text, --json, --html, --budget).

Requests go through Django's real handler in a subprocess (drive.py: the
test client, so the middleware chain and connection wrappers are Django's
own), which waits for the agent's writer before it exits.  Expected call
sites are `# LINE:tag` markers in tests/targets/agent_django/library/views.py.
The C extension is one abi3 build: test_extension_loads imports that same
file in every CPython 3.8-3.13 and compiles its source against each one's
headers under the limited API.
"""

import os
import re
import subprocess

import pytest

from agent_support import (AGENT_PY, AGENT_SO, PROJECT, SYSTEM_PYTHON, VIEWS, agent_env, db_bytes,
                           drive, endpoint, report, rows, run_python, setup_project_db,
                           views_lines)
from conftest import REPO, marker_lines, run_pyrometer, target_path

N_PLUS_ONE_SQL = ('SELECT "library_book"."id", "library_book"."author_id", "library_book"."title" '
                  'FROM "library_book" WHERE "library_book"."author_id" = ?')


@pytest.fixture
def project(tmp_path):
    env = agent_env(tmp_path)
    setup_project_db(env)
    return env


def test_n_plus_one_found_at_the_view_line(project):
    drive(project, "/authors/n-plus-one/*3", "/authors/prefetch/*3")
    db = project["PYROMETER_DB"]
    rep = report(db)
    assert rep["service"] == "mysite" and rep["requests"] == 6, rep
    bad = endpoint(rep, "GET /authors/n-plus-one/")
    assert bad["count"] == 3 and bad["view"] == "library.views.authors_n_plus_one", bad
    assert bad["mean_queries"] == 51 and bad["max_queries"] == 51, bad
    assert len(bad["n_plus_one"]) == 1, bad["n_plus_one"]
    finding = bad["n_plus_one"][0]
    assert finding["file"] == VIEWS, finding
    assert finding["line"] == views_lines()["n-plus-one"], finding
    assert finding["function"] == "authors_n_plus_one", finding
    assert finding["max_count"] == 50 and finding["requests"] == 3, finding
    assert finding["sql"] == N_PLUS_ONE_SQL, finding
    good = endpoint(rep, "GET /authors/prefetch/")
    assert good["count"] == 3 and good["mean_queries"] == 2 and good["n_plus_one"] == [], good
    # per request in the file: 3 findings of 50, none for the fixed view
    assert rows(db, "SELECT r.route, f.count, f.line FROM findings f JOIN requests r"
                    " ON r.id = f.request_id") == [("/authors/n-plus-one/", 50,
                                                    views_lines()["n-plus-one"])] * 3
    # the text report names the call site and the query
    text = run_pyrometer(["requests", db]).expect(0).stdout
    assert "50 queries from %s:%d in authors_n_plus_one, in 3 of 3 requests" % (
        VIEWS, views_lines()["n-plus-one"]) in text, text
    assert N_PLUS_ONE_SQL in text, text


def test_request_fields(project):
    import time
    before = time.time_ns()
    drive(project, "/authors/7/", "/missing/")
    after = time.time_ns()
    db = project["PYROMETER_DB"]
    got = rows(db, "SELECT framework, method, route, view, status, start_ns, latency_ns, cpu_ns,"
                   " query_count, db_ns, pid, thread_id FROM requests ORDER BY id")
    assert len(got) == 2, got
    ok, missing = got
    assert ok[:5] == ("django", "GET", "/authors/<int:pk>/", "library.views.author_detail", 200), ok
    assert missing[:5] == ("django", "GET", None, None, 404), missing
    for r in got:
        assert before <= r[5] <= after and 0 < r[6] < after - before and r[7] > 0, r
    assert ok[8] == 2, ok
    per_query = rows(db, "SELECT SUM(duration_ns), COUNT(*) FROM queries WHERE request_id = 1")[0]
    assert per_query == (ok[9], 2), per_query
    assert ok[10] == ok[11], "one request per process: the main thread's id is the pid"
    agent = rows(db, "SELECT agent_ns, latency_ns FROM requests ORDER BY id")
    assert all(0 < a < lat for a, lat in agent), agent


def test_duplicates_and_similar(project):
    drive(project, "/repeats/")
    db = project["PYROMETER_DB"]
    assert rows(db, "SELECT query_count, duplicate_count, similar_count, n_plus_one_count"
                    " FROM requests") == [(5, 2, 4, 0)]
    lines = views_lines()
    got = rows(db, "SELECT seq, duplicate, file, line, function FROM queries ORDER BY seq")
    assert got == [(0, 0, VIEWS, lines["repeat-1"], "repeats"),
                   (1, 1, VIEWS, lines["repeat-2"], "repeats"),
                   (2, 1, VIEWS, lines["repeat-3"], "repeats"),
                   (3, 0, VIEWS, lines["similar-1"], "repeats"),
                   (4, 0, VIEWS, lines["similar-2"], "repeats")], got
    assert len(set(r[0] for r in rows(db, "SELECT fingerprint FROM queries"))) == 1
    rep = report(db)
    e = endpoint(rep, "GET /repeats/")
    assert e["duplicates"] == 2 and e["similar"] == 4 and e["n_plus_one"] == [], e


def test_raw_sql_manager_raw_and_inserts(project):
    # twice: the second request's lines come from the agent's line cache
    # (keyed by code object and instruction: four sites in one function)
    drive(project, "/raw/*2")
    db = project["PYROMETER_DB"]
    lines = views_lines()
    for request_id in (1, 2):
        got = rows(db, "SELECT q.seq, fp.sql, q.line, q.rows FROM queries q JOIN fingerprints fp"
                       " USING (fingerprint) WHERE q.request_id = %d ORDER BY q.seq" % request_id)
        assert [(g[0], g[1], g[2]) for g in got] == [
            (0, "SELECT COUNT(*) FROM library_book WHERE title LIKE ?", lines["raw-cursor"]),
            (1, "SELECT * FROM library_author WHERE id < ?", lines["raw-manager"]),
            (2, 'INSERT INTO "library_book" ("author_id", "title") VALUES (...)',
             lines["orm-insert"]),
            (3, "INSERT INTO library_book (author_id, title) VALUES (...)", lines["raw-insert"]),
        ], (request_id, got)
        assert got[2][3] == 1 and got[3][3] == 1, "INSERTs report one row: %r" % got
    # literals from the SQL text never reach the file
    data = db_bytes(db)
    assert b"Book 1" not in data and b"Raw title" not in data and b"Fresh" not in data


def test_parameters_stored_only_when_asked(tmp_path):
    secret = b"s3cr3t-value-42"
    plain = agent_env(tmp_path / "plain")
    os.makedirs(str(tmp_path / "plain"))
    setup_project_db(plain)
    drive(plain, "/secret/", "/authors/n-plus-one/")
    assert rows(plain["PYROMETER_DB"], "SELECT COUNT(*) FROM queries WHERE params IS NOT NULL") == [(0,)]
    assert secret not in db_bytes(plain["PYROMETER_DB"])

    os.makedirs(str(tmp_path / "capture"))
    capture = agent_env(tmp_path / "capture", PYROMETER_CAPTURE_PARAMS="1")
    setup_project_db(capture)
    drive(capture, "/secret/", "/authors/n-plus-one/")
    got = rows(capture["PYROMETER_DB"], "SELECT q.params FROM queries q JOIN requests r"
                                        " ON r.id = q.request_id WHERE r.route = '/secret/'")
    assert got == [("('s3cr3t-value-42',)",)], got
    rep = report(capture["PYROMETER_DB"])
    finding = endpoint(rep, "GET /authors/n-plus-one/")["n_plus_one"][0]
    assert finding["example_params"] == "(1,)", finding


def test_n_plus_one_threshold_from_environment(tmp_path):
    env = agent_env(tmp_path, PYROMETER_N_PLUS_ONE="51")
    setup_project_db(env)
    drive(env, "/authors/n-plus-one/")
    assert rows(env["PYROMETER_DB"], "SELECT n_plus_one_count FROM requests") == [(0,)]


def test_max_queries_fails_and_passes(project):
    _, out, err = run_python([os.path.join(PROJECT, "maxq.py")], project)
    lines = views_lines()
    assert "passed 2 <= 2" in out, out
    m = re.search(r"failed: 51 queries ran, at most 10 expected:\n(.*)", out, re.S)
    assert m, out
    assert "  50x %s:%d in authors_n_plus_one" % (VIEWS, lines["n-plus-one"]) in m.group(1), out
    assert N_PLUS_ONE_SQL in m.group(1), out
    assert "decorator failed: 3 queries ran, at most 1 expected" in out, out
    # max_queries blocks are not requests: nothing recorded for them
    assert "requests recorded: 2" in out, out


def test_wsgi_middleware_and_sqlite3_wrapper(tmp_path):
    env = agent_env(tmp_path)
    _, out, err = run_python([target_path("agent_wsgi.py"), str(tmp_path / "app.sqlite3")], env)
    assert "ready" in out, out + err
    db = env["PYROMETER_DB"]
    lines = marker_lines(target_path("agent_wsgi.py"))
    got = rows(db, "SELECT framework, method, route, view, status, query_count, n_plus_one_count"
                   " FROM requests ORDER BY id")
    assert got[:3] == [("wsgi", "GET", "/items", None, 200, 7, 1),
                       ("wsgi", "POST", "/items", None, 201, 2, 0),
                       ("wsgi", "GET", "/boom", None, 500, 1, 0)], got
    err_row = rows(db, "SELECT error FROM requests WHERE route = '/boom'")
    assert err_row == [("RuntimeError",)], err_row
    f = rows(db, "SELECT file, line, function, count FROM findings")
    assert f == [(target_path("agent_wsgi.py"), lines["wsgi-loop"], "list_items", 6)], f
    q = rows(db, "SELECT fp.sql, q.db_alias, q.many, q.rows FROM queries q JOIN fingerprints fp"
                 " USING (fingerprint) JOIN requests r ON r.id = q.request_id"
                 " WHERE r.method = 'POST' ORDER BY q.seq")
    assert q == [("INSERT INTO items(name) VALUES (...)", "sqlite3", 1, 3),
                 ("SELECT COUNT(*) FROM items", "sqlite3", 0, None)], q
    if "flask: skipped" not in out:
        flask = rows(db, "SELECT framework, route, view, status, query_count FROM requests"
                         " WHERE view IS NOT NULL")
        assert flask == [("wsgi", "/flask/<int:n>", "flask_items", 200, 3)], flask


def test_budget_exit_codes(project, tmp_path):
    drive(project, "/authors/n-plus-one/", "/authors/prefetch/")
    db = project["PYROMETER_DB"]
    ok = tmp_path / "ok.json"
    ok.write_text('{"default": {"max_queries": 60, "p99_ms": 60000},'
                  ' "endpoints": {"/authors/prefetch/": {"max_queries": 2, "max_n_plus_one": 0}}}')
    res = run_pyrometer(["requests", "--budget", ok, db]).expect(0)
    assert "every endpoint within its limits" in res.stdout, res.describe()

    broken = tmp_path / "broken.json"
    broken.write_text('{"default": {"max_queries": 60},'
                      ' "endpoints": {"GET /authors/n-plus-one/": {"max_queries": 10,'
                      ' "max_n_plus_one": 0}}}')
    res = run_pyrometer(["requests", "--budget", broken, db])
    assert res.returncode == 6, res.describe()
    assert res.stderr.strip() == "pyrometer: error: over budget: 2 limits broken (%s)" % broken
    assert "GET /authors/n-plus-one/: max_queries is 51, limit 10" in res.stdout, res.stdout
    assert "GET /authors/n-plus-one/: max_n_plus_one is 1, limit 0" in res.stdout, res.stdout
    res = run_pyrometer(["requests", "--json", "--budget", broken, db])
    assert res.returncode == 6
    import json
    doc = json.loads(res.stdout)
    assert doc["budget_ok"] is False and len(doc["budget_violations"]) == 2, doc

    bad = tmp_path / "bad.json"
    bad.write_text('{"default": {"max_querys": 1}}')
    res = run_pyrometer(["requests", "--budget", bad, db]).expect(1)
    assert "unknown limit 'max_querys'" in res.stderr


def test_requests_errors(tmp_path):
    run_pyrometer(["requests", tmp_path / "nope.db"]).expect(2)
    not_ours = tmp_path / "other.db"
    import sqlite3
    sqlite3.connect(str(not_ours)).execute("CREATE TABLE t(x)").connection.commit()
    res = run_pyrometer(["requests", not_ours]).expect(1)
    assert "pyrometer agent database" in res.stderr
    run_pyrometer(["requests"]).expect(1)
    run_pyrometer(["requests", "--html", "/nonexistent-dir/x.html", not_ours]).expect(1)


def test_html_report(project, tmp_path):
    drive(project, "/authors/n-plus-one/*2", "/authors/prefetch/")
    out = tmp_path / "report.html"
    run_pyrometer(["requests", "--html", out, project["PYROMETER_DB"]]).expect(0)
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script src" not in html and "<link" not in html and "http://" not in html
    assert "%s:%d</span>" % (VIEWS, views_lines()["n-plus-one"]) in html
    assert "&quot;library_book&quot;.&quot;author_id&quot; = ?" in html
    assert "<td>GET /authors/n-plus-one/</td>" in html and "<td>GET /authors/prefetch/</td>" in html
    bad = run_pyrometer(["requests", "--html", tmp_path / "no" / "dir.html",
                         project["PYROMETER_DB"]]).expect(5)
    assert "cannot write" in bad.stderr


def test_extension_loads_in_each_python(python, tmp_path):
    """The one abi3 .so imports and works in 3.8-3.13; the source compiles
    against each version's own headers under the limited API."""
    if python.version[:2] < (3, 8):
        pytest.skip("the agent needs CPython 3.8+ (this is %d.%d)" % python.version[:2])
    env = agent_env(tmp_path)
    db = str(tmp_path / "v.sqlite3")
    _, out, err = run_python([target_path("agent_versions.py"), db], env, python=python.path)
    lines = marker_lines(target_path("agent_versions.py"))
    assert "so %s" % os.path.realpath(AGENT_SO) in out, out
    got = rows(db, "SELECT file, line, function, count FROM findings")
    assert got == [(target_path("agent_versions.py"), lines["versions-loop"],
                    python.name("Handler.handle"), 6)], (got, out, err)
    include = subprocess.run([python.path, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['include'])"], stdout=subprocess.PIPE, check=True,
                             timeout=30).stdout.decode().strip()
    if not os.path.isfile(os.path.join(include, "Python.h")):
        pytest.skip("no Python.h for %s in %s" % (python.path, include))
    cc = subprocess.run(["gcc", "-std=gnu11", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                         "-Wno-missing-field-initializers", "-D_GNU_SOURCE", "-I" + include,
                         os.path.join(REPO, "src", "agent", "agentmodule.c")],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert cc.returncode == 0, cc.stdout.decode()


def test_fingerprints():
    """normalize() as the agent stores SQL (the unit test covers the C directly)."""
    import json
    sql = ["select * from t where a = 'x''y' and b in (1, 2, -3) and c = %s",
           "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
           "SELECT $1::int, E'\\'' -- trailing\n"]
    code = ("import json, sys, pyrometer; "
            "print(json.dumps([pyrometer.normalize(s)[0] for s in json.loads(sys.argv[1])]))")
    env = dict(os.environ, PYTHONPATH=AGENT_PY)
    out = subprocess.run([SYSTEM_PYTHON, "-c", code, json.dumps(sql)], env=env,
                         stdout=subprocess.PIPE, check=True, timeout=30).stdout.decode()
    assert json.loads(out) == ["select * from t where a = ? and b in (...) and c = ?",
                               "INSERT INTO t VALUES (...)",
                               "SELECT ?::int, ?"], out
