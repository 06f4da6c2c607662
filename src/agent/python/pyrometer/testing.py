"""pyrometer.testing — max_queries(n): fail a test whose block makes more
than n SQL queries, saying which ones and from where.

Counts every query recorded by the agent on this thread inside the block:
Django's connections (wrappers installed on entry), and connections from
pyrometer.dbapi.  Usable as a context manager or a decorator.
"""

import contextlib
import sys

from . import _agent


def _install_django_wrappers():
    if "django.db" not in sys.modules:
        return
    try:
        from django.conf import settings
        if not settings.configured:
            return
        from .django import install_wrappers
        install_wrappers()
    except Exception:
        pass


class max_queries(contextlib.ContextDecorator):
    """with max_queries(n): ... -> AssertionError when more than n queries ran.

    After the block, .count and .queries (sql, file, line, function,
    duration_ns) describe what ran."""

    def __init__(self, n):
        if n < 0:
            raise ValueError("max_queries: n must be >= 0")
        self.n = n
        self.count = 0
        self.queries = []

    def __enter__(self):
        _install_django_wrappers()
        _agent.count_begin()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.queries = _agent.count_end()
        self.count = len(self.queries)
        if exc_type is None and self.count > self.n:
            raise AssertionError(self.describe())
        return False

    def describe(self):
        groups = {}
        for sql, file, line, function, _ in self.queries:
            key = (sql, file, line, function)
            groups[key] = groups.get(key, 0) + 1
        lines = ["%d queries ran, at most %d expected:" % (self.count, self.n)]
        ranked = sorted(groups.items(), key=lambda kv: -kv[1])
        for (sql, file, line, function), count in ranked[:20]:
            where = "%s:%s in %s" % (file, line, function) if file else "(no application frame)"
            lines.append("  %4dx %s\n        %s" % (count, where, sql[:300]))
        if len(ranked) > 20:
            lines.append("  ... %d more distinct queries" % (len(ranked) - 20))
        return "\n".join(lines)
