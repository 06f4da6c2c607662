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

Never used by the code under test; only by tests/targets/*.py.
"""

import json
import os
import sys
import threading
import time

GIVE_UP_AFTER = 15.0


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


def _all_parked(checks, native_ids):
    frames = sys._current_frames()
    for ident, check in checks.items():
        if not check(frames.get(ident)) or _os_state(native_ids[ident]) != "S":
            return False
    return True


def _watch(checks, info):
    native_ids = {}
    for t in threading.enumerate():
        if t.ident in checks:
            native_ids[t.ident] = t.native_id
    missing = set(checks) - set(native_ids)
    if missing:
        sys.stderr.write("_parked: unknown thread idents %r\n" % sorted(missing))
        os._exit(1)
    deadline = time.monotonic() + GIVE_UP_AFTER
    in_a_row = 0
    while in_a_row < 2:
        if time.monotonic() > deadline:
            frames = sys._current_frames()
            sys.stderr.write("_parked: threads never parked: %r\n" % {
                ident: (frames.get(ident) and frames[ident].f_code.co_name, _os_state(native_ids[ident]))
                for ident in checks})
            sys.stderr.flush()
            os._exit(1)
        time.sleep(0.005)  # releases the GIL so a thread about to park gets there
        in_a_row = in_a_row + 1 if _all_parked(checks, native_ids) else 0
    sys.stdout.write("ready " + json.dumps(info()) + "\n")
    sys.stdout.flush()


def announce_when_parked(checks, info):
    """checks: {thread ident: check(frame)}; info: callable returning the JSON payload."""
    watcher = threading.Thread(target=_watch, args=(checks, info), name="parked-watcher")
    watcher.start()
    return watcher


def thread_info(thread=None):
    """{"ident","native_id","name"} of a thread (default: the calling thread)."""
    thread = thread or threading.current_thread()
    return {"ident": thread.ident, "native_id": thread.native_id, "name": thread.name}
