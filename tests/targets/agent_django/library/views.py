# Views of the agent's test project.  `# LINE:tag` marks the lines the tests
# expect as call sites (conftest.marker_lines).
import time

from django.db import connection
from django.http import HttpResponse, JsonResponse

from .models import Author, Book


def authors_n_plus_one(request):
    """The classic N+1: one query for the authors, one per author for books."""
    out = []
    for author in Author.objects.order_by("id"):
        books = list(author.book_set.all())  # LINE:n-plus-one
        out.append([author.name, len(books)])
    return JsonResponse({"authors": out})


def authors_prefetch(request):
    """The same page, fixed: two queries whatever the number of authors."""
    out = []
    for author in Author.objects.prefetch_related("book_set").order_by("id"):  # LINE:prefetch
        books = list(author.book_set.all())
        out.append([author.name, len(books)])
    return JsonResponse({"authors": out})


def author_detail(request, pk):
    author = Author.objects.get(pk=pk)
    return JsonResponse({"name": author.name, "books": author.book_set.count()})


def repeats(request):
    """Two exact duplicates of the first query, and two similar ones."""
    a = Author.objects.filter(pk=1).first()  # LINE:repeat-1
    b = Author.objects.filter(pk=1).first()  # LINE:repeat-2
    c = Author.objects.filter(pk=1).first()  # LINE:repeat-3
    d = Author.objects.filter(pk=2).first()  # LINE:similar-1
    e = Author.objects.filter(pk=3).first()  # LINE:similar-2
    return JsonResponse({"names": [x.name for x in (a, b, c, d, e)]})


def raw_sql(request):
    """Raw SQL through a cursor, Manager.raw(), an INSERT and a raw INSERT."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM library_book WHERE title LIKE 'Book 1%'")  # LINE:raw-cursor
        count = cursor.fetchone()[0]
    few = list(Author.objects.raw("SELECT * FROM library_author WHERE id < %s", [4]))  # LINE:raw-manager
    book = Book.objects.create(author_id=1, title="Fresh")  # LINE:orm-insert
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO library_book (author_id, title) VALUES (2, 'Raw title')")  # LINE:raw-insert
    return JsonResponse({"count": count, "few": len(few), "book": book.id})


def secret(request):
    """A parameter that must never reach the database file unless asked."""
    n = Author.objects.filter(name="s3cr3t-value-42").count()  # LINE:secret
    return JsonResponse({"n": n})


def n_queries(request, n):
    """n primary-key lookups (for the benchmark)."""
    names = []
    for i in range(n):
        names.append(Author.objects.filter(pk=1 + i % 50).values_list("name", flat=True).first())
    return HttpResponse("%d\n" % len(names))


def raw_queries(request, n):
    """n lookups through Django's cursor, no ORM (for the benchmark)."""
    names = []
    with connection.cursor() as cursor:
        for i in range(n):
            cursor.execute("SELECT name FROM library_author WHERE id = %s", [1 + i % 50])
            names.append(cursor.fetchone()[0])
    return HttpResponse("%d\n" % len(names))


def hello(request):
    return HttpResponse("hello\n")


def burn_alpha(seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1
    return x


def burn_beta(seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1
    return x


def burn_alpha_view(request):
    return HttpResponse("%d\n" % burn_alpha(float(request.GET.get("s", "0.05"))))


def burn_beta_view(request):
    return HttpResponse("%d\n" % burn_beta(float(request.GET.get("s", "0.05"))))
