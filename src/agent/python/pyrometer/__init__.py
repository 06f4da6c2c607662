"""pyrometer — the in-process agent: requests and the SQL queries they make.

Thin glue over the C extension ``pyrometer._agent`` (one abi3 build for
CPython 3.8-3.13), which owns the hot path: timing queries, finding call
sites, and handing finished records to a writer thread that stores them in a
local SQLite database (schema: README, "Requests and queries").

Ways in:
  - Django: add "pyrometer.django" to INSTALLED_APPS (installs the middleware).
  - WSGI: ``app = pyrometer.wsgi.PyrometerMiddleware(app)``; Flask:
    ``pyrometer.wsgi.flask(app)``.
  - DB-API without Django: ``pyrometer.dbapi.sqlite3_connect(...)``,
    ``pyrometer.dbapi.psycopg2_connect(...)`` or ``pyrometer.dbapi.wrap(conn)``.
  - No code at all: ``pyrometer run -- COMMAND...``.
  - Tests: ``with pyrometer.max_queries(5): ...`` fails a block making more.

Settings come from the environment (arguments to enable() win):
  PYROMETER_DB             the SQLite file (default ./pyrometer-SERVICE.db)
  PYROMETER_SERVICE        the service name (default: Django settings package,
                           else the program's name)
  PYROMETER_N_PLUS_ONE     queries from one call site with one fingerprint that
                           make an N+1 finding (default 5)
  PYROMETER_CAPTURE_PARAMS =1 to store parameter values (never stored otherwise)
  PYROMETER_APP_PATHS      path prefixes (os.pathsep-separated) that are the
                           application's code; default: anything outside the
                           interpreter's library and package directories
  PYROMETER_EXCLUDE        more path prefixes that are never the application
"""

import os
import sys

from . import _agent

__all__ = ["enable", "enabled", "max_queries", "set_route", "flush", "normalize"]

_enabled = False


def _env_int(name, default):
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


def _prefixes(paths):
    out = []
    for p in paths:
        if p:
            p = os.path.abspath(p)
            out.append(p if p.endswith(os.sep) else p + os.sep)
    return out


def _library_prefixes():
    """Directories whose code is never the application's own."""
    import sysconfig
    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            paths.add(sysconfig.get_paths()[key])
        except KeyError:
            pass
    try:
        import site
        paths.update(site.getsitepackages())
        paths.add(site.getusersitepackages())
    except Exception:
        pass
    paths.add(os.path.dirname(os.path.abspath(__file__)))   # pyrometer itself
    for name in ("django", "flask", "werkzeug", "gunicorn", "psycopg2"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__file__", None):
            paths.add(os.path.dirname(os.path.abspath(mod.__file__)))
    paths.update(os.environ.get("PYROMETER_EXCLUDE", "").split(os.pathsep))
    return _prefixes(sorted(paths))


def default_service():
    settings = os.environ.get("DJANGO_SETTINGS_MODULE")
    if settings:
        return settings.split(".")[0]
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return os.path.splitext(prog)[0] or "python"


def enable(db=None, service=None, n_plus_one=None, capture_params=None):
    """Configure where records go (from the environment unless given).
    Called by every integration; calling it again re-reads the settings."""
    global _enabled
    service = service or os.environ.get("PYROMETER_SERVICE") or default_service()
    db = db or os.environ.get("PYROMETER_DB") or "pyrometer-%s.db" % service
    if n_plus_one is None:
        n_plus_one = _env_int("PYROMETER_N_PLUS_ONE", 5)
    if capture_params is None:
        capture_params = os.environ.get("PYROMETER_CAPTURE_PARAMS", "") not in ("", "0")
    include = _prefixes(os.environ.get("PYROMETER_APP_PATHS", "").split(os.pathsep))
    _agent.configure(os.path.abspath(db), service, max(2, n_plus_one), bool(capture_params),
                     _library_prefixes(), include)
    _enabled = True


def enabled():
    return _enabled


def ensure_enabled():
    if not _enabled:
        enable()


def set_route(method, route, view=None):
    """Name the request open on this thread (and publish it for
    `pyrometer record --by-endpoint`)."""
    _agent.set_route(method, route, view)


def flush(timeout=10.0):
    """Wait until every finished request is in the database."""
    return _agent.flush(timeout)


def normalize(sql):
    """(normalised SQL, fingerprint) as the agent stores them."""
    return _agent.normalize(sql)


from .testing import max_queries  # noqa: E402  (needs _agent above)
