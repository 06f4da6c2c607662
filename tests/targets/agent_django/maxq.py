"""pyrometer.max_queries() in a Django project: passing, failing around a
request served by the test client, and as a decorator outside any request.
Prints one line per case, then how many requests the agent recorded."""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

import django  # noqa: E402

django.setup()

from django.test import Client  # noqa: E402

import pyrometer  # noqa: E402
from library.models import Author  # noqa: E402

client = Client()
with pyrometer.max_queries(2) as block:
    client.get("/authors/prefetch/")
print("passed %d <= 2" % block.count)

try:
    with pyrometer.max_queries(10):
        client.get("/authors/n-plus-one/")
    print("n-plus-one: no failure")
except AssertionError as e:
    print("failed: %s" % e)


@pyrometer.max_queries(1)
def three_lookups():
    for pk in (1, 2, 3):
        Author.objects.filter(pk=pk).first()


try:
    three_lookups()
    print("decorator: no failure")
except AssertionError as e:
    print("decorator failed: %s" % e)

assert pyrometer.flush(30)
db = sqlite3.connect(os.environ["PYROMETER_DB"])
print("requests recorded: %d" % db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
