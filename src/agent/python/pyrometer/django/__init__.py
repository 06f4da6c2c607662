"""pyrometer.django — the Django integration.

Add "pyrometer.django" to INSTALLED_APPS: its AppConfig (apps.py) puts
PyrometerMiddleware first in MIDDLEWARE.  The middleware opens a request
record in the C agent, installs the agent's execute wrapper (the
connection.execute_wrapper protocol) on every database alias of the
thread's connections, names the request from its URL resolution (route
pattern and view) and closes the record with the status.  Everything per
query happens in C.
"""

import threading

from django.db import connections
from django.db.backends.signals import connection_created

from .. import _agent, ensure_enabled

MIDDLEWARE = "pyrometer.django.PyrometerMiddleware"

_wrappers = {}
_thread = threading.local()


def _wrap(connection):
    """Our wrapper on one DatabaseWrapper (innermost: its time is the database's)."""
    wrapper = _wrappers.get(connection.alias)
    if wrapper is None:
        wrapper = _wrappers[connection.alias] = _agent.QueryWrapper(connection.alias)
    if wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(wrapper)


def _on_connection_created(sender, connection, **kwargs):
    _wrap(connection)


connection_created.connect(_on_connection_created, dispatch_uid="pyrometer.django")


def install_wrappers():
    """Make sure every alias's connection on this thread has our wrapper."""
    for alias in connections:
        _wrap(connections[alias])
    _thread.installed = True


def install_wrappers_once():
    """install_wrappers() the first time on each thread; after that, a
    connection (re)opened on a DatabaseWrapper gets it from connection_created."""
    if not getattr(_thread, "installed", False):
        install_wrappers()


def route_of(match):
    """(route pattern, dotted view name) of a ResolverMatch (or Nones)."""
    if match is None:
        return None, None
    route = getattr(match, "route", None)
    if route is not None and not route.startswith("^"):
        route = "/" + route
    return route, getattr(match, "_func_path", None)


def insert_middleware(settings):
    current = list(settings.MIDDLEWARE or [])
    if MIDDLEWARE not in current:
        settings.MIDDLEWARE = [MIDDLEWARE] + current


class PyrometerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        ensure_enabled()

    def __call__(self, request):
        install_wrappers_once()
        _agent.begin("django")
        status, error = 0, None
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        except BaseException as e:
            status, error = 500, type(e).__name__
            raise
        finally:
            route, view = route_of(getattr(request, "resolver_match", None))
            _agent.finish(request.method, route, view, status, error)

    def process_view(self, request, view_func, view_args, view_kwargs):
        route, view = route_of(request.resolver_match)
        _agent.set_route(request.method, route, view)
        return None
