"""Serve requests to the test project in-process through Django's test
client (the agent's middleware and wrappers are the real ones), then wait for
the agent's writer.  Usage: drive.py PATH[*COUNT] ...  Prints one JSON line:
{"status": {path: [codes]}, "stats": writer counters}."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

import django  # noqa: E402

django.setup()

from django.test import Client  # noqa: E402

import pyrometer  # noqa: E402

client = Client()
statuses = {}
for arg in sys.argv[1:]:
    path, _, count = arg.rpartition("*") if "*" in arg else (arg, "", "1")
    for _ in range(int(count or 1)):
        statuses.setdefault(path, []).append(client.get(path).status_code)
flushed = pyrometer.flush(30)
print(json.dumps({"status": statuses, "flushed": flushed, "stats": pyrometer._agent.stats()}))
