"""A plain WSGI application over pyrometer's sqlite3 wrapper, called the way
a server calls it (environ, start_response, iterate, close), then the same
through Flask when Debian's python3-flask is installed.  Usage:
agent_wsgi.py APP_DB (PYROMETER_DB says where records go).  Requests:
GET /items (1 + 6 lookups from one line: an N+1), POST /items (executemany
of 3 rows, a count; the body is an iterator, closed by the caller),
GET /boom (a query, then an exception), Flask GET /flask/3."""
import sys
from wsgiref.util import setup_testing_defaults

import pyrometer
import pyrometer.wsgi
from pyrometer.dbapi import sqlite3_connect

conn = sqlite3_connect(sys.argv[1])
conn.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT)")   # no request: not recorded
conn.executemany("INSERT INTO items(name) VALUES (?)", [("item %d" % i,) for i in range(1, 7)])
conn.commit()


def list_items(environ, start_response):
    ids = [row[0] for row in conn.cursor().execute("SELECT id FROM items ORDER BY id LIMIT 6")]
    names = []
    for i in ids:
        names.append(conn.execute("SELECT name FROM items WHERE id = ?", (i,)).fetchone()[0])  # LINE:wsgi-loop
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [",".join(names).encode()]


def add_items(environ, start_response):
    conn.executemany("INSERT INTO items(name) VALUES (?)", [("x",), ("y",), ("z",)])
    count = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    start_response("201 Created", [("Content-Type", "text/plain")])
    return iter([b"%d" % count])


def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if path == "/items" and method == "GET":
        return list_items(environ, start_response)
    if path == "/items" and method == "POST":
        return add_items(environ, start_response)
    conn.execute("SELECT 1")
    raise RuntimeError("boom")


wrapped = pyrometer.wsgi.PyrometerMiddleware(app)


def call(method, path):
    environ = {}
    setup_testing_defaults(environ)
    environ["REQUEST_METHOD"] = method
    environ["PATH_INFO"] = path
    statuses = []
    try:
        result = wrapped(environ, lambda status, headers, exc_info=None: statuses.append(status))
    except RuntimeError:
        return "raised"
    body = b"".join(result)
    if hasattr(result, "close"):
        result.close()
    return statuses[0], body


print(call("GET", "/items"))
print(call("POST", "/items"))
print(call("GET", "/boom"))

try:
    import flask
except ImportError:
    print("flask: skipped (python3-flask not installed)")
else:
    fapp = flask.Flask("agent_flask")

    @fapp.route("/flask/<int:n>")
    def flask_items(n):
        names = []
        for i in range(1, n + 1):
            names.append(conn.execute("SELECT name FROM items WHERE id = ?", (i,)).fetchone()[0])
        return ",".join(names)

    pyrometer.wsgi.flask(fapp)
    response = fapp.test_client().get("/flask/3")
    print("flask", response.status_code, response.data)
    response.close()   # a server closes the body; the request ends there

assert pyrometer.flush(30)
print("ready")
