"""A bug in the detector's own code never fails a page: the request goes on as Django would
run it, the detection stops watching (no findings from half a look), and the failure is
logged once with what to do. Errors of the page's own (the database's, the project's) are
not the detector's: they go on as they would without it."""

import importlib

import pytest
from django.test import Client

import django_dbtune.nplusone
from django_dbtune.call_sites import CallSiteFinder
from django_dbtune.nplusone import detect
from django_dbtune.nplusone.state import Tag
from tests.shop.models import Author, Book
from tests.test_nplusone_cost import NPLUSONE_MIDDLEWARE, shop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("shop")


def own_bug(module):
    """A function that raises as a bug in ``module`` of django-dbtune would."""
    namespace = {}
    source = "def broken(*args, **kwargs):\n    raise AttributeError('a bug of our own')\n"
    exec(compile(source, module.__file__, "exec"), namespace)
    return namespace["broken"]


def module(name):
    return importlib.import_module(f"django_dbtune.nplusone.{name}")


def break_(monkeypatch, where, name):
    owner = module(where) if isinstance(where, str) else where
    monkeypatch.setattr(owner, name, own_bug(module("state")))


@pytest.mark.parametrize(
    ("url", "where", "name"),
    [
        ("/shop/books/", "evaluation", "tag_rows"),  # evaluating a queryset
        ("/shop/books/", "origin", "note_origin"),  # building one
        ("/shop/books/", "fetch_mode", "load"),  # a lazy load (Django 6.1)
        ("/shop/books/", "django52", "load"),  # a lazy load (before 6.1)
        ("/shop/books/fixed/", Tag, "read"),  # reading an eager load
        ("/shop/books/", CallSiteFinder, "find"),  # the capture's line of code
        ("/shop/books/", django_dbtune.nplusone, "build_findings"),  # the findings at the end
    ],
)
def test_a_bug_of_the_detectors_own_never_fails_the_page(
    client, settings, monkeypatch, caplog, url, where, name
):
    if name == "load" and (where == "fetch_mode") != module("fetch_mode").FETCH_MODES:
        pytest.skip(
            "needs the other Django series for this lazy-load path: run with DBTUNE_DJANGO"
        )
    plain = Client().get(url)  # a client of its own: a client keeps its middleware
    settings.MIDDLEWARE = [NPLUSONE_MIDDLEWARE, *settings.MIDDLEWARE]
    break_(monkeypatch, where, name)
    monkeypatch.setattr(module("failures"), "_logged", set())
    with caplog.at_level("ERROR", logger="django_dbtune.nplusone"):
        answers = [client.get(url) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.content == plain.content for a in answers)
    if where is CallSiteFinder:
        return  # the query is recorded without its line, and nothing else changes
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1, [r.getMessage() for r in logged]  # once, not per request
    assert "DBTUNE['ENABLED'] = False" in logged[0].getMessage()
    assert answers[0].wsgi_request.dbtune_nplusone.findings == []


def test_a_bug_in_a_prefetch_or_a_per_row_count_gives_the_codes_own_answer(monkeypatch):
    break_(monkeypatch, "prefetch", "tag_all")
    break_(monkeypatch, "per_row", "per_row")
    with detect() as report:
        authors = list(Author.objects.prefetch_related("books").order_by("id"))
        titles = [[book.title for book in author.books.all()] for author in authors]
        counts = [author.books.count() for author in Author.objects.order_by("id")]
    assert titles == [[f"B{i}0", f"B{i}1"] for i in range(3)]
    assert counts == [2, 2, 2]
    assert report.findings == []


def test_the_pages_own_errors_are_not_taken_for_the_detectors(caplog):
    from django.db import DatabaseError

    with detect(), pytest.raises(DatabaseError):
        list(Book.objects.extra(where=["no_such_column = 1"]))
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
