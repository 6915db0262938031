"""The workload recorded by every process and host into one cache (DBTUNE["WORKLOAD_STORE"],
django-redis), read back by suggest_indexes --workload-store."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_dbtune import workload
from tests.shop.models import Author, Book


@pytest.fixture
def store(settings):
    from django.core.cache import cache

    if not hasattr(cache, "iter_keys"):
        pytest.skip("needs django-redis as the default cache: run with DBTUNE_CACHE=redis")
    cache.delete_pattern(f"{workload.STORE_PREFIX}*")
    settings.DBTUNE = {"WORKLOAD_STORE": "default"}
    yield cache
    cache.delete_pattern(f"{workload.STORE_PREFIX}*")


@pytest.mark.django_db(transaction=True)  # (MariaDB builds trials: DDL commits there)
def test_requests_of_every_process_are_read_back_as_one_workload(store, client, tmp_path):
    author = Author.objects.create(name="A")
    Book.objects.create(title="t", author=author)
    client.get("/shop/books/")
    workload.process_recorder().flush()  # as this process does every few seconds, and at exit
    # Another process's flush of the same requests: its own entry, merged on reading.
    with workload.record(tmp_path / "unused", store="default"):
        list(Book.objects.order_by("id"))
    assert not (tmp_path / "unused").exists()
    shapes = workload.read_store("default")
    [books] = [s for s in shapes if "shop_book" in s.tables and "ORDER BY" in s.sql]
    assert books.calls == 2
    assert "shop.Book" in json.dumps(books.as_dict())
    err = StringIO()
    call_command(
        "suggest_indexes",
        "shop",
        "--workload-store",
        "--format",
        "json",
        *(["--allow-build"] if _proven() else []),
        stdout=StringIO(),
        stderr=err,
    )
    assert "query shape(s) recorded" in err.getvalue()


def _proven():
    """Whether the database proves candidates (by building them, here): all but SQLite."""
    from django.db import connection

    return connection.vendor != "sqlite"


def test_without_the_setting_it_is_a_clear_error(settings, db):
    settings.DBTUNE = {}
    with pytest.raises(CommandError, match=r"DBTUNE\['WORKLOAD_STORE'\] names, which is not set"):
        call_command("suggest_indexes", "shop", "--workload-store", stdout=StringIO())


def test_a_cache_that_cannot_list_its_keys_is_a_clear_error(settings, db):
    settings.CACHES = {
        **settings.CACHES,
        "plain": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.DBTUNE = {"WORKLOAD_STORE": "plain"}
    with pytest.raises(CommandError, match=r"cannot list its keys.*django-redis"):
        call_command("suggest_indexes", "shop", "--workload-store", stdout=StringIO())
