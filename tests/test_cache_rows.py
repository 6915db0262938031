"""Model instances packed into a cache entry come back as the database gave them."""

import pickle

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_dbtune.cache.rows import PackedRows, pack, unpack
from tests.shop.models import Author, Book, Publisher, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    publisher = Publisher.objects.create(name="P")
    author = Author.objects.create(name="A", publisher=publisher)
    tag = Tag.objects.create(name="t")
    for title in ("B0", "B1"):
        Book.objects.create(title=title, author=author, summary="long").tags.add(tag)


def round_trip(rows):
    """Through pickle, as every cache backend but local memory's stores it."""
    return unpack(pickle.loads(pickle.dumps(pack(rows), pickle.HIGHEST_PROTOCOL)))


def queries(function):
    with CaptureQueriesContext(connection) as context:
        result = function()
    return result, len(context.captured_queries)


def test_instances_with_their_select_related_objects(shop):
    fetched = list(Book.objects.select_related("author__publisher").order_by("title"))
    restored = round_trip(fetched)
    assert restored == fetched
    book = restored[0]
    assert (book._state.adding, book._state.db) == (False, "default")
    names, ran = queries(lambda: (book.author.name, book.author.publisher.name))
    assert (names, ran) == (("A", "P"), 0)
    assert book.editor is None  # a null foreign key stays known to be null


def test_deferred_fields_stay_deferred(shop):
    restored = round_trip(list(Book.objects.only("title").order_by("title")))
    assert restored[0].get_deferred_fields() == {"summary", "author_id", "editor_id"}
    summary, ran = queries(lambda: restored[0].summary)
    assert (summary, ran) == ("long", 1)


def test_prefetched_objects_come_back_with_their_rows(shop):
    restored = round_trip(list(Book.objects.prefetch_related("tags").order_by("title")))
    names, ran = queries(lambda: [[tag.name for tag in book.tags.all()] for book in restored])
    assert (names, ran) == ([["t"], ["t"]], 0)


def test_what_is_not_a_model_instance_is_stored_as_it_is(shop):
    values = list(Book.objects.values("title").order_by("title"))
    assert pack(values) is values
    assert round_trip(values) == values
    assert isinstance(pack(list(Book.objects.all())), PackedRows)
    assert pack([]).items == []
