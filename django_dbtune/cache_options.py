"""The query cache's ``DBTUNE`` options (part of :data:`django_dbtune.conf.OPTIONS`)."""

from __future__ import annotations

from collections.abc import Mapping

from django_dbtune.options import Option, is_table_map

CACHE_OPTIONS: dict[str, Option] = {
    "CACHE_ENABLED": Option(
        False,
        lambda value: isinstance(value, bool),
        "a boolean",
        "Turn the query cache on (while ENABLED is on too). Off (the default), .cached() "
        "querysets and @cached "
        "functions go straight to the database and writes cost nothing extra; on, every "
        "write also retires the cache entries of the tables it wrote.",
    ),
    "CACHE_ALIAS": Option(
        "default",
        lambda value: isinstance(value, str) and bool(value),
        "the name of a cache in settings.CACHES",
        "Which of settings.CACHES the query cache keeps its entries in (django-redis in "
        "production; Django's local-memory cache serves one process only).",
    ),
    "CACHE_TIMEOUT": Option(
        300,
        lambda value: isinstance(value, int) and not isinstance(value, bool) and value > 0,
        "a positive whole number of seconds",
        "How long an entry lives when .cached() or @cached gives no timeout.",
    ),
    "CACHE_PREFIX": Option(
        "dbtune",
        lambda value: isinstance(value, str) and bool(value) and not set(value) & set(" {}"),
        "a string without spaces or braces",
        "Every key the query cache writes starts with this, in braces.",
    ),
    "CACHE_DATABASE_GROUPS": Option(
        {},
        lambda value: (
            isinstance(value, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ),
        "a dict of database alias to group name",
        "Aliases that reach the same database (a primary and its replicas) share table "
        'generations: {"replica": "default"}. Aliases with the same engine, name, host '
        "and port are grouped without it.",
    ),
    "CACHE_LOCK": Option(
        False,
        lambda value: isinstance(value, bool),
        "a boolean",
        "Concurrent misses of one entry run its query once; the other readers wait for it "
        "(at most CACHE_LOCK_WAIT) instead of all asking the database. .cached(lock=...) "
        "and @cached(lock=...) decide per query.",
    ),
    "CACHE_LOCK_WAIT": Option(
        1.0,
        lambda value: (
            isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        ),
        "a number of seconds",
        "How long a reader waits for another one's result under the lock before it asks "
        "the database itself.",
    ),
    "CACHE_BREAKER_SECONDS": Option(
        5,
        lambda value: (
            isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        ),
        "a number of seconds",
        "After the cache backend fails, reads go straight to the database for this long "
        "(invalidations are always sent).",
    ),
    "CACHE_REPLICA_LAG": Option(
        2.0,
        lambda value: (
            isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        ),
        "a number of seconds",
        "How far a read replica may lag behind its primary. A read through an alias grouped "
        "under another one (CACHE_DATABASE_GROUPS, a test mirror) is not stored while a table "
        "it read was written within this window: the replica may not have the write yet. "
        "0 turns this off.",
    ),
    "CACHE_LOCAL": Option(
        False,
        lambda value: isinstance(value, bool),
        "a boolean",
        "Keep a copy of the tokens and entries each process reads in its own memory, kept "
        "fresh by the Redis server's invalidation messages (CLIENT TRACKING): a hit costs no "
        "round trip. One Redis server only (django-redis or Django's RedisCache); elsewhere "
        "it stays off with warning dbtune.W013.",
    ),
    "CACHE_LOCAL_ENTRIES": Option(
        1000,
        lambda value: isinstance(value, int) and not isinstance(value, bool) and value > 0,
        "a positive number",
        "How many entries each process keeps in memory under CACHE_LOCAL (the least "
        "recently read go first).",
    ),
    "CACHE_VIEWS": Option(
        {},
        is_table_map,
        "a dict of view name to a list of table names",
        "The tables each database view reads, for databases whose catalog django-dbtune "
        'does not read (on PostgreSQL and SQLite it reads it and adds these): {"app_report": '
        '["app_order", "app_customer"]}. An entry that read the view is retired by a write '
        "to any of them.",
    ),
    "CACHE_TRIGGERS": Option(
        {},
        is_table_map,
        "a dict of table name to a list of table names",
        "The tables a table's triggers write, added to what django-dbtune reads from "
        'the catalog (PostgreSQL, SQLite): {"app_order": ["app_audit"]}. A write to the '
        'table retires the entries of those too; ["*"] retires every entry.',
    ),
}
