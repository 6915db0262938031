"""The query cache under a randomized load from several processes: writers through every
write path the SQL watcher must see, readers through the cache, and the cache's backend cut
and restored several times mid-run. No read that starts after a commit may return an older
version.

Runs on PostgreSQL with Redis through django-redis (DBTUNE_CACHE=redis) and through Django's
RedisCache (redis-django), on the local Redis Cluster (redis-cluster) and through Sentinel
(redis-sentinel), as scripts/redis_setup starts them.
A cut: every primary the backend uses refuses new clients (``maxclients`` 1) and drops the
connected ones, so that every call fails at once, as when the server is down; then it takes
clients again."""

import contextlib
import multiprocessing
import os
import time

import pytest
from django.db import connection

from django_dbtune.conf import conf
from tests import cache_worker
from tests.settings import cache
from tests.shop.models import Author, Book, Publisher

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TIMEOUTS = {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5}
KINDS = {
    # The test settings' cache of each kind, with half-second timeouts (as the backend spells
    # them), and the ports of the primaries a cut cuts.
    "redis": (TIMEOUTS, [6379]),
    "redis-django": ({"socket_connect_timeout": 0.5, "socket_timeout": 0.5}, [6379]),
    "redis-cluster": (TIMEOUTS, [7000, 7001, 7002]),
    "redis-sentinel": (TIMEOUTS, [6379]),
}
SECONDS = 8.0
OUTAGES = 3
OUTAGE = 1.0
"""Seconds each cut lasts."""
DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "stress", "CACHE_BREAKER_SECONDS": 0.2}
"""A short breaker: after each outage, the cache is used again within the run."""


@pytest.fixture
def stress_cache(settings, postgres_only):
    kind = os.environ.get("DBTUNE_CACHE", "locmem")
    if kind not in KINDS:
        pytest.skip(f"needs Redis: run with DBTUNE_CACHE set to one of {', '.join(KINDS)}")
    timeouts, ports = KINDS[kind]
    base = cache(kind)
    stress = {**base, "OPTIONS": {**base.get("OPTIONS", {}), **timeouts}}
    settings.CACHES = {**settings.CACHES, "stress": stress}
    settings.DBTUNE = DBTUNE
    from django.core.cache import caches

    from django_dbtune.cache.store import store

    caches["stress"].clear()
    store._missed = False
    store._open_until = 0.0
    store._logged_at.clear()  # this test's own failures are logged, whatever came before
    cache_worker.create_stress_objects()
    yield settings.CACHES, ports
    cache_worker.drop_stress_objects()
    store._missed = False
    store._open_until = 0.0


@contextlib.contextmanager
def cut(ports):
    """The servers on ``ports`` refuse every client inside (the one that cuts aside)."""
    import redis

    controls = [redis.Redis(port=port) for port in ports]
    limits = [control.config_get("maxclients")["maxclients"] for control in controls]
    try:
        for control in controls:
            control.config_set("maxclients", 1)
            control.client_kill_filter(_type="normal", skipme=True)
            # As a server that goes down drops them too: CACHE_LOCAL's subscriptions.
            control.client_kill_filter(_type="pubsub", skipme=True)
        yield
    finally:
        for control, limit in zip(controls, limits, strict=True):
            control.config_set("maxclients", limit)
            control.close()


def test_no_stale_read_from_any_process_through_every_write_path_and_outages(stress_cache, caplog):
    """Four processes (this one reads only; three others write one time in four, through
    every path in turn) for eight seconds, three one-second cuts of the backend among them."""
    caches, ports = stress_cache
    publisher = Publisher.objects.create(name="P")
    Book.objects.create(title="B00", author=Author.objects.create(name="A", publisher=publisher))
    context = multiprocessing.get_context("spawn")
    committed = context.Value("i", 0)
    counts = context.Array("i", 3)  # reads, stale reads, writes
    ready, go = context.Value("i", 0), context.Event()
    database = connection.settings_dict["NAME"]
    # The other processes read through CACHE_LOCAL too when this run has it on by default.
    dbtune = {**DBTUNE, "CACHE_LOCAL": conf.CACHE_LOCAL}
    processes = [
        context.Process(
            target=cache_worker.stress,
            args=(database, caches, dbtune, ready, go, counts, committed, SECONDS),
        )
        for _ in range(3)
    ]
    cache_worker.start(processes, ready)
    assert ready.value == len(processes)
    go.set()
    start = time.monotonic()
    stale, reads = [], 0

    def read_for(seconds):
        nonlocal reads
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            version, was_stale = cache_worker.read(committed)
            reads += 1
            if was_stale:
                stale.append(version)

    for _ in range(OUTAGES):  # this process reads too, through every outage
        read_for(SECONDS / (OUTAGES + 1) - OUTAGE)
        with cut(ports):
            read_for(OUTAGE)
    read_for(SECONDS - (time.monotonic() - start))
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * len(processes)
    other_reads, other_stale, writes = counts[:]
    assert writes >= len(cache_worker.STRESS_PATHS)  # every path wrote at least once
    assert reads > 50 and other_reads > 150
    assert stale == [] and other_stale == 0
    failures = [r for r in caplog.records if r.name == "django_dbtune.cache"]
    assert failures  # the cuts were seen (here at least: each process logs its own)
