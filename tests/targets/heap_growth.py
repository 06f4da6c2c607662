# -*- coding: utf-8 -*-
"""
heap_growth.py — a target for `pyrometer heap`.

Keeps WIDGETS (argv[1], default 1234) instances of class Widget alive in a
global list from the start, and no Session.  Each SIGUSR1 appends 10 000
new instances of class Session to the global list SESSIONS, then prints
`appended TOTAL` (the handler runs in the main thread; nothing else creates
or frees a Widget or a Session).
Prints `ready {"pid", "widgets", "widget_basicsize", "session_basicsize",
"version"}` once the widgets exist and the handler is installed, then waits
for signals.  Runs on CPython 2.7 and 3.6+.
"""

import json
import os
import platform
import signal
import sys

BATCH = 10000


class Widget(object):
    pass


class Session(object):
    def __init__(self, number):
        self.number = number


WIDGETS = [Widget() for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1234)]
SESSIONS = []


def on_usr1(signum, frame):
    for number in range(BATCH):
        SESSIONS.append(Session(number))
    sys.stdout.write("appended %d\n" % len(SESSIONS))
    sys.stdout.flush()


signal.signal(signal.SIGUSR1, on_usr1)
sys.stdout.write("ready %s\n" % json.dumps({
    "pid": os.getpid(), "widgets": len(WIDGETS), "widget_basicsize": Widget.__basicsize__,
    "session_basicsize": Session.__basicsize__, "version": platform.python_version()}))
sys.stdout.flush()
while True:
    signal.pause()
