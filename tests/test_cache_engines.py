"""The query cache on the Redis set-ups production runs: a primary with read replicas, as
django-redis and Django's own ``RedisCache`` take them (a list of servers, the first one
written to, the others read from).

A replica answers with what it had received when asked: generation tokens read there can
be older than a write that has just committed, and the entry stored under them is served
although the database moved on. So the cache reads tokens and entries from the primary.
The tests play the replica with another database of the test Redis, filled with a copy of
the primary's keys at one moment and never again: a replica lagging from that moment on.
"""

import multiprocessing
import os
import threading

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.db import connection

from django_dbtune.cache.store import store
from tests import cache_worker
from tests.cache_books import make_book, title
from tests.shop.models import Author, Book, Publisher

pytestmark = pytest.mark.django_db(transaction=True)

REPLICA_DB = 14
"""The test Redis's database that plays the lagging replica."""

BACKENDS = {
    "django-redis": "django_redis.cache.RedisCache",
    "Django's RedisCache": "django.core.cache.backends.redis.RedisCache",
    "Django's RedisCache, a client of its own": "tests.test_cache_engines.OwnClientRedisCache",
}


class OwnClientRedisCache(RedisCache):
    """Django's RedisCache with a project's own client class (to count calls, say)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = type("OwnClient", (RedisCacheClient,), {})


@pytest.fixture(params=list(BACKENDS))
def replicated(request, settings):
    """A cache alias whose reads the backend sends to a replica; yields a function that
    copies the primary's keys to the replica (the replica catching up, once)."""
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    import redis

    primary = settings.CACHES["default"]["LOCATION"]
    server = primary.rsplit("/", 1)[0]
    replica = f"{server}/{REPLICA_DB}"
    settings.CACHES = {
        **settings.CACHES,
        "replicated": {"BACKEND": BACKENDS[request.param], "LOCATION": [primary, replica]},
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "replicated"}
    source, copy = redis.Redis.from_url(primary), redis.Redis.from_url(replica)
    copy.flushdb()
    caches["replicated"].clear()
    store._missed = False
    store._open_until = 0.0

    def catch_up():
        copy.flushdb()
        for key in source.scan_iter():
            copy.restore(key, 0, source.dump(key), replace=True)

    yield catch_up
    copy.flushdb()
    caches["replicated"].clear()


@pytest.fixture
def book():
    return make_book()


def test_a_write_is_never_hidden_by_a_replica_that_lags(book, replicated):
    for _ in range(2):  # read, stored on the primary, and copied to the replica
        assert title(book.pk) == "before"
        replicated()
    # The replica holds the entry and its tokens, then lags.
    Book.objects.filter(pk=book.pk).update(title="after")  # new tokens, on the primary only
    assert title(book.pk) == "after"
    assert title(book.pk) == "after"  # stored again, and served


def test_entries_are_served_from_the_primary(book, replicated, django_assert_num_queries):
    title(book.pk)
    with django_assert_num_queries(0):  # a hit, though the replica holds nothing
        assert title(book.pk) == "before"


# --- A real replica and a Sentinel (scripts/redis_setup starts both) -------------------------

REPLICA = ("127.0.0.1", 6390)
SENTINEL = ("127.0.0.1", 26390)
CLUSTER = [("127.0.0.1", port) for port in (7000, 7001, 7002)]

ENGINES = {
    "django-redis, primary and replica": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": ["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6390/0"],
    },
    "Django's RedisCache, primary and replica": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": ["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6390/0"],
    },
    "django-redis, sharded over two databases": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": ["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/13"],
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"},
    },
    "django-valkey, primary and replica": {
        "BACKEND": "django_valkey.cache.ValkeyCache",
        "LOCATION": ["valkey://127.0.0.1:6379/0", "valkey://127.0.0.1:6390/0"],
    },
    "django-valkey on a Redis Cluster": {
        "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
        "LOCATION": "valkey://127.0.0.1:7000",
    },
    "django-redis through Sentinel": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://dbtune/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": [SENTINEL],
        },
    },
}


def _reads_on(port, commands=("get", "mget")):
    """How many reads the server on ``port`` has answered (GET and MGET)."""
    import redis

    stats = redis.Redis(port=port).info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in commands)


@pytest.fixture(params=list(ENGINES))
def engine(request, settings):
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    import redis

    servers = [("replica", REPLICA), ("Sentinel", SENTINEL)]
    servers += [("Cluster node", node) for node in CLUSTER]
    for name, (host, port) in servers:
        try:
            redis.Redis(host=host, port=port, socket_connect_timeout=1).ping()
        except redis.ConnectionError:
            pytest.fail(f"No Redis {name} on {host}:{port}: run scripts/redis_setup first.")
    settings.CACHES = {**settings.CACHES, "engine": ENGINES[request.param]}
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "engine"}
    caches["engine"].clear()
    store._missed = False
    store._open_until = 0.0
    yield
    caches["engine"].clear()


def test_every_write_is_read_back_and_no_read_reaches_a_replica(book, engine):
    import redis

    replica_reads = _reads_on(REPLICA[1])
    expected = "before"
    for number in range(5):
        assert title(book.pk) == expected
        expected = f"title {number}"
        Book.objects.filter(pk=book.pk).update(title=expected)
        assert title(book.pk) == expected
    assert _reads_on(REPLICA[1]) == replica_reads
    redis.Redis(port=REPLICA[1]).get("anything")  # the counter counts: a read there shows
    assert _reads_on(REPLICA[1]) == replica_reads + 1


def test_hits_come_from_the_primary(book, engine, django_assert_num_queries):
    title(book.pk)
    with django_assert_num_queries(0):
        for _ in range(3):
            assert title(book.pk) == "before"


