"""pyrometer.wsgi — request records for any WSGI application.

    app = PyrometerMiddleware(app)            # route = PATH_INFO
    app = PyrometerMiddleware(app, route=lambda environ: ...)
    pyrometer.wsgi.flask(flask_app)           # route = the URL rule, view = endpoint

A request lasts from the call into the application until its response
iterable is closed (so queries made while streaming the body count).  Queries
are recorded from pyrometer.dbapi connections (or Django's, under Django).
"""

from . import _agent, ensure_enabled


class _Response:
    """The application's response iterable; closing it closes the record."""

    __slots__ = ("_result", "_finish")

    def __init__(self, result, finish):
        self._result = result
        self._finish = finish

    def __iter__(self):
        return iter(self._result)

    def close(self):
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(None)


class PyrometerMiddleware:
    def __init__(self, app, route=None):
        self.app = app
        self.route = route
        ensure_enabled()

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD")
        route = self.route(environ) if self.route else environ.get("PATH_INFO") or "/"
        _agent.begin("wsgi")
        _agent.set_route(method, route, None)
        state = {"status": 0, "done": False}

        def start(status, headers, exc_info=None):
            try:
                state["status"] = int(status.split(None, 1)[0])
            except (ValueError, IndexError):
                pass
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        def finish(error):
            if not state["done"]:
                state["done"] = True
                _agent.finish(method, None, None, state["status"] or (500 if error else 0), error)

        try:
            result = self.app(environ, start)
        except BaseException as e:
            finish(type(e).__name__)
            raise
        if isinstance(result, (list, tuple)):
            finish(None)
            return result
        return _Response(result, finish)


def flask(app):
    """Record every request of a Flask application, named by its URL rule."""
    from flask import request

    app.wsgi_app = PyrometerMiddleware(app.wsgi_app)

    @app.before_request
    def _pyrometer_route():
        rule = request.url_rule
        _agent.set_route(request.method, rule.rule if rule is not None else None, request.endpoint)

    return app
