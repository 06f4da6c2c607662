# -*- coding: utf-8 -*-
"""
locals_target.py — parks a thread named "worker-1" inside a function with
known arguments and locals, for tests/e2e/test_locals.py.

The thread runs parked(1, 2, 3, x=4) and sleeps in time.sleep() with every
local bound.  The ready line carries {"pid", "worker": {"ident", "name"},
"main": {...}, "expected": {name: repr(value)}, "order": [names in
definition order], "args": [argument names]}: Python's own repr() of each
local, for the test to compare with pyrometer's reprs.  Runs on CPython 3.8+.
"""

import os
import threading
import time

from _parked import announce_when_parked, current_native_id, in_function, thread_info

RESULT = {}


def parked(a, b=2, *args, **kw):
    captured = "in a cell"

    def inner():
        return captured

    n = None
    t = True
    f_ = False
    zero = 0
    small = -7
    big = -12345678901234567890
    huge = 2 ** 100
    f = 0.1
    fbig = 1e22
    fneg = -0.0
    fint = 3.0
    fsmall = 1.5e-05
    s = 'héllo "x"'
    q = "it's"
    both = "'\""
    esc = "tab\there\n\x00\x7f\u2028é\U0001F600"
    empty = ""
    by = b"\x00ab'\"\\\xff"
    l = [1, "two", 3.0]
    tu = (1,)
    e = ()
    d = {"k": [1, 2]}
    nested = [[[1]]]
    many = list(range(20))
    o = object()
    frame_locals = dict(locals())
    del frame_locals["inner"]
    expected = dict((name, repr(value)) for name, value in frame_locals.items())
    # pyrometer's bounds: 8 items then "...", containers 2 deep
    expected["many"] = "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    expected["nested"] = "[[[...]]]"
    RESULT["expected"] = expected
    RESULT["order"] = list(frame_locals)
    RESULT["worker"] = thread_info()
    current_native_id()
    time.sleep(3600)
    return inner


def main():
    worker = threading.Thread(target=parked, name="worker-1", args=(1, 2, 3), kwargs={"x": 4})
    worker.daemon = True
    worker.start()
    main_info = thread_info()
    while "worker" not in RESULT:
        time.sleep(0.001)
    announce_when_parked({worker.ident: in_function("parked")}, lambda: dict(
        RESULT, pid=os.getpid(), main=main_info, args=["a", "b", "args", "kw"]))
    worker.join()


main()
