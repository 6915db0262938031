"""What a cached read is keyed by: the same query keeps its key, anything that changes its
SQL or the shape of its rows changes it."""

from contextlib import contextmanager

import pytest
from django.db import models
from django.db.models import Prefetch
from django.utils import timezone

from django_dbtune.cache.keys import key_bytes, queryset_digest
from tests.shop.models import Author, Book, Tag


def key(queryset, kind="rows"):
    return queryset_digest(queryset, kind)


@contextmanager
def a_new_field(model, name):
    """``model`` as the next version of the code declares it: with one more field."""
    field = models.CharField(max_length=20, null=True)
    field.contribute_to_class(model, name)
    try:
        yield field
    finally:
        model._meta.local_fields.remove(field)
        model._meta._expire_cache()
        delattr(model, name)


def books():
    return (
        Book.cached_objects.filter(title="B00", author__name="A0")
        .select_related("author")
        .prefetch_related("tags", Prefetch("comments"))
        .cached()
    )


def test_the_same_queryset_keeps_its_key_across_clones():
    queryset = books()
    assert key(queryset) == key(queryset.all()) == key(queryset.filter()) == key(books())


def test_compiling_a_queryset_does_not_change_its_key():
    queryset = books()
    before = key(queryset)
    str(queryset.query)  # compiles the query itself: select_related joins are set up on it
    assert key(queryset) == before
    assert key(books()) == before


def test_a_compiled_query_is_keyed_without_compiling_it_again():
    """The key is the pickled query (a hit compiles no SQL), also once Django has cached
    values on its fields while compiling."""
    queryset = books()
    str(queryset.query)
    assert key_bytes(queryset.query) == key_bytes(books().query)


def test_different_values_kinds_and_time_zones_key_apart():
    queryset = books()
    assert key(queryset) != key(queryset.filter(title="B01"))
    assert key(queryset) != key(Book.cached_objects.filter(title="B01", author__name="A0"))
    assert key(queryset) != key(queryset, kind="count")
    here = key(queryset)
    with timezone.override("Pacific/Auckland"):
        assert key(queryset) != here


def test_a_changed_field_changes_the_key_of_every_query_reading_its_model():
    plain = Book.cached_objects.filter(title="B00").cached()
    joined = plain.select_related("author")
    through_tags = Tag.cached_objects.filter(books__title="B00").cached()
    before = [key(plain), key(joined), key(through_tags)]
    with a_new_field(Author, "nickname"):
        assert key(plain) == before[0]  # reads no author row
        assert key(joined) != before[1]
    with a_new_field(Book, "isbn"):
        assert key(through_tags) != before[2]  # joins the book table
    assert [key(plain), key(joined), key(through_tags)] == before  # and back again


# Deprecated on Django 6.1, still supported (and still in projects' code).
@pytest.mark.filterwarnings("ignore:Calling select_related\\(\\) with no arguments")
@pytest.mark.parametrize("related", ["author", "author__publisher"])
def test_select_related_without_fields_covers_the_models_it_follows(related):
    everything = Book.cached_objects.select_related().cached()
    before = key(everything)
    model = Author if related == "author" else Author._meta.get_field("publisher").related_model
    with a_new_field(model, "extra"):
        assert key(everything) != before


SEEDED_KEYS = """
import json
import django
django.setup()
from django.db.models import Count
from django_dbtune.cache.keys import queryset_digest
from tests.shop.models import Book

querysets = {
    "only": Book.objects.only("title", "summary", "author"),
    "defer": Book.objects.defer("summary", "title"),
    "in a set": Book.objects.filter(title__in={"B00", "B01", "B10", "B11", "x", "y"}),
    "in a frozenset": Book.objects.filter(tags__name__in=frozenset({"t0", "t1", "t2", "t3"})),
    "values": Book.objects.values("title", "summary").annotate(n=Count("tags")),
    "annotations picked by values": Book.objects.annotate(
        n=Count("tags"), a=Count("author"), s=Count("summary")
    ).values("title", "n", "a", "s"),
    "extra picked by values": Book.objects.extra(
        select={"one": "1", "two": "2", "three": "3"}
    ).values("title", "one", "two", "three"),
}
print(json.dumps({name: queryset_digest(qs, "rows") for name, qs in querysets.items()}))
"""


def test_keys_are_the_same_in_every_process_whatever_its_hash_seed():
    """Separate pods and Celery workers start with different hash seeds: a set's order (of
    ``only()``'s names, of an ``__in`` filter's values) must not make their keys differ."""
    import json
    import os
    import subprocess
    import sys

    def keys_with(seed):
        env = {**os.environ, "PYTHONHASHSEED": seed, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        done = subprocess.run(
            [sys.executable, "-c", SEEDED_KEYS], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = keys_with("1")
    for seed in ("2", "3", "4"):
        assert keys_with(seed) == first, seed
