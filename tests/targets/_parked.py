# -*- coding: utf-8 -*-
"""
_parked.py — readiness for target scripts: say "ready" only once the threads
a test will inspect are really parked where the test expects them.

announce_when_parked(checks, info) starts a short-lived watcher thread. It
polls until, for every thread ident in `checks`, the thread is blocked (its OS
state in /proc/self/task/TID/stat is "S") and checks[ident](innermost_frame)
is true, twice in a row with the GIL released in between. Then it prints
`ready JSON(info())` on stdout and returns, so the thread ends; the test then
waits for the process's thread count to drop, so the watcher is gone before
pyrometer looks. If the threads never park (15 s), the process exits with 1
and says why on stderr, so the test fails fast instead of hanging.

Runs on CPython 2.7 and 3.6+: where threading has no native ids (before
3.8), a thread's OS id comes from /proc/thread-self, read by the thread
itself (current_native_id / register_native_id), and the main thread's is the
process id.

Never used by the code under test; only by tests/targets/*.py.
"""

import json
import os
import sys
import threading
import time

try:
    from threading import get_ident
except ImportError:  # Python 2
    from thread import get_ident

monotonic = getattr(time, "monotonic", time.time)

GIVE_UP_AFTER = 15.0

_MAIN_IDENT = get_ident()  # imported by the main thread
_NATIVE_IDS = {}           # thread ident -> OS thread id, for Pythons before 3.8


def current_native_id():
    """The calling thread's OS thread id (and remember it for thread_info)."""
    if hasattr(threading, "get_native_id"):
        native = threading.get_native_id()
    else:
        native = int(os.readlink("/proc/thread-self").rsplit("/", 1)[1])
    _NATIVE_IDS[get_ident()] = native
    return native


register_native_id = current_native_id


def native_id_of(thread):
    """OS thread id of a threading.Thread, None if not known (yet)."""
    native = getattr(thread, "native_id", None)
    if native is not None:
        return native
    if thread.ident == _MAIN_IDENT:
        return os.getpid()
    return _NATIVE_IDS.get(thread.ident)


def start_daemon(target, name, args=()):
    """Start a daemon thread (Python 2 has no daemon= argument)."""
    t = threading.Thread(target=target, name=name, args=args)
    t.daemon = True
    t.start()
    return t


def _os_state(native_id):
    try:
        with open("/proc/self/task/%d/stat" % native_id) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def in_function(name):
    """Check: the innermost Python frame is a function called `name` (co_name)."""
    return lambda frame: frame is not None and frame.f_code.co_name == name


def in_event_wait(caller):
    """Check: parked in threading's Event.wait() called from function `caller`."""
    def check(frame):
        names = []
        while frame is not None and len(names) < 3:
            names.append((frame.f_code.co_name, os.path.basename(frame.f_code.co_filename)))
            frame = frame.f_back
        return (len(names) == 3 and names[0] == ("wait", "threading.py")
                and names[1] == ("wait", "threading.py") and names[2][0] == caller)
    return check


def _native_ids(threads):
    """{ident: OS thread id or None (a thread yet to register)}."""
    return dict((ident, native_id_of(t)) for ident, t in threads.items())


def _all_parked(checks, threads):
    frames = sys._current_frames()
    native_ids = _native_ids(threads)
    for ident, check in checks.items():
        if native_ids[ident] is None:
            return False
        if not check(frames.get(ident)) or _os_state(native_ids[ident]) != "S":
            return False
    return True


def _watch(checks, info):
    threads = {}
    for t in threading.enumerate():
        if t.ident in checks:
            threads[t.ident] = t
    missing = set(checks) - set(threads)
    if missing:
        sys.stderr.write("_parked: unknown thread idents %r\n" % sorted(missing))
        os._exit(1)
    deadline = monotonic() + GIVE_UP_AFTER
    in_a_row = 0
    while in_a_row < 2:
        if monotonic() > deadline:
            frames = sys._current_frames()
            native_ids = _native_ids(threads)
            sys.stderr.write("_parked: threads never parked: %r\n" % dict(
                (ident, (frames.get(ident) and frames[ident].f_code.co_name,
                         native_ids[ident] and _os_state(native_ids[ident])))
                for ident in checks))
            sys.stderr.flush()
            os._exit(1)
        time.sleep(0.005)  # releases the GIL so a thread about to park gets there
        in_a_row = in_a_row + 1 if _all_parked(checks, threads) else 0
    sys.stdout.write("ready " + json.dumps(info()) + "\n")
    sys.stdout.flush()


def announce_when_parked(checks, info):
    """checks: {thread ident: check(frame)}; info: callable returning the JSON payload."""
    watcher = threading.Thread(target=_watch, args=(checks, info), name="parked-watcher")
    watcher.start()
    return watcher


def thread_info(thread=None):
    """{"ident","native_id","name"} of a thread (default: the calling thread).
    Before 3.8, another thread's native id is known once it registered."""
    if thread is None:
        thread = threading.current_thread()
        current_native_id()
    return {"ident": thread.ident, "native_id": native_id_of(thread), "name": thread.name}
