# -*- coding: utf-8 -*-
"""
control_names.py — a thread name and a code object's file name holding a
newline and a terminal escape, for the text outputs (`dump`): each must come
out as one printable line.

The main thread is named "main<ESC>[31m<LF>thread" and parks in
hidden_park(), compiled from a string with the file name
"evil<LF>file<ESC>[2J.py", at that file's line 3.
Prints `ready {"pid"}` once parked. Runs on CPython 2.7 and 3.6+.
"""

import os
import threading

from _parked import announce_when_parked, in_function, thread_info

threading.current_thread().name = "main\x1b[31m\nthread"
SOURCE = "import time\n\ndef hidden_park():\n    time.sleep(3600)\n"
NS = {}
exec(compile(SOURCE, "evil\nfile\x1b[2J.py", "exec"), NS)


def main():
    me = thread_info()
    announce_when_parked({me["ident"]: in_function("hidden_park")},
                         lambda: {"pid": os.getpid()})
    NS["hidden_park"]()


main()
