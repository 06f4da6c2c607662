"""pyrometer.dbapi — query records from plain DB-API connections.

    conn = pyrometer.dbapi.sqlite3_connect("app.db")      # a real sqlite3.Connection
    conn = pyrometer.dbapi.psycopg2_connect(dsn)          # a real psycopg2 connection
    conn = pyrometer.dbapi.wrap(any_dbapi_connection)     # a proxy, for other drivers

Each execute/executemany is timed and recorded by the C agent in the request
open on the calling thread (nothing is recorded outside a request or a
max_queries() block).  When an outer layer already records the call
(Django's execute wrapper over a psycopg2 connection), the inner one passes
it through, so a query is never counted twice.
"""

from . import _agent

# The drivers' own connect functions, kept when `pyrometer run` replaces them
# (pyrometer._activate) so that ours never call themselves.
ORIGINAL_CONNECT = {}


# ---- sqlite3 -----------------------------------------------------------------

_sqlite3_classes = None


def _sqlite3():
    global _sqlite3_classes
    if _sqlite3_classes is None:
        import sqlite3

        base_execute = sqlite3.Cursor.execute
        base_executemany = sqlite3.Cursor.executemany

        class Cursor(sqlite3.Cursor):
            def execute(self, sql, *args):
                return _agent.dbapi_call(base_execute, self, sql, args, False, "sqlite3")

            def executemany(self, sql, *args):
                return _agent.dbapi_call(base_executemany, self, sql, args, True, "sqlite3")

        class Connection(sqlite3.Connection):
            def cursor(self, factory=Cursor):
                return super().cursor(factory)

            # sqlite3.Connection.execute* make their cursor in C, untimed
            def execute(self, sql, *args):
                return self.cursor().execute(sql, *args)

            def executemany(self, sql, *args):
                return self.cursor().executemany(sql, *args)

        _sqlite3_classes = (Connection, Cursor)
    return _sqlite3_classes


def sqlite3_connect(*args, **kwargs):
    """sqlite3.connect, returning a connection whose queries are recorded
    (unless the caller asks for its own factory)."""
    import sqlite3
    if "factory" not in kwargs and len(args) < 6:
        kwargs["factory"] = _sqlite3()[0]
    return ORIGINAL_CONNECT.get("sqlite3", sqlite3.connect)(*args, **kwargs)


# ---- psycopg2 ----------------------------------------------------------------

_psycopg2_cursor = None


def _psycopg2():
    global _psycopg2_cursor
    if _psycopg2_cursor is None:
        import psycopg2.extensions

        base = psycopg2.extensions.cursor
        base_execute = base.execute
        base_executemany = base.executemany

        class Cursor(base):
            def execute(self, query, vars=None):
                return _agent.dbapi_call(base_execute, self, query, (vars,), False, "psycopg2")

            def executemany(self, query, vars_list):
                return _agent.dbapi_call(base_executemany, self, query, (vars_list,), True,
                                         "psycopg2")

        _psycopg2_cursor = Cursor
    return _psycopg2_cursor


def psycopg2_connect(*args, **kwargs):
    """psycopg2.connect, returning a connection whose cursors record their
    queries (unless the caller asks for its own cursor_factory)."""
    import psycopg2
    if kwargs.get("cursor_factory") is None and "connection_factory" not in kwargs:
        kwargs["cursor_factory"] = _psycopg2()
    return ORIGINAL_CONNECT.get("psycopg2", psycopg2.connect)(*args, **kwargs)


# ---- any DB-API driver -----------------------------------------------------------


class CursorProxy:
    def __init__(self, cursor, alias):
        self._cursor = cursor
        self._alias = alias

    def execute(self, sql, *args):
        return _agent.dbapi_call(type(self._cursor).execute, self._cursor, sql, args, False,
                                 self._alias)

    def executemany(self, sql, *args):
        return _agent.dbapi_call(type(self._cursor).executemany, self._cursor, sql, args, True,
                                 self._alias)

    def __iter__(self):
        return iter(self._cursor)

    def __enter__(self):
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cursor.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class ConnectionProxy:
    def __init__(self, conn, alias):
        self._conn = conn
        self._alias = alias

    def cursor(self, *args, **kwargs):
        return CursorProxy(self._conn.cursor(*args, **kwargs), self._alias)

    def execute(self, sql, *args):
        cursor = self.cursor()
        cursor.execute(sql, *args)
        return cursor

    def executemany(self, sql, *args):
        cursor = self.cursor()
        cursor.executemany(sql, *args)
        return cursor

    def __enter__(self):
        self._conn.__enter__()
        return self

    def __exit__(self, *exc):
        return self._conn.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def wrap(conn, alias=None):
    """A proxy of any DB-API connection whose cursors record their queries."""
    return ConnectionProxy(conn, alias or type(conn).__module__.split(".")[0])
