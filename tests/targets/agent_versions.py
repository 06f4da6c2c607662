"""The agent's C extension in this interpreter: one request with six
queries from one line of a method (through pyrometer.dbapi.wrap over a
stand-in DB-API connection, so no driver is needed).  Usage:
agent_versions.py DB.  Prints `so PATH` (the extension file loaded) and
`finding FILE:LINE in FUNCTION xCOUNT` read back from the database."""
import os
import sys

import pyrometer
from pyrometer import _agent, dbapi


class StandInCursor:
    rowcount = -1

    def execute(self, sql, params=()):
        self.rowcount = 1


class StandInConnection:
    def cursor(self):
        return StandInCursor()


conn = dbapi.wrap(StandInConnection(), "stand-in")


class Handler:
    def handle(self):
        for i in range(6):
            conn.cursor().execute("SELECT name FROM t WHERE id = %s", (i,))  # LINE:versions-loop


pyrometer.enable(db=sys.argv[1], service="versions")
print("so %s" % os.path.realpath(_agent.__file__))
_agent.begin("test")
Handler().handle()
_agent.finish("GET", "/versions", "versions", 200)
assert pyrometer.flush(30)
try:
    import sqlite3
except ImportError:   # an interpreter built without _sqlite3: the caller reads the file
    sys.exit(0)
row = sqlite3.connect(sys.argv[1]).execute(
    "SELECT file, line, function, count FROM findings").fetchone()
print("finding %s:%d in %s x%d" % row)
