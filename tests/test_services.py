"""The services the environment asked for are the ones in use, and they answer."""

import os

from django.core.cache import caches
from django.db import connection


def test_the_requested_database_is_in_use(db):
    requested = os.environ.get("DBTUNE_DB", "sqlite")
    expected = {"sqlite": "sqlite", "postgres": "postgresql", "mariadb": "mysql"}[requested]
    assert connection.vendor == expected
    if requested == "mariadb":
        assert connection.mysql_is_mariadb, "DBTUNE_DB=mariadb reached a MySQL server"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_the_requested_cache_is_in_use_and_answers():
    expected = {"locmem": "LocMemCache", "redis": "RedisCache"}[
        os.environ.get("DBTUNE_CACHE", "locmem")
    ]
    cache = caches["default"]
    assert type(cache).__name__ == expected
    cache.set("dbtune-ping", "pong", 10)
    assert cache.get("dbtune-ping") == "pong"
    cache.delete("dbtune-ping")