@pytest.fixture
def cluster(settings):
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    settings.CACHES = {**settings.CACHES, "cluster": ENGINES["django-valkey on a Redis Cluster"]}
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "cluster"}
    caches["cluster"].clear()
    yield
    caches["cluster"].clear()


def test_a_hit_on_a_cluster_is_one_command_to_one_node(book, cluster):
    """Every key of the query cache carries one hash tag: an entry and its tokens share a
    slot, and a hit reads them with one MGET (keys in several slots would need one per
    node, or fail as a cross-slot read)."""
    title(book.pk)
    title(book.pk)
    before = [_reads_on(port, ("mget",)) for _, port in CLUSTER]
    for _ in range(3):
        assert title(book.pk) == "before"
    after = [_reads_on(port, ("mget",)) for _, port in CLUSTER]
    assert sorted(b - a for a, b in zip(before, after, strict=True)) == [0, 0, 3]


def _refusing(ports):
    """The servers on ``ports`` drop every client and take no new one (as when down); the
    function given back takes clients again."""
    import redis

    controls = [redis.Redis(port=port) for port in ports]
    limits = [control.config_get("maxclients")["maxclients"] for control in controls]
    for control in controls:
        control.config_set("maxclients", 1)
        control.client_kill_filter(_type="normal", skipme=True)

    def restore():
        for control, limit in zip(controls, limits, strict=True):
            control.config_set("maxclients", limit)
            control.close()

    return restore


def test_a_reader_that_saw_the_cluster_down_retires_what_a_lost_invalidation_left(
    cluster, settings
):
    """Another process wrote while the cluster was down, and its invalidation was lost with
    it. This process, which only read, saw the cluster fail (the cluster client says so with
    an exception of its own, not a connection error): once the cluster answers again, what
    was stored before is not served."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (another process writes): run with DBTUNE_DB=postgres")
    settings.DBTUNE = {**settings.DBTUNE, "CACHE_BREAKER_SECONDS": 0}
    author = Author.objects.create(name="A", publisher=Publisher.objects.create(name="P"))
    pk = Book.objects.create(title="B00", author=author).pk
    assert title(pk) == "B00"
    assert title(pk) == "B00"  # stored
    restore = _refusing([port for _, port in CLUSTER])
    try:
        assert title(pk) == "B00"  # the database answers: the cluster is down
        writer = multiprocessing.get_context("spawn").Process(
            target=cache_worker.write_unseen,
            # Its cache does not answer either: the invalidation is lost when it ends.
            args=(connection.settings_dict["NAME"], "redis://127.0.0.1:1/0", "after"),
        )
        writer.start()
        writer.join(60)
        assert writer.exitcode == 0
    finally:
        restore()
    assert title(pk) == "after"


def test_threads_that_read_through_djangos_redis_cache_leave_no_connection_open(book, settings):
    """Django's RedisCache makes a backend, with a connection pool of its own, per thread:
    the query cache keeps none of them once their thread is gone."""
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    import gc

    import redis

    location = settings.CACHES["default"]["LOCATION"]
    settings.CACHES = {
        **settings.CACHES,
        "threads": {"BACKEND": BACKENDS["Django's RedisCache"], "LOCATION": location},
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "threads"}
    server = redis.Redis.from_url(location)
    title(book.pk)
    gc.collect()
    before = server.info("clients")["connected_clients"]
    for _ in range(10):
        thread = threading.Thread(target=lambda: title(book.pk))
        thread.start()
        thread.join()
    gc.collect()
    assert server.info("clients")["connected_clients"] <= before + 2


# --- django-redis read on its primary's redis-py client ---------------------------------------


def reversed_key(key, key_prefix, version):
    """A project's own KEY_FUNCTION."""
    return f"{version}|{key[::-1]}|{key_prefix}"


DJANGO_REDIS_SETUPS = {
    "defaults": {},
    "a key prefix and a version": {"KEY_PREFIX": "site", "VERSION": 3},
    "a key function of its own": {"KEY_FUNCTION": "tests.test_cache_engines.reversed_key"},
    "zlib compression": {
        "OPTIONS": {"COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor"},
    },
    "pickle protocol 0": {"OPTIONS": {"PICKLE_VERSION": 0}},
    "pickle protocol 1": {"OPTIONS": {"PICKLE_VERSION": 1}},
    "its Sentinel client": ENGINES["django-redis through Sentinel"],
}


@pytest.mark.parametrize("setup", list(DJANGO_REDIS_SETUPS))
def test_django_redis_hits_read_what_it_wrote_in_one_command(
    setup, settings, django_assert_num_queries
):
    """The query cache reads django-redis's keys itself (not through its ``get_many``): it
    must make them and decode them exactly as django-redis does, or a hit is never found
    and, worse, the tokens a write replaces through django-redis are not the ones read."""
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    options = DJANGO_REDIS_SETUPS[setup]
    alias = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/0",
        **options,
    }
    settings.CACHES = {**settings.CACHES, "own": alias}
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "own"}
    caches["own"].clear()
    store._missed = False
    store._open_until = 0.0
    book = make_book()
    try:
        assert title(book.pk) == "before"
        reads = _reads_on(6379)
        with django_assert_num_queries(0):
            assert title(book.pk) == "before"
        assert _reads_on(6379) - reads == 1  # the epoch, the tokens and the entry at once
        Book.objects.filter(pk=book.pk).update(title="after")
        assert title(book.pk) == "after"
        with django_assert_num_queries(0):
            assert title(book.pk) == "after"
    finally:
        caches["own"].clear()
