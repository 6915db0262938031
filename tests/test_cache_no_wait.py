"""A miss stores its entry without waiting for Redis's reply: the reply is read at the
thread's next call to the cache, so the thread still reads its own store next, a failed
store is reported then, and a thread that ends owing a reply gives its connection back.

Runs with Redis (DBTUNE_CACHE=redis), through django-redis and Django's own RedisCache.
"""

import gc
import logging
import os
import threading
import warnings

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_dbtune.cache import invalidate, no_wait
from django_dbtune.cache.store import store
from tests.cache_books import make_book, title
from tests.proxy import Proxy
from tests.shop.models import Book

pytestmark = pytest.mark.django_db(transaction=True)

BACKENDS = {
    "django-redis": "django_redis.cache.RedisCache",
    "Django's RedisCache": "django.core.cache.backends.redis.RedisCache",
}
SOCKET_TIMEOUT = {
    "django-redis": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    "Django's RedisCache": {"socket_connect_timeout": 1, "socket_timeout": 1},
}


def _redis_location(settings):
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    return settings.CACHES["default"]["LOCATION"]


def _use(settings, backend, location, options):
    settings.CACHES = {
        **settings.CACHES,
        "stores": {"BACKEND": BACKENDS[backend], "LOCATION": location, "OPTIONS": options},
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "stores"}
    caches["stores"].clear()
    store._missed = False
    store._open_until = 0.0
    store._logged_at.clear()


@pytest.fixture(params=list(BACKENDS))
def proxied(request, settings):
    """The query cache on the test Redis through a proxy that can hold the server's replies."""
    host, port = _redis_location(settings).split("//")[1].split("/")[0].split(":")
    proxy = Proxy(host, int(port))
    _use(
        settings, request.param, f"redis://127.0.0.1:{proxy.port}/0", SOCKET_TIMEOUT[request.param]
    )
    yield proxy
    proxy.close()


@pytest.fixture(params=list(BACKENDS))
def direct(request, settings):
    """The query cache on the test Redis itself; yields a client of that server."""
    import redis

    location = _redis_location(settings)
    _use(settings, request.param, location, {})
    return redis.Redis.from_url(location)


def queries(function):
    with CaptureQueriesContext(connection) as context:
        result = function()
    return result, len(context.captured_queries)


def holding_replies_after_the_query(proxy):
    """While the query runs: from its end on, the server's replies wait in the proxy."""

    def hold(execute, sql, params, many, context):
        try:
            return execute(sql, params, many, context)
        finally:
            proxy.hold()

    return connection.execute_wrapper(hold)


def test_a_miss_returns_before_the_reply_to_its_store(proxied, caplog):
    pk = make_book().pk
    assert title(pk) == "before"
    invalidate(Book)  # the entry is dead: the next read is a miss
    with caplog.at_level(logging.WARNING, logger="django_dbtune.cache"):
        with holding_replies_after_the_query(proxied):
            assert queries(lambda: title(pk)) == ("before", 1)
        # Back with the rows, with the store's reply still held: nothing waited for it.
        assert not caplog.records
        proxied.release()
        assert queries(lambda: title(pk)) == ("before", 0)  # stored; its reply read first
    assert not caplog.records


def test_a_thread_reads_its_own_store_next(proxied):
    pk = make_book().pk
    for number in range(20):
        invalidate(Book)
        Book.objects.filter(pk=pk).update(title=f"title {number}")
        assert queries(lambda: title(pk)) == (f"title {number}", 1)
        assert queries(lambda: title(pk)) == (f"title {number}", 0)


def test_a_store_whose_reply_never_comes_is_reported_and_nothing_stale_is_served(
    proxied, caplog, settings
):
    # Without CACHE_LOCAL, whose own connection's loss keeps the breaker open a while more.
    settings.DBTUNE = {**settings.DBTUNE, "CACHE_LOCAL": False}
    pk = make_book().pk
    assert title(pk) == "before"
    invalidate(Book)
    with holding_replies_after_the_query(proxied):
        assert title(pk) == "before"
    proxied.cut()  # the reply is lost with the connection
    Book.objects.filter(pk=pk).update(title="after")  # its invalidation fails too
    with caplog.at_level(logging.WARNING, logger="django_dbtune.cache"):
        assert title(pk) == "after"  # no error for the request: the database answers
    assert "could not store an entry" in caplog.text
    proxied.release()
    proxied.restore()
    store._open_until = 0.0  # the breaker's wait is over
    assert title(pk) == "after"
    assert queries(lambda: title(pk)) == ("after", 0)


def test_threads_that_end_owing_a_reply_leave_no_connection_open(direct):
    pk = make_book().pk
    title(pk)
    before = direct.info("clients")["connected_clients"]
    for _ in range(5):
        invalidate(Book)
        thread = threading.Thread(target=lambda: title(pk))  # a miss: its reply is owed
        thread.start()
        thread.join()
        gc.collect()
    # Each thread's connection went back to its pool, closed: none is left open for good.
    assert direct.info("clients")["connected_clients"] <= before + 1


def test_a_connection_closed_at_the_end_of_a_request_loses_the_store_quietly(settings, caplog):
    """django-redis's CLOSE_CONNECTION closes every connection of its pool when a request
    ends, the one that owes a store's reply too: that store is lost, not an error."""
    _use(settings, "django-redis", _redis_location(settings), {"CLOSE_CONNECTION": True})
    pk = make_book().pk
    invalidate(Book)
    with caplog.at_level(logging.WARNING, logger="django_dbtune.cache"):
        assert title(pk) == "before"  # a miss: its reply is owed
        caches["stores"].close()  # what the end of a request does
        assert title(pk) == "before"
        assert queries(lambda: title(pk)) == ("before", 0)
    assert not caplog.records


def test_a_process_forked_with_a_reply_owed_leaves_it_to_its_parent(proxied, caplog):
    """A process forked while its parent owed a reply (a server that loads the site, runs a
    cached query, then forks its workers) shares the parent's socket: the child must not
    read the parent's reply, which the parent waits for next."""
    pk = make_book().pk
    invalidate(Book)
    assert queries(lambda: title(pk)) == ("before", 1)  # a miss: its reply is owed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        child = os.fork()
    if child == 0:  # the child: what the cache does first at its next call
        try:
            no_wait.settle()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    with caplog.at_level(logging.WARNING, logger="django_dbtune.cache"):
        assert queries(lambda: title(pk)) == ("before", 0)  # the parent's store, read back
    assert not caplog.records
