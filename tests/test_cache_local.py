"""``DBTUNE["CACHE_LOCAL"]``: tokens and entries kept in each process's memory, kept fresh by
the Redis server's invalidation messages. A hit makes no round trip; a write anywhere is seen
at the next read; whatever could hide a message (a lost or stalled connection, a message
that lands while a read is on its way back) sends reads to the server instead.

Runs with Redis (DBTUNE_CACHE=redis); the tests with another process need PostgreSQL.
"""

import multiprocessing
import os
import threading
import time

import pytest
import redis
from django.core.cache import caches
from django.core.checks import run_checks
from django.db import connection

from django_dbtune.cache import local, local_layer, primary
from django_dbtune.cache.store import store
from tests import cache_worker
from tests.cache_books import make_book, title
from tests.proxy import Proxy
from tests.shop.models import Book

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = {
    "django-redis": "django_redis.cache.RedisCache",
    "Django's RedisCache": "django.core.cache.backends.redis.RedisCache",
}


@pytest.fixture(params=list(BACKENDS))
def layered(request, settings):
    """The query cache on the test Redis with CACHE_LOCAL on, through each backend."""
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    location = settings.CACHES["default"]["LOCATION"]
    settings.CACHES = {
        **settings.CACHES,
        "layered": {"BACKEND": BACKENDS[request.param], "LOCATION": location},
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "layered", "CACHE_LOCAL": True}
    caches["layered"].clear()
    store._missed = False
    store._open_until = 0.0
    yield redis.Redis.from_url(location)
    caches["layered"].clear()


@pytest.fixture
def book():
    return make_book()


def in_memory(server, pk, expected="before"):
    """Read until a read is served from memory (tokens a read brings back just after their
    own creation's message are not kept yet); whether one was."""
    for _ in range(10):
        time.sleep(0.05)  # the messages about tokens made by the reads before are in
        sent = reads_sent(server)
        assert title(pk) == expected
        if reads_sent(server) == sent:
            return True
    return False


def reads_sent(server):
    """How many GET and MGET commands the server has run."""
    stats = server.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))


