"""Create the test project's tables and its data: 50 authors with 3 books
each.  Run with the same environment as the server (see mysite/settings.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
os.environ["AGENT_TEST_NO_AGENT"] = "1"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from library.models import Author, Book  # noqa: E402

call_command("migrate", run_syncdb=True, verbosity=0)
Book.objects.all().delete()
Author.objects.all().delete()
authors = Author.objects.bulk_create([Author(id=i, name="Author %d" % i) for i in range(1, 51)])
Book.objects.bulk_create([Book(author_id=a.id, title="Book %d.%d" % (a.id, k))
                          for a in authors for k in range(1, 4)])
print("ready", Author.objects.count(), Book.objects.count())
