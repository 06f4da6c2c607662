"""
agent_support.py — shared machinery for the in-process agent's e2e tests
(test_agent*.py): the environment that puts build/agent's `pyrometer`
package and the test project (tests/targets/agent_django) on PYTHONPATH,
running the project's helper scripts, reading what the agent wrote (through
`pyrometer requests --json` and directly with sqlite3), gunicorn launched
and stopped with bounded waits on its own log lines, and a PostgreSQL
server initialised in a temporary directory and run on loopback as an
unprivileged user.  Every wait has a deadline; nothing sleeps and hopes.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO, marker_lines, run_pyrometer, wait_for

AGENT_PY = os.path.join(REPO, "build", "agent", "python")
AGENT_SO = os.path.join(AGENT_PY, "pyrometer", "_agent.abi3.so")
PROJECT = os.path.join(REPO, "tests", "targets", "agent_django")
VIEWS = os.path.join(PROJECT, "library", "views.py")
SYSTEM_PYTHON = "/usr/bin/python3"
GUNICORN = "/usr/bin/gunicorn"
PG_BIN = "/usr/lib/postgresql/15/bin"

AGENT_ENV_KEYS = ("PYROMETER_DB", "PYROMETER_SERVICE", "PYROMETER_CAPTURE_PARAMS",
                  "PYROMETER_N_PLUS_ONE", "PYROMETER_APP_PATHS", "PYROMETER_EXCLUDE",
                  "PYROMETER_AGENT", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")


def views_lines():
    return marker_lines(VIEWS)


def require_agent():
    if not os.path.isfile(AGENT_SO):
        pytest.fail("agent not built: %s does not exist (run `make agent`)" % AGENT_SO)


def agent_env(tmp_path, agent_on_path=True, **extra):
    """Environment for the project's processes: SQLite files under tmp_path."""
    require_agent()
    env = {k: v for k, v in os.environ.items() if k not in AGENT_ENV_KEYS}
    paths = ([AGENT_PY] if agent_on_path else []) + [PROJECT]
    env.update({
        "PYTHONPATH": os.pathsep.join(paths),
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "AGENT_TEST_SQLITE": str(tmp_path / "library.sqlite3"),
        "PYROMETER_DB": str(tmp_path / "agent.db"),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(args, env, timeout=120, python=SYSTEM_PYTHON, expect=0):
    proc = subprocess.run([python] + [str(a) for a in args], env=env, cwd=PROJECT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    assert expect is None or proc.returncode == expect, (
        "%s exited %d (expected %s)\nstdout:\n%s\nstderr:\n%s"
        % (" ".join(str(a) for a in args), proc.returncode, expect, out[-4000:], err[-4000:]))
    return proc.returncode, out, err


def setup_project_db(env):
    _, out, _ = run_python([os.path.join(PROJECT, "setup_db.py")], env)
    assert "ready 50 150" in out, out


def drive(env, *paths):
    """Serve paths through Django's test client in one process; the JSON it prints."""
    _, out, err = run_python([os.path.join(PROJECT, "drive.py")] + list(paths), env)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["flushed"], "agent did not flush: %r\n%s" % (result, err)
    return result


def report(db):
    res = run_pyrometer(["requests", "--json", db]).expect(0)
    return json.loads(res.stdout)


def endpoint(rep, label):
    for e in rep["endpoints"]:
        if e["endpoint"] == label:
            return e
    pytest.fail("no endpoint %r in report: %r" % (label, [e["endpoint"] for e in rep["endpoints"]]))


def rows(db, sql, params=()):
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def db_bytes(db):
    """Everything the database holds on disk: the file and its WAL."""
    data = b""
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(db + suffix):
            with open(db + suffix, "rb") as f:
                data += f.read()
    return data


def http_get(port, path, timeout=30):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ----------------------------------------------------------------------------
# gunicorn


class Gunicorn:
    """gunicorn serving the test project (optionally under `pyrometer run`)."""

    def __init__(self, env, log_path, workers=2, prefix=(), extra=()):
        self.log_path = str(log_path)
        self.log = open(self.log_path, "wb")
        self.workers = workers
        self.argv = list(prefix) + [GUNICORN, "-w", str(workers), "-b", "127.0.0.1:0",
                                    "--chdir", PROJECT, "--graceful-timeout", "20"] + \
            list(extra) + ["mysite.wsgi"]
        self.proc = subprocess.Popen(self.argv, env=env, cwd=PROJECT, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.port = None
        self.worker_pids = []

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, timeout=60):
        def ready():
            if self.proc.poll() is not None:
                pytest.fail("gunicorn exited (%s) before it was ready:\n%s"
                            % (self.proc.returncode, self.text()[-4000:]))
            text = self.text()
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", text)]
            if m and len(pids) >= self.workers:
                self.port, self.worker_pids = int(m.group(1)), pids
                return True
            return False
        wait_for(ready, timeout, "gunicorn to listen with %d workers" % self.workers)
        # a worker has booted; it answers once it imported the app
        wait_for(lambda: self._answers(), timeout, "gunicorn to answer")
        return self

    def _answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5):
                return True
        except OSError:
            return False

    def stop(self, timeout=60):
        """Graceful stop (SIGTERM: workers finish, exit through Python)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                pytest.fail("gunicorn did not stop within %ss:\n%s" % (timeout, self.text()[-4000:]))
        self.log.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        if not self.log.closed:
            self.log.close()


@pytest.fixture
def gunicorn():
    started = []

    def start(env, log_path, **kw):
        g = Gunicorn(env, log_path, **kw)
        started.append(g)
        return g.wait_ready()

    yield start
    for g in started:
        g.kill()


# ----------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1, run as an unprivileged user."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pyrometer-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = None
        self.proc = None
        self.prefix = []
        if os.getuid() == 0:
            user = "nobody"
            pw = pwd.getpwnam(user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]

    def _run(self, argv, timeout=120):
        proc = subprocess.run(self.prefix + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, cwd=self.dir)
        assert proc.returncode == 0, "%s failed:\n%s" % (" ".join(argv), proc.stdout.decode()[-3000:])

    def start(self):
        self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--no-sync"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = os.path.join(self.dir, "server.log")
        self.proc = subprocess.Popen(
            self.prefix + [os.path.join(PG_BIN, "postgres"), "-D", self.data, "-p", str(self.port),
                           "-h", "127.0.0.1", "-k", self.dir, "-c", "fsync=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.dir, start_new_session=True)

        def accepting():
            if self.proc.poll() is not None:
                pytest.fail("postgres exited (%s)" % self.proc.returncode)
            import psycopg2
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                 dbname="postgres", connect_timeout=5).close()
                return True
            except psycopg2.OperationalError:
                return False
        wait_for(accepting, 60, "postgres to accept connections on port %d" % self.port)
        import psycopg2
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE library")
        conn.close()
        return self

    def env(self):
        return {"AGENT_TEST_DB": "postgres", "AGENT_TEST_PG_HOST": "127.0.0.1",
                "AGENT_TEST_PG_PORT": str(self.port), "AGENT_TEST_PG_NAME": "library",
                "AGENT_TEST_PG_USER": "postgres"}

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)   # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    missing = [p for p in (os.path.join(PG_BIN, "initdb"), os.path.join(PG_BIN, "postgres"))
               if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail("PostgreSQL server not installed (%s missing; `make deps` installs "
                    "Debian's postgresql)" % ", ".join(missing))
    server = Postgres()
    try:
        yield server.start()
    finally:
        server.stop()