@pytest.fixture
def other_process(layered, settings):
    """Another process of the same site, which renames a book when asked."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DBTUNE_DB=postgres")
    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    worker = context.Process(
        target=cache_worker.rename_on_request,
        args=(connection.settings_dict["NAME"], settings.CACHES, settings.DBTUNE, there),
    )
    worker.start()
    assert here.poll(60) and here.recv() == "ready"

    class Other:
        @staticmethod
        def rename(old, new):
            here.send((old, new))
            assert here.poll(30) and here.recv() == "done"

        @staticmethod
        def read(pk):
            here.send(("read", pk))
            assert here.poll(30)
            return here.recv()

        __call__ = rename

    yield Other()
    here.send(None)
    worker.join(30)


@pytest.fixture
def messages_through_a_proxy(layered):
    """The layer's own connection reaches the server through a proxy the test can hold
    (messages wait) or cut (the connection drops)."""
    kwargs = layered.connection_pool.connection_kwargs
    proxy = Proxy(kwargs["host"], kwargs["port"])
    layer = local_layer.current()
    assert layer is not None
    layer._connect = lambda: redis.Connection(
        host="127.0.0.1", port=proxy.port, db=kwargs.get("db", 0), protocol=2, socket_timeout=1
    )
    yield proxy
    proxy.close()


def test_a_hit_is_served_from_memory_with_no_round_trip(layered, book, django_assert_num_queries):
    assert title(book.pk) == "before"  # stored
    assert title(book.pk) == "before"  # read back once: now in memory
    sent = reads_sent(layered)
    with django_assert_num_queries(0):
        for _ in range(20):
            assert title(book.pk) == "before"
    assert reads_sent(layered) == sent


def test_a_value_served_from_memory_is_a_copy_each_time(layered, book):
    rows = Book.cached_objects.filter(pk=book.pk).cached()
    list(rows.values_list("title", flat=True))
    first = list(rows.values_list("title", flat=True))
    first.append("changed by the caller")
    assert list(rows.values_list("title", flat=True)) == ["before"]


def test_a_write_in_another_process_is_seen_at_the_next_read(layered, other_process, book):
    assert in_memory(layered, book.pk)
    other_process("before", "renamed elsewhere")
    time.sleep(0.05)  # the server's message crosses the loopback
    assert title(book.pk) == "renamed elsewhere"


def test_this_process_sees_its_own_write_before_the_servers_message(
    layered, messages_through_a_proxy, book
):
    assert in_memory(layered, book.pk)
    messages_through_a_proxy.hold()  # the message about the write below waits
    Book.objects.filter(pk=book.pk).update(title="after")
    assert title(book.pk) == "after"


def test_a_write_landing_while_a_read_is_on_its_way_back_is_not_hidden(
    other_process, book, monkeypatch
):
    """The tokens a read brings back were read before another process's write; the write's
    message arrives before they are kept. They are not kept: the next read is fresh."""
    assert title(book.pk) == "before"
    read = primary.get_many

    def read_then_another_process_writes(backend, keys):
        found = read(backend, keys)
        if any(":e:" in key for key in keys):  # a cached read's tokens and entry
            monkeypatch.setattr(primary, "get_many", read)
            other_process("before", "written meanwhile")
            time.sleep(0.05)  # its message is on this process's socket before the keep
        return found

    local_layer.current().forget([store.epoch_key()])  # the next read asks the server
    monkeypatch.setattr(primary, "get_many", read_then_another_process_writes)
    assert title(book.pk) == "before"  # as read, before the write
    assert title(book.pk) == "written meanwhile"


def test_a_lost_connection_serves_nothing_from_memory(
    layered, other_process, messages_through_a_proxy, book, monkeypatch
):
    monkeypatch.setattr(local, "CHECK_SECONDS", 600)  # the drop alone must tell
    assert in_memory(layered, book.pk)
    messages_through_a_proxy.cut()  # the connection drops: the message below is lost
    other_process("before", "written while the connection was down")
    assert title(book.pk) == "written while the connection was down"
    messages_through_a_proxy.restore()
    assert title(book.pk) == "written while the connection was down"


def test_a_stalled_connection_is_noticed_within_its_check(
    layered, other_process, messages_through_a_proxy, book
):
    """A connection that stops delivering without dropping (a network partition): the
    PING it must answer every CHECK_SECONDS fails, and reads go to the server."""
    assert in_memory(layered, book.pk)
    messages_through_a_proxy.hold()
    other_process("before", "written during the stall")
    time.sleep(local.CHECK_SECONDS + 0.1)
    assert title(book.pk) == "written during the stall"


def test_the_layer_stays_off_where_it_cannot_follow_the_server(settings):
    settings.CACHES = {
        **settings.CACHES,
        "memory": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "memory", "CACHE_LOCAL": True}
    assert local_layer.current() is None
    warned = [m for m in run_checks() if m.id == "dbtune.W013"]
    assert len(warned) == 1 and "memory" in warned[0].msg


@pytest.mark.parametrize("function", ["hashed_key", "lowered_key"])
def test_a_key_function_that_hides_or_changes_the_prefix_keeps_the_layer_off(
    layered, settings, function
):
    """A key function that hashes keys, or changes their case (the layer's key names could
    not be matched to the server's messages)."""
    settings.CACHES = {
        **settings.CACHES,
        "keyed": {
            **settings.CACHES["layered"],
            "KEY_FUNCTION": f"tests.test_cache_local.{function}",
        },
    }
    settings.DBTUNE = {**settings.DBTUNE, "CACHE_ALIAS": "keyed"}
    assert local_layer.current() is None
    assert [m.id for m in run_checks() if m.id == "dbtune.W013"] == ["dbtune.W013"]


def hashed_key(key, key_prefix, version):
    import hashlib

    return hashlib.sha256(f"{key_prefix}:{version}:{key}".encode()).hexdigest()


def _write_unseen(pk, title):
    """A write no process of the site sees (another program, or a writer whose invalidation
    was lost): straight through the driver's connection, past every hook."""
    with connection.connection.cursor() as cursor:
        cursor.execute("UPDATE shop_book SET title = %s WHERE id = %s", [title, pk])
    if not connection.get_autocommit():
        connection.connection.commit()


def test_an_entry_in_memory_ends_with_its_timeout(layered, book):
    def short():
        return Book.cached_objects.cached(timeout=1).get(pk=book.pk).title

    for _ in range(3):
        assert short() == "before"
    _write_unseen(book.pk, "written by another program")
    time.sleep(1.2)  # the entry's timeout: the backend has dropped it
    assert short() == "written by another program"


def lowered_key(key, key_prefix, version):
    return f"{key_prefix}:{version}:{key}".lower()


def test_a_write_never_waits_for_the_layers_connection(layered, book):
    """Another thread holds the layer's connection (a slow connect, a PING to a stalled
    server): a write still forgets its tokens, and a read goes to the backend meanwhile."""
    assert in_memory(layered, book.pk)
    layer = local_layer.current()
    assert layer._io.acquire(timeout=5)
    try:
        done = threading.Event()

        def write():
            Book.objects.filter(pk=book.pk).update(title="after")
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert done.wait(10)
        assert title(book.pk) == "after"
    finally:
        layer._io.release()


@pytest.mark.parametrize("interval", [1])
def test_the_pools_health_checks_leave_the_layers_connection_alone(
    settings, interval, book, request
):
    """A pool's health check (or retry) would PING, or connect again, outside the
    subscription: the layer's connection has none, and its memory stays warm."""
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    location = settings.CACHES["default"]["LOCATION"]
    settings.CACHES = {
        **settings.CACHES,
        "checked": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "OPTIONS": {"health_check_interval": interval},
        },
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "checked", "CACHE_LOCAL": True}
    server = redis.Redis.from_url(location)
    caches["checked"].clear()
    request.addfinalizer(caches["checked"].clear)
    assert in_memory(server, book.pk)
    time.sleep(interval + 0.5)
    assert in_memory(server, book.pk)
    assert store._missed is False  # the connection never dropped


