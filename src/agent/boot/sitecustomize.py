# sitecustomize.py for `pyrometer run`: enables pyrometer's in-process agent in
# every Python process started under it (PYTHONPATH puts this directory first,
# then the directory holding the `pyrometer` package).  Runs any other
# sitecustomize first (the one this file shadows), then the agent, which needs
# CPython 3.8 or newer; older interpreters (even Python 2) are left alone.
# Set PYROMETER_AGENT=0 to switch it off for one process.
import os
import sys


def _pyrometer_chain():
    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        if sys.version_info[0] >= 3:
            import importlib.machinery
            import importlib.util
            spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
        else:
            import imp
            found = imp.find_module("sitecustomize", others)
            try:
                imp.load_module("_pyrometer_chained_sitecustomize", *found)
            finally:
                if found[0]:
                    found[0].close()
    except ImportError:
        pass
    except Exception as e:
        sys.stderr.write("pyrometer agent: the original sitecustomize failed: %r\n" % (e,))


def _pyrometer_activate():
    if sys.version_info < (3, 8) or os.environ.get("PYROMETER_AGENT", "1") == "0":
        return
    try:
        from pyrometer._activate import activate
        activate()
    except Exception as e:
        sys.stderr.write("pyrometer agent: not enabled in %s: %r\n" % (sys.executable, e))


_pyrometer_chain()
_pyrometer_activate()
