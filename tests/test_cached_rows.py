"""Rows served by the query cache are rows of a multi-row queryset to the N+1 detector too.

The cache fills a queryset's results itself (from the database on a miss, from the cache on
a hit); both features meet at one seam, so an N+1 over cached rows is reported as the
relation it loads, with the fix, exactly as over rows Django fetched.
"""

import pytest
from django.test import override_settings

from django_dbtune.cache import invalidate
from django_dbtune.nplusone import detect
from tests.shop.models import Author, Book, Publisher


@pytest.fixture
def books(db):
    publisher = Publisher.objects.create(name="P")
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        for j in range(2):
            Book.objects.create(title=f"B{i}{j}", author=author, summary="s")
    invalidate(Book, Author)


@pytest.mark.parametrize("visit", ["miss", "hit"])
@override_settings(DBTUNE={"CACHE_ENABLED": True})
def test_an_n_plus_one_over_cached_rows_names_the_relation_and_the_fix(books, visit):
    if visit == "hit":
        list(Book.cached_objects.order_by("id").cached())  # stored for the visit below
    with detect() as report:
        for book in Book.cached_objects.order_by("id").cached():  # cached-list
            book.author.name
    found = [finding for finding in report.findings if finding.kind == "n_plus_one"]
    assert len(found) == 1, report.message()
    (finding,) = found
    assert finding.relation == "shop.Book.author"
    assert finding.count == 6
    assert 'select_related("author")' in finding.fix


@override_settings(DBTUNE={"CACHE_ENABLED": True})
def test_an_unused_select_related_on_cached_rows_is_reported(books):
    with detect() as report:
        titles = [book.title for book in Book.cached_objects.select_related("author").cached()]
    assert len(titles) == 6
    kinds = [finding.kind for finding in report.findings]
    assert kinds == ["unused_select_related"], report.message()
