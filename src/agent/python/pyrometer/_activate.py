"""pyrometer._activate — zero-code activation, for `pyrometer run`.

Called from the sitecustomize.py that `pyrometer run` puts first on
PYTHONPATH, in every Python process the command starts (gunicorn's workers
inherit the environment).  Patches modules as they are first imported (a
post-import hook on sys.meta_path), never importing them itself:
  django.core.handlers.base  the handler inserts PyrometerMiddleware first in
                             MIDDLEWARE before building its chain
  gunicorn.app.base          a non-Django WSGI app gets PyrometerMiddleware
  sqlite3                    sqlite3.connect records queries (sqlite3.dbapi2,
                             which Django uses, is left alone)
  psycopg2                   psycopg2.connect records queries
"""

import importlib.abc
import importlib.util
import sys


def _patch_django_handler(module):
    original = module.BaseHandler.load_middleware

    def load_middleware(self, *args, **kwargs):
        from django.conf import settings

        from .django import insert_middleware
        insert_middleware(settings)
        return original(self, *args, **kwargs)

    module.BaseHandler.load_middleware = load_middleware


def _is_django_handler(app):
    return type(app).__module__.startswith("django.")


def _patch_gunicorn(module):
    original = module.BaseApplication.wsgi

    def wsgi(self):
        app = original(self)
        if getattr(app, "_pyrometer_wrapped", False) or _is_django_handler(app):
            return app
        from .wsgi import PyrometerMiddleware
        wrapped = PyrometerMiddleware(app)
        wrapped._pyrometer_wrapped = True
        self.callable = wrapped
        return wrapped

    module.BaseApplication.wsgi = wsgi


def _patch_sqlite3(module):
    from . import dbapi
    dbapi.ORIGINAL_CONNECT.setdefault("sqlite3", module.connect)
    module.connect = dbapi.sqlite3_connect


def _patch_psycopg2(module):
    from . import dbapi
    dbapi.ORIGINAL_CONNECT.setdefault("psycopg2", module.connect)
    module.connect = dbapi.psycopg2_connect


PATCHES = {
    "django.core.handlers.base": _patch_django_handler,
    "gunicorn.app.base": _patch_gunicorn,
    "sqlite3": _patch_sqlite3,
    "psycopg2": _patch_psycopg2,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, patch):
        self.loader = loader
        self.patch = patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        try:
            self.patch(module)
        except Exception as e:   # never break the application
            sys.stderr.write("pyrometer agent: could not patch %s: %s\n" % (module.__name__, e))


class _PostImportHook(importlib.abc.MetaPathFinder):
    def __init__(self, patches):
        self.patches = dict(patches)
        self.busy = set()

    def find_spec(self, name, path=None, target=None):
        patch = self.patches.get(name)
        if patch is None or name in self.busy:
            return None
        self.busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        del self.patches[name]
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def activate():
    """Enable the agent (settings from the environment) and install the hooks."""
    from . import enable
    enable()
    pending = {}
    for name, patch in PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
        else:
            pending[name] = patch
    sys.meta_path.insert(0, _PostImportHook(pending))