def test_a_dead_copy_in_memory_does_not_hide_a_live_entry(
    layered, book, django_assert_num_queries, monkeypatch
):
    """The copy in memory is dead (its tokens were replaced) while the backend holds the
    entry stored since under the new tokens (by another process, played here by this one
    with its memory left out): the backend's entry is served, not the query."""
    assert in_memory(layered, book.pk)
    layer = local_layer.current()
    held = set(layer._entries)
    Book.objects.filter(pk=book.pk).update(title="after")  # new tokens
    with monkeypatch.context() as patched:
        patched.setattr(layer, "put_entry", lambda *args: None)
        assert title(book.pk) == "after"  # stored in the backend only
    generation = store.generation_key("default", "shop_book")
    for _ in range(20):  # the new tokens, in memory (once the update's message is in)
        time.sleep(0.05)
        Book.cached_objects.filter(pk=book.pk).cached().count()
        if generation in layer._tokens:
            break
    assert generation in layer._tokens and held <= set(layer._entries)  # the dead copy
    with django_assert_num_queries(0):
        assert title(book.pk) == "after"


def test_a_live_entry_that_read_more_tables_replaces_a_dead_copy(layered, monkeypatch):
    """The backend's live entry read a table the dead copy did not (another process read
    its views or triggers from a catalog of its own): that table's token is read too."""
    layer = local_layer.current()
    entry = store.entry_key("a-dead-copy")
    book, author = "shop_book", "shop_author"
    snapshot = store.snapshot("default", [book, author])
    with monkeypatch.context() as patched:  # the live entry, in the backend only
        patched.setattr(layer, "put_entry", lambda *args: None)
        assert store.store(entry, snapshot, [book, author], "live", 60)
    dead = (snapshot.epoch, (book,), ("an old token",), "dead", 0.0, time.time() + 60)
    layer.put_entry(entry, dead, dead[5])
    keys = [store.epoch_key(), store.catalog_key(), store.generation_key("default", book)]
    for _ in range(20):  # the tokens the dead copy is checked against, in memory
        time.sleep(0.05)
        store.snapshot("default", [book])
        if all(key in layer._tokens for key in keys):
            break
    layer.forget([store.generation_key("default", author)])
    assert all(key in layer._tokens for key in keys)
    found = store.lookup(entry, "default", [book])
    assert found is not None and found[1] is not None and found[1][1] == "live"


def test_a_broken_connection_retires_what_a_lost_invalidation_left(
    layered, messages_through_a_proxy, book
):
    """The layer's connection breaks: as in any outage this process notices, a writer
    elsewhere may have lost an invalidation then (and ended). Every entry is retired."""
    assert in_memory(layered, book.pk)
    messages_through_a_proxy.cut()
    _write_unseen(book.pk, "written while the connection was down")
    messages_through_a_proxy.restore()
    assert title(book.pk) == "written while the connection was down"
